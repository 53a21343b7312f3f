using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using static IlgpuLlm.Kernels.ExactMath;

namespace IlgpuLlm.Kernels;

/// <summary>
/// The GPU's attention, in two launches shaped for decode (one query row per sequence, many keys),
/// where one warp per (row, head) would leave all but a few multiprocessors idle and read each
/// key once per query head. Both launches read the cache in octets (<see cref="Octet"/>: 128-bit
/// loads of f16/bf16, two of f32) and serve all query heads of a kv group (up to
/// <see cref="HeadsPerChunk"/> at a time) from one read of each key or value.
/// <para>
/// Scores: a group per (row, kv head, head chunk, key chunk). Each quad of threads scores one key
/// at a time: thread p reads octet p of every 32-value segment of the key row — the terms of
/// canonical lanes 8p … 8p+7 of the dot over head_dim — for every head of the chunk, and
/// <see cref="QuadTree"/> folds the lanes. The score (scale, soft-cap, bias as in
/// <see cref="Attention.Reference"/>) goes to the work space.
/// </para>
/// <para>
/// Values: one warp per (row, kv head, head chunk, octet of head_dim); thread j is canonical lane j
/// of the reductions over the key index i = t − Begin. It folds the lane maxima of its keys' scores
/// (<see cref="WarpTree.Max"/> gives m), then walks its keys again: e_i = exp(s_i − m) into its Z
/// lane and fma(e_i, v_i,d, ·) into the lanes of its eight dimensions, reading v_i's octet once for
/// every head of the chunk; <see cref="WarpTree"/> folds Z and each dimension's 32 lanes, and
/// lane 0 writes the quotients. Every warp recomputes m and the weights of its heads (a few
/// thousand exps) instead of a third launch.
/// </para>
/// </summary>
public static partial class Attention
{
    /// <summary>Query heads of one kv group a thread carries at once (eight accumulators each).</summary>
    public const int HeadsPerChunk = 4;

    /// <summary>Values per octet.</summary>
    const int OctetValues = 8;

    /// <summary>Threads that share one key's dot product: 32 lanes, 8 per thread.</summary>
    const int QuadThreads = 4;

    const int ScoreWarps = 4;

    /// <summary>Keys one scoring group takes per step: one per quad.</summary>
    const int KeysPerStep = ScoreWarps * KernelContext.WarpSize / QuadThreads;

    public struct SplitArgs<TCache> where TCache : struct, IOctetLoads
    {
        public F32Storage Q;
        public TCache Keys;
        public TCache Values;
        public ArrayView<float> Output;
        public ArrayView<int> Ranges;
        public ArrayView<float> Bias;
        public ArrayView<float> Scores;
        public ArrayView<int> FullyMasked;
        public int Heads, KvHeads, HeadDim, Slots, Capacity, ScoresPerGroup, HasBias, Mark;
        /// <summary>Groups per (row, kv head) over heads: ⌈group size / <see cref="HeadsPerChunk"/>⌉.</summary>
        public int HeadChunks;
        /// <summary>Scoring groups per (row, kv head, head chunk) over keys, and the keys each takes.</summary>
        public int KeyChunks, KeysPerChunk;
        /// <summary>1 when q and the cache start 16-byte aligned and head_dim is whole octets: octets are read with vector loads.</summary>
        public int Vectors;
        public float Scale, SoftCap;
        public long BiasOffset, BiasRowStride, BiasHeadStride, BiasLength;
    }

