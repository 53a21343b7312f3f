using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
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
/// Prefill (many rows) of <see cref="LinearSimd"/> on AVX-512: register tiles of up to 4 rows × 3
/// outputs, each output's 32 canonical lanes in two Vector512 accumulators, so every weight load
/// feeds several rows and every x load several outputs. The order per output is still the
/// canonical one — lane j takes k = j, j+32, … in increasing k, then the tree — so the tiles
/// change nothing but speed. Weights are widened once per block into an f32 panel, and x is copied
/// with a padded row stride, so that rows 8 KiB apart do not alias in L1. The k range is walked in
/// blocks, with each tile's accumulators parked in a per-thread buffer between blocks.
/// </summary>
public static unsafe partial class LinearSimd
{
    /// <summary>Outputs one thread packs and walks together.</summary>
    const int BlockOutputs = 48;

    /// <summary>k values per panel block (a multiple of 32).</summary>
    const int BlockDepth = 512;

    /// <summary>Rows from which the tiled path beats one dot product per output.</summary>
    public const int TiledFromRows = 16;

    const int PanelStride = BlockDepth + 16;

    sealed class TileScratch
    {
        public float* Panel = (float*)NativeMemory.AlignedAlloc((nuint)(BlockOutputs * PanelStride * 4), 64);
        public float* Accumulators;
        public long AccumulatorFloats;

        public float* AccumulatorsFor(long floats)
        {
            if (floats > AccumulatorFloats)
            {
                if (Accumulators != null)
                    NativeMemory.AlignedFree(Accumulators);
                Accumulators = (float*)NativeMemory.AlignedAlloc((nuint)(floats * 4), 64);
                AccumulatorFloats = floats;
            }
            return Accumulators;
        }
    }

    [ThreadStatic]
    static TileScratch? tileScratch;

    /// <summary>x copied with a padded row stride (zeros beyond k), owned by the job between calls.</summary>
    static void PackRows(Job job)
    {
        var shape = job.Shape;
        int k = shape.InFeatures;
        int stride = ((k + 31) & ~31) + 16;
        long floats = (long)shape.Rows * stride;
        if (floats > job.PackedCapacity)
        {
            if (job.Packed != null)
                NativeMemory.AlignedFree(job.Packed);
            job.Packed = (float*)NativeMemory.AlignedAlloc((nuint)(floats * 4), 64);
            job.PackedCapacity = floats;
        }
        for (int m = 0; m < shape.Rows; m++)
        {
            var row = new Span<float>(job.Packed + (long)m * stride, stride);
            new ReadOnlySpan<float>(job.X + (long)m * k, k).CopyTo(row);
            row[k..].Clear();
        }
        job.PackedStride = stride;
    }

    static void TiledBlocks<T>(Job job, int firstBlock, int endBlock) where T : struct, IStoredVectors
    {
        var scratch = tileScratch ??= new TileScratch();
        var shape = job.Shape;
        int rows = shape.Rows, k = shape.InFeatures;
        for (int block = firstBlock; block < endBlock; block++)
        {
            int n0 = block * BlockOutputs;
            int outputs = Math.Min(BlockOutputs, shape.OutFeatures - n0);
            int accumulatorRow = outputs * 32;
            float* accumulators = scratch.AccumulatorsFor((long)rows * accumulatorRow);
            new Span<float>(accumulators, rows * accumulatorRow).Clear();
            for (int k0 = 0; k0 < k; k0 += BlockDepth)
            {
                int depth = Math.Min(BlockDepth, k - k0);
                PackPanel<T>(job.W, (long)n0 * k + k0, k, outputs, depth, scratch.Panel);
                int steps = depth >> 5;
                int tail = depth & 31;
                float* x = job.Packed + k0;
                for (int m0 = 0; m0 < rows; m0 += 4)
                {
                    int tileRows = Math.Min(4, rows - m0);
                    for (int c0 = 0; c0 < outputs; c0 += 3)
                    {
                        int tileOutputs = Math.Min(3, outputs - c0);
                        float* xt = x + (long)m0 * job.PackedStride;
                        float* panel = scratch.Panel + c0 * PanelStride;
                        float* acc = accumulators + (long)m0 * accumulatorRow + c0 * 32;
                        Tile(tileRows, tileOutputs, xt, job.PackedStride, panel, acc, accumulatorRow, steps, tail);
                    }
                }
            }
            for (int m = 0; m < rows; m++)
                for (int c = 0; c < outputs; c++)
                {
                    float* lanes = accumulators + (long)m * accumulatorRow + c * 32;
                    float dot = SimdTree.Sum(Vector512.Load(lanes), Vector512.Load(lanes + 16));
                    job.Y[(long)m * shape.OutFeatures + n0 + c] = job.Bias != null ? dot + job.Bias[n0 + c] : dot;
                }
        }
    }

