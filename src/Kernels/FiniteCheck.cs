using ILGPU;
using ILGPU.Runtime;

namespace IlgpuLlm.Kernels;

/// <summary>
/// Finds the first NaN or ±inf in a buffer (the checks that locate where a non-finite value first
/// appeared; "first" is the lowest index, which no parallel order can change), or flags the rows of
/// a matrix that hold one (the non-finite guard on logits before sampling, which never leaves the
/// device: each flagged row's flag is raised to a mark, and a flag is the maximum of the marks
/// raised, whatever the order).
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

    /// <summary>flags[r] = max(flags[r], mark) for each row r of x [rows, width] holding NaN or ±inf.</summary>
    public static void RowsReference(ReadOnlySpan<float> x, int rows, int width, Span<int> flags, int mark)
    {
        ValidateRows(x.Length, rows, width, flags.Length, mark);
        for (int r = 0; r < rows; r++)
            if (Reference(x.Slice(r * width, width)) >= 0)
                flags[r] = Math.Max(flags[r], mark);
    }

    public static void ValidateRows(long xLength, int rows, int width, long flagsLength, int mark)
    {
        Shapes.Positive("finite check: rows", rows);
        Shapes.Positive("finite check: width", width);
        Shapes.ExpectAtLeast("finite check: x", xLength, (long)rows * width, $"rows {rows} × width {width}");
        Shapes.ExpectAtLeast("finite check: flags", flagsLength, rows, $"one per row, rows {rows}");
        Shapes.Positive("finite check: mark", mark);
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

    public struct RowsArgs
    {
        public ArrayView<float> X;
        public ArrayView<int> Flags;
        public long Count, Stride;
        public int Width, Mark;
    }

    /// <summary>Grid-strided like <see cref="Kernel"/>; a thread that hits raises its row's flag and moves on to the next row.</summary>
    [GpuKernel]
    static void RowsKernel(Index1D index, RowsArgs a)
    {
        for (long i = index; i < a.Count; i += a.Stride)
        {
            if ((Interop.FloatAsInt(a.X[i]) & ExponentMask) == ExponentMask)
                Atomic.Max(ref a.Flags[i / a.Width], a.Mark);
        }
    }

    /// <summary>Flags the rows of <paramref name="x"/> [rows, width] that hold NaN or ±inf (see <see cref="RowsReference"/>).</summary>
    public static void RunRows(KernelLibrary library, ArrayView<float> x, int rows, int width, ArrayView<int> flags, int mark)
    {
        ValidateRows(x.Length, rows, width, flags.Length, mark);
        long count = (long)rows * width;
        int threads = (int)Math.Min(count, MaxThreads);
        library.GetElementwise<RowsArgs>(RowsKernel)(threads, new RowsArgs
        {
            X = x, Flags = flags, Count = count, Stride = threads, Width = width, Mark = mark,
        });
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