    /// <summary>Where one (row, kv head, head chunk) reads and writes, and whether its range can be read at all.</summary>
    struct SplitGroup
    {
        public int Row, KvHead, FirstHead, HeadCount, KeyCount, FirstPosition;
        public long HeadAt, PositionStride;
        public bool Readable;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static SplitGroup Of<TCache>(SplitArgs<TCache> a, int index) where TCache : struct, IOctetLoads
        {
            var g = default(SplitGroup);
            g.Row = index / (a.KvHeads * a.HeadChunks);
            int rest = index - g.Row * a.KvHeads * a.HeadChunks;
            g.KvHead = rest / a.HeadChunks;
            int chunk = rest - g.KvHead * a.HeadChunks;
            int groupSize = a.Heads / a.KvHeads;
            g.FirstHead = g.KvHead * groupSize + chunk * HeadsPerChunk;
            int left = groupSize - chunk * HeadsPerChunk;
            g.HeadCount = left < HeadsPerChunk ? left : HeadsPerChunk;
            int slot = a.Ranges[3 * g.Row], begin = a.Ranges[3 * g.Row + 1], end = a.Ranges[3 * g.Row + 2];
            g.KeyCount = end - begin;
            // A range the host would reject (its validation rules these out) reads nothing.
            bool outside = (uint)slot >= (uint)a.Slots || begin < 0 || g.KeyCount > a.ScoresPerGroup;
            if (a.HasBias != 0)
                for (int h = 0; h < g.HeadCount; h++)
                    outside |= a.BiasOffset + g.Row * a.BiasRowStride + (g.FirstHead + h) * a.BiasHeadStride + end > a.BiasLength;
            g.Readable = g.KeyCount > 0 && !outside;
            g.PositionStride = (long)a.KvHeads * a.HeadDim;
            g.HeadAt = g.Readable ? (long)slot * a.Capacity * g.PositionStride + (long)g.KvHead * a.HeadDim : 0;
            g.FirstPosition = g.Readable ? begin % a.Capacity : 0;
            return g;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public long KeyAt(int i, int capacity)
        {
            int position = FirstPosition + i;
            position = position >= capacity ? position - capacity : position;
            return HeadAt + position * PositionStride;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public long ScoresAt(int head, int heads, int scoresPerGroup) => ((long)Row * heads + FirstHead + head) * scoresPerGroup;
    }

    [GpuKernel(StreamsVectors = true)]
    static void ScoresKernel<TCache>(SplitArgs<TCache> a) where TCache : struct, IOctetLoads
    {
        int thread = Group.IdxX;
        int part = thread & (QuadThreads - 1);
        int quad = thread / QuadThreads;
        int keyChunk = Grid.IdxX % a.KeyChunks;
        var g = SplitGroup.Of(a, Grid.IdxX / a.KeyChunks);
        int first = keyChunk * a.KeysPerChunk;
        int last = first + a.KeysPerChunk < g.KeyCount ? first + a.KeysPerChunk : g.KeyCount;
        if (!g.Readable || first >= last)
            return;
        // Every quad takes the same number of steps and heads, so all threads reach every shuffle.
        for (int step = first; step < last; step += KeysPerStep)
        {
            int i = step + quad;
            bool present = i < last;
            long keyAt = present ? g.KeyAt(i, a.Capacity) : g.HeadAt;
            // One head at a time keeps eight accumulators live; the key row's later reads hit the L1 cache.
            for (int head = 0; head < g.HeadCount; head++)
            {
                long queryAt = ((long)g.Row * a.Heads + g.FirstHead + head) * a.HeadDim;
                var acc = default(Octet);
                if (present)
                {
                    int d = part * OctetValues;
                    if (a.Vectors != 0)
                        for (; d + OctetValues <= a.HeadDim; d += Canonical.Lanes)
                            acc = Fold(acc, a.Q.Load8(queryAt + d), a.Keys.Load8(keyAt + d));
                    for (; d < a.HeadDim; d += Canonical.Lanes)
                        acc = FoldPartial(acc, a.Q, queryAt + d, a.Keys, keyAt + d, a.HeadDim - d);
                }
                float dot = QuadTree.Sum(acc, part);
                if (part == 0 && present)
                    StoreScore(a, g, head, i, dot);
            }
        }
    }

    /// <summary>s = dot · scale; with a soft-cap, cap·tanh(s / cap); with a bias, s + bias — as the reference.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void StoreScore<TCache>(SplitArgs<TCache> a, SplitGroup g, int head, int i, float dot) where TCache : struct, IOctetLoads
    {
        float score = Mul(dot, a.Scale);
        if (a.SoftCap > 0f)
            score = CanonicalMath.SoftCap(score, a.SoftCap);
        if (a.HasBias != 0)
        {
            int begin = a.Ranges[3 * g.Row + 1];
            score = Add(score, a.Bias[a.BiasOffset + g.Row * a.BiasRowStride + (g.FirstHead + head) * a.BiasHeadStride + begin + i]);
        }
        a.Scores[g.ScoresAt(head, a.Heads, a.ScoresPerGroup) + i] = score;
    }

    [GpuKernel(StreamsVectors = true)]
    static void ValuesKernel<TCache>(SplitArgs<TCache> a) where TCache : struct, IOctetLoads
    {
        int lane = Group.IdxX;
        int octets = (a.HeadDim + OctetValues - 1) / OctetValues;
        int octet = Grid.IdxX % octets;
        var g = SplitGroup.Of(a, Grid.IdxX / octets);
        int d0 = octet * OctetValues;
        int dims = a.HeadDim - d0 < OctetValues ? a.HeadDim - d0 : OctetValues;
        long outputAt = ((long)g.Row * a.Heads + g.FirstHead) * a.HeadDim + d0;
        if (!g.Readable)
        {
            WriteMaskedOctet(a, g, octet, outputAt, dims, lane, 0);
            return;
        }
        long s0 = g.ScoresAt(0, a.Heads, a.ScoresPerGroup);
        long s1 = s0 + a.ScoresPerGroup, s2 = s1 + a.ScoresPerGroup, s3 = s2 + a.ScoresPerGroup;
        int heads = g.HeadCount;

        float max0 = float.NegativeInfinity, max1 = float.NegativeInfinity, max2 = float.NegativeInfinity, max3 = float.NegativeInfinity;
        for (int i = lane; i < g.KeyCount; i += Canonical.Lanes)
        {
            max0 = CanonicalMath.Max(max0, a.Scores[s0 + i]);
            if (heads > 1)
                max1 = CanonicalMath.Max(max1, a.Scores[s1 + i]);
            if (heads > 2)
                max2 = CanonicalMath.Max(max2, a.Scores[s2 + i]);
            if (heads > 3)
                max3 = CanonicalMath.Max(max3, a.Scores[s3 + i]);
        }
        // As in the one-warp kernel: threads other than lane 0 may hold the tree's mirror image,
        // which differs only in a zero's sign or a NaN's payload and gives the same weights.
        max0 = WarpTree.Max(max0);
        max1 = heads > 1 ? WarpTree.Max(max1) : 0f;
        max2 = heads > 2 ? WarpTree.Max(max2) : 0f;
        max3 = heads > 3 ? WarpTree.Max(max3) : 0f;

        float z0 = 0f, z1 = 0f, z2 = 0f, z3 = 0f;
        var acc0 = default(Octet);
        var acc1 = default(Octet);
        var acc2 = default(Octet);
        var acc3 = default(Octet);
        for (int i = lane; i < g.KeyCount; i += Canonical.Lanes)
        {
            long valueAt = g.KeyAt(i, a.Capacity) + d0;
            var v = a.Vectors != 0 ? a.Values.Load8(valueAt) : LoadPartial(a.Values, valueAt, dims);
            float e0 = CanonicalMath.Exp(Sub(a.Scores[s0 + i], max0));
            z0 = Add(z0, e0);
            acc0 = FoldWeighted(acc0, e0, v, dims);
            if (heads > 1)
            {
                float e1 = CanonicalMath.Exp(Sub(a.Scores[s1 + i], max1));
                z1 = Add(z1, e1);
                acc1 = FoldWeighted(acc1, e1, v, dims);
            }
            if (heads > 2)
            {
                float e2 = CanonicalMath.Exp(Sub(a.Scores[s2 + i], max2));
                z2 = Add(z2, e2);
                acc2 = FoldWeighted(acc2, e2, v, dims);
            }
            if (heads > 3)
            {
                float e3 = CanonicalMath.Exp(Sub(a.Scores[s3 + i], max3));
                z3 = Add(z3, e3);
                acc3 = FoldWeighted(acc3, e3, v, dims);
            }
        }
        FinishHead(a, g, octet, 0, max0, z0, acc0, outputAt, dims, lane);
        if (heads > 1)
            FinishHead(a, g, octet, 1, max1, z1, acc1, outputAt + a.HeadDim, dims, lane);
        if (heads > 2)
            FinishHead(a, g, octet, 2, max2, z2, acc2, outputAt + 2L * a.HeadDim, dims, lane);
        if (heads > 3)
            FinishHead(a, g, octet, 3, max3, z3, acc3, outputAt + 3L * a.HeadDim, dims, lane);
    }

    /// <summary>Folds one head's lanes and writes its octet of the output (zeros, and the flag, where no score was finite).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void FinishHead<TCache>(SplitArgs<TCache> a, SplitGroup g, int octet, int head, float max, float zLane, Octet lanes,
        long outputAt, int dims, int lane) where TCache : struct, IOctetLoads
    {
        // All threads fold, whether or not the head is masked: every lane must reach the shuffles.
        float total = WarpTree.Sum(zLane);
        var sums = OctetWarpTree.Sum(lanes);
        if (max == float.NegativeInfinity)
        {
            WriteMaskedOctet(a, g, octet, outputAt - (long)head * a.HeadDim, dims, lane, head, head + 1);
            return;
        }
        if (lane != 0)
            return;
        a.Output[outputAt] = Div(sums.V0, total);
        if (dims > 1)
            a.Output[outputAt + 1] = Div(sums.V1, total);
        if (dims > 2)
            a.Output[outputAt + 2] = Div(sums.V2, total);
        if (dims > 3)
            a.Output[outputAt + 3] = Div(sums.V3, total);
        if (dims > 4)
            a.Output[outputAt + 4] = Div(sums.V4, total);
        if (dims > 5)
            a.Output[outputAt + 5] = Div(sums.V5, total);
        if (dims > 6)
            a.Output[outputAt + 6] = Div(sums.V6, total);
        if (dims > 7)
            a.Output[outputAt + 7] = Div(sums.V7, total);
    }

