namespace IlgpuLlm.Runtime.Generation;

/// <summary>
/// The ways callers hand over several prompts at once, all mapped to the one mechanism the engine
/// has: a list of ragged prompts, each with its own positions from 0 and its own keys. Padding
/// never reaches the model, so pad ids are never attended to and never mistaken for EOS.
/// </summary>
public static class PromptBatches
{
    /// <summary>
    /// Hugging Face-style input: a padded id matrix and its attention mask (1 = token, 0 = padding).
    /// Each row's ones must form one contiguous run — padding on the left, on the right, or none;
    /// a mask with holes, an all-zero row or ragged rows are rejected.
    /// </summary>
    public static int[][] FromPadded(IReadOnlyList<int[]> inputIds, IReadOnlyList<int[]> attentionMask)
    {
        if (inputIds.Count != attentionMask.Count)
            throw new ArgumentException($"{inputIds.Count} rows of ids but {attentionMask.Count} rows of attention mask");
        var prompts = new int[inputIds.Count][];
        for (int row = 0; row < inputIds.Count; row++)
        {
            var ids = inputIds[row];
            var mask = attentionMask[row];
            if (ids.Length != mask.Length)
                throw new ArgumentException($"row {row}: {ids.Length} ids but {mask.Length} mask entries");
            if (row > 0 && ids.Length != inputIds[0].Length)
                throw new ArgumentException($"row {row} has {ids.Length} columns; row 0 has {inputIds[0].Length} (a padded matrix is rectangular)");
            int first = Array.FindIndex(mask, m => m != 0);
            if (first < 0)
                throw new ArgumentException($"row {row}: the attention mask has no tokens");
            int end = Array.FindLastIndex(mask, m => m != 0) + 1;
            for (int i = 0; i < mask.Length; i++)
            {
                if (mask[i] is not (0 or 1))
                    throw new ArgumentException($"row {row}, column {i}: attention mask value {mask[i]} is neither 0 nor 1");
                if (mask[i] == 0 && i > first && i < end)
                    throw new ArgumentException(
                        $"row {row}: the attention mask has a hole at column {i}; padding must be on the left or the right");
            }
            prompts[row] = ids[first..end];
        }
        return prompts;
    }

    /// <summary>
    /// Packed input: several prompts concatenated in one token buffer with cumulative lengths
    /// [0, len0, len0 + len1, …, total] (FlashAttention's cu_seqlens). Boundaries must start at 0,
    /// strictly increase (no empty prompt) and end at the buffer's length.
    /// </summary>
    public static int[][] FromPacked(IReadOnlyList<int> tokens, IReadOnlyList<int> cumulativeLengths)
    {
        if (cumulativeLengths.Count < 2)
            throw new ArgumentException($"cumulative lengths need at least two entries (0 and the total); got {cumulativeLengths.Count}");
        if (cumulativeLengths[0] != 0)
            throw new ArgumentException($"cumulative lengths start at {cumulativeLengths[0]}; they must start at 0");
        if (cumulativeLengths[^1] != tokens.Count)
            throw new ArgumentException($"cumulative lengths end at {cumulativeLengths[^1]}; the buffer holds {tokens.Count} tokens");
        var prompts = new int[cumulativeLengths.Count - 1][];
        for (int i = 0; i < prompts.Length; i++)
        {
            int start = cumulativeLengths[i], end = cumulativeLengths[i + 1];
            if (end <= start)
                throw new ArgumentException($"sequence {i} spans [{start}, {end}): boundaries must strictly increase");
            prompts[i] = new int[end - start];
            for (int t = start; t < end; t++)
                prompts[i][t - start] = tokens[t];
        }
        return prompts;
    }
}
