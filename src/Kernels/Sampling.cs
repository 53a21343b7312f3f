using ILGPU;
using ILGPU.Runtime;
using static IlgpuLlm.Kernels.ExactMath;

namespace IlgpuLlm.Kernels;

/// <summary>
/// How one sequence draws its next token. Temperature 0 is greedy. The random number comes from
/// <see cref="Philox"/> keyed by (Seed, Sequence, Step), so a draw never depends on which batch
/// the sequence ran in. PenaltyOffset/PenaltyCount select this row's previously seen token ids in
/// the penalized-token list. <see cref="DrawableTokens"/>, when set, limits the draw to ids below
/// it: the same draw as with every logit from that id up set to −inf (each filter ignores −inf
/// weights, and the canonical sums and maxima of the row are unchanged by them), for a row whose
/// logits below the limit are not all NaN.
/// </summary>
public readonly record struct SamplingRow(
    float Temperature,
    int TopK,
    float TopP,
    float MinP,
    float RepetitionPenalty,
    ulong Seed,
    int Sequence,
    int Step,
    int PenaltyOffset,
    int PenaltyCount)
{
    public static SamplingRow Greedy(int sequence = 0, int step = 0) => new(0f, 0, 1f, 0f, 1f, 0, sequence, step, 0, 0);

    /// <summary>
    /// The smallest positive temperature. Logits are divided by the temperature (and positive ones
    /// by a penalty below 1), so together these bounds amplify a logit at most 10^4 times: a tiny
    /// temperature would turn finite logits into infinities, and their differences into NaN. For
    /// the limit itself, greedy decoding, use 0.
    /// </summary>
    public const float MinTemperature = 0.01f;

    /// <summary>The smallest repetition penalty; see <see cref="MinTemperature"/>.</summary>
    public const float MinRepetitionPenalty = 0.01f;

    /// <summary>Ids from this one up are never drawn; 0 (the default) draws from the whole vocabulary.</summary>
    public int DrawableTokens { get; init; }

    /// <summary>The ids a row draws from: [0, this).</summary>
    public int Drawable(int vocabulary) => DrawableTokens > 0 ? DrawableTokens : vocabulary;

    public void Validate(int row, int vocabulary, ReadOnlySpan<int> penalizedTokens)
    {
        string where = $"sampling row {row}";
        if (DrawableTokens < 0 || DrawableTokens > vocabulary)
            throw new ArgumentOutOfRangeException(nameof(DrawableTokens),
                $"{where}: drawable tokens {DrawableTokens} must be 0 (every id) or in [1, {vocabulary}]");
        if (!(Temperature == 0f || Temperature >= MinTemperature) || float.IsInfinity(Temperature))
            throw new ArgumentException($"{where}: temperature {Temperature} must be 0 (greedy) or at least {MinTemperature} and finite");
        if (TopK < 0)
            throw new ArgumentException($"{where}: top-k {TopK} must be 0 (off) or positive");
        if (!(TopP > 0f && TopP <= 1f))
            throw new ArgumentException($"{where}: top-p {TopP} must be in (0, 1] (1 is off)");
        if (!(MinP >= 0f && MinP <= 1f))
            throw new ArgumentException($"{where}: min-p {MinP} must be in [0, 1] (0 is off)");
        if (!(RepetitionPenalty >= MinRepetitionPenalty) || float.IsInfinity(RepetitionPenalty))
            throw new ArgumentException($"{where}: repetition penalty {RepetitionPenalty} must be at least {MinRepetitionPenalty} and finite (1 is off)");
        if (Sequence < 0 || Step < 0)
            throw new ArgumentException($"{where}: sequence {Sequence} and step {Step} must not be negative");
        if (PenaltyOffset < 0 || PenaltyCount < 0 || (long)PenaltyOffset + PenaltyCount > penalizedTokens.Length)
            throw new ArgumentOutOfRangeException(nameof(penalizedTokens),
                $"{where}: penalized tokens [{PenaltyOffset}, {(long)PenaltyOffset + PenaltyCount}) lie outside the list of {penalizedTokens.Length}");
        // The set is reused: validation runs on every generation step, for every row.
        var seen = seenTokens ??= new HashSet<int>();
        seen.Clear();
        foreach (int id in penalizedTokens.Slice(PenaltyOffset, PenaltyCount))
        {
            if ((uint)id >= (uint)vocabulary)
                throw new ArgumentOutOfRangeException(nameof(penalizedTokens), $"{where}: penalized token {id} is outside the vocabulary of {vocabulary}");
            // A token is penalized once however often it occurred (llama.cpp and transformers alike).
            if (!seen.Add(id))
                throw new ArgumentException($"{where}: penalized token {id} is listed twice; list each token once");
        }
    }

    [ThreadStatic]
    static HashSet<int>? seenTokens;
}

/// <summary>
/// The values one row's draw passes through, for tests to compare bit for bit across backends
/// (the token alone rarely shows a change in the order of a sum). A caller that asks for a trace
/// passes <see cref="Slots"/> floats per row, filled with a value of its choice; each backend
/// writes the slots its path reaches and leaves the others as they were, so a different path
/// shows too. Integer results are stored as their bit patterns.
/// </summary>
public static class SamplingTrace
{
    public const int Slots = 8;

