namespace IlgpuLlm.Kernels;

/// <summary>The checks every op runs on its arguments before any kernel or loop touches them.</summary>
public static class Shapes
{
    /// <summary>Throws unless a buffer holds exactly the number of values its op needs.</summary>
    public static void Expect(string what, long actual, long expected, string because)
    {
        if (actual != expected)
            throw new ArgumentException($"{what} holds {actual} values; expected {expected} ({because})");
    }

    /// <summary>Throws unless a buffer holds at least the number of values its op reads.</summary>
    public static void ExpectAtLeast(string what, long actual, long needed, string because)
    {
        if (actual < needed)
            throw new ArgumentException($"{what} holds {actual} values; needs at least {needed} ({because})");
    }

    public static void Positive(string what, long value)
    {
        if (value < 1)
            throw new ArgumentException($"{what} is {value}; it must be at least 1");
    }
}
