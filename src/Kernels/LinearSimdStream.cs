using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace IlgpuLlm.Kernels;

/// <summary>A compile-time count, so one generic micro-kernel specialises for every tile size.</summary>
public interface ITileCount
{
    static abstract int Value { get; }
}

public struct Count1 : ITileCount { public static int Value => 1; }
public struct Count2 : ITileCount { public static int Value => 2; }
public struct Count3 : ITileCount { public static int Value => 3; }
public struct Count4 : ITileCount { public static int Value => 4; }

/// <summary>
/// Linear for a few rows (batched decode) on AVX-512: register tiles of up to four x rows × two
/// weight rows read straight from their storage — no packing, whose cost only pays off for many
/// rows — so the weights stream from memory once however many sequences decode together. Same
/// canonical order per output as every other path.
/// </summary>
public static unsafe partial class LinearSimd
{
    static void StreamRows<T>(Job job, int start, int end) where T : struct, IStoredVectors
    {
        var shape = job.Shape;
        int k = shape.InFeatures, rows = shape.Rows;
        for (; start + 2 <= end; start += 2)
            for (int m0 = 0; m0 < rows; m0 += 4)
            {
                float* x = job.X + (long)m0 * k;
                float* y = job.Y + (long)m0 * shape.OutFeatures + start;
                switch (Math.Min(4, rows - m0))
                {
                    case 4: StreamTile<T, Count4>(x, k, job.W, (long)start * k, y, shape.OutFeatures); break;
                    case 3: StreamTile<T, Count3>(x, k, job.W, (long)start * k, y, shape.OutFeatures); break;
                    case 2: StreamTile<T, Count2>(x, k, job.W, (long)start * k, y, shape.OutFeatures); break;
                    default: StreamTile<T, Count1>(x, k, job.W, (long)start * k, y, shape.OutFeatures); break;
                }
                if (job.Bias != null)
                    for (int m = m0; m < Math.Min(rows, m0 + 4); m++)
                        for (int n = start; n < start + 2; n++)
                            job.Y[(long)m * shape.OutFeatures + n] += job.Bias[n];
            }
        for (int n = start; n < end; n++)
            for (int m = 0; m < rows; m++)
            {
                float dot = SimdDot.Dot512<T>(job.X + (long)m * k, job.W, (long)n * k, k);
                job.Y[(long)m * shape.OutFeatures + n] = job.Bias != null ? dot + job.Bias[n] : dot;
            }
    }