    /// <summary>Widens weight rows [first, first + outputs) × [k0, k0 + depth) into the f32 panel, zero-padded.</summary>
    static void PackPanel<T>(byte* w, long first, int rowLength, int outputs, int depth, float* panel)
        where T : struct, IStoredVectors
    {
        int full = depth & ~15;
        for (int c = 0; c < outputs; c++)
        {
            long at = first + (long)c * rowLength;
            float* destination = panel + c * PanelStride;
            for (int i = 0; i < full; i += 16)
                T.Load16(w, at + i).Store(destination + i);
            for (int i = full; i < depth; i++)
                destination[i] = T.Load1(w, at + i);
            for (int i = depth; i < PanelStride; i++)
                destination[i] = 0f;
        }
    }

    static void Tile(int tileRows, int tileOutputs, float* x, int xStride, float* panel, float* acc, int accStride, int steps, int tail)
    {
        switch (tileRows * 4 + tileOutputs)
        {
            case 4 * 4 + 3: Tile<Count4, Count3>(x, xStride, panel, acc, accStride, steps, tail); break;
            case 4 * 4 + 2: Tile<Count4, Count2>(x, xStride, panel, acc, accStride, steps, tail); break;
            case 4 * 4 + 1: Tile<Count4, Count1>(x, xStride, panel, acc, accStride, steps, tail); break;
            case 3 * 4 + 3: Tile<Count3, Count3>(x, xStride, panel, acc, accStride, steps, tail); break;
            case 3 * 4 + 2: Tile<Count3, Count2>(x, xStride, panel, acc, accStride, steps, tail); break;
            case 3 * 4 + 1: Tile<Count3, Count1>(x, xStride, panel, acc, accStride, steps, tail); break;
            case 2 * 4 + 3: Tile<Count2, Count3>(x, xStride, panel, acc, accStride, steps, tail); break;
            case 2 * 4 + 2: Tile<Count2, Count2>(x, xStride, panel, acc, accStride, steps, tail); break;
            case 2 * 4 + 1: Tile<Count2, Count1>(x, xStride, panel, acc, accStride, steps, tail); break;
            case 1 * 4 + 3: Tile<Count1, Count3>(x, xStride, panel, acc, accStride, steps, tail); break;
            case 1 * 4 + 2: Tile<Count1, Count2>(x, xStride, panel, acc, accStride, steps, tail); break;
            default: Tile<Count1, Count1>(x, xStride, panel, acc, accStride, steps, tail); break;
        }
    }