    /// <summary>Top-k's threshold order key (int bits), when top-k filters.</summary>
    public const int TopKKey = 0;

    /// <summary>The canonical maximum m of the tempered, top-k-filtered logits, when sampling (not greedy).</summary>
    public const int Max = 1;

    /// <summary>Top-p's target p · Σe (the canonical sum of the unfiltered weights), when top-p filters.</summary>
    public const int TopPTarget = 2;

    /// <summary>Top-p's threshold τ, when top-p filters.</summary>
    public const int Tau = 3;

    /// <summary>The canonical sum of the filtered weights the draw scales, when drawing.</summary>
    public const int Total = 4;

    /// <summary>The draw's target u · total, when drawing.</summary>
    public const int Target = 5;

    /// <summary>The canonical prefix sum of the weights before the drawn token (≤ target), when the inverse CDF runs.</summary>
    public const int PrefixBefore = 6;

    /// <summary>The canonical prefix sum through the drawn token (&gt; target), when the inverse CDF runs.</summary>
    public const int PrefixThrough = 7;

    /// <summary>Checks a trace buffer's length: empty (no trace) or <see cref="Slots"/> per row.</summary>
    public static void Validate(long length, int rows)
    {
        if (length != 0)
            Shapes.Expect("sampling: trace", length, (long)rows * Slots, $"{Slots} per row, rows {rows}");
    }
}

/// <summary>
/// Draws tokens. The order of the filters follows transformers' logits processors: repetition
/// penalty, temperature, top-k, top-p, min-p; then one uniform number picks a token by inverse CDF.
/// Nothing is sorted: every threshold is found by a search over float bit patterns with exact
/// integer counts or canonical sums, and the CDF is the canonical sum of a prefix, which is
/// monotone in the prefix length (rounding is monotone), so the result is the same on every
/// backend. Weights are kept unnormalised (e = exp(x − max), so the top token has e = 1).
/// Each threshold is the unique solution of a monotone predicate, so the backends may search for
/// it differently (the GPU tests several candidates per step, the SIMD twin scans prefix sums
/// block by block) and still agree bit for bit.
/// </summary>
public static partial class Sampling
{
    /// <param name="trace">Empty, or <see cref="SamplingTrace.Slots"/> per row to receive the values each draw passes through.</param>
    public static void Reference(ReadOnlySpan<float> logits, int vocabulary, ReadOnlySpan<SamplingRow> rows,
        ReadOnlySpan<int> penalizedTokens, Span<int> tokens, Span<float> trace = default)
    {
        Validate(logits.Length, vocabulary, rows, penalizedTokens, tokens.Length);
        SamplingTrace.Validate(trace.Length, rows.Length);
        var work = new float[vocabulary];
        for (int r = 0; r < rows.Length; r++)
        {
            int n = rows[r].Drawable(vocabulary);
            logits.Slice(r * vocabulary, n).CopyTo(work);
            tokens[r] = SampleRow(work.AsSpan(0, n), rows[r], penalizedTokens.Slice(rows[r].PenaltyOffset, rows[r].PenaltyCount),
                trace.IsEmpty ? default : trace.Slice(r * SamplingTrace.Slots, SamplingTrace.Slots));
        }
    }

    public static void Validate(long logitsLength, int vocabulary, ReadOnlySpan<SamplingRow> rows,
        ReadOnlySpan<int> penalizedTokens, long tokensLength)
    {
        Shapes.Positive("sampling: vocabulary", vocabulary);
        Shapes.Positive("sampling: rows", rows.Length);
        Shapes.Expect("sampling: logits", logitsLength, (long)rows.Length * vocabulary, $"rows {rows.Length} × vocabulary {vocabulary}");
        Shapes.Expect("sampling: tokens", tokensLength, rows.Length, $"one per row, rows {rows.Length}");
        for (int r = 0; r < rows.Length; r++)
            rows[r].Validate(r, vocabulary, penalizedTokens);
    }

    /// <summary>One row; <paramref name="x"/> is overwritten with the filtered weights. <paramref name="trace"/>: empty or this row's slots.</summary>
    static int SampleRow(Span<float> x, SamplingRow row, ReadOnlySpan<int> penalized, Span<float> trace)
    {
        bool tracing = !trace.IsEmpty;
        if (row.RepetitionPenalty != 1f)
            foreach (int id in penalized)
                if (id < x.Length)
                    x[id] = Penalize(x[id], row.RepetitionPenalty);
        if (row.Temperature == 0f)
            return Argmax(x);
        for (int i = 0; i < x.Length; i++)
            x[i] = Div(x[i], row.Temperature);
        if (row.TopK > 0 && row.TopK < x.Length)
        {
            int key = KthLargestKey(x, row.TopK);
            if (tracing)
                trace[SamplingTrace.TopKKey] = BitConverter.Int32BitsToSingle(key);
            KeepAtOrAboveKey(x, key);
        }
        float max = Canonical.Max(x);
        if (tracing)
            trace[SamplingTrace.Max] = max;
        if (!(max > float.NegativeInfinity))
            return Argmax(x);
        for (int i = 0; i < x.Length; i++)
            x[i] = CanonicalMath.Exp(Sub(x[i], max));
        if (row.TopP < 1f)
        {
            float target = Mul(row.TopP, Canonical.Sum(x));
            float tau = TopPThreshold(x, target);
            if (tracing)
                (trace[SamplingTrace.TopPTarget], trace[SamplingTrace.Tau]) = (target, tau);
            KeepAtOrAbove(x, tau);
        }
        if (row.MinP > 0f)
            KeepAtOrAbove(x, row.MinP); // the top token has weight 1, so min-p is an absolute floor
        float u = Philox.Uniform(row.Seed, row.Sequence, row.Step);
        float total = Canonical.Sum(x);
        float drawTarget = Mul(u, total);
        if (tracing)
            (trace[SamplingTrace.Total], trace[SamplingTrace.Target]) = (total, drawTarget);
        if (!(total > drawTarget))
            return LastPositive(x);
        int token = InverseCdf(x, drawTarget);
        if (tracing)
            (trace[SamplingTrace.PrefixBefore], trace[SamplingTrace.PrefixThrough]) = (Canonical.Sum(x[..token]), Canonical.Sum(x[..(token + 1)]));
        return token;
    }

