using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using static IlgpuLlm.Kernels.ExactMath;

namespace IlgpuLlm.Kernels;

/// <summary>
/// The GPU's linear for decode (at most <see cref="DecodeRows"/> rows of x): streaming the weights
/// is all the work, so the kernel is shaped for memory. Four threads (a quad) own one output row:
/// thread p reads octet p of every 32-value segment of the weight row — one 128-bit load for
/// f16/bf16, two for f32 — which are exactly the terms of canonical lanes 8p … 8p+7, so each
/// thread runs eight lane chains in the canonical order, and a warp streams eight rows at once
/// (8 × 64 contiguous bytes per load instruction). <see cref="DecodeUnroll"/> segments are loaded
/// before they are folded, so each thread keeps that many loads in flight. The quad folds its 32
/// lanes with the canonical tree: steps 16 and 8 by exchanging octets with the quad partner
/// (<c>shfl.bfly</c> by 2, then 1), steps 4, 2, 1 inside the thread. No shared memory, no
/// barrier. Rows whose width is not a multiple of 32 end with a partial segment read value by
/// value, each value into its own lane (a lane past the end is left untouched, as the contract
/// says); bytes that are not 16-byte aligned (odd widths, unaligned slices) are read value by
/// value throughout, in the same order.
/// </summary>
public static partial class Linear
{
    /// <summary>Most rows of x the decode kernel takes (each x row adds eight accumulators per thread).</summary>
    public const int DecodeRows = 4;

    /// <summary>Segments (32 values of a row) a thread loads before folding them: its loads in flight.</summary>
    public const int DecodeUnroll = 4;

    /// <summary>Threads that share one output row: 32 lanes, 8 per thread.</summary>
    const int QuadThreads = 4;

    /// <summary>Output rows one warp streams at once.</summary>
    public const int DecodeRowsPerWarp = KernelContext.WarpSize / QuadThreads;

    public struct DecodeArgs<TWeights> where TWeights : struct, IOctetLoads
    {
        public F32Storage X;
        public TWeights W;
        public ArrayView<float> Bias;
        public ArrayView<float> Y;
        public int Rows, OutFeatures, InFeatures, HasBias;
        /// <summary>1 when x and W start 16-byte aligned and rows are whole octets: octets are read with vector loads.</summary>
        public int Vectors;
    }