    /// <summary>Zeros in heads [first, end) of this octet of the output; the warp of octet 0 raises their flags.</summary>
    static void WriteMaskedOctet<TCache>(SplitArgs<TCache> a, SplitGroup g, int octet, long outputAt, int dims, int lane,
        int first, int end = -1) where TCache : struct, IOctetLoads
    {
        if (end < 0)
            end = g.HeadCount;
        for (int h = first; h < end; h++)
        {
            if (lane < dims)
                a.Output[outputAt + (long)h * a.HeadDim + lane] = 0f;
            if (lane == 0 && octet == 0 && a.Mark > 0)
                Atomic.Max(ref a.FullyMasked[g.Row * a.Heads + g.FirstHead + h], a.Mark);
        }
    }

    /// <summary>Each of the first <paramref name="dims"/> lanes takes fma(e, v_d, lane).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Octet FoldWeighted(Octet acc, float e, Octet v, int dims)
    {
        acc.V0 = Fma(e, v.V0, acc.V0);
        if (dims > 1)
            acc.V1 = Fma(e, v.V1, acc.V1);
        if (dims > 2)
            acc.V2 = Fma(e, v.V2, acc.V2);
        if (dims > 3)
            acc.V3 = Fma(e, v.V3, acc.V3);
        if (dims > 4)
            acc.V4 = Fma(e, v.V4, acc.V4);
        if (dims > 5)
            acc.V5 = Fma(e, v.V5, acc.V5);
        if (dims > 6)
            acc.V6 = Fma(e, v.V6, acc.V6);
        if (dims > 7)
            acc.V7 = Fma(e, v.V7, acc.V7);
        return acc;
    }

