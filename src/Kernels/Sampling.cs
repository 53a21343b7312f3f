using static IlgpuLlm.Kernels.ExactMath;

namespace IlgpuLlm.Kernels;

/// <summary>
/// How one sequence draws its next token. Temperature 0 is greedy. The random number comes from
/// <see cref="Philox"/> keyed by (Seed, Sequence, Step), so a draw never depends on which batch
/// the sequence ran in. PenaltyOffset/PenaltyCount select this row's previously seen token ids in
/// the penalized-token list.
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

    public void Validate(int row, int vocabulary, ReadOnlySpan<int> penalizedTokens)
    {
        string where = $"sampling row {row}";
        if (!(Temperature >= 0f) || float.IsInfinity(Temperature))
            throw new ArgumentException($"{where}: temperature {Temperature} must be 0 (greedy) or positive and finite");
        if (TopK < 0)
            throw new ArgumentException($"{where}: top-k {TopK} must be 0 (off) or positive");
        if (!(TopP > 0f && TopP <= 1f))
            throw new ArgumentException($"{where}: top-p {TopP} must be in (0, 1] (1 is off)");
        if (!(MinP >= 0f && MinP <= 1f))
            throw new ArgumentException($"{where}: min-p {MinP} must be in [0, 1] (0 is off)");
        if (!(RepetitionPenalty > 0f) || float.IsInfinity(RepetitionPenalty))
            throw new ArgumentException($"{where}: repetition penalty {RepetitionPenalty} must be positive and finite (1 is off)");
        if (Sequence < 0 || Step < 0)
            throw new ArgumentException($"{where}: sequence {Sequence} and step {Step} must not be negative");
        if (PenaltyOffset < 0 || PenaltyCount < 0 || (long)PenaltyOffset + PenaltyCount > penalizedTokens.Length)
            throw new ArgumentOutOfRangeException(nameof(penalizedTokens),
                $"{where}: penalized tokens [{PenaltyOffset}, {(long)PenaltyOffset + PenaltyCount}) lie outside the list of {penalizedTokens.Length}");
        var seen = new HashSet<int>();
        foreach (int id in penalizedTokens.Slice(PenaltyOffset, PenaltyCount))
        {
            if ((uint)id >= (uint)vocabulary)
                throw new ArgumentOutOfRangeException(nameof(penalizedTokens), $"{where}: penalized token {id} is outside the vocabulary of {vocabulary}");
            // A token is penalized once however often it occurred (llama.cpp and transformers alike).
            if (!seen.Add(id))
                throw new ArgumentException($"{where}: penalized token {id} is listed twice; list each token once");
        }
    }
}

/// <summary>
/// Draws tokens. The order of the filters follows transformers' logits processors: repetition
/// penalty, temperature, top-k, top-p, min-p; then one uniform number picks a token by inverse CDF.
/// Nothing is sorted: every threshold is found by bisection over float bit patterns with exact
/// integer counts or canonical sums, and the CDF is the canonical sum of a prefix, which is
/// monotone in the prefix length (rounding is monotone), so the result is the same on every
/// backend. Weights are kept unnormalised (e = exp(x − max), so the top token has e = 1).
/// </summary>
public static partial class Sampling
{
    public static void Reference(ReadOnlySpan<float> logits, int vocabulary, ReadOnlySpan<SamplingRow> rows,
        ReadOnlySpan<int> penalizedTokens, Span<int> tokens)
    {
        Validate(logits.Length, vocabulary, rows, penalizedTokens, tokens.Length);
        var work = new float[vocabulary];
        for (int r = 0; r < rows.Length; r++)
        {
            logits.Slice(r * vocabulary, vocabulary).CopyTo(work);
            tokens[r] = SampleRow(work, rows[r], penalizedTokens.Slice(rows[r].PenaltyOffset, rows[r].PenaltyCount));
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

    /// <summary>One row; <paramref name="x"/> is overwritten with the filtered weights.</summary>
    static int SampleRow(Span<float> x, SamplingRow row, ReadOnlySpan<int> penalized)
    {
        if (row.RepetitionPenalty != 1f)
            foreach (int id in penalized)
                x[id] = Penalize(x[id], row.RepetitionPenalty);
        if (row.Temperature == 0f)
            return Argmax(x);
        for (int i = 0; i < x.Length; i++)
            x[i] = Div(x[i], row.Temperature);
        if (row.TopK > 0 && row.TopK < x.Length)
            KeepTopK(x, row.TopK);
        float max = Canonical.Max(x);
        if (!(max > float.NegativeInfinity))
            return Argmax(x);
        for (int i = 0; i < x.Length; i++)
            x[i] = CanonicalMath.Exp(Sub(x[i], max));
        if (row.TopP < 1f)
            KeepAtOrAbove(x, TopPThreshold(x, row.TopP));
        if (row.MinP > 0f)
            KeepAtOrAbove(x, row.MinP); // the top token has weight 1, so min-p is an absolute floor
        float u = Philox.Uniform(row.Seed, row.Sequence, row.Step);
        return InverseCdf(x, Mul(u, Canonical.Sum(x)));
    }

    /// <summary>transformers' and llama.cpp's repetition penalty: divide positive logits, multiply negative ones.</summary>
    public static float Penalize(float logit, float penalty) => logit > 0f ? Div(logit, penalty) : Mul(logit, penalty);

    /// <summary>The lowest index of the largest value; NaN is never chosen.</summary>
    public static int Argmax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++)
            if (x[i] > x[best] || float.IsNaN(x[best]))
                best = i;
        return best;
    }

