using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace IlgpuLlm.Kernels;

/// <summary>
/// The SIMD CPU twin of <see cref="Attention"/>. Threads split the (row, head) items, which are
/// independent, so the thread count never changes a bit. Per item: the scores with the shared
/// canonical dot (<see cref="SimdDot"/>) over head_dim, cached values widened exactly (an f16
/// cache may hold ±inf after an overflow); the canonical max and sum over the key index; then the
/// weighted value sum, whose canonical order runs over the key index for each output dimension:
/// it is vectorised over the dimension, with the 32 lane accumulators of every dimension held as
/// 32 rows of head_dim floats in a per-thread work buffer, folded by the tree row by row at the end.
/// </summary>
public static unsafe class AttentionSimd
{
    /// <summary>The reusable job object a backend keeps for its attention calls.</summary>
    public sealed class Job : IRangeJob
    {
        internal float* Q, Output, Bias;
        internal byte* Keys, Values;
        internal KeyRange* Ranges;
        /// <summary>Per (row, head), raised to <see cref="Mark"/> where no score is finite; null when not asked for.</summary>
        internal int* FullyMasked;
        internal int Mark;
        internal AttentionShape Shape;
        internal AttentionBiasLayout BiasLayout;
        /// <summary>The loop for the cache format, widening exactly (an f16 cache may hold ±inf after an overflow).</summary>
        internal delegate*<Job, Work, int, int, void> Items;
        internal SimdLevel Level;
        internal DeviceCounters Counters = new();
        internal int Longest;
        internal int HeadsPerItem;

        readonly WorkPool<Work> pool = new();

        /// <summary>Before a call: work buffers for this call's shape for every thread that may take an item.</summary>
        internal void Reserve(int threads)
        {
            pool.Reserve(threads);
            for (int i = 0; i < pool.Count; i++)
                pool[i].Reserve(HeadsPerItem, Math.Max(Longest, Shape.Capacity), Shape.HeadDim, Counters);
        }

        public void Run(int start, int end)
        {
            var work = pool.Take();
            try
            {
                // Sized for the cache's capacity, not this call's longest range, so that decode, whose
                // ranges grow by one key per step, does not reallocate.
                work.Reserve(HeadsPerItem, Math.Max(Longest, Shape.Capacity), Shape.HeadDim, Counters);
                Items(this, work, start, end);
            }
            finally
            {
                pool.Return(work);
            }
        }
    }

    /// <summary>Picks the loop for the cache format.</summary>
    struct SelectItems : IStorageAction
    {
        public Job Job;

        public readonly void Run<TStorage, TWeights, TExact>()
            where TStorage : struct, IStorageView<TStorage> where TWeights : struct, IStoredVectors where TExact : struct, IStoredVectors =>
            Job.Items = &Items<TExact>;
    }

    /// <summary>
    /// One thread's scratch for an item of several heads: each head's scores, softmax total, and
    /// 32 lane rows of head_dim accumulators.
    /// </summary>
    internal sealed class Work
    {
        float[] scores = [];
        float[] lanes = [];
        float[] totals = [];
        bool[] masked = [];
        Vector512<float>[] keyLanes = [];
        float[] row = [];
        public float* Scores;
        public float* Row;
        public Vector512<float>* KeyLanes;
        public float* Lanes;
        public float* Totals;
        public bool* Masked;