    /// <summary>
    /// One register tile over <paramref name="steps"/> full 32-wide k steps and an optional tail of
    /// <paramref name="tail"/> lanes, folded in with a lane mask (inactive lanes untouched).
    /// Accumulator pair (r, c) lives at acc + r·accStride + c·32.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile<TRows, TOutputs>(float* x, int xStride, float* panel, float* acc, int accStride, int steps, int tail)
        where TRows : struct, ITileCount where TOutputs : struct, ITileCount
    {
        int R = TRows.Value, C = TOutputs.Value;
        float* a0 = acc, a1 = acc + accStride, a2 = acc + 2 * accStride, a3 = acc + 3 * accStride;
        var l00 = Vector512.Load(a0); var h00 = Vector512.Load(a0 + 16);
        var l01 = C > 1 ? Vector512.Load(a0 + 32) : default; var h01 = C > 1 ? Vector512.Load(a0 + 48) : default;
        var l02 = C > 2 ? Vector512.Load(a0 + 64) : default; var h02 = C > 2 ? Vector512.Load(a0 + 80) : default;
        var l10 = R > 1 ? Vector512.Load(a1) : default; var h10 = R > 1 ? Vector512.Load(a1 + 16) : default;
        var l11 = R > 1 && C > 1 ? Vector512.Load(a1 + 32) : default; var h11 = R > 1 && C > 1 ? Vector512.Load(a1 + 48) : default;
        var l12 = R > 1 && C > 2 ? Vector512.Load(a1 + 64) : default; var h12 = R > 1 && C > 2 ? Vector512.Load(a1 + 80) : default;
        var l20 = R > 2 ? Vector512.Load(a2) : default; var h20 = R > 2 ? Vector512.Load(a2 + 16) : default;
        var l21 = R > 2 && C > 1 ? Vector512.Load(a2 + 32) : default; var h21 = R > 2 && C > 1 ? Vector512.Load(a2 + 48) : default;
        var l22 = R > 2 && C > 2 ? Vector512.Load(a2 + 64) : default; var h22 = R > 2 && C > 2 ? Vector512.Load(a2 + 80) : default;
        var l30 = R > 3 ? Vector512.Load(a3) : default; var h30 = R > 3 ? Vector512.Load(a3 + 16) : default;
        var l31 = R > 3 && C > 1 ? Vector512.Load(a3 + 32) : default; var h31 = R > 3 && C > 1 ? Vector512.Load(a3 + 48) : default;
        var l32 = R > 3 && C > 2 ? Vector512.Load(a3 + 64) : default; var h32 = R > 3 && C > 2 ? Vector512.Load(a3 + 80) : default;

        float* p0 = panel, p1 = panel + PanelStride, p2 = panel + 2 * PanelStride;
        float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride;
        for (int s = 0; s < steps; s++)
        {
            int i = s << 5;
            var w0l = Vector512.Load(p0 + i); var w0h = Vector512.Load(p0 + i + 16);
            var w1l = C > 1 ? Vector512.Load(p1 + i) : default; var w1h = C > 1 ? Vector512.Load(p1 + i + 16) : default;
            var w2l = C > 2 ? Vector512.Load(p2 + i) : default; var w2h = C > 2 ? Vector512.Load(p2 + i + 16) : default;
            var xl = Vector512.Load(x0 + i); var xh = Vector512.Load(x0 + i + 16);
            l00 = Vector512.FusedMultiplyAdd(xl, w0l, l00); h00 = Vector512.FusedMultiplyAdd(xh, w0h, h00);
            if (C > 1) { l01 = Vector512.FusedMultiplyAdd(xl, w1l, l01); h01 = Vector512.FusedMultiplyAdd(xh, w1h, h01); }
            if (C > 2) { l02 = Vector512.FusedMultiplyAdd(xl, w2l, l02); h02 = Vector512.FusedMultiplyAdd(xh, w2h, h02); }
            if (R > 1)
            {
                xl = Vector512.Load(x1 + i); xh = Vector512.Load(x1 + i + 16);
                l10 = Vector512.FusedMultiplyAdd(xl, w0l, l10); h10 = Vector512.FusedMultiplyAdd(xh, w0h, h10);
                if (C > 1) { l11 = Vector512.FusedMultiplyAdd(xl, w1l, l11); h11 = Vector512.FusedMultiplyAdd(xh, w1h, h11); }
                if (C > 2) { l12 = Vector512.FusedMultiplyAdd(xl, w2l, l12); h12 = Vector512.FusedMultiplyAdd(xh, w2h, h12); }
            }
            if (R > 2)
            {
                xl = Vector512.Load(x2 + i); xh = Vector512.Load(x2 + i + 16);
                l20 = Vector512.FusedMultiplyAdd(xl, w0l, l20); h20 = Vector512.FusedMultiplyAdd(xh, w0h, h20);
                if (C > 1) { l21 = Vector512.FusedMultiplyAdd(xl, w1l, l21); h21 = Vector512.FusedMultiplyAdd(xh, w1h, h21); }
                if (C > 2) { l22 = Vector512.FusedMultiplyAdd(xl, w2l, l22); h22 = Vector512.FusedMultiplyAdd(xh, w2h, h22); }
            }
            if (R > 3)
            {
                xl = Vector512.Load(x3 + i); xh = Vector512.Load(x3 + i + 16);
                l30 = Vector512.FusedMultiplyAdd(xl, w0l, l30); h30 = Vector512.FusedMultiplyAdd(xh, w0h, h30);
                if (C > 1) { l31 = Vector512.FusedMultiplyAdd(xl, w1l, l31); h31 = Vector512.FusedMultiplyAdd(xh, w1h, h31); }
                if (C > 2) { l32 = Vector512.FusedMultiplyAdd(xl, w2l, l32); h32 = Vector512.FusedMultiplyAdd(xh, w2h, h32); }
            }
        }
        if (tail > 0)
        {
            int i = steps << 5;
            var ml = SimdTree.Active16(0, tail);
            var mh = SimdTree.Active16(16, tail);
            var w0l = Vector512.Load(p0 + i); var w0h = Vector512.Load(p0 + i + 16);
            var w1l = C > 1 ? Vector512.Load(p1 + i) : default; var w1h = C > 1 ? Vector512.Load(p1 + i + 16) : default;
            var w2l = C > 2 ? Vector512.Load(p2 + i) : default; var w2h = C > 2 ? Vector512.Load(p2 + i + 16) : default;
            Masked(x0 + i, ml, mh, w0l, w0h, w1l, w1h, w2l, w2h, C, ref l00, ref h00, ref l01, ref h01, ref l02, ref h02);
            if (R > 1) Masked(x1 + i, ml, mh, w0l, w0h, w1l, w1h, w2l, w2h, C, ref l10, ref h10, ref l11, ref h11, ref l12, ref h12);
            if (R > 2) Masked(x2 + i, ml, mh, w0l, w0h, w1l, w1h, w2l, w2h, C, ref l20, ref h20, ref l21, ref h21, ref l22, ref h22);
            if (R > 3) Masked(x3 + i, ml, mh, w0l, w0h, w1l, w1h, w2l, w2h, C, ref l30, ref h30, ref l31, ref h31, ref l32, ref h32);
        }

        l00.Store(a0); h00.Store(a0 + 16);
        if (C > 1) { l01.Store(a0 + 32); h01.Store(a0 + 48); }
        if (C > 2) { l02.Store(a0 + 64); h02.Store(a0 + 80); }
        if (R > 1)
        {
            l10.Store(a1); h10.Store(a1 + 16);
            if (C > 1) { l11.Store(a1 + 32); h11.Store(a1 + 48); }
            if (C > 2) { l12.Store(a1 + 64); h12.Store(a1 + 80); }
        }
        if (R > 2)
        {
            l20.Store(a2); h20.Store(a2 + 16);
            if (C > 1) { l21.Store(a2 + 32); h21.Store(a2 + 48); }
            if (C > 2) { l22.Store(a2 + 64); h22.Store(a2 + 80); }
        }
        if (R > 3)
        {
            l30.Store(a3); h30.Store(a3 + 16);
            if (C > 1) { l31.Store(a3 + 32); h31.Store(a3 + 48); }
            if (C > 2) { l32.Store(a3 + 64); h32.Store(a3 + 80); }
        }
    }