    [GpuKernel(ReadsWeights = true, StreamsVectors = true)]
    static void DecodeKernel<TWeights>(DecodeArgs<TWeights> a) where TWeights : struct, IOctetLoads
    {
        int thread = Group.IdxX;
        int part = thread & (QuadThreads - 1);
        int n = Grid.IdxX * (Group.DimX / QuadThreads) + thread / QuadThreads;
        int rows = a.Rows;
        var acc0 = default(Octet);
        var acc1 = default(Octet);
        var acc2 = default(Octet);
        var acc3 = default(Octet);
        // A quad past the last output row reads nothing but still takes part in the shuffles.
        if (n < a.OutFeatures)
        {
            long w = (long)n * a.InFeatures;
            int k = part * ValuesPerOctet;
            int full = a.InFeatures / Canonical.Lanes;
            int segment = 0;
            if (a.Vectors != 0)
            {
                for (; segment + DecodeUnroll <= full; segment += DecodeUnroll, k += DecodeUnroll * Canonical.Lanes)
                {
                    // Four segments of the weight row in flight, then folded in order.
                    var w0 = a.W.Load8(w + k);
                    var w1 = a.W.Load8(w + k + Canonical.Lanes);
                    var w2 = a.W.Load8(w + k + 2 * Canonical.Lanes);
                    var w3 = a.W.Load8(w + k + 3 * Canonical.Lanes);
                    acc0 = FoldRow(acc0, a.X, k, w0, w1, w2, w3);
                    if (rows > 1)
                        acc1 = FoldRow(acc1, a.X, a.InFeatures + k, w0, w1, w2, w3);
                    if (rows > 2)
                        acc2 = FoldRow(acc2, a.X, 2L * a.InFeatures + k, w0, w1, w2, w3);
                    if (rows > 3)
                        acc3 = FoldRow(acc3, a.X, 3L * a.InFeatures + k, w0, w1, w2, w3);
                }
                for (; segment < full; segment++, k += Canonical.Lanes)
                {
                    var w0 = a.W.Load8(w + k);
                    acc0 = Fold(acc0, a.X.Load8(k), w0);
                    if (rows > 1)
                        acc1 = Fold(acc1, a.X.Load8(a.InFeatures + k), w0);
                    if (rows > 2)
                        acc2 = Fold(acc2, a.X.Load8(2L * a.InFeatures + k), w0);
                    if (rows > 3)
                        acc3 = Fold(acc3, a.X.Load8(3L * a.InFeatures + k), w0);
                }
            }
            // Value by value: unaligned bytes, and the partial last segment of any row.
            for (; k < a.InFeatures; k += Canonical.Lanes)
            {
                int present = a.InFeatures - k;
                acc0 = FoldPartial(acc0, a.X, k, a.W, w + k, present);
                if (rows > 1)
                    acc1 = FoldPartial(acc1, a.X, a.InFeatures + k, a.W, w + k, present);
                if (rows > 2)
                    acc2 = FoldPartial(acc2, a.X, 2L * a.InFeatures + k, a.W, w + k, present);
                if (rows > 3)
                    acc3 = FoldPartial(acc3, a.X, 3L * a.InFeatures + k, a.W, w + k, present);
            }
        }
        float dot0 = QuadTree.Sum(acc0, part);
        float dot1 = rows > 1 ? QuadTree.Sum(acc1, part) : 0f;
        float dot2 = rows > 2 ? QuadTree.Sum(acc2, part) : 0f;
        float dot3 = rows > 3 ? QuadTree.Sum(acc3, part) : 0f;
        if (part != 0 || n >= a.OutFeatures)
            return;
        float bias = a.HasBias != 0 ? a.Bias[n] : 0f;
        a.Y[n] = a.HasBias != 0 ? Add(dot0, bias) : dot0;
        if (rows > 1)
            a.Y[a.OutFeatures + n] = a.HasBias != 0 ? Add(dot1, bias) : dot1;
        if (rows > 2)
            a.Y[2L * a.OutFeatures + n] = a.HasBias != 0 ? Add(dot2, bias) : dot2;
        if (rows > 3)
            a.Y[3L * a.OutFeatures + n] = a.HasBias != 0 ? Add(dot3, bias) : dot3;
    }

    /// <summary>Values per octet.</summary>
    const int ValuesPerOctet = 8;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Octet FoldRow(Octet acc, F32Storage x, long k, Octet w0, Octet w1, Octet w2, Octet w3)
    {
        acc = Fold(acc, x.Load8(k), w0);
        acc = Fold(acc, x.Load8(k + Canonical.Lanes), w1);
        acc = Fold(acc, x.Load8(k + 2 * Canonical.Lanes), w2);
        return Fold(acc, x.Load8(k + 3 * Canonical.Lanes), w3);
    }

    /// <summary>Each of the eight lanes takes its next term: lane = fma(x, w, lane).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Octet Fold(Octet acc, Octet x, Octet w) => new()
    {
        V0 = Fma(x.V0, w.V0, acc.V0), V1 = Fma(x.V1, w.V1, acc.V1), V2 = Fma(x.V2, w.V2, acc.V2), V3 = Fma(x.V3, w.V3, acc.V3),
        V4 = Fma(x.V4, w.V4, acc.V4), V5 = Fma(x.V5, w.V5, acc.V5), V6 = Fma(x.V6, w.V6, acc.V6), V7 = Fma(x.V7, w.V7, acc.V7),
    };

    /// <summary>The first <paramref name="present"/> (if under 8) lanes of an octet take their terms, read one by one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Octet FoldPartial<TWeights>(Octet acc, F32Storage x, long xAt, TWeights w, long wAt, int present)
        where TWeights : struct, IOctetLoads
    {
        if (present > 0)
            acc.V0 = Fma(x.Load(xAt), w.Load(wAt), acc.V0);
        if (present > 1)
            acc.V1 = Fma(x.Load(xAt + 1), w.Load(wAt + 1), acc.V1);
        if (present > 2)
            acc.V2 = Fma(x.Load(xAt + 2), w.Load(wAt + 2), acc.V2);
        if (present > 3)
            acc.V3 = Fma(x.Load(xAt + 3), w.Load(wAt + 3), acc.V3);
        if (present > 4)
            acc.V4 = Fma(x.Load(xAt + 4), w.Load(wAt + 4), acc.V4);
        if (present > 5)
            acc.V5 = Fma(x.Load(xAt + 5), w.Load(wAt + 5), acc.V5);
        if (present > 6)
            acc.V6 = Fma(x.Load(xAt + 6), w.Load(wAt + 6), acc.V6);
        if (present > 7)
            acc.V7 = Fma(x.Load(xAt + 7), w.Load(wAt + 7), acc.V7);
        return acc;
    }

