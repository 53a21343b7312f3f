using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace IlgpuLlm.Kernels;

/// <summary>
/// The SIMD CPU twin of <see cref="Sampling"/>: threads split the rows; each row runs the
/// reference's steps with every pass over the vocabulary vectorised (canonical lanes as two
/// Vector512 or four Vector256). Each threshold is the unique answer of a monotone question, so the
/// searches need not copy the reference's: top-k bisects over precomputed order keys (integer
/// compares only), top-p bisects with vectorised canonical masked sums, and the inverse CDF scans
/// the canonical prefix sums 32 terms at a time and resolves the last block term by term.
/// </summary>
public static unsafe class SamplingSimd
{
    public sealed class Job : IRangeJob
    {
        internal float* Logits;
        internal int Vocabulary, RowCount;
        internal int* Parameters;
        internal int* Penalized;
        internal int* Tokens;
        internal int* Skip;
        internal float* Trace;
        internal SimdLevel Level;
        internal DeviceCounters Counters = new();

        readonly WorkPool<Scratch> pool = new();

        /// <summary>Before a call: work space of a whole vocabulary for every thread that may take a row.</summary>
        internal void Reserve(int threads)
        {
            pool.Reserve(threads);
            for (int i = 0; i < pool.Count; i++)
                pool[i].Reserve(Vocabulary, Counters);
        }

        public void Run(int start, int end)
        {
            var scratch = pool.Take();
            try
            {
                var parameters = new ReadOnlySpan<int>(Parameters, RowCount * Sampling.ParameterInts);
                for (int r = start; r < end; r++)
                {
                    if (Skip != null && Skip[r] != 0)
                    {
                        Tokens[r] = -1;
                        continue;
                    }
                    var row = Sampling.Unpack(parameters, r);
                    int n = row.Drawable(Vocabulary);
                    scratch.Reserve(n, Counters);
                    fixed (float* x = scratch.Values)
                    fixed (int* keys = scratch.Keys)
                        Tokens[r] = SampleRow(Logits + (long)r * Vocabulary, x, keys, n, row, Penalized, Level,
                            Trace == null ? null : Trace + (long)r * SamplingTrace.Slots);
                }
            }
            finally
            {
                pool.Return(scratch);
            }
        }
    }

    /// <summary>One thread's work space: the filtered logits / weights and top-k's order keys, pinned, grown to the largest vocabulary seen.</summary>
    sealed class Scratch
    {
        public float[] Values = [];
        public int[] Keys = [];

        public void Reserve(int n, DeviceCounters counters)
        {
            if (Values.Length >= n)
                return;
            counters.Allocation();
            Values = GC.AllocateUninitializedArray<float>(n, pinned: true);
            Keys = GC.AllocateUninitializedArray<int>(n, pinned: true);
        }
    }

    /// <summary>
    /// Draws one token per row from <see cref="Sampling.PackParameters"/>'s rows, which must have been
    /// validated (<see cref="Sampling.Validate"/>). Rows whose entry in <paramref name="skip"/> (when
    /// not null) is not 0 are not drawn: their token is −1. <paramref name="trace"/>: null, or
    /// <see cref="SamplingTrace.Slots"/> per row to receive the values each draw passes through.
    /// </summary>
    public static void Run(CpuWorkers workers, SimdLevel level, Job job, float* logits, int vocabulary, int* parameters, int rows,
        int* penalized, int* tokens, int* skip, float* trace = null)
    {
        job.Logits = logits;
        job.Vocabulary = vocabulary;
        job.RowCount = rows;
        job.Parameters = parameters;
        job.Penalized = penalized;
        job.Tokens = tokens;
        job.Skip = skip;
        job.Trace = trace;
        job.Level = SimdLevels.AtMost(level);
        job.Counters = workers.Counters;
        job.Reserve(Math.Min(workers.Threads, rows));
        workers.For(rows, 1, job);
        job.Trace = null;
    }

