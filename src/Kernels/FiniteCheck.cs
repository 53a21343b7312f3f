namespace IlgpuLlm.Kernels;

/// <summary>
/// Finds the first NaN or ±inf in a buffer: the non-finite guard before sampling and the per-layer
/// checks that locate where a non-finite value first appeared. "First" is the lowest index, which
/// no parallel order can change.
/// </summary>
public static partial class FiniteCheck
{
    public static long Reference(ReadOnlySpan<float> x)
    {
        for (int i = 0; i < x.Length; i++)
            if (!float.IsFinite(x[i]))
                return i;
        return -1;
    }
}