    /// <summary>Warps per group of the decode kernel: as many as keep at least two groups per multiprocessor, 1 to 4.</summary>
    static int DecodeWarps(KernelLibrary library, int outFeatures)
    {
        int warps = KernelContext.MaxGroupSize / KernelContext.WarpSize;
        while (warps > 1 && (long)outFeatures < 2L * library.Multiprocessors * warps * DecodeRowsPerWarp)
            warps /= 2;
        return warps;
    }

    /// <summary>Whether the decode kernel takes this shape on this library (GPU shapes, few rows of x).</summary>
    public static bool UsesDecodeKernel(KernelLibrary library, LinearShape shape) =>
        library.GpuShapes && shape.Rows <= DecodeRows;

    static void LaunchDecode<TWeights>(KernelLibrary library, ArrayView<float> x, TWeights w, bool weightsAligned,
        ArrayView<float>? bias, ArrayView<float> y, LinearShape shape) where TWeights : struct, IOctetLoads
    {
        var xBytes = x.Cast<byte>();
        bool vectors = weightsAligned && shape.InFeatures % ValuesPerOctet == 0 && OctetViews.Aligned(xBytes);
        int warps = DecodeWarps(library, shape.OutFeatures);
        int rowsPerGroup = warps * DecodeRowsPerWarp;
        library.Get<DecodeArgs<TWeights>>(DecodeKernel)(
            new KernelConfig((shape.OutFeatures + rowsPerGroup - 1) / rowsPerGroup, warps * KernelContext.WarpSize),
            new DecodeArgs<TWeights>
            {
                X = F32Storage.Over(xBytes), W = w, Bias = bias ?? x, Y = y, Rows = shape.Rows, OutFeatures = shape.OutFeatures,
                InFeatures = shape.InFeatures, HasBias = bias.HasValue ? 1 : 0, Vectors = vectors ? 1 : 0,
            });
    }
}

/// <summary>
/// The canonical tree over the 32 lanes of a quad of threads, thread p holding lanes 8p … 8p+7
/// (<see cref="Linear"/>'s decode): step 16 adds thread p+2's octet into thread p's (p &lt; 2),
/// step 8 thread 1's into thread 0's, by butterfly exchanges within the quad; steps 4, 2, 1 add
/// within thread 0's octet. The left operand is always the lower lane. Thread 0 of the quad ends
/// with the result; the others hold partial values. Every thread of the warp must take part.
/// </summary>
public static class QuadTree
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Octet lanes, int part)
    {
        var other = Warp.ShuffleXor(lanes, 2);
        lanes = (part & 2) == 0 ? Add(lanes, other) : Add(other, lanes);
        other = Warp.ShuffleXor(lanes, 1);
        lanes = (part & 1) == 0 ? Add(lanes, other) : Add(other, lanes);
        float l0 = ExactMath.Add(lanes.V0, lanes.V4), l1 = ExactMath.Add(lanes.V1, lanes.V5);
        float l2 = ExactMath.Add(lanes.V2, lanes.V6), l3 = ExactMath.Add(lanes.V3, lanes.V7);
        l0 = ExactMath.Add(l0, l2);
        l1 = ExactMath.Add(l1, l3);
        return ExactMath.Add(l0, l1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Octet Add(Octet lower, Octet upper) => new()
    {
        V0 = ExactMath.Add(lower.V0, upper.V0), V1 = ExactMath.Add(lower.V1, upper.V1),
        V2 = ExactMath.Add(lower.V2, upper.V2), V3 = ExactMath.Add(lower.V3, upper.V3),
        V4 = ExactMath.Add(lower.V4, upper.V4), V5 = ExactMath.Add(lower.V5, upper.V5),
        V6 = ExactMath.Add(lower.V6, upper.V6), V7 = ExactMath.Add(lower.V7, upper.V7),
    };
}