        /// <summary>Grows the buffers (pinned, so the pointers stay valid) when a call needs more.</summary>
        public void Reserve(int heads, int keys, int headDim, DeviceCounters counters)
        {
            int scoreCount = heads * Math.Max(keys, 1);
            if (scores.Length < scoreCount)
            {
                counters.Allocation();
                scores = GC.AllocateUninitializedArray<float>(scoreCount, pinned: true);
                Scores = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(scores));
            }
            if (masked.Length < heads)
            {
                counters.Allocation();
                masked = GC.AllocateUninitializedArray<bool>(heads, pinned: true);
                Masked = (bool*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(masked));
            }
            if (totals.Length < heads)
            {
                counters.Allocation();
                totals = GC.AllocateUninitializedArray<float>(heads, pinned: true);
                Totals = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(totals));
            }
            if (row.Length < headDim)
            {
                counters.Allocation();
                row = GC.AllocateUninitializedArray<float>(headDim, pinned: true);
                Row = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(row));
            }
            if (keyLanes.Length < heads * KeyBlock)
            {
                counters.Allocation();
                keyLanes = GC.AllocateUninitializedArray<Vector512<float>>(heads * KeyBlock, pinned: true);
                KeyLanes = (Vector512<float>*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(keyLanes));
            }
            int laneCount = heads * Canonical.Lanes * headDim;
            if (lanes.Length < laneCount)
            {
                counters.Allocation();
                lanes = GC.AllocateUninitializedArray<float>(laneCount, pinned: true);
                Lanes = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(lanes));
            }
        }
    }

    /// <summary>Largest lane-accumulator area (floats) one item may use: heads × 32 × head_dim.</summary>
    const int MaxLaneFloats = 1 << 16;

    /// <summary>
    /// Runs a validated call (see <see cref="Attention.Validate"/>, which gives <paramref name="longest"/>).
    /// When <paramref name="fullyMasked"/> is not null, the flag of each (row, head) with no finite
    /// score is raised to at least <paramref name="mark"/>.
    /// </summary>
    public static void Run(CpuWorkers workers, SimdLevel level, Job job, float* q, byte* keys, byte* values, StorageType cacheType,
        float* output, KeyRange* ranges, AttentionShape shape, float* bias, AttentionBiasLayout biasLayout, int* fullyMasked, int mark,
        int longest)
    {
        job.Q = q;
        job.Keys = keys;
        job.Values = values;
        var select = new SelectItems { Job = job };
        cacheType.Format().Dispatch(ref select);
        job.Output = output;
        job.Ranges = ranges;
        job.Shape = shape;
        job.Bias = bias;
        job.BiasLayout = biasLayout;
        job.FullyMasked = fullyMasked;
        job.Mark = mark;
        job.Counters = workers.Counters;
        job.Longest = longest;
        job.Level = SimdLevels.AtMost(level);
        job.HeadsPerItem = HeadsPerItem(shape, workers.Threads);
        int items = shape.Rows * (shape.Heads / job.HeadsPerItem);
        int chunk = workers.ChunkFor(items);
        job.Reserve(Math.Min(workers.Threads, (items + chunk - 1) / chunk));
        workers.For(items, chunk, job);
    }

    /// <summary>
    /// How many query heads of one kv head an item takes. The heads of a group read the same key
    /// and value rows; taken together, each row comes from memory once and from L1 for the other
    /// heads, so decode with long contexts reads the cache once instead of once per query head.
    /// Fewer heads per item where whole groups would leave threads idle (one row, few kv heads) or
    /// overflow the caches. Each head's arithmetic is the same whatever the grouping.
    /// </summary>
    static int HeadsPerItem(AttentionShape shape, int threads)
    {
        int group = shape.GroupSize;
        for (int heads = group; heads > 1; heads--)
        {
            if (group % heads != 0)
                continue;
            bool enoughItems = (long)shape.Rows * (shape.Heads / heads) >= 2L * threads;
            bool fitsCaches = (long)heads * Canonical.Lanes * shape.HeadDim <= MaxLaneFloats;
            if (enoughItems && fitsCaches)
                return heads;
        }
        return 1;
    }

    static void Items<T>(Job job, Work work, int start, int end) where T : struct, IStoredVectors
    {
        var shape = job.Shape;
        int headDim = shape.HeadDim;
        int heads = job.HeadsPerItem;
        int blocks = shape.Heads / heads;
        long laneFloats = (long)Canonical.Lanes * headDim;
        for (int item = start; item < end; item++)
        {
            int row = item / blocks;
            int firstHead = (item - row * blocks) * heads;
            long firstOutput = (long)row * shape.Heads + firstHead;
            var range = job.Ranges[row];
            int count = range.Length;
            var cache = new CacheHead
            {
                At = ((long)range.Slot * shape.Capacity * shape.KvHeads + firstHead / shape.GroupSize) * headDim,
                PositionStride = (long)shape.KvHeads * headDim,
                FirstPosition = count == 0 ? 0 : range.Begin % shape.Capacity,
                Capacity = shape.Capacity,
            };
            var scores = new HeadScores
            {
                Scores = work.Scores, Stride = Math.Max(count, 1), Heads = heads, Q = job.Q + firstOutput * headDim,
                HeadDim = headDim, Scale = shape.Scale, SoftCap = shape.SoftCap, Bias = job.Bias == null ? null
                    : job.Bias + (job.BiasLayout.Offset + row * job.BiasLayout.RowStride + firstHead * job.BiasLayout.HeadStride + range.Begin),
                BiasHeadStride = job.BiasLayout.HeadStride,
            };
            Scores<T>(job.Level, job.Keys, cache, count, scores, work.KeyLanes, work.Row);

            // Softmax weights per head; a head with no finite score is written now and skipped below.
            bool anyLive = false;
            for (int g = 0; g < heads; g++)
            {
                float* output = job.Output + (firstOutput + g) * headDim;
                float* e = scores.Of(g);
                float max = Canonical.Max(new ReadOnlySpan<float>(e, count));
                bool masked = count == 0 || max == float.NegativeInfinity;
                work.Masked[g] = masked;
                if (masked)
                {
                    if (job.FullyMasked != null)
                        job.FullyMasked[firstOutput + g] = Math.Max(job.FullyMasked[firstOutput + g], job.Mark);
                    new Span<float>(output, headDim).Clear();
                    continue;
                }
                anyLive = true;
                ExpShifted(job.Level, e, count, max);
                work.Totals[g] = Canonical.Sum(new ReadOnlySpan<float>(e, count));
                new Span<float>(work.Lanes + g * laneFloats, (int)laneFloats).Clear();
            }
            if (!anyLive)
                continue;

            WeightedSums<T>(job.Level, scores, work.Masked, count, job.Values, cache, headDim, work.Lanes, work.Row);
            for (int g = 0; g < heads; g++)
            {
                if (work.Masked[g])
                    continue;
                float* output = job.Output + (firstOutput + g) * headDim;
                float* sums = work.Lanes + g * laneFloats;
                float total = work.Totals[g];
                for (int d = 0; d < headDim; d++)
                    output[d] = sums[d] / total;
            }
        }
    }

    /// <summary>
    /// e_i = exp(s_i − m) in place, lane by lane through <see cref="CanonicalMath.Exp"/> until a
    /// vectorised twin of it exists (CanonicalMathSimd); this is the one place to switch.
    /// </summary>
    static void ExpShifted(SimdLevel level, float* e, int count, float max)
    {
        int i = 0;
        if (level == SimdLevel.Avx512)
            for (var m = Vector512.Create(max); i + 16 <= count; i += 16)
                CanonicalMathSimd.Exp(Vector512.Load(e + i) - m).Store(e + i);
        else if (level == SimdLevel.Avx2)
            for (var m = Vector256.Create(max); i + 8 <= count; i += 8)
                CanonicalMathSimd.Exp(Vector256.Load(e + i) - m).Store(e + i);
        for (; i < count; i++)
            e[i] = CanonicalMath.Exp(e[i] - max);
    }

    /// <summary>The query heads of one item and where their scores go (head g's at Scores + g·Stride).</summary>
    struct HeadScores
    {
        public float* Scores, Q, Bias;
        public int Stride, Heads, HeadDim;
        public float Scale, SoftCap;
        public long BiasHeadStride;

        public readonly float* Of(int head) => Scores + (long)head * Stride;
    }

    /// <summary>Where one (slot, kv head) lives in the cache; key index i is at position (first + i) mod capacity.</summary>
    struct CacheHead
    {
        public long At, PositionStride;
        public int FirstPosition, Capacity;

        /// <summary>Element index of key index <paramref name="index"/>'s head row; ranges wrap at most once.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly long Row(int index)
        {
            int position = FirstPosition + index;
            position = position >= Capacity ? position - Capacity : position;
            return At + position * PositionStride;
        }
    }

    /// <summary>
    /// s_i = dot(q, k_i)·scale, soft-capped, plus the bias, for every key index i and every head of
    /// the item; key row i is read from memory once and from L1 for the other heads.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    static void Scores<T>(SimdLevel level, byte* keys, CacheHead cache, int count, HeadScores heads, Vector512<float>* lanes,
        float* row) where T : struct, IStoredVectors
    {
        int i = 0;
        if (level == SimdLevel.Avx512)
            // Sixteen keys at a time: each dot's lanes, then sixteen trees folded together.
            for (; i + KeyBlock <= count; i += KeyBlock)
            {
                for (int kk = 0; kk < KeyBlock; kk++)
                {
                    Prefetch<T>(keys, cache, i + kk + PrefetchDistance, count, heads.HeadDim);
                    var key = (byte*)Widened<T>(keys, cache.Row(i + kk), heads.HeadDim, row);
                    for (int g = 0; g < heads.Heads; g++)
                        lanes[g * KeyBlock + kk] = SimdDot.DotLanes512<F32Vectors>(heads.Q + (long)g * heads.HeadDim, key, 0, heads.HeadDim);
                }
                for (int g = 0; g < heads.Heads; g++)
                {
                    float* scores = heads.Of(g) + i;
                    SimdTree.Fold16x16(lanes + g * KeyBlock).Store(scores);
                    for (int kk = 0; kk < KeyBlock; kk++)
                        scores[kk] = Score(heads, g, i + kk, scores[kk]);
                }
            }
        for (; i < count; i++)
        {
            Prefetch<T>(keys, cache, i + PrefetchDistance, count, heads.HeadDim);
            long at = cache.Row(i);
            for (int g = 0; g < heads.Heads; g++)
                heads.Of(g)[i] = Score(heads, g, i, SimdDot.Dot<T>(level, heads.Q + (long)g * heads.HeadDim, keys, at, heads.HeadDim));
        }
    }

    /// <summary>Keys whose dots finish together in <see cref="Scores{T}"/>.</summary>
    const int KeyBlock = 16;

    /// <summary>dot·scale, soft-capped, plus the bias: key index i's score for head g.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Score(HeadScores heads, int g, int i, float dot)
    {
        float score = dot * heads.Scale;
        if (heads.SoftCap > 0f)
            score = CanonicalMath.SoftCap(score, heads.SoftCap);
        if (heads.Bias != null)
            score += heads.Bias[g * heads.BiasHeadStride + i];
        return score;
    }

    /// <summary>
    /// For every live head g of the item and every d: lane row j of g accumulates
    /// fma(e_i, v_i,d, ·) over the key indices i ≡ j (mod 32) in increasing order (its canonical
    /// lane j), value row i shared by the heads; then the tree adds row j+h into row j, leaving
    /// the canonical Σ_i e_i·v_i,d in row 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    static void WeightedSums<T>(SimdLevel level, HeadScores heads, bool* masked, int count, byte* values, CacheHead cache,
        int headDim, float* lanes, float* row) where T : struct, IStoredVectors
    {
        long laneFloats = (long)Canonical.Lanes * headDim;
        for (int i = 0; i < count; i++)
        {
            Prefetch<T>(values, cache, i + PrefetchDistance, count, headDim);
            long at = cache.Row(i);
            long lane = (i & (Canonical.Lanes - 1)) * headDim;
            var value = level == SimdLevel.Avx512 ? (byte*)Widened<T>(values, at, headDim, row) : null;
            for (int g = 0; g < heads.Heads; g++)
            {
                if (masked[g])
                    continue;
                float weight = heads.Of(g)[i];
                float* accumulators = lanes + g * laneFloats + lane;
                switch (level)
                {
                    case SimdLevel.Avx512: FmaRow512<F32Vectors>(weight, value, 0, accumulators, headDim); break;
                    case SimdLevel.Avx2: FmaRow256<T>(weight, values, at, accumulators, headDim); break;
                    default: FmaRowScalar<T>(weight, values, at, accumulators, headDim); break;
                }
            }
        }
        for (int g = 0; g < heads.Heads; g++)
        {
            if (masked[g])
                continue;
            float* head = lanes + g * laneFloats;
            for (int h = Canonical.Lanes / 2; h >= 1; h >>= 1)
                for (int j = 0; j < h; j++)
                    AddRow(level, head + j * headDim, head + (j + h) * headDim, headDim);
        }
    }

    /// <summary>
    /// One cached row as binary32: the cache itself when it stores f32, otherwise the row widened
    /// exactly into <paramref name="row"/> once, for all the heads of the item to read.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float* Widened<T>(byte* data, long at, int headDim, float* row) where T : struct, IStoredVectors
    {
        if (T.Type == StorageType.F32)
            return (float*)data + at;
        int d = 0;
        for (; d + 16 <= headDim; d += 16)
            T.Load16(data, at + d).Store(row + d);
        for (; d < headDim; d++)
            row[d] = T.Load1(data, at + d);
        return row;
    }

    /// <summary>Key rows ahead of the one in use whose cache lines are requested early.</summary>
    const int PrefetchDistance = 8;

    /// <summary>
    /// Asks for the cache lines of key index <paramref name="index"/>'s row. The rows of one kv
    /// head lie kv_heads × head_dim values apart (kilobytes), so each row is on a new page and the
    /// hardware prefetchers, which follow sequential streams within a page, do not fetch ahead;
    /// long-context decode is otherwise bound by one memory latency per row.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Prefetch<T>(byte* data, CacheHead cache, int index, int count, int headDim) where T : struct, IStoredVectors
    {
        if (index >= count || !Sse.IsSupported)
            return;
        byte* row = data + T.ByteOffset(cache.Row(index));
        for (long offset = 0; offset < T.ByteOffset(headDim); offset += 64)
            Sse.Prefetch0(row + offset);
    }

    /// <summary>lane[d] = fma(weight, v[d], lane[d]) for d &lt; headDim.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void FmaRow512<T>(float weight, byte* values, long at, float* lane, int headDim) where T : struct, IStoredVectors
    {
        var w = Vector512.Create(weight);
        int d = 0;
        for (; d + 16 <= headDim; d += 16)
            Vector512.FusedMultiplyAdd(w, T.Load16(values, at + d), Vector512.Load(lane + d)).Store(lane + d);
        for (; d < headDim; d++)
            lane[d] = MathF.FusedMultiplyAdd(weight, T.Load1(values, at + d), lane[d]);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void FmaRow256<T>(float weight, byte* values, long at, float* lane, int headDim) where T : struct, IStoredVectors
    {
        var w = Vector256.Create(weight);
        int d = 0;
        for (; d + 8 <= headDim; d += 8)
            Vector256.FusedMultiplyAdd(w, T.Load8(values, at + d), Vector256.Load(lane + d)).Store(lane + d);
        for (; d < headDim; d++)
            lane[d] = MathF.FusedMultiplyAdd(weight, T.Load1(values, at + d), lane[d]);
    }

    static void FmaRowScalar<T>(float weight, byte* values, long at, float* lane, int headDim) where T : struct, IStoredVectors
    {
        for (int d = 0; d < headDim; d++)
            lane[d] = MathF.FusedMultiplyAdd(weight, T.Load1(values, at + d), lane[d]);
    }

    /// <summary>low[d] = low[d] + high[d]: one step of the canonical tree for every dimension.</summary>
    static void AddRow(SimdLevel level, float* low, float* high, int headDim)
    {
        int d = 0;
        if (level == SimdLevel.Avx512)
            for (; d + 16 <= headDim; d += 16)
                (Vector512.Load(low + d) + Vector512.Load(high + d)).Store(low + d);
        else if (level == SimdLevel.Avx2)
            for (; d + 8 <= headDim; d += 8)
                (Vector256.Load(low + d) + Vector256.Load(high + d)).Store(low + d);
        for (; d < headDim; d++)
            low[d] += high[d];
    }
}
