using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Runtime.Generation;

namespace IlgpuLlm.Model;

/// <summary>Logits of a whole token sequence, the way reference implementations dump them.</summary>
public static class Scoring
{
    /// <summary>
    /// Feeds <paramref name="tokens"/> (positions 0, 1, …) through the model in cache slot
    /// <paramref name="slot"/>, in chunks of the model's rows per forward pass, and returns the
    /// logits after every token ([tokens, vocab]) or after the last one only ([vocab]).
    /// </summary>
    public static float[] Logits(ILanguageModel model, IReadOnlyList<int> tokens, bool allPositions, int slot = 0)
    {
        if (tokens.Count == 0)
            throw new ArgumentException("no tokens to score");
        if (tokens.Count > model.ContextLength)
            throw new ArgumentException($"{tokens.Count} tokens need more positions than the context holds ({model.ContextLength})");
        int vocabulary = model.VocabSize;
        var result = new float[(allPositions ? tokens.Count : 1) * (long)vocabulary];
        for (int start = 0; start < tokens.Count; start += model.MaxRowsPerForward)
        {
            int count = Math.Min(model.MaxRowsPerForward, tokens.Count - start);
            var rows = new TokenRow[count];
            for (int i = 0; i < count; i++)
                rows[i] = new TokenRow(slot, start + i, tokens[start + i]);
            bool last = start + count == tokens.Count;
            int[] logitRows = allPositions ? Enumerable.Range(0, count).ToArray() : last ? [count - 1] : [];
            var forward = model.Forward(rows, logitRows);
            if (forward.Problems.Count > 0)
                throw new InvalidOperationException($"position {start + forward.Problems[0].Row}: {forward.Problems[0].Message}");
            if (logitRows.Length == 0)
                continue;
            var values = model.Backend.DownloadFloats(forward.Logits);
            long offset = allPositions ? (long)start * vocabulary : 0;
            Array.Copy(values, 0, result, offset, values.LongLength);
        }
        return result;
    }

    /// <summary>
    /// Prefills several prompts packed into one forward pass — each in its own cache slot with its
    /// own positions, so attention never crosses a boundary — and returns every position's logits
    /// per prompt ([length, vocab] each).
    /// </summary>
    public static float[][] PackedLogits(ILanguageModel model, IReadOnlyList<int[]> prompts)
    {
        if (prompts.Count > model.Slots)
            throw new ArgumentException($"{prompts.Count} prompts need {prompts.Count} cache slots; the model has {model.Slots}");
        var rows = new List<TokenRow>();
        for (int p = 0; p < prompts.Count; p++)
            for (int i = 0; i < prompts[p].Length; i++)
                rows.Add(new TokenRow(p, i, prompts[p][i]));
        var forward = model.Forward(rows.ToArray(), Enumerable.Range(0, rows.Count).ToArray());
        if (forward.Problems.Count > 0)
            throw new InvalidOperationException($"row {forward.Problems[0].Row}: {forward.Problems[0].Message}");
        var values = model.Backend.DownloadFloats(forward.Logits);
        int vocabulary = model.VocabSize;
        var result = new float[prompts.Count][];
        long offset = 0;
        for (int p = 0; p < prompts.Count; p++)
        {
            result[p] = values.AsSpan((int)offset, prompts[p].Length * vocabulary).ToArray();
            offset += (long)prompts[p].Length * vocabulary;
        }
        return result;
    }
}
