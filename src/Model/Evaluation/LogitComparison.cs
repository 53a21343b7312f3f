namespace IlgpuLlm.Model.Evaluation;

/// <summary>How one position's logits differ from a reference's.</summary>
public sealed record PositionComparison(int Position, double MaxAbsDiff, double MeanAbsDiff, double KlDivergence,
    int ReferenceTop1, int ModelTop1)
{
    public bool Top1Agrees => ReferenceTop1 == ModelTop1;
}

/// <summary>The comparison over all positions: worst and mean differences, KL, and top-1 agreement.</summary>
public sealed record ComparisonSummary(int Positions, double MaxAbsDiff, double MeanAbsDiff, double MeanKlDivergence,
    double MaxKlDivergence, int Top1Agreements)
{
    public double Top1Rate => Positions == 0 ? 0 : (double)Top1Agreements / Positions;
}

/// <summary>
/// Compares logits with a reference (another implementation's dump): absolute differences of the
/// raw logits, the KL divergence KL(reference ‖ model) = Σ p_ref · (log p_ref − log p_model) of
/// their softmaxes in double (terms where p_ref is 0 contribute 0), and whether the argmax agrees.
/// </summary>
public static class LogitComparison
{
    public static IReadOnlyList<PositionComparison> Compare(ReadOnlySpan<float> reference, ReadOnlySpan<float> model, int vocabulary)
    {
        if (vocabulary < 1)
            throw new ArgumentOutOfRangeException(nameof(vocabulary), $"vocabulary {vocabulary} must be positive");
        if (reference.Length != model.Length || reference.Length % vocabulary != 0)
            throw new ArgumentException(
                $"the reference holds {reference.Length} values and the model {model.Length}; both must be whole rows of {vocabulary}");
        var result = new PositionComparison[reference.Length / vocabulary];
        var referenceLog = new double[vocabulary];
        var modelLog = new double[vocabulary];
        for (int p = 0; p < result.Length; p++)
            result[p] = ComparePosition(p, reference.Slice(p * vocabulary, vocabulary), model.Slice(p * vocabulary, vocabulary),
                referenceLog, modelLog);
        return result;
    }

    static PositionComparison ComparePosition(int position, ReadOnlySpan<float> reference, ReadOnlySpan<float> model,
        double[] referenceLog, double[] modelLog)
    {
        double max = 0, sum = 0;
        for (int i = 0; i < reference.Length; i++)
        {
            double diff = Math.Abs((double)reference[i] - model[i]);
            if (double.IsNaN(diff))
                max = double.NaN;
            else if (diff > max)
                max = diff;
            sum += diff;
        }
        LogProbabilities.LogSoftmax(reference, referenceLog);
        LogProbabilities.LogSoftmax(model, modelLog);
        double kl = 0, compensation = 0;
        for (int i = 0; i < reference.Length; i++)
        {
            double p = Math.Exp(referenceLog[i]);
            if (p == 0 && !double.IsNaN(modelLog[i]))
                continue;
            double term = p * (referenceLog[i] - modelLog[i]);
            double next = kl + term;
            compensation += Math.Abs(kl) >= Math.Abs(term) ? (kl - next) + term : (term - next) + kl;
            kl = next;
        }
        // An infinite term (p_ref > 0 where the model gives probability 0) makes the compensation NaN.
        double divergence = double.IsFinite(kl) ? kl + compensation : kl;
        return new PositionComparison(position, max, sum / reference.Length, divergence,
            LogProbabilities.ArgMax(reference), LogProbabilities.ArgMax(model));
    }

    public static ComparisonSummary Summarize(IReadOnlyList<PositionComparison> positions)
    {
        if (positions.Count == 0)
            return new ComparisonSummary(0, 0, 0, 0, 0, 0);
        return new ComparisonSummary(
            positions.Count,
            positions.Any(p => double.IsNaN(p.MaxAbsDiff)) ? double.NaN : positions.Max(p => p.MaxAbsDiff),
            positions.Average(p => p.MeanAbsDiff),
            positions.Average(p => p.KlDivergence),
            positions.Any(p => double.IsNaN(p.KlDivergence)) ? double.NaN : positions.Max(p => p.KlDivergence),
            positions.Count(p => p.Top1Agrees));
    }
}