    /// <summary>transformers' and llama.cpp's repetition penalty: divide positive logits, multiply the others.</summary>
    public static float Penalize(float logit, float penalty) => logit > 0f ? Div(logit, penalty) : Mul(logit, penalty);

    /// <summary>
    /// The lowest index of the largest value; NaN is never chosen (a row of only NaN gives the last
    /// index). ±0 compare equal, so the lower index wins between them.
    /// </summary>
    public static int Argmax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++)
            if (x[i] > x[best] || float.IsNaN(x[best]))
                best = i;
        return best;
    }

    /// <summary>
    /// A 32-bit key whose signed order is the numeric order of non-NaN floats: sign and magnitude
    /// bits turned into two's complement, so −0 and +0 share key 0 (they compare equal, and top-k
    /// must keep both when one is kept). No non-NaN value has key <see cref="int.MinValue"/>.
    /// </summary>
    public static int OrderKey(float value)
    {
        int bits = (int)Interop.FloatAsInt(value);
        return bits < 0 ? -(bits & int.MaxValue) : bits;
    }

    /// <summary>
    /// The k-th largest key among the non-NaN values, counting repeated values (transformers'
    /// <c>topk(x, k).values[-1]</c>): the largest key t with count(key ≥ t) ≥ k, found by bisection
    /// over all 2^32 keys. With fewer than k non-NaN values it is <see cref="int.MinValue"/>.
    /// </summary>
    static int KthLargestKey(ReadOnlySpan<float> x, int k)
    {
        long low = int.MinValue, high = (long)int.MaxValue + 1; // count(≥ low) ≥ k, count(≥ high) < k
        while (high - low > 1)
        {
            long middle = (low + high) >> 1;
            if (CountAtOrAbove(x, (int)middle) >= k)
                low = middle;
            else
                high = middle;
        }
        return (int)low;
    }

    /// <summary>
    /// transformers' top-k: every value below the k-th largest becomes −inf, so all values tied
    /// with the k-th largest stay (more than k tokens may remain). NaN never stays: the outcome must
    /// not depend on NaN payloads, which differ between devices.
    /// </summary>
    static void KeepAtOrAboveKey(Span<float> x, int threshold)
    {
        for (int i = 0; i < x.Length; i++)
            if (float.IsNaN(x[i]) || OrderKey(x[i]) < threshold)
                x[i] = float.NegativeInfinity;
    }

    public static int CountAtOrAbove(ReadOnlySpan<float> x, int key)
    {
        int count = 0;
        foreach (float value in x)
            count += !float.IsNaN(value) && OrderKey(value) >= key ? 1 : 0;
        return count;
    }

    /// <summary>The bit pattern above every weight: weights are at most exp(0) = 1.</summary>
    internal const uint AboveOneBits = 0x3F800001;

    /// <summary>
    /// transformers' top-p keeps the smallest set of most likely tokens whose probability reaches p
    /// (the token that crosses p included; ties with the smallest kept weight kept too).
    /// In weights: the largest threshold τ in [0, 1] with Σ(e ≥ τ) ≥ target = p·Σe, by bisection
    /// over the bit patterns of τ (the masked sum shrinks as τ grows).
    /// </summary>
    static float TopPThreshold(ReadOnlySpan<float> e, float target)
    {
        uint low = 0, high = AboveOneBits; // mass(≥ low) ≥ target > mass(≥ high)
        var masked = new float[e.Length];
        while (high - low > 1)
        {
            uint middle = low + (high - low) / 2;
            float threshold = BitConverter.UInt32BitsToSingle(middle);
            for (int i = 0; i < e.Length; i++)
                masked[i] = e[i] >= threshold ? e[i] : 0f;
            if (Canonical.Sum(masked) >= target)
                low = middle;
            else
                high = middle;
        }
        return BitConverter.UInt32BitsToSingle(low);
    }

    static void KeepAtOrAbove(Span<float> e, float threshold)
    {
        for (int i = 0; i < e.Length; i++)
            if (!(e[i] >= threshold))
                e[i] = 0f;
    }

    /// <summary>The smallest index k whose canonical prefix sum Σ e[0..k] exceeds the target, which the total exceeds.</summary>
    static int InverseCdf(ReadOnlySpan<float> e, float target)
    {
        int low = -1, high = e.Length - 1; // prefix(low) ≤ target (low = −1: empty); answer in (low, high]
        while (high - low > 1)
        {
            int middle = low + (high - low) / 2;
            if (Canonical.Sum(e[..(middle + 1)]) > target)
                high = middle;
            else
                low = middle;
        }
        return high;
    }

    static int LastPositive(ReadOnlySpan<float> e)
    {
        for (int i = e.Length - 1; i >= 0; i--)
            if (e[i] > 0f)
                return i;
        return 0;
    }
}