    /// <summary>A 32-bit key whose signed order is the numeric order of non-NaN floats.</summary>
    public static int OrderKey(float value)
    {
        int bits = BitConverter.SingleToInt32Bits(value);
        return bits < 0 ? bits ^ int.MaxValue : bits;
    }

    /// <summary>
    /// Keeps the k largest values (ties at the k-th value go to the lowest ids) and sets the rest
    /// to −inf. The k-th largest key is the largest key t with count(key ≥ t) ≥ k, found by
    /// bisection over all 2^32 keys.
    /// </summary>
    static void KeepTopK(Span<float> x, int k)
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
        int threshold = (int)low;
        int aboveThreshold = CountAtOrAbove(x, threshold) - CountEqual(x, threshold);
        int tiesToKeep = k - aboveThreshold;
        for (int i = 0; i < x.Length; i++)
        {
            int key = OrderKey(x[i]);
            if (key > threshold && !float.IsNaN(x[i]))
                continue;
            if (key == threshold && tiesToKeep > 0)
            {
                tiesToKeep--;
                continue;
            }
            x[i] = float.NegativeInfinity;
        }
    }

    public static int CountAtOrAbove(ReadOnlySpan<float> x, int key)
    {
        int count = 0;
        foreach (float value in x)
            count += !float.IsNaN(value) && OrderKey(value) >= key ? 1 : 0;
        return count;
    }

    static int CountEqual(ReadOnlySpan<float> x, int key)
    {
        int count = 0;
        foreach (float value in x)
            count += !float.IsNaN(value) && OrderKey(value) == key ? 1 : 0;
        return count;
    }

    /// <summary>
    /// transformers' top-p keeps the smallest set of most likely tokens whose probability reaches p.
    /// In weights: the largest threshold τ in [0, 1] with Σ(e ≥ τ) ≥ p·Σe, by bisection over the
    /// bit patterns of τ (the masked sum shrinks as τ grows).
    /// </summary>
    static float TopPThreshold(ReadOnlySpan<float> e, float p)
    {
        float target = Mul(p, Canonical.Sum(e));
        uint low = 0, high = BitConverter.SingleToUInt32Bits(1f) + 1; // mass(≥ low) ≥ target > mass(≥ high)
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

    /// <summary>
    /// The smallest index k whose canonical prefix sum Σ e[0..k] exceeds the target; if rounding
    /// leaves none, the last index with weight.
    /// </summary>
    static int InverseCdf(ReadOnlySpan<float> e, float target)
    {
        int low = -1, high = e.Length - 1; // prefix(low) ≤ target (low = −1: empty); answer in (low, high]
        if (!(Canonical.Sum(e) > target))
            return LastPositive(e);
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

/// <summary>
/// Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3",
/// SC 2011), the counter-based generator of Random123 and cuRAND: the same (key, counter) gives
/// the same numbers on every device, with no state to carry between steps.
/// </summary>
public static class Philox
{
    const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57;
    const uint W0 = 0x9E3779B9, W1 = 0xBB67AE85;

    public static (uint, uint, uint, uint) Generate(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1)
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
            (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0);
        }
        return (c0, c1, c2, c3);
    }

    /// <summary>A uniform number in [0, 1) with 24 random bits, for (seed, sequence, step).</summary>
    public static float Uniform(ulong seed, int sequence, int step)
    {
        var (x, _, _, _) = Generate((uint)sequence, (uint)step, 0, 0, (uint)seed, (uint)(seed >> 32));
        return Mul((x >> 8), 5.9604645e-08f); // exact: an integer below 2^24 times 2^−24
    }
}
