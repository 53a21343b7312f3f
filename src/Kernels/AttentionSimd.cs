using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

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
        internal bool* FullyMasked;
        internal AttentionShape Shape;
        internal AttentionBiasLayout BiasLayout;
        internal StorageType Type;
        internal SimdLevel Level;
        internal int Longest;

        /// <summary>Work buffers of finished chunks, reused by the next (one per concurrent thread at most).</summary>
        readonly Stack<Work> idle = new();

        public void Run(int start, int end)
        {
            Work work;
            lock (idle)
                work = idle.Count > 0 ? idle.Pop() : new Work();
            try
            {
                work.Reserve(Longest, Shape.HeadDim);
                switch (Type)
                {
                    case StorageType.F32: Items<F32Vectors>(this, work, start, end); break;
                    case StorageType.F16: Items<F16CacheVectors>(this, work, start, end); break;
                    default: Items<Bf16Vectors>(this, work, start, end); break;
                }
            }
            finally
            {
                lock (idle)
                    idle.Push(work);
            }
        }
    }

    /// <summary>One thread's scratch: the scores of a row, and 32 lane rows of head_dim accumulators.</summary>
    sealed class Work
    {
        float[] scores = [];
        float[] lanes = [];
        public float* Scores;
        public float* Lanes;

        /// <summary>Grows the buffers (pinned, so the pointers stay valid) when a call needs more.</summary>
        public void Reserve(int keys, int headDim)
        {
            if (scores.Length < keys || scores.Length == 0)
            {
                scores = GC.AllocateUninitializedArray<float>(Math.Max(keys, Canonical.Lanes), pinned: true);
                Scores = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(scores));
            }
            if (lanes.Length < Canonical.Lanes * headDim)
            {
                lanes = GC.AllocateUninitializedArray<float>(Canonical.Lanes * headDim, pinned: true);
                Lanes = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(lanes));
            }
        }
    }

    /// <summary>Runs a validated call (see <see cref="Attention.Validate"/>, which gives <paramref name="longest"/>).</summary>
    public static void Run(CpuWorkers workers, SimdLevel level, Job job, float* q, byte* keys, byte* values, StorageType cacheType,
        float* output, KeyRange* ranges, AttentionShape shape, float* bias, AttentionBiasLayout biasLayout, bool* fullyMasked,
        int longest)
    {
        job.Q = q;
        job.Keys = keys;
        job.Values = values;
        job.Type = cacheType;
        job.Output = output;
        job.Ranges = ranges;
        job.Shape = shape;
        job.Bias = bias;
        job.BiasLayout = biasLayout;
        job.FullyMasked = fullyMasked;
        job.Longest = longest;
        job.Level = SimdLevels.AtMost(level);
        int items = shape.Rows * shape.Heads;
        // Consecutive heads share a kv head, so a chunk of neighbouring items re-reads keys and
        // values its own cache already holds.
        workers.For(items, workers.ChunkFor(items), job);
    }

    static void Items<T>(Job job, Work work, int start, int end) where T : struct, IStoredVectors
    {
        var shape = job.Shape;
        int headDim = shape.HeadDim;
        long positionStride = (long)shape.KvHeads * headDim;
        for (int item = start; item < end; item++)
        {
            int row = item / shape.Heads;
            int head = item - row * shape.Heads;
            var range = job.Ranges[row];
            int count = range.Length;
            float* output = job.Output + (long)item * headDim;
            if (count == 0)
            {
                Masked(job, item, output, headDim);
                continue;
            }
            var cache = new CacheHead
            {
                At = ((long)range.Slot * shape.Capacity * shape.KvHeads + head / shape.GroupSize) * headDim,
                PositionStride = positionStride,
                FirstPosition = range.Begin % shape.Capacity,
                Capacity = shape.Capacity,
            };
            float* bias = job.Bias == null ? null
                : job.Bias + (job.BiasLayout.Offset + row * job.BiasLayout.RowStride + head * job.BiasLayout.HeadStride + range.Begin);
            float* scores = work.Scores;
            Scores<T>(job.Level, job.Q + (long)item * headDim, job.Keys, cache, count, headDim, shape.Scale, shape.SoftCap, bias, scores);
            float max = Canonical.Max(new ReadOnlySpan<float>(scores, count));
            if (max == float.NegativeInfinity)
            {
                Masked(job, item, output, headDim);
                continue;
            }
            for (int i = 0; i < count; i++)
                scores[i] = CanonicalMath.Exp(scores[i] - max);
            float total = Canonical.Sum(new ReadOnlySpan<float>(scores, count));
            WeightedSum<T>(job.Level, scores, count, job.Values, cache, headDim, work.Lanes);
            float* sums = work.Lanes;
            for (int d = 0; d < headDim; d++)
                output[d] = sums[d] / total;
            job.FullyMasked[item] = false;
        }
    }

    static void Masked(Job job, int item, float* output, int headDim)
    {
        new Span<float>(output, headDim).Clear();
        job.FullyMasked[item] = true;
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

    /// <summary>s_i = dot(q, k_i)·scale, soft-capped, plus the bias, for every key index i.</summary>
    static void Scores<T>(SimdLevel level, float* q, byte* keys, CacheHead cache, int count, int headDim, float scale,
        float softCap, float* bias, float* scores) where T : struct, IStoredVectors
    {
        for (int i = 0; i < count; i++)
        {
            float score = SimdDot.Dot<T>(level, q, keys, cache.Row(i), headDim) * scale;
            if (softCap > 0f)
                score = CanonicalMath.SoftCap(score, softCap);
            if (bias != null)
                score += bias[i];
            scores[i] = score;
        }
    }

    /// <summary>
    /// lanes[0][d] = canonical Σ_i fma(e_i, v_i,d, ·) for every d: row j of <paramref name="lanes"/>
    /// is canonical lane j of every dimension; the tree then adds row j+h into row j.
    /// </summary>
    static void WeightedSum<T>(SimdLevel level, float* weights, int count, byte* values, CacheHead cache, int headDim,
        float* lanes) where T : struct, IStoredVectors
    {
        // Every lane starts at +0, used or not: the tree adds the untouched ones too.
        new Span<float>(lanes, Canonical.Lanes * headDim).Clear();
        for (int i = 0; i < count; i++)
        {
            float* lane = lanes + (i & (Canonical.Lanes - 1)) * headDim;
            long at = cache.Row(i);
            switch (level)
            {
                case SimdLevel.Avx512: FmaRow512<T>(weights[i], values, at, lane, headDim); break;
                case SimdLevel.Avx2: FmaRow256<T>(weights[i], values, at, lane, headDim); break;
                default: FmaRowScalar<T>(weights[i], values, at, lane, headDim); break;
            }
        }
        for (int h = Canonical.Lanes / 2; h >= 1; h >>= 1)
            for (int j = 0; j < h; j++)
                AddRow(level, lanes + j * headDim, lanes + (j + h) * headDim, headDim);
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