public static partial class Sampling
{
    /// <summary>Warps per row on CUDA: integer counts and element-wise passes use all of them.</summary>
    public const int GpuWarps = 4;

    /// <summary>
    /// Ints per row in the parameter buffer the backends receive: temperature, top-p, min-p and
    /// penalty as bit patterns, then top-k, sequence, step, penalty offset, penalty count, seed low,
    /// seed high, drawable tokens.
    /// </summary>
    public const int ParameterInts = 12;

    // Candidates a top-k pass counts (an 8-way search: 11 passes over 32 key bits) and top-p
    // thresholds each warp sums per step (with four warps a 13-way search: 9 steps over 30 bits).
    const int KeyCandidates = 7;
    const int MassCandidatesPerWarp = 3;
    const int MaxMassCandidates = MassCandidatesPerWarp * GpuWarps;
    const int MaxThreads = GpuWarps * KernelContext.WarpSize;

    public static void PackParameters(ReadOnlySpan<SamplingRow> rows, Span<int> packed)
    {
        Shapes.Expect("sampling: parameters", packed.Length, (long)rows.Length * ParameterInts, $"{ParameterInts} per row");
        for (int r = 0; r < rows.Length; r++)
        {
            var row = rows[r];
            var p = packed.Slice(r * ParameterInts, ParameterInts);
            p[0] = BitConverter.SingleToInt32Bits(row.Temperature);
            p[1] = BitConverter.SingleToInt32Bits(row.TopP);
            p[2] = BitConverter.SingleToInt32Bits(row.MinP);
            p[3] = BitConverter.SingleToInt32Bits(row.RepetitionPenalty);
            p[4] = row.TopK;
            p[5] = row.Sequence;
            p[6] = row.Step;
            p[7] = row.PenaltyOffset;
            p[8] = row.PenaltyCount;
            p[9] = unchecked((int)(uint)row.Seed);
            p[10] = unchecked((int)(uint)(row.Seed >> 32));
            p[11] = row.DrawableTokens;
        }
    }

    /// <summary>Row <paramref name="row"/> of <see cref="PackParameters"/>'s output.</summary>
    public static SamplingRow Unpack(ReadOnlySpan<int> packed, int row)
    {
        var p = packed.Slice(row * ParameterInts, ParameterInts);
        return new SamplingRow(BitConverter.Int32BitsToSingle(p[0]), p[4], BitConverter.Int32BitsToSingle(p[1]),
            BitConverter.Int32BitsToSingle(p[2]), BitConverter.Int32BitsToSingle(p[3]), (uint)p[9] | ((ulong)(uint)p[10] << 32),
            p[5], p[6], p[7], p[8]) { DrawableTokens = p[11] };
    }

    public struct Args
    {
        public ArrayView<float> Logits;
        /// <summary>Work space, rows × vocabulary: the filtered logits, then the weights.</summary>
        public ArrayView<float> Weights;
        public ArrayView<int> Parameters;
        public ArrayView<int> Penalized;
        public ArrayView<int> Tokens;
        /// <summary><see cref="SamplingTrace.Slots"/> per row when <see cref="Tracing"/> is not 0.</summary>
        public ArrayView<float> Trace;
        /// <summary>Rows whose entry is not 0 are not drawn (their logits are not finite); their token is −1.</summary>
        public ArrayView<int> Skip;
        public int Vocabulary, Tracing, HasSkip;
    }