    /// <summary>The tail step of one row: lanes outside the masks keep their accumulators (no zero terms).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Masked(float* x, Vector512<float> maskLow, Vector512<float> maskHigh,
        Vector512<float> w0l, Vector512<float> w0h, Vector512<float> w1l, Vector512<float> w1h, Vector512<float> w2l, Vector512<float> w2h,
        int outputs, ref Vector512<float> l0, ref Vector512<float> h0, ref Vector512<float> l1, ref Vector512<float> h1,
        ref Vector512<float> l2, ref Vector512<float> h2)
    {
        var xl = Vector512.Load(x);
        var xh = Vector512.Load(x + 16);
        l0 = Vector512.ConditionalSelect(maskLow, Vector512.FusedMultiplyAdd(xl, w0l, l0), l0);
        h0 = Vector512.ConditionalSelect(maskHigh, Vector512.FusedMultiplyAdd(xh, w0h, h0), h0);
        if (outputs > 1)
        {
            l1 = Vector512.ConditionalSelect(maskLow, Vector512.FusedMultiplyAdd(xl, w1l, l1), l1);
            h1 = Vector512.ConditionalSelect(maskHigh, Vector512.FusedMultiplyAdd(xh, w1h, h1), h1);
        }
        if (outputs > 2)
        {
            l2 = Vector512.ConditionalSelect(maskLow, Vector512.FusedMultiplyAdd(xl, w2l, l2), l2);
            h2 = Vector512.ConditionalSelect(maskHigh, Vector512.FusedMultiplyAdd(xh, w2h, h2), h2);
        }
    }
}
