using System.Collections.Immutable;

namespace IlgpuLlm.Model.Formats;

/// <summary>What a tensor is for, where that decides how the loader normalises it.</summary>
internal enum TensorRole
{
    Embedding,
    Classifier,
    Norm,
    Query,
    Key,
    Value,
    AttentionOutput,
    QueryBias,
    KeyBias,
    ValueBias,
    FeedForward,
}

internal sealed record ExpectedTensor(string Name, ImmutableArray<long> Shape, TensorRole Role);

/// <summary>
/// The exact tensor set (names and row-major shapes) a config implies. Loaders check a file
/// against it: every tensor present with its shape, nothing unexplained left over.
/// </summary>
internal static class ModelLayout
{
    /// <summary>The fewest tensors a layer of any supported family has (norm, q, k, v, o, norm, gate, up, down).</summary>
    public const int MinimumTensorsPerLayer = 9;

    public static List<ExpectedTensor> Expected(ModelConfig config)
    {
        long hidden = config.HiddenSize;
        long queryWidth = checked((long)config.HeadCount * config.HeadDim);
        long keyValueWidth = checked((long)config.KeyValueHeadCount * config.HeadDim);
        long intermediate = config.IntermediateSize;
        long vocab = config.VocabSize;

        var tensors = new List<ExpectedTensor>(config.LayerCount * 16 + 3)
        {
            new(TensorNames.TokenEmbedding, [vocab, hidden], TensorRole.Embedding),
        };
        for (int layer = 0; layer < config.LayerCount; layer++)
        {
            tensors.Add(new(TensorNames.AttentionNorm(layer), [hidden], TensorRole.Norm));
            tensors.Add(new(TensorNames.AttentionQuery(layer), [queryWidth, hidden], TensorRole.Query));
            tensors.Add(new(TensorNames.AttentionKey(layer), [keyValueWidth, hidden], TensorRole.Key));
            tensors.Add(new(TensorNames.AttentionValue(layer), [keyValueWidth, hidden], TensorRole.Value));
            if (config.HasQkvBias)
            {
                tensors.Add(new(TensorNames.AttentionQueryBias(layer), [queryWidth], TensorRole.QueryBias));
                tensors.Add(new(TensorNames.AttentionKeyBias(layer), [keyValueWidth], TensorRole.KeyBias));
                tensors.Add(new(TensorNames.AttentionValueBias(layer), [keyValueWidth], TensorRole.ValueBias));
            }
            if (config.HasQueryKeyNorm)
            {
                tensors.Add(new(TensorNames.AttentionQueryNorm(layer), [config.HeadDim], TensorRole.Norm));
                tensors.Add(new(TensorNames.AttentionKeyNorm(layer), [config.HeadDim], TensorRole.Norm));
            }
            tensors.Add(new(TensorNames.AttentionOutput(layer), [hidden, queryWidth], TensorRole.AttentionOutput));
            if (config.HasPostAttentionNorm)
                tensors.Add(new(TensorNames.PostAttentionNorm(layer), [hidden], TensorRole.Norm));
            tensors.Add(new(TensorNames.FeedForwardNorm(layer), [hidden], TensorRole.Norm));
            tensors.Add(new(TensorNames.FeedForwardGate(layer), [intermediate, hidden], TensorRole.FeedForward));
            tensors.Add(new(TensorNames.FeedForwardUp(layer), [intermediate, hidden], TensorRole.FeedForward));
            tensors.Add(new(TensorNames.FeedForwardDown(layer), [hidden, intermediate], TensorRole.FeedForward));
            if (config.HasPostFeedForwardNorm)
                tensors.Add(new(TensorNames.PostFeedForwardNorm(layer), [hidden], TensorRole.Norm));
        }
        tensors.Add(new(TensorNames.OutputNorm, [hidden], TensorRole.Norm));
        if (!config.TiedEmbeddings)
            tensors.Add(new(TensorNames.Output, [vocab, hidden], TensorRole.Classifier));
        return tensors;
    }