    /// <summary>
    /// One group per row, 1 to 4 warps (4 on CUDA; 1 on ILGPU's CPU accelerator, where every
    /// barrier costs milliseconds per thread). Element-wise passes, the argmax and top-k's exact
    /// integer counts spread the vocabulary over all threads (counts are exact, so their order is
    /// free). Canonical sums and maxima keep lane j of a warp on indices j, j+32, …; the 32 lane
    /// values go to shared memory and every thread folds them with the canonical tree
    /// (<see cref="StoredTree"/>), so each reduction costs one barrier and all threads hold the
    /// same bits. Top-p tests three thresholds per warp per pass; the inverse CDF runs on warp 0,
    /// extending its prefix-sum lanes as the bisection moves up.
    /// </summary>
    [GpuKernel]
    static void Kernel(Args a)
    {
        int thread = Group.IdxX;
        int threads = Group.DimX;
        int lane = Warp.LaneIdx;
        int warp = Warp.WarpIdx;
        int row = Grid.IdxX;
        if (a.HasSkip != 0 && a.Skip[row] != 0)
        {
            if (thread == 0)
                a.Tokens[row] = -1;
            return;
        }
        int p = row * ParameterInts;
        int drawable = a.Parameters[p + 11];
        int vocabulary = drawable > 0 ? drawable : a.Vocabulary;
        long rowStart = (long)row * a.Vocabulary;
        var logits = a.Logits.SubView(rowStart, vocabulary);
        var x = a.Weights.SubView(rowStart, vocabulary);
        float temperature = Interop.IntAsFloat((uint)a.Parameters[p]);
        float topP = Interop.IntAsFloat((uint)a.Parameters[p + 1]);
        float minP = Interop.IntAsFloat((uint)a.Parameters[p + 2]);
        float penalty = Interop.IntAsFloat((uint)a.Parameters[p + 3]);
        int topK = a.Parameters[p + 4];
        int penaltyOffset = a.Parameters[p + 7];
        int penaltyCount = a.Parameters[p + 8];
        bool tracing = a.Tracing != 0;
        long traceAt = (long)row * SamplingTrace.Slots;

        var counts = SharedMemory.Allocate<int>(3 * KeyCandidates);
        // Two buffers of lane values so a reduction never overwrites lanes another thread may still read.
        var lanes = SharedMemory.Allocate<float>(2 * MaxMassCandidates * Canonical.Lanes);
        var bestValues = SharedMemory.Allocate<float>(MaxThreads);
        var bestIndices = SharedMemory.Allocate<int>(MaxThreads);
        int buffer = 0;

        bool greedy = temperature == 0f;
        for (int i = thread; i < vocabulary; i += threads)
            x[i] = greedy ? logits[i] : Div(logits[i], temperature);
        if (penalty != 1f && penaltyCount > 0)
        {
            Group.Barrier();
            // Ids are distinct (validated), so no two threads write the same element.
            for (int j = thread; j < penaltyCount; j += threads)
            {
                int id = a.Penalized[penaltyOffset + j];
                if (id >= vocabulary)
                    continue;
                float penalized = Penalize(logits[id], penalty);
                x[id] = greedy ? penalized : Div(penalized, temperature);
            }
        }
        Group.Barrier();
        if (greedy)
        {
            GroupArgmax(x, vocabulary, thread, threads, bestValues, bestIndices, a.Tokens, row);
            return;
        }

        if (topK > 0 && topK < vocabulary)
        {
            int threshold = GroupKthLargestKey(x, vocabulary, topK, thread, threads, counts);
            if (tracing && thread == 0)
                a.Trace[traceAt + SamplingTrace.TopKKey] = Interop.IntAsFloat((uint)threshold);
            for (int i = thread; i < vocabulary; i += threads)
            {
                float v = x[i];
                if (float.IsNaN(v) || OrderKey(v) < threshold)
                    x[i] = float.NegativeInfinity;
            }
            Group.Barrier();
        }

        var maxLanes = lanes.SubView(buffer * MaxMassCandidates * Canonical.Lanes, Canonical.Lanes);
        buffer ^= 1;
        if (warp == 0)
            maxLanes[lane] = LaneMax(x, vocabulary, lane);
        Group.Barrier();
        float max = StoredTree.Max(maxLanes);
        if (tracing && thread == 0)
            a.Trace[traceAt + SamplingTrace.Max] = max;
        if (!(max > float.NegativeInfinity))
        {
            GroupArgmax(x, vocabulary, thread, threads, bestValues, bestIndices, a.Tokens, row);
            return;
        }
        for (int i = thread; i < vocabulary; i += threads)
            x[i] = CanonicalMath.Exp(Sub(x[i], max));
        Group.Barrier();

        bool topPActive = topP < 1f;
        bool minPActive = minP > 0f;
        if (topPActive || minPActive)
        {
            float tau = 0f;
            if (topPActive)
            {
                var totalLanes = lanes.SubView(buffer * MaxMassCandidates * Canonical.Lanes, Canonical.Lanes);
                buffer ^= 1;
                if (warp == 0)
                    totalLanes[lane] = LaneSum(x, vocabulary, lane);
                Group.Barrier();
                float target = Mul(topP, StoredTree.Sum(totalLanes));
                tau = GroupTopPThreshold(x, vocabulary, target, lane, warp, threads / Canonical.Lanes, lanes, ref buffer);
                if (tracing && thread == 0)
                {
                    a.Trace[traceAt + SamplingTrace.TopPTarget] = target;
                    a.Trace[traceAt + SamplingTrace.Tau] = tau;
                }
            }
            for (int i = thread; i < vocabulary; i += threads)
            {
                float e = x[i];
                if ((topPActive && !(e >= tau)) || (minPActive && !(e >= minP)))
                    x[i] = 0f;
            }
            Group.Barrier();
        }

        if (warp != 0)
            return;
        // From here on only warp 0 runs; warp barriers order its shared-memory exchanges.
        var sumLanes = lanes.SubView(buffer * MaxMassCandidates * Canonical.Lanes, Canonical.Lanes);
        buffer ^= 1;
        sumLanes[lane] = LaneSum(x, vocabulary, lane);
        Warp.Barrier();
        float total = StoredTree.Sum(sumLanes);
        ulong seed = (uint)a.Parameters[p + 9] | ((ulong)(uint)a.Parameters[p + 10] << 32);
        float u = Philox.Uniform(seed, a.Parameters[p + 5], a.Parameters[p + 6]);
        float drawTarget = Mul(u, total);
        if (tracing && lane == 0)
        {
            a.Trace[traceAt + SamplingTrace.Total] = total;
            a.Trace[traceAt + SamplingTrace.Target] = drawTarget;
        }
        if (total > drawTarget)
        {
            int token = WarpInverseCdf(x, vocabulary, lane, drawTarget, lanes, buffer, tracing ? a.Trace.SubView(traceAt, SamplingTrace.Slots) : a.Trace, tracing);
            if (lane == 0)
                a.Tokens[row] = token;
        }
        else
            WarpLastPositive(x, vocabulary, lane, bestIndices, a.Tokens, row);
    }