    /// <summary>The first <paramref name="count"/> values (up to 8) read one by one; the rest are zeros that no lane uses.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Octet LoadPartial<TCache>(TCache values, long at, int count) where TCache : struct, IOctetLoads
    {
        var v = default(Octet);
        v.V0 = values.Load(at);
        if (count > 1)
            v.V1 = values.Load(at + 1);
        if (count > 2)
            v.V2 = values.Load(at + 2);
        if (count > 3)
            v.V3 = values.Load(at + 3);
        if (count > 4)
            v.V4 = values.Load(at + 4);
        if (count > 5)
            v.V5 = values.Load(at + 5);
        if (count > 6)
            v.V6 = values.Load(at + 6);
        if (count > 7)
            v.V7 = values.Load(at + 7);
        return v;
    }

    /// <summary>Each of the eight lanes takes its next term: lane = fma(q, k, lane).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Octet Fold(Octet acc, Octet q, Octet k) => new()
    {
        V0 = Fma(q.V0, k.V0, acc.V0), V1 = Fma(q.V1, k.V1, acc.V1), V2 = Fma(q.V2, k.V2, acc.V2), V3 = Fma(q.V3, k.V3, acc.V3),
        V4 = Fma(q.V4, k.V4, acc.V4), V5 = Fma(q.V5, k.V5, acc.V5), V6 = Fma(q.V6, k.V6, acc.V6), V7 = Fma(q.V7, k.V7, acc.V7),
    };