    /// <summary>
    /// Checks the config's own consistency (positive sizes, head counts that divide, per-layer
    /// arrays of the right length, finite scalars) so no later arithmetic meets a nonsense value.
    /// </summary>
    public static void Validate(ModelConfig c, string path)
    {
        void Require(bool ok, string field, string expected, object? found)
        {
            if (!ok) throw new ModelFormatException(path, $"config {field}: expected {expected}, found {found}");
        }
        static bool Finite(float x) => float.IsFinite(x);

        Require(c.HiddenSize > 0, nameof(c.HiddenSize), "a positive size", c.HiddenSize);
        Require(c.LayerCount > 0, nameof(c.LayerCount), "a positive count", c.LayerCount);
        Require(c.HeadCount > 0, nameof(c.HeadCount), "a positive count", c.HeadCount);
        Require(c.KeyValueHeadCount > 0 && c.HeadCount % c.KeyValueHeadCount == 0, nameof(c.KeyValueHeadCount),
            $"a positive divisor of the head count {c.HeadCount}", c.KeyValueHeadCount);
        Require(c.HeadDim > 0 && c.HeadDim % 2 == 0, nameof(c.HeadDim), "a positive even size (rotary pairs)", c.HeadDim);
        Require(c.IntermediateSize > 0, nameof(c.IntermediateSize), "a positive size", c.IntermediateSize);
        Require(c.VocabSize > 0, nameof(c.VocabSize), "a positive size", c.VocabSize);
        Require(c.ContextLength > 0, nameof(c.ContextLength), "a positive length", c.ContextLength);
        Require(Finite(c.RmsNormEpsilon) && c.RmsNormEpsilon > 0, nameof(c.RmsNormEpsilon), "a positive finite value", c.RmsNormEpsilon);
        Require(Finite(c.RopeTheta) && c.RopeTheta > 0, nameof(c.RopeTheta), "a positive finite value", c.RopeTheta);
        Require(c.RopeLocalTheta is null || (Finite(c.RopeLocalTheta.Value) && c.RopeLocalTheta > 0), nameof(c.RopeLocalTheta),
            "a positive finite value", c.RopeLocalTheta);
        Require(Finite(c.RopeScaling.Factor) && c.RopeScaling.Factor > 0, "RopeScaling.Factor", "a positive finite value", c.RopeScaling.Factor);
        bool llama3 = c.RopeScaling.Type == RopeScalingType.Llama3;
        Require(llama3 == (c.RopeFrequencyFactors is not null), nameof(c.RopeFrequencyFactors),
            llama3 ? "per-frequency factors for Llama 3 rope scaling" : "none without Llama 3 rope scaling",
            c.RopeFrequencyFactors is null ? "none" : $"{c.RopeFrequencyFactors.Value.Length} factors");
        if (c.RopeFrequencyFactors is { } factors)
        {
            Require(factors.Length == c.HeadDim / 2, nameof(c.RopeFrequencyFactors), $"{c.HeadDim / 2} factors (head_dim / 2)", factors.Length);
            int bad = factors.IndexOf(factors.FirstOrDefault(f => !(Finite(f) && f > 0)));
            Require(factors.All(f => Finite(f) && f > 0), nameof(c.RopeFrequencyFactors), "positive finite factors",
                bad >= 0 ? $"{factors[bad]} at index {bad}" : "?");
        }
        Require(c.SlidingWindowLayers.Length == c.LayerCount, nameof(c.SlidingWindowLayers), $"{c.LayerCount} entries", c.SlidingWindowLayers.Length);
        bool anySliding = c.SlidingWindowLayers.Contains(true);
        Require(anySliding == (c.SlidingWindow is not null), nameof(c.SlidingWindow),
            anySliding ? "a window for the sliding layers" : "none when no layer slides", c.SlidingWindow?.ToString() ?? "none");
        Require(c.SlidingWindow is null or > 0, nameof(c.SlidingWindow), "a positive window", c.SlidingWindow);
        Require(c.AttentionLogitSoftCap is null || (Finite(c.AttentionLogitSoftCap.Value) && c.AttentionLogitSoftCap > 0),
            nameof(c.AttentionLogitSoftCap), "a positive finite cap", c.AttentionLogitSoftCap);
        Require(c.FinalLogitSoftCap is null || (Finite(c.FinalLogitSoftCap.Value) && c.FinalLogitSoftCap > 0),
            nameof(c.FinalLogitSoftCap), "a positive finite cap", c.FinalLogitSoftCap);
        Require(Finite(c.QueryPreAttentionScalar) && c.QueryPreAttentionScalar > 0, nameof(c.QueryPreAttentionScalar),
            "a positive finite value", c.QueryPreAttentionScalar);
        Require(Finite(c.EmbeddingScale) && c.EmbeddingScale > 0, nameof(c.EmbeddingScale), "a positive finite value", c.EmbeddingScale);
        foreach (var (name, id) in new[] { ("BosTokenId", c.BosTokenId), ("EosTokenId", c.EosTokenId), ("EotTokenId", c.EotTokenId), ("PadTokenId", c.PadTokenId) })
            Require(id is null || (id >= 0 && id < c.VocabSize), name, $"an id below the vocabulary size {c.VocabSize}", id);
        foreach (int id in c.StopTokenIds)
            Require(id >= 0 && id < c.VocabSize, nameof(c.StopTokenIds), $"ids below the vocabulary size {c.VocabSize}", id);
    }
}