    /// <summary>Does (value, index) beat (bestValue, bestIndex) for the lowest-index argmax? Index −1 is "none yet".</summary>
    internal static bool Beats(float value, int index, float bestValue, int bestIndex) =>
        index >= 0 && (bestIndex < 0 || value > bestValue || (value == bestValue && index < bestIndex));

    /// <summary>
    /// <see cref="Argmax"/> over the group, written to tokens[row]: a selection, not arithmetic, so
    /// any order gives the same index. Each thread keeps the first best of its own (increasing)
    /// indices; thread 0 picks among the threads.
    /// </summary>
    static void GroupArgmax(ArrayView<float> x, int n, int thread, int threads, ArrayView<float> values,
        ArrayView<int> indices, ArrayView<int> tokens, int row)
    {
        float best = 0f;
        int at = -1;
        for (int i = thread; i < n; i += threads)
        {
            float v = x[i];
            if (!float.IsNaN(v) && (at < 0 || v > best))
            {
                best = v;
                at = i;
            }
        }
        values[thread] = best;
        indices[thread] = at;
        Group.Barrier();
        if (thread != 0)
            return;
        for (int t = 1; t < threads; t++)
            if (Beats(values[t], indices[t], best, at))
            {
                best = values[t];
                at = indices[t];
            }
        tokens[row] = at < 0 ? n - 1 : at;
    }

    /// <summary>
    /// <see cref="KthLargestKey"/> by an eight-way search: each pass counts seven candidate keys at
    /// once (11 passes over the row instead of 32). The counts go through triple-buffered shared
    /// counters, so each pass needs one barrier.
    /// </summary>
    static int GroupKthLargestKey(ArrayView<float> x, int n, int k, int thread, int threads, ArrayView<int> counts)
    {
        if (thread < 3 * KeyCandidates)
            counts[thread] = 0;
        Group.Barrier();
        long low = int.MinValue, high = (long)int.MaxValue + 1; // count(≥ low) ≥ k, count(≥ high) < k
        int pass = 0;
        while (high - low > 1)
        {
            long span = high - low;
            long c1 = low + span / 8, c2 = low + span * 2 / 8, c3 = low + span * 3 / 8, c4 = low + span * 4 / 8,
                c5 = low + span * 5 / 8, c6 = low + span * 6 / 8, c7 = low + span * 7 / 8;
            int n1 = 0, n2 = 0, n3 = 0, n4 = 0, n5 = 0, n6 = 0, n7 = 0;
            for (int i = thread; i < n; i += threads)
            {
                float v = x[i];
                if (float.IsNaN(v))
                    continue;
                int key = OrderKey(v);
                n1 += key >= c1 ? 1 : 0;
                n2 += key >= c2 ? 1 : 0;
                n3 += key >= c3 ? 1 : 0;
                n4 += key >= c4 ? 1 : 0;
                n5 += key >= c5 ? 1 : 0;
                n6 += key >= c6 ? 1 : 0;
                n7 += key >= c7 ? 1 : 0;
            }
            int at = pass % 3 * KeyCandidates;
            Atomic.Add(ref counts[at], n1);
            Atomic.Add(ref counts[at + 1], n2);
            Atomic.Add(ref counts[at + 2], n3);
            Atomic.Add(ref counts[at + 3], n4);
            Atomic.Add(ref counts[at + 4], n5);
            Atomic.Add(ref counts[at + 5], n6);
            Atomic.Add(ref counts[at + 6], n7);
            // The next pass's counters were last read two passes ago, before the previous barrier.
            int next = (pass + 1) % 3 * KeyCandidates;
            if (thread < KeyCandidates)
                counts[next + thread] = 0;
            Group.Barrier();
            // Counts fall as the candidate rises: the predicate reads true…true false…false.
            long newLow = low, newHigh = high;
            for (int q = 0; q < KeyCandidates; q++)
            {
                long candidate = low + span * (q + 1) / 8;
                if (counts[at + q] >= k)
                    newLow = candidate;
                else if (candidate < newHigh)
                    newHigh = candidate;
            }
            low = newLow;
            high = newHigh;
            pass++;
        }
        return (int)low;
    }

