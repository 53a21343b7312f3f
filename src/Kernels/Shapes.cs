using System.Runtime.CompilerServices;

namespace IlgpuLlm.Kernels;

/// <summary>
/// The checks every op runs on its arguments before any kernel or loop touches them. They run on
/// every call of the generation loop, so a check that passes allocates nothing: the explanation is
/// an interpolated string that is only formatted when the check fails.
/// </summary>
public static class Shapes
{
    /// <summary>Throws unless a buffer holds exactly the number of values its op needs.</summary>
    public static void Expect(string what, long actual, long expected,
        [InterpolatedStringHandlerArgument("actual", "expected")] ref UnequalExplanation because)
    {
        if (actual != expected)
            throw new ArgumentException($"{what} holds {actual} values; expected {expected} ({because.ToStringAndClear()})");
    }

    /// <summary>Throws unless a buffer holds exactly the number of values its op needs.</summary>
    public static void Expect(string what, long actual, long expected, string because)
    {
        if (actual != expected)
            throw new ArgumentException($"{what} holds {actual} values; expected {expected} ({because})");
    }

    /// <summary>Throws unless a buffer holds at least the number of values its op reads.</summary>
    public static void ExpectAtLeast(string what, long actual, long needed,
        [InterpolatedStringHandlerArgument("actual", "needed")] ref ShortExplanation because)
    {
        if (actual < needed)
            throw new ArgumentException($"{what} holds {actual} values; needs at least {needed} ({because.ToStringAndClear()})");
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

/// <summary>An explanation formatted only when the two counts differ.</summary>
[InterpolatedStringHandler]
public ref struct UnequalExplanation
{
    DefaultInterpolatedStringHandler text;

    public UnequalExplanation(int literalLength, int formattedCount, long actual, long expected, out bool formatted)
    {
        formatted = actual != expected;
        text = formatted ? new DefaultInterpolatedStringHandler(literalLength, formattedCount) : default;
    }

    public void AppendLiteral(string value) => text.AppendLiteral(value);
    public void AppendFormatted<T>(T value) => text.AppendFormatted(value);
    public string ToStringAndClear() => text.ToStringAndClear();
}

/// <summary>An explanation formatted only when the count falls short.</summary>
[InterpolatedStringHandler]
public ref struct ShortExplanation
{
    DefaultInterpolatedStringHandler text;

    public ShortExplanation(int literalLength, int formattedCount, long actual, long needed, out bool formatted)
    {
        formatted = actual < needed;
        text = formatted ? new DefaultInterpolatedStringHandler(literalLength, formattedCount) : default;
    }

    public void AppendLiteral(string value) => text.AppendLiteral(value);
    public void AppendFormatted<T>(T value) => text.AppendFormatted(value);
    public string ToStringAndClear() => text.ToStringAndClear();
}
