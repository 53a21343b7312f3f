namespace IlgpuLlm.Model.Evaluation;

/// <summary>
/// Log-softmax of f32 logits evaluated in double, for the figures that average many of them
/// (perplexity, KL divergence): the maximum is subtracted before exp so nothing overflows, the
/// exps are summed with Neumaier's compensation, and a token's negative log-likelihood is formed as
/// (max − x) + log Σ so a large logit does not cancel against the log-sum.
/// </summary>
public static class LogProbabilities
{
    /// <summary>The maximum logit and log Σ exp(x − max). NaN anywhere, or a +inf logit, gives NaN; all −inf gives −inf.</summary>
    public static (double Max, double LogSum) Normalizer(ReadOnlySpan<float> logits)
    {
        if (logits.IsEmpty)
            throw new ArgumentException("no logits");
        double max = double.NegativeInfinity;
        foreach (float x in logits)
        {
            if (float.IsNaN(x) || float.IsPositiveInfinity(x))
                return (double.NaN, double.NaN);
            if (x > max)
                max = x;
        }
        if (double.IsNegativeInfinity(max))
            return (max, double.NaN);
        double sum = 0, compensation = 0;
        foreach (float x in logits)
        {
            double term = Math.Exp(x - max);
            double next = sum + term;
            compensation += Math.Abs(sum) >= term ? (sum - next) + term : (term - next) + sum;
            sum = next;
        }
        return (max, Math.Log(sum + compensation));
    }

    /// <summary>−log softmax(logits)[token].</summary>
    public static double NegativeLogLikelihood(ReadOnlySpan<float> logits, int token)
    {
        if ((uint)token >= (uint)logits.Length)
            throw new ArgumentOutOfRangeException(nameof(token), $"token {token} is outside the {logits.Length} logits");
        var (max, logSum) = Normalizer(logits);
        return (max - logits[token]) + logSum;
    }

    /// <summary>log softmax(logits) into <paramref name="result"/>.</summary>
    public static void LogSoftmax(ReadOnlySpan<float> logits, Span<double> result)
    {
        if (result.Length != logits.Length)
            throw new ArgumentException($"{result.Length} results for {logits.Length} logits");
        var (max, logSum) = Normalizer(logits);
        for (int i = 0; i < logits.Length; i++)
            result[i] = (logits[i] - max) - logSum;
    }

    /// <summary>The index of the largest logit, the lowest among equal ones (greedy decoding's rule); NaN is never chosen.</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = -1;
        for (int i = 0; i < logits.Length; i++)
            if (!float.IsNaN(logits[i]) && (best < 0 || logits[i] > logits[best]))
                best = i;
        return best;
    }
}