    /// <summary>
    /// <see cref="TopPThreshold"/> by a multi-way search: warp w sums the masked weights for three
    /// candidate thresholds at once (three lane accumulators), the lanes go to shared memory, and
    /// every thread folds every candidate with the canonical tree.
    /// </summary>
    static float GroupTopPThreshold(ArrayView<float> e, int n, float target, int lane, int warp, int warps,
        ArrayView<float> lanes, ref int buffer)
    {
        int candidates = MassCandidatesPerWarp * warps;
        long low = 0, high = AboveOneBits; // mass(≥ low) ≥ target > mass(≥ high)
        while (high - low > 1)
        {
            long span = high - low;
            var stepLanes = lanes.SubView(buffer * MaxMassCandidates * Canonical.Lanes, MaxMassCandidates * Canonical.Lanes);
            buffer ^= 1;
            int first = warp * MassCandidatesPerWarp;
            float t0 = Interop.IntAsFloat((uint)(low + span * (first + 1) / (candidates + 1)));
            float t1 = Interop.IntAsFloat((uint)(low + span * (first + 2) / (candidates + 1)));
            float t2 = Interop.IntAsFloat((uint)(low + span * (first + 3) / (candidates + 1)));
            float m0 = 0f, m1 = 0f, m2 = 0f;
            for (int i = lane; i < n; i += Canonical.Lanes)
            {
                float v = e[i];
                m0 = Add(m0, v >= t0 ? v : 0f);
                m1 = Add(m1, v >= t1 ? v : 0f);
                m2 = Add(m2, v >= t2 ? v : 0f);
            }
            stepLanes[first * Canonical.Lanes + lane] = m0;
            stepLanes[(first + 1) * Canonical.Lanes + lane] = m1;
            stepLanes[(first + 2) * Canonical.Lanes + lane] = m2;
            Group.Barrier();
            // Masses fall as the threshold rises: the predicate reads true…true false…false.
            long newLow = low, newHigh = high;
            for (int q = 0; q < candidates; q++)
            {
                long candidate = low + span * (q + 1) / (candidates + 1);
                if (StoredTree.Sum(stepLanes.SubView(q * Canonical.Lanes, Canonical.Lanes)) >= target)
                    newLow = candidate;
                else if (candidate < newHigh)
                    newHigh = candidate;
            }
            low = newLow;
            high = newHigh;
        }
        return Interop.IntAsFloat((uint)low);
    }

    // Lane j of a canonical reduction over x[0..n): terms j, j+32, … in increasing order. Four loads
    // are issued before the four dependent additions so a warp keeps several loads in flight.
    static float LaneSum(ArrayView<float> x, int n, int lane)
    {
        float acc = 0f;
        int i = lane;
        for (; i + 3 * Canonical.Lanes < n; i += 4 * Canonical.Lanes)
        {
            float t0 = x[i], t1 = x[i + Canonical.Lanes], t2 = x[i + 2 * Canonical.Lanes], t3 = x[i + 3 * Canonical.Lanes];
            acc = Add(Add(Add(Add(acc, t0), t1), t2), t3);
        }
        for (; i < n; i += Canonical.Lanes)
            acc = Add(acc, x[i]);
        return acc;
    }

    static float LaneMax(ArrayView<float> x, int n, int lane)
    {
        float acc = float.NegativeInfinity;
        for (int i = lane; i < n; i += Canonical.Lanes)
            acc = CanonicalMath.Max(acc, x[i]);
        return acc;
    }

    /// <summary>
    /// <see cref="InverseCdf"/> on warp 0: bisection over the prefix length, with the 32 lane sums
    /// of the lower bound kept, so each step only adds the terms between the lower bound and the
    /// midpoint (about one pass over the row in all) before the tree. When tracing, the prefix sums
    /// before and through the drawn token go to <paramref name="trace"/> (this row's slots).
    /// </summary>
    static int WarpInverseCdf(ArrayView<float> e, int n, int lane, float target, ArrayView<float> lanes, int buffer,
        ArrayView<float> trace, bool tracing)
    {
        int low = 0, high = n; // prefix(low) ≤ target < prefix(high)
        float kept = 0f;
        while (high - low > 1)
        {
            int middle = low + (high - low) / 2;
            float extended = kept;
            for (int i = low + ((lane - low) & (Canonical.Lanes - 1)); i < middle; i += Canonical.Lanes)
                extended = Add(extended, e[i]);
            var stepLanes = lanes.SubView(buffer * MaxMassCandidates * Canonical.Lanes, Canonical.Lanes);
            buffer ^= 1;
            stepLanes[lane] = extended;
            Warp.Barrier();
            if (StoredTree.Sum(stepLanes) > target)
                high = middle;
            else
            {
                low = middle;
                kept = extended;
            }
        }
        if (tracing)
        {
            // The free buffer's first two lane rows: the lanes of prefix(low), and with e[low] (the
            // drawn token, which lane low mod 32 owns) added.
            var before = lanes.SubView(buffer * MaxMassCandidates * Canonical.Lanes, Canonical.Lanes);
            var through = lanes.SubView(buffer * MaxMassCandidates * Canonical.Lanes + Canonical.Lanes, Canonical.Lanes);
            before[lane] = kept;
            through[lane] = lane == (low & (Canonical.Lanes - 1)) ? Add(kept, e[low]) : kept;
            Warp.Barrier();
            if (lane == 0)
            {
                trace[SamplingTrace.PrefixBefore] = StoredTree.Sum(before);
                trace[SamplingTrace.PrefixThrough] = StoredTree.Sum(through);
            }
        }
        return high - 1;
    }

