using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Runtime.Generation;

namespace IlgpuLlm.Model.Evaluation;

/// <summary>Where a perplexity run stands after a window: running figures over every window so far.</summary>
public sealed record PerplexityProgress(int Window, int Windows, long Scored, double Perplexity, double StandardError, double WindowPerplexity);

/// <summary>
/// Perplexity over the scored tokens, with llama.cpp's error estimate: the standard error of the
/// mean negative log-likelihood, sqrt((E[nll²] − E[nll]²) / (n − 1)), scaled by the perplexity
/// (the derivative of exp).
/// </summary>
public sealed record PerplexityResult(int Windows, int WindowLength, long Scored, double MeanNegativeLogLikelihood, double Perplexity,
    double StandardError);

/// <summary>
/// llama.cpp's <c>llama-perplexity</c> definition: the text is tokenized once (with BOS where the
/// vocabulary adds one) and cut into non-overlapping windows of c tokens, the remainder dropped.
/// Each window starts a fresh sequence whose first token is replaced by BOS (when the vocabulary
/// adds one); its first c/2 tokens are context only, and the logits at positions c/2 … c−2
/// score the tokens after them, c − c/2 − 1 per window.
/// </summary>
public static class Perplexity
{
    public static int FirstScoredPosition(int window) => window / 2;

    public static int ScoredPerWindow(int window) => window - FirstScoredPosition(window) - 1;

    /// <param name="bos">The BOS id put at each window's start, or null to feed the window as it is.</param>
    /// <param name="maxWindows">At most this many windows (llama.cpp's --chunks); 0 for all.</param>
    public static PerplexityResult Evaluate(ILanguageModel model, IReadOnlyList<int> tokens, int window, int? bos,
        int maxWindows = 0, Action<PerplexityProgress>? progress = null)
    {
        if (window < 3)
            throw new ArgumentOutOfRangeException(nameof(window), $"a window of {window} tokens scores none; use at least 3");
        if (window > model.ContextLength)
            throw new ArgumentException($"a window of {window} tokens needs more positions than the context holds ({model.ContextLength})");
        if (maxWindows < 0)
            throw new ArgumentOutOfRangeException(nameof(maxWindows), $"window limit {maxWindows} must not be negative");
        int windows = tokens.Count / window;
        if (maxWindows > 0)
            windows = Math.Min(windows, maxWindows);
        if (windows == 0)
            throw new ArgumentException($"the text has {tokens.Count} tokens, fewer than one window of {window}");

        int first = FirstScoredPosition(window), vocabulary = model.VocabSize;
        double nll = 0, nll2 = 0;
        long count = 0;
        var ids = new int[window];
        for (int w = 0; w < windows; w++)
        {
            for (int i = 0; i < window; i++)
                ids[i] = tokens[w * window + i];
            if (bos is int b)
                ids[0] = b;
            double windowNll = 0;
            for (int start = 0; start < window; start += model.MaxRowsPerForward)
            {
                int rows = Math.Min(model.MaxRowsPerForward, window - start);
                var batch = new TokenRow[rows];
                for (int i = 0; i < rows; i++)
                    batch[i] = new TokenRow(0, start + i, ids[start + i]);
                // Logits only where they score a token: positions first … window − 2.
                var scored = Enumerable.Range(0, rows).Where(i => start + i >= first && start + i <= window - 2).ToArray();
                var result = model.Forward(batch, scored);
                if (result.Problems.Count > 0)
                    throw new InvalidOperationException(
                        $"window {w + 1}, position {start + result.Problems[0].Row}: {result.Problems[0].Message}");
                if (scored.Length == 0)
                    continue;
                var logits = model.Backend.DownloadFloats(result.Logits);
                for (int k = 0; k < scored.Length; k++)
                {
                    int position = start + scored[k];
                    // The token after the position, from the text (index 0 may have become BOS; it is never scored).
                    double v = LogProbabilities.NegativeLogLikelihood(logits.AsSpan(k * vocabulary, vocabulary), ids[position + 1]);
                    nll += v;
                    nll2 += v * v;
                    windowNll += v;
                    count++;
                }
            }
            if (progress != null)
            {
                var (ppl, error) = Estimate(nll, nll2, count);
                progress(new PerplexityProgress(w + 1, windows, count, ppl, error, Math.Exp(windowNll / ScoredPerWindow(window))));
            }
        }
        var (perplexity, standardError) = Estimate(nll, nll2, count);
        return new PerplexityResult(windows, window, count, nll / count, perplexity, standardError);
    }

    /// <summary>exp(mean nll) and llama.cpp's ± (0 when the spread is not positive or there is one token).</summary>
    public static (double Perplexity, double StandardError) Estimate(double nllSum, double nll2Sum, long count)
    {
        double mean = nllSum / count;
        double perplexity = Math.Exp(mean);
        double variance = nll2Sum / count - mean * mean;
        double error = variance > 0 && count > 1 ? Math.Sqrt(variance / (count - 1)) * perplexity : 0;
        return (perplexity, error);
    }
}