    /// <summary>
    /// Rows x[0..R) (stride k) times stored weight rows at and at + k, each output the canonical dot;
    /// y[r·yStride + c] receives output (r, c).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void StreamTile<T, TRows>(float* x, int k, byte* w, long at, float* y, int yStride)
        where T : struct, IStoredVectors where TRows : struct, ITileCount
    {
        int R = TRows.Value;
        long at1 = at + k;
        float* x1 = x + k, x2 = x + 2L * k, x3 = x + 3L * k;
        var l00 = Vector512<float>.Zero; var h00 = l00; var l01 = l00; var h01 = l00;
        var l10 = l00; var h10 = l00; var l11 = l00; var h11 = l00;
        var l20 = l00; var h20 = l00; var l21 = l00; var h21 = l00;
        var l30 = l00; var h30 = l00; var l31 = l00; var h31 = l00;
        int full = k & ~31;
        for (int i = 0; i < full; i += 32)
        {
            var w0l = T.Load16(w, at + i); var w0h = T.Load16(w, at + i + 16);
            var w1l = T.Load16(w, at1 + i); var w1h = T.Load16(w, at1 + i + 16);
            var xl = Vector512.Load(x + i); var xh = Vector512.Load(x + i + 16);
            l00 = Vector512.FusedMultiplyAdd(xl, w0l, l00); h00 = Vector512.FusedMultiplyAdd(xh, w0h, h00);
            l01 = Vector512.FusedMultiplyAdd(xl, w1l, l01); h01 = Vector512.FusedMultiplyAdd(xh, w1h, h01);
            if (R > 1)
            {
                xl = Vector512.Load(x1 + i); xh = Vector512.Load(x1 + i + 16);
                l10 = Vector512.FusedMultiplyAdd(xl, w0l, l10); h10 = Vector512.FusedMultiplyAdd(xh, w0h, h10);
                l11 = Vector512.FusedMultiplyAdd(xl, w1l, l11); h11 = Vector512.FusedMultiplyAdd(xh, w1h, h11);
            }
            if (R > 2)
            {
                xl = Vector512.Load(x2 + i); xh = Vector512.Load(x2 + i + 16);
                l20 = Vector512.FusedMultiplyAdd(xl, w0l, l20); h20 = Vector512.FusedMultiplyAdd(xh, w0h, h20);
                l21 = Vector512.FusedMultiplyAdd(xl, w1l, l21); h21 = Vector512.FusedMultiplyAdd(xh, w1h, h21);
            }
            if (R > 3)
            {
                xl = Vector512.Load(x3 + i); xh = Vector512.Load(x3 + i + 16);
                l30 = Vector512.FusedMultiplyAdd(xl, w0l, l30); h30 = Vector512.FusedMultiplyAdd(xh, w0h, h30);
                l31 = Vector512.FusedMultiplyAdd(xl, w1l, l31); h31 = Vector512.FusedMultiplyAdd(xh, w1h, h31);
            }
        }
        if (full < k)
        {
            // Widened tails of both weight rows and of each x row, zero-padded; inactive lanes untouched.
            int active = k - full;
            var ws = stackalloc float[64];
            var xs = stackalloc float[32];
            for (int j = 0; j < 32; j++)
            {
                ws[j] = j < active ? T.Load1(w, at + full + j) : 0f;
                ws[32 + j] = j < active ? T.Load1(w, at1 + full + j) : 0f;
            }
            var low = SimdTree.Active16(0, active);
            var high = SimdTree.Active16(16, active);
            var w0l = Vector512.Load(ws); var w0h = Vector512.Load(ws + 16);
            var w1l = Vector512.Load(ws + 32); var w1h = Vector512.Load(ws + 48);
            StreamTail(x + full, xs, active, low, high, w0l, w0h, w1l, w1h, ref l00, ref h00, ref l01, ref h01);
            if (R > 1) StreamTail(x1 + full, xs, active, low, high, w0l, w0h, w1l, w1h, ref l10, ref h10, ref l11, ref h11);
            if (R > 2) StreamTail(x2 + full, xs, active, low, high, w0l, w0h, w1l, w1h, ref l20, ref h20, ref l21, ref h21);
            if (R > 3) StreamTail(x3 + full, xs, active, low, high, w0l, w0h, w1l, w1h, ref l30, ref h30, ref l31, ref h31);
        }
        y[0] = SimdTree.Sum(l00, h00);
        y[1] = SimdTree.Sum(l01, h01);
        if (R > 1) { y[yStride] = SimdTree.Sum(l10, h10); y[yStride + 1] = SimdTree.Sum(l11, h11); }
        if (R > 2) { y[2 * yStride] = SimdTree.Sum(l20, h20); y[2 * yStride + 1] = SimdTree.Sum(l21, h21); }
        if (R > 3) { y[3 * yStride] = SimdTree.Sum(l30, h30); y[3 * yStride + 1] = SimdTree.Sum(l31, h31); }
    }

    /// <summary>
    /// The masked tail step of one x row against two widened weight tails. A static method that
    /// inlines, not a local function: a closure would keep every accumulator in memory.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void StreamTail(float* xt, float* scratch, int active, Vector512<float> low, Vector512<float> high,
        Vector512<float> w0l, Vector512<float> w0h, Vector512<float> w1l, Vector512<float> w1h,
        ref Vector512<float> a0, ref Vector512<float> b0, ref Vector512<float> a1, ref Vector512<float> b1)
    {
        for (int j = 0; j < 32; j++)
            scratch[j] = j < active ? xt[j] : 0f;
        var xl = Vector512.Load(scratch);
        var xh = Vector512.Load(scratch + 16);
        a0 = Vector512.ConditionalSelect(low, Vector512.FusedMultiplyAdd(xl, w0l, a0), a0);
        b0 = Vector512.ConditionalSelect(high, Vector512.FusedMultiplyAdd(xh, w0h, b0), b0);
        a1 = Vector512.ConditionalSelect(low, Vector512.FusedMultiplyAdd(xl, w1l, a1), a1);
        b1 = Vector512.ConditionalSelect(high, Vector512.FusedMultiplyAdd(xh, w1h, b1), b1);
    }
}
