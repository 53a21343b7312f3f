using IlgpuLlm.Model.Evaluation;

namespace IlgpuLlm;

/// <summary>A token and its log-probability under the model.</summary>
public readonly record struct TokenAlternative(int Token, double LogProbability);

/// <summary>
/// The log-probability of a drawn token and of the most likely tokens at that step: log softmax of
/// the model's logits (before penalty, temperature and the filters) over the ids that may be
/// drawn, evaluated on the host in double (<see cref="LogProbabilities.Normalizer"/>: a fixed
/// order), from logits whose bits do not depend on the batch — so they too are the same alone or
/// beside other requests.
/// </summary>
public sealed record TokenLogProbability(int Token, double LogProbability, IReadOnlyList<TokenAlternative> Top);

/// <summary>Keeps the logits of a sequence's draw until its token is known, then gives the token's log-probabilities.</summary>
internal sealed class LogProbabilityRecorder(int top, int drawable)
{
    float[]? logits;

    public void See(float[] drawLogits) => logits = drawLogits;

    public TokenLogProbability? Of(int token)
    {
        if (logits is not { } all)
            return null;
        logits = null;
        var row = all.AsSpan(0, Math.Min(drawable, all.Length));
        var (max, logSum) = LogProbabilities.Normalizer(row);
        int length = row.Length;
        double Of(int id) => (all[id] - max) - logSum;
        // The most likely ids, the lower id first among equal logits (greedy decoding's order).
        var best = new List<int>(top + 1);
        for (int id = 0; id < row.Length && top > 0; id++)
        {
            if (best.Count == top && !(row[id] > row[best[^1]]))
                continue;
            int at = best.Count;
            while (at > 0 && row[id] > row[best[at - 1]])
                at--;
            best.Insert(at, id);
            if (best.Count > top)
                best.RemoveAt(top);
        }
        return new TokenLogProbability(token, (uint)token < (uint)length ? Of(token) : double.NegativeInfinity,
            best.Select(id => new TokenAlternative(id, Of(id))).ToArray());
    }
}