    /// <summary>The first <paramref name="present"/> (if under 8) lanes take their terms, read one by one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Octet FoldPartial<TCache>(Octet acc, F32Storage q, long qAt, TCache k, long kAt, int present) where TCache : struct, IOctetLoads
    {
        if (present > 0)
            acc.V0 = Fma(q.Load(qAt), k.Load(kAt), acc.V0);
        if (present > 1)
            acc.V1 = Fma(q.Load(qAt + 1), k.Load(kAt + 1), acc.V1);
        if (present > 2)
            acc.V2 = Fma(q.Load(qAt + 2), k.Load(kAt + 2), acc.V2);
        if (present > 3)
            acc.V3 = Fma(q.Load(qAt + 3), k.Load(kAt + 3), acc.V3);
        if (present > 4)
            acc.V4 = Fma(q.Load(qAt + 4), k.Load(kAt + 4), acc.V4);
        if (present > 5)
            acc.V5 = Fma(q.Load(qAt + 5), k.Load(kAt + 5), acc.V5);
        if (present > 6)
            acc.V6 = Fma(q.Load(qAt + 6), k.Load(kAt + 6), acc.V6);
        if (present > 7)
            acc.V7 = Fma(q.Load(qAt + 7), k.Load(kAt + 7), acc.V7);
        return acc;
    }

    /// <summary>Whether attention takes the two GPU launches on this library.</summary>
    public static bool UsesSplitKernels(KernelLibrary library) => library.GpuShapes;

    /// <summary>Launches the scores and the values kernels; the arguments were checked by <see cref="Run"/>.</summary>
    static void LaunchSplit<TStorage>(KernelLibrary library, Args<F32Storage> a, ArrayView<byte> keys, ArrayView<byte> values,
        int rows) where TStorage : struct, IStorageView<TStorage>
    {
        int keysPerGroup = a.ScoresPerGroup;
        int groupSize = a.Heads / a.KvHeads;
        int headChunks = (groupSize + HeadsPerChunk - 1) / HeadsPerChunk;
        int groups = checked(rows * a.KvHeads * headChunks);
        // Enough scoring groups to give every multiprocessor two, each taking whole steps of keys.
        int steps = (keysPerGroup + KeysPerStep - 1) / KeysPerStep;
        int keyChunks = Math.Clamp((2 * library.Multiprocessors + groups - 1) / groups, 1, Math.Max(1, steps));
        int keysPerChunk = (steps + keyChunks - 1) / keyChunks * KeysPerStep;
        keyChunks = Math.Max(1, (keysPerGroup + keysPerChunk - 1) / keysPerChunk);
        var qBytes = a.Q.Cast<byte>();
        bool vectors = a.HeadDim % OctetValues == 0 && OctetViews.Aligned(qBytes) && OctetViews.Aligned(keys) && OctetViews.Aligned(values);
        var split = new SplitArgs<TStorage>
        {
            Q = F32Storage.Over(qBytes), Keys = TStorage.Over(keys), Values = TStorage.Over(values), Output = a.Output, Ranges = a.Ranges, Bias = a.Bias,
            Scores = a.Scores, FullyMasked = a.FullyMasked, Heads = a.Heads, KvHeads = a.KvHeads, HeadDim = a.HeadDim, Slots = a.Slots,
            Capacity = a.Capacity, ScoresPerGroup = a.ScoresPerGroup, HasBias = a.HasBias, Mark = a.Mark, HeadChunks = headChunks,
            KeyChunks = keyChunks, KeysPerChunk = keysPerChunk, Vectors = vectors ? 1 : 0, Scale = a.Scale, SoftCap = a.SoftCap,
            BiasOffset = a.BiasOffset, BiasRowStride = a.BiasRowStride, BiasHeadStride = a.BiasHeadStride, BiasLength = a.BiasLength,
        };
        library.Get<SplitArgs<TStorage>>(ScoresKernel)(new KernelConfig(checked(groups * keyChunks), ScoreWarps * KernelContext.WarpSize), split);
        int octets = (a.HeadDim + OctetValues - 1) / OctetValues;
        library.Get<SplitArgs<TStorage>>(ValuesKernel)(new KernelConfig(checked(groups * octets), KernelContext.WarpSize), split);
    }
}

/// <summary>
/// <see cref="WarpTree.Sum"/> of eight independent values per thread at once (one shuffle of the
/// octet per step), each folded with the canonical tree across the warp's 32 lanes, left operand
/// the lower lane. Every thread ends with the result.
/// </summary>
public static class OctetWarpTree
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Octet Sum(Octet lanes)
    {
        for (int h = Canonical.Lanes / 2; h >= 1; h >>= 1)
        {
            var other = Warp.ShuffleXor(lanes, h);
            lanes = (Warp.LaneIdx & h) == 0 ? Add(lanes, other) : Add(other, lanes);
        }
        return lanes;
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
