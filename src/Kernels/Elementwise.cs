namespace IlgpuLlm.Kernels;

/// <summary>Launch helpers shared by the one-thread-per-element kernels.</summary>
public static class Elementwise
{
    /// <summary>
    /// The thread count of an implicitly grouped launch: ILGPU's <c>Index1D</c> is a 32-bit index,
    /// so one launch covers at most int.MaxValue elements (far beyond any activation tensor).
    /// </summary>
    public static int ThreadCount(string what, long elements)
    {
        Shapes.Positive(what, elements);
        if (elements > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(elements),
                $"{what}: {elements} elements exceed one launch's {int.MaxValue}");
        return (int)elements;
    }
}