    /// <summary>The last index with a positive weight (0 if none), written to tokens[row] by warp 0.</summary>
    static void WarpLastPositive(ArrayView<float> e, int n, int lane, ArrayView<int> cell, ArrayView<int> tokens, int row)
    {
        int last = -1;
        for (int i = lane; i < n; i += Canonical.Lanes)
            if (e[i] > 0f)
                last = i;
        cell[lane] = last;
        Warp.Barrier();
        if (lane != 0)
            return;
        for (int j = 1; j < Canonical.Lanes; j++)
            last = cell[j] > last ? cell[j] : last;
        tokens[row] = last < 0 ? 0 : last;
    }

    /// <summary>
    /// Launches one group per row: <see cref="GpuWarps"/> warps in the CUDA launch profile, one in the
    /// CPU profile (or <paramref name="warpsPerRow"/> when given; the result never depends on it).
    /// <paramref name="weights"/> is work space of at least rows × vocabulary values;
    /// <paramref name="parameters"/> holds <see cref="PackParameters"/>'s output. The rows must have
    /// been validated (<see cref="Validate"/>) against the penalized list. Rows whose entry in
    /// <paramref name="skip"/> (when given) is not 0 are not drawn: their token is −1.
    /// <paramref name="trace"/>, when given, receives <see cref="SamplingTrace.Slots"/> values per row.
    /// </summary>
    public static void Run(KernelLibrary library, ArrayView<float> logits, ArrayView<float> weights,
        ArrayView<int> parameters, ArrayView<int> penalized, ArrayView<int> tokens, int vocabulary, int rows,
        int warpsPerRow = 0, ArrayView<int> skip = default, ArrayView<float>? trace = null)
    {
        Shapes.Positive("sampling: vocabulary", vocabulary);
        Shapes.Positive("sampling: rows", rows);
        Shapes.Expect("sampling: logits", logits.Length, (long)rows * vocabulary, $"rows {rows} × vocabulary {vocabulary}");
        Shapes.ExpectAtLeast("sampling: weights", weights.Length, (long)rows * vocabulary, $"rows {rows} × vocabulary {vocabulary}");
        Shapes.ExpectAtLeast("sampling: parameters", parameters.Length, (long)rows * ParameterInts, $"{ParameterInts} per row");
        Shapes.ExpectAtLeast("sampling: tokens", tokens.Length, rows, "one per row");
        if (trace is { } traceView)
            Shapes.Expect("sampling: trace", traceView.Length, (long)rows * SamplingTrace.Slots, $"{SamplingTrace.Slots} per row, rows {rows}");
        bool skipping = skip.IsValid && skip.Length > 0;
        if (skipping)
            Shapes.ExpectAtLeast("sampling: skipped rows", skip.Length, rows, "one per row");
        if (warpsPerRow == 0)
            warpsPerRow = library.GpuShapes ? GpuWarps : 1;
        if (warpsPerRow < 1 || warpsPerRow > GpuWarps)
            throw new ArgumentOutOfRangeException(nameof(warpsPerRow), $"sampling: {warpsPerRow} warps per row; 1 to {GpuWarps} are supported");
        library.Get<Args>(Kernel)(new KernelConfig(rows, warpsPerRow * KernelContext.WarpSize), new Args
        {
            Logits = logits, Weights = weights, Parameters = parameters, Penalized = penalized, Tokens = tokens,
            Trace = trace ?? weights, Skip = skipping ? skip : tokens,
            Vocabulary = vocabulary, Tracing = trace.HasValue ? 1 : 0, HasSkip = skipping ? 1 : 0,
        });
    }
}

/// <summary>One output of <see cref="Philox"/>: four 32-bit words.</summary>
public struct PhiloxBlock
{
    public uint X0, X1, X2, X3;
}

/// <summary>
/// Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3",
/// SC 2011), the counter-based generator of Random123 and cuRAND: the same (key, counter) gives
/// the same numbers on every device, with no state to carry between steps. Checked against
/// Random123's known-answer vectors (tests/Kernels/SamplingTests.cs). Integer-only, so the same
/// code runs in GPU kernels.
/// </summary>
public static class Philox
{
    const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57;
    const uint W0 = 0x9E3779B9, W1 = 0xBB67AE85;

    public static PhiloxBlock Generate(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1)
    {
        for (int round = 0; round < 10; round++)
        {
            if (round > 0)
            {
                k0 += W0;
                k1 += W1;
            }
            ulong p0 = (ulong)M0 * c0;
            ulong p1 = (ulong)M1 * c2;
            uint hi0 = (uint)(p0 >> 32), lo0 = (uint)p0;
            uint hi1 = (uint)(p1 >> 32), lo1 = (uint)p1;
            uint n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
            c0 = n0;
            c1 = lo1;
            c2 = n2;
            c3 = lo0;
        }
        return new PhiloxBlock { X0 = c0, X1 = c1, X2 = c2, X3 = c3 };
    }

    /// <summary>
    /// A uniform number in [0, 1) with 24 random bits for (seed, sequence, step): key = seed,
    /// counter = (sequence, step, 0, 0), the top 24 bits of word 0 times 2^−24.
    /// </summary>
    public static float Uniform(ulong seed, int sequence, int step)
    {
        uint word = Generate((uint)sequence, (uint)step, 0, 0, (uint)seed, (uint)(seed >> 32)).X0;
        return Mul(word >> 8, 5.9604645e-08f); // exact: an integer below 2^24 times 2^−24
    }
}