    static int SampleRow(float* logits, float* x, int* keys, int n, SamplingRow row, int* penalized, SimdLevel level, float* trace)
    {
        float temperature = row.Temperature;
        bool greedy = temperature == 0f;
        if (greedy)
            new ReadOnlySpan<float>(logits, n).CopyTo(new Span<float>(x, n));
        else
            Scale(x, logits, n, temperature, level);
        if (row.RepetitionPenalty != 1f)
            for (int j = 0; j < row.PenaltyCount; j++)
            {
                int id = penalized[row.PenaltyOffset + j];
                if (id >= n)
                    continue;
                float value = Sampling.Penalize(logits[id], row.RepetitionPenalty);
                x[id] = greedy ? value : value / temperature;
            }
        if (greedy)
            return Argmax(x, n, level);

        if (row.TopK > 0 && row.TopK < n)
        {
            ToKeys(x, keys, n, level);
            int threshold = KthLargestKey(keys, n, row.TopK, level);
            if (trace != null)
                trace[SamplingTrace.TopKKey] = BitConverter.Int32BitsToSingle(threshold);
            KeepAtOrAboveKey(x, keys, n, threshold, level);
        }
        float max = Max(x, n, level);
        if (trace != null)
            trace[SamplingTrace.Max] = max;
        if (!(max > float.NegativeInfinity))
            return Argmax(x, n, level);
        float total = level switch
        {
            SimdLevel.Avx512 => SoftmaxSimd.ExpAndSum512(x, n, max),
            SimdLevel.Avx2 => SoftmaxSimd.ExpAndSum256(x, n, max),
            _ => ExpAndSumScalar(x, n, max),
        };
        bool topP = row.TopP < 1f, minP = row.MinP > 0f;
        if (topP || minP)
        {
            float topPTarget = row.TopP * total;
            float tau = topP ? TopPThreshold(x, n, topPTarget, level) : float.NegativeInfinity;
            if (topP && trace != null)
                (trace[SamplingTrace.TopPTarget], trace[SamplingTrace.Tau]) = (topPTarget, tau);
            // A disabled floor is −inf, which only NaN fails, and NaN fails the enabled floor too.
            Filter(x, n, tau, minP ? row.MinP : float.NegativeInfinity, level);
            total = Sum(x, n, level);
        }
        float target = Philox.Uniform(row.Seed, row.Sequence, row.Step) * total;
        if (trace != null)
            (trace[SamplingTrace.Total], trace[SamplingTrace.Target]) = (total, target);
        return total > target ? InverseCdf(x, n, target, level, trace) : LastPositive(x, n);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Scale(float* x, float* logits, int n, float temperature, SimdLevel level)
    {
        int i = 0;
        if (level == SimdLevel.Avx512)
        {
            var t = Vector512.Create(temperature);
            for (; i + 16 <= n; i += 16)
                (Vector512.Load(logits + i) / t).Store(x + i);
        }
        else if (level == SimdLevel.Avx2)
        {
            var t = Vector256.Create(temperature);
            for (; i + 8 <= n; i += 8)
                (Vector256.Load(logits + i) / t).Store(x + i);
        }
        for (; i < n; i++)
            x[i] = logits[i] / temperature;
    }

    /// <summary><see cref="Sampling.Argmax"/>: per lane the first best of its indices, then the lanes and the tail.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static int Argmax(float* x, int n, SimdLevel level)
    {
        float best = 0f;
        int at = -1;
        int i = 0;
        var laneValues = stackalloc float[16];
        var laneIndices = stackalloc int[16];
        int lanes = 0;
        if (level == SimdLevel.Avx512)
        {
            var values = Vector512.Create(float.NegativeInfinity);
            var indices = Vector512.Create(-1);
            var none = Vector512.Create(-1);
            for (; i + 16 <= n; i += 16)
            {
                var v = Vector512.Load(x + i);
                var take = Vector512.Equals(v, v) & (Vector512.GreaterThan(v, values) | Vector512.Equals(indices, none).AsSingle());
                values = Vector512.ConditionalSelect(take, v, values);
                indices = Vector512.ConditionalSelect(take.AsInt32(), Vector512<int>.Indices + Vector512.Create(i), indices);
            }
            values.Store(laneValues);
            indices.Store(laneIndices);
            lanes = 16;
        }
        else if (level == SimdLevel.Avx2)
        {
            var values = Vector256.Create(float.NegativeInfinity);
            var indices = Vector256.Create(-1);
            var none = Vector256.Create(-1);
            for (; i + 8 <= n; i += 8)
            {
                var v = Vector256.Load(x + i);
                var take = Vector256.Equals(v, v) & (Vector256.GreaterThan(v, values) | Vector256.Equals(indices, none).AsSingle());
                values = Vector256.ConditionalSelect(take, v, values);
                indices = Vector256.ConditionalSelect(take.AsInt32(), Vector256<int>.Indices + Vector256.Create(i), indices);
            }
            values.Store(laneValues);
            indices.Store(laneIndices);
            lanes = 8;
        }
        for (int j = 0; j < lanes; j++)
            if (Sampling.Beats(laneValues[j], laneIndices[j], best, at))
            {
                best = laneValues[j];
                at = laneIndices[j];
            }
        for (; i < n; i++)
            if (!float.IsNaN(x[i]) && Sampling.Beats(x[i], i, best, at))
            {
                best = x[i];
                at = i;
            }
        return at < 0 ? n - 1 : at;
    }

    /// <summary><see cref="Sampling.OrderKey"/> of every value; NaN gets <see cref="int.MinValue"/>, below every candidate key.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void ToKeys(float* x, int* keys, int n, SimdLevel level)
    {
        int i = 0;
        if (level == SimdLevel.Avx512)
        {
            var magnitude = Vector512.Create(int.MaxValue);
            var nan = Vector512.Create(int.MinValue);
            for (; i + 16 <= n; i += 16)
            {
                var v = Vector512.Load(x + i);
                var bits = v.AsInt32();
                var negative = Vector512.ShiftRightArithmetic(bits, 31);
                var key = ((bits & magnitude) ^ negative) - negative;
                Vector512.ConditionalSelect(Vector512.Equals(v, v).AsInt32(), key, nan).Store(keys + i);
            }
        }
        else if (level == SimdLevel.Avx2)
        {
            var magnitude = Vector256.Create(int.MaxValue);
            var nan = Vector256.Create(int.MinValue);
            for (; i + 8 <= n; i += 8)
            {
                var v = Vector256.Load(x + i);
                var bits = v.AsInt32();
                var negative = Vector256.ShiftRightArithmetic(bits, 31);
                var key = ((bits & magnitude) ^ negative) - negative;
                Vector256.ConditionalSelect(Vector256.Equals(v, v).AsInt32(), key, nan).Store(keys + i);
            }
        }
        for (; i < n; i++)
            keys[i] = float.IsNaN(x[i]) ? int.MinValue : Sampling.OrderKey(x[i]);
    }

    /// <summary>The largest key t with count(key ≥ t) ≥ k (int.MinValue when fewer than k values are not NaN).</summary>
    static int KthLargestKey(int* keys, int n, int k, SimdLevel level)
    {
        long low = int.MinValue, high = (long)int.MaxValue + 1;
        while (high - low > 1)
        {
            long middle = (low + high) >> 1; // above int.MinValue, so NaN keys never count
            if (CountAtOrAbove(keys, n, (int)middle, level) >= k)
                low = middle;
            else
                high = middle;
        }
        return (int)low;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static int CountAtOrAbove(int* keys, int n, int key, SimdLevel level)
    {
        int i = 0;
        int count = 0;
        if (level == SimdLevel.Avx512)
        {
            var t = Vector512.Create(key);
            var c0 = Vector512<int>.Zero;
            var c1 = Vector512<int>.Zero;
            for (; i + 32 <= n; i += 32)
            {
                c0 -= Vector512.GreaterThanOrEqual(Vector512.Load(keys + i), t);
                c1 -= Vector512.GreaterThanOrEqual(Vector512.Load(keys + i + 16), t);
            }
            count = Vector512.Sum(c0 + c1); // integers: exact in any order
        }
        else if (level == SimdLevel.Avx2)
        {
            var t = Vector256.Create(key);
            var c0 = Vector256<int>.Zero;
            var c1 = Vector256<int>.Zero;
            for (; i + 16 <= n; i += 16)
            {
                c0 -= Vector256.GreaterThanOrEqual(Vector256.Load(keys + i), t);
                c1 -= Vector256.GreaterThanOrEqual(Vector256.Load(keys + i + 8), t);
            }
            count = Vector256.Sum(c0 + c1);
        }
        for (; i < n; i++)
            count += keys[i] >= key ? 1 : 0;
        return count;
    }

    /// <summary>Top-k's filter: values whose key is below the threshold, and NaN, become −inf.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void KeepAtOrAboveKey(float* x, int* keys, int n, int threshold, SimdLevel level)
    {
        int i = 0;
        var minusInfinity = float.NegativeInfinity;
        if (level == SimdLevel.Avx512)
        {
            var t = Vector512.Create(threshold);
            var nan = Vector512.Create(int.MinValue);
            var dropped = Vector512.Create(minusInfinity);
            for (; i + 16 <= n; i += 16)
            {
                var k = Vector512.Load(keys + i);
                var keep = Vector512.GreaterThanOrEqual(k, t) & ~Vector512.Equals(k, nan);
                Vector512.ConditionalSelect(keep.AsSingle(), Vector512.Load(x + i), dropped).Store(x + i);
            }
        }
        else if (level == SimdLevel.Avx2)
        {
            var t = Vector256.Create(threshold);
            var nan = Vector256.Create(int.MinValue);
            var dropped = Vector256.Create(minusInfinity);
            for (; i + 8 <= n; i += 8)
            {
                var k = Vector256.Load(keys + i);
                var keep = Vector256.GreaterThanOrEqual(k, t) & ~Vector256.Equals(k, nan);
                Vector256.ConditionalSelect(keep.AsSingle(), Vector256.Load(x + i), dropped).Store(x + i);
            }
        }
        for (; i < n; i++)
            if (keys[i] == int.MinValue || keys[i] < threshold)
                x[i] = minusInfinity;
    }

    /// <summary>The canonical maximum (<see cref="Canonical.Max"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Max(float* x, int n, SimdLevel level)
    {
        var lanes = stackalloc float[Canonical.Lanes];
        int full = n & ~31;
        if (level == SimdLevel.Avx512)
        {
            var m0 = Vector512.Create(float.NegativeInfinity);
            var m1 = m0;
            for (int i = 0; i < full; i += 32)
            {
                m0 = CanonicalMathSimd.Max(m0, Vector512.Load(x + i));
                m1 = CanonicalMathSimd.Max(m1, Vector512.Load(x + i + 16));
            }
            if (full == n)
                return SimdTree.Max(m0, m1);
            m0.Store(lanes);
            m1.Store(lanes + 16);
        }
        else if (level == SimdLevel.Avx2)
        {
            var m0 = Vector256.Create(float.NegativeInfinity);
            var m1 = m0;
            var m2 = m0;
            var m3 = m0;
            for (int i = 0; i < full; i += 32)
            {
                m0 = CanonicalMathSimd.Max(m0, Vector256.Load(x + i));
                m1 = CanonicalMathSimd.Max(m1, Vector256.Load(x + i + 8));
                m2 = CanonicalMathSimd.Max(m2, Vector256.Load(x + i + 16));
                m3 = CanonicalMathSimd.Max(m3, Vector256.Load(x + i + 24));
            }
            if (full == n)
                return SimdTree.Max(m0, m1, m2, m3);
            m0.Store(lanes);
            m1.Store(lanes + 8);
            m2.Store(lanes + 16);
            m3.Store(lanes + 24);
        }
        else
            return Canonical.Max(new ReadOnlySpan<float>(x, n));
        for (int i = full; i < n; i++)
            lanes[i - full] = CanonicalMath.Max(lanes[i - full], x[i]);
        return Canonical.MaxTree(new Span<float>(lanes, Canonical.Lanes));
    }

    static float ExpAndSumScalar(float* x, int n, float max)
    {
        for (int i = 0; i < n; i++)
            x[i] = CanonicalMath.Exp(x[i] - max);
        return Canonical.Sum(new ReadOnlySpan<float>(x, n));
    }

    /// <summary>The canonical sum (<see cref="Canonical.Sum"/>).</summary>
    static float Sum(float* e, int n, SimdLevel level) => MaskedSum(e, n, 0f, level, masked: false);

    /// <summary>
    /// The canonical sum of e ≥ threshold ? e : 0 (the reference's masked sum), or of every e when
    /// not <paramref name="masked"/>. Weights are never −0, so a zero term leaves its lane's bits
    /// unchanged.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float MaskedSum(float* e, int n, float threshold, SimdLevel level, bool masked = true)
    {
        int full = n & ~31;
        var lanes = stackalloc float[Canonical.Lanes];
        if (level == SimdLevel.Avx512)
        {
            var t = Vector512.Create(threshold);
            var s0 = Vector512<float>.Zero;
            var s1 = s0;
            for (int i = 0; i < full; i += 32)
            {
                var a = Vector512.Load(e + i);
                var b = Vector512.Load(e + i + 16);
                s0 += masked ? a & Vector512.GreaterThanOrEqual(a, t) : a;
                s1 += masked ? b & Vector512.GreaterThanOrEqual(b, t) : b;
            }
            if (full == n)
                return SimdTree.Sum(s0, s1);
            s0.Store(lanes);
            s1.Store(lanes + 16);
        }
        else if (level == SimdLevel.Avx2)
        {
            var t = Vector256.Create(threshold);
            var s0 = Vector256<float>.Zero;
            var s1 = s0;
            var s2 = s0;
            var s3 = s0;
            for (int i = 0; i < full; i += 32)
            {
                var a = Vector256.Load(e + i);
                var b = Vector256.Load(e + i + 8);
                var c = Vector256.Load(e + i + 16);
                var d = Vector256.Load(e + i + 24);
                s0 += masked ? a & Vector256.GreaterThanOrEqual(a, t) : a;
                s1 += masked ? b & Vector256.GreaterThanOrEqual(b, t) : b;
                s2 += masked ? c & Vector256.GreaterThanOrEqual(c, t) : c;
                s3 += masked ? d & Vector256.GreaterThanOrEqual(d, t) : d;
            }
            if (full == n)
                return SimdTree.Sum(s0, s1, s2, s3);
            s0.Store(lanes);
            s1.Store(lanes + 8);
            s2.Store(lanes + 16);
            s3.Store(lanes + 24);
        }
        else
        {
            new Span<float>(lanes, Canonical.Lanes).Clear();
            full = 0;
        }
        for (int i = full; i < n; i++)
            lanes[i & 31] += !masked || e[i] >= threshold ? e[i] : 0f;
        return Canonical.SumTree(new Span<float>(lanes, Canonical.Lanes));
    }

    /// <summary>
    /// Top-p's τ: the largest bit pattern in [0, 1] whose canonical masked sum reaches the target,
    /// by bisection as in the reference.
    /// </summary>
    static float TopPThreshold(float* e, int n, float target, SimdLevel level)
    {
        uint low = 0, high = Sampling.AboveOneBits;
        while (high - low > 1)
        {
            uint middle = low + (high - low) / 2;
            if (MaskedSum(e, n, BitConverter.UInt32BitsToSingle(middle), level) >= target)
                low = middle;
            else
                high = middle;
        }
        return BitConverter.UInt32BitsToSingle(low);
    }

    /// <summary>Top-p's and min-p's filter: weights below either floor (and NaN) become 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Filter(float* e, int n, float tau, float minP, SimdLevel level)
    {
        int i = 0;
        if (level == SimdLevel.Avx512)
        {
            var t = Vector512.Create(tau);
            var m = Vector512.Create(minP);
            for (; i + 16 <= n; i += 16)
            {
                var v = Vector512.Load(e + i);
                (v & Vector512.GreaterThanOrEqual(v, t) & Vector512.GreaterThanOrEqual(v, m)).Store(e + i);
            }
        }
        else if (level == SimdLevel.Avx2)
        {
            var t = Vector256.Create(tau);
            var m = Vector256.Create(minP);
            for (; i + 8 <= n; i += 8)
            {
                var v = Vector256.Load(e + i);
                (v & Vector256.GreaterThanOrEqual(v, t) & Vector256.GreaterThanOrEqual(v, m)).Store(e + i);
            }
        }
        for (; i < n; i++)
            if (!(e[i] >= tau && e[i] >= minP))
                e[i] = 0f;
    }

    /// <summary>
    /// The smallest index whose canonical prefix sum exceeds the target (the total does): whole
    /// blocks of 32 terms first (prefix(32b) is the tree of the lanes after b blocks), then the
    /// terms of the block that crosses, one lane at a time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static int InverseCdf(float* e, int n, float target, SimdLevel level, float* trace)
    {
        var lanes = stackalloc float[Canonical.Lanes];
        int full = n & ~31;
        int block = 0;
        if (level == SimdLevel.Avx512)
        {
            var s0 = Vector512<float>.Zero;
            var s1 = s0;
            for (; block < full; block += 32)
            {
                var next0 = s0 + Vector512.Load(e + block);
                var next1 = s1 + Vector512.Load(e + block + 16);
                if (SimdTree.Sum(next0, next1) > target)
                    break;
                s0 = next0;
                s1 = next1;
            }
            s0.Store(lanes);
            s1.Store(lanes + 16);
        }
        else if (level == SimdLevel.Avx2)
        {
            var s0 = Vector256<float>.Zero;
            var s1 = s0;
            var s2 = s0;
            var s3 = s0;
            for (; block < full; block += 32)
            {
                var next0 = s0 + Vector256.Load(e + block);
                var next1 = s1 + Vector256.Load(e + block + 8);
                var next2 = s2 + Vector256.Load(e + block + 16);
                var next3 = s3 + Vector256.Load(e + block + 24);
                if (SimdTree.Sum(next0, next1, next2, next3) > target)
                    break;
                s0 = next0;
                s1 = next1;
                s2 = next2;
                s3 = next3;
            }
            s0.Store(lanes);
            s1.Store(lanes + 8);
            s2.Store(lanes + 16);
            s3.Store(lanes + 24);
        }
        else
        {
            var next = stackalloc float[Canonical.Lanes];
            new Span<float>(lanes, Canonical.Lanes).Clear();
            for (; block < full; block += 32)
            {
                for (int j = 0; j < Canonical.Lanes; j++)
                    next[j] = lanes[j] + e[block + j];
                float candidate = Canonical.SumTree(new Span<float>(next, Canonical.Lanes)); // folds next in place
                if (candidate > target)
                    break;
                for (int j = 0; j < Canonical.Lanes; j++)
                    lanes[j] += e[block + j];
            }
        }
        return WithinBlock(e, n, block, target, lanes, trace);
    }

    /// <summary>
    /// Prefix lengths block+1 … block+32 (or n) one at a time, from the lanes of prefix(block); the
    /// prefix sums before and through the drawn token go to <paramref name="trace"/> when it is not null.
    /// </summary>
    static int WithinBlock(float* e, int n, int block, float target, float* lanes, float* trace)
    {
        int active = Math.Min(Canonical.Lanes, n - block);
        var trial = stackalloc float[Canonical.Lanes];
        for (int r = 0; r < active; r++)
        {
            float before = lanes[r];
            lanes[r] += e[block + r];
            new Span<float>(lanes, Canonical.Lanes).CopyTo(new Span<float>(trial, Canonical.Lanes));
            float through = Canonical.SumTree(new Span<float>(trial, Canonical.Lanes));
            if (through > target)
            {
                if (trace != null)
                {
                    lanes[r] = before;
                    trace[SamplingTrace.PrefixBefore] = Canonical.SumTree(new Span<float>(lanes, Canonical.Lanes));
                    trace[SamplingTrace.PrefixThrough] = through;
                }
                return block + r;
            }
        }
        return block + active - 1; // not reached: prefix(n), the total, exceeds the target
    }

    static int LastPositive(float* e, int n)
    {
        for (int i = n - 1; i >= 0; i--)
            if (e[i] > 0f)
                return i;
        return 0;
    }
}
