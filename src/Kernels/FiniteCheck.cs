using ILGPU;
using ILGPU.Runtime;

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

    /// <summary>The count a check covers must lie within its buffer.</summary>
    public static void ValidateCount(long available, long count)
    {
        if (count < 0)
            throw new ArgumentOutOfRangeException(nameof(count), $"finite check: count {count} must not be negative");
        Shapes.ExpectAtLeast("finite check: x", available, count, $"a count of {count}");
    }

    /// <summary>Exponent bits of binary32: all set means ±inf or NaN.</summary>
    public const uint ExponentMask = 0x7F800000;

    /// <summary>Most threads a launch starts; each walks the buffer with this stride.</summary>
    const int MaxThreads = 1 << 20;

    /// <summary>"Nothing found" in the result cell, above every index.</summary>
    public const long NotFound = long.MaxValue;

    public struct Args
    {
        public ArrayView<float> X;
        public long Count;
        public long Stride;
        /// <summary>One cell, <see cref="NotFound"/> before the launch.</summary>
        public ArrayView<long> Result;
    }

    /// <summary>
    /// Grid-strided, coalesced: thread t checks t, t + stride, …; its first hit is its lowest, so it
    /// stops there. The integer atomic minimum of the hits is the lowest index, whatever order the
    /// threads run in.
    /// </summary>
    [GpuKernel]
    static void Kernel(Index1D index, Args a)
    {
        for (long i = index; i < a.Count; i += a.Stride)
        {
            if ((Interop.FloatAsInt(a.X[i]) & ExponentMask) == ExponentMask)
            {
                Atomic.Min(ref a.Result[0], i);
                return;
            }
        }
    }

    /// <summary>
    /// Checks all of <paramref name="x"/>; the answer lands in result[0], which must hold
    /// <see cref="NotFound"/> before (and still does when every value is finite). At most
    /// <paramref name="maxThreads"/> threads start (tests lower it to exercise the stride loop).
    /// </summary>
    public static void Run(KernelLibrary library, ArrayView<float> x, ArrayView<long> result, int maxThreads = MaxThreads)
    {
        Shapes.ExpectAtLeast("finite check: result", result.Length, 1, "one cell for the lowest index");
        Shapes.Positive("finite check: threads", maxThreads);
        if (x.Length == 0)
            return;
        int threads = (int)Math.Min(x.Length, maxThreads);
        library.GetElementwise<Args>(Kernel)(threads, new Args { X = x, Count = x.Length, Stride = threads, Result = result });
    }
}
