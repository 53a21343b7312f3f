using System.Globalization;
using IlgpuLlm.Kernels;
using IlgpuLlm.Model.Formats;

namespace IlgpuLlm.Model.Evaluation;

/// <summary>
/// What a model weighs and what one forward pass streams from memory: every weight matrix, norm and
/// bias once, the classifier once — but of the token embedding only the looked-up rows, unless it
/// is also the classifier (tied embeddings). A decode step is a forward pass, so these are the
/// weight bytes read per step whatever the number of sequences in it.
/// </summary>
public sealed record ModelFootprint(
    string Family,
    long Parameters,
    long Bytes,
    long BytesPerForward,
    string WeightType)
{
    public static ModelFootprint Of(ModelCheckpoint checkpoint)
    {
        var config = checkpoint.Config;
        long parameters = 0, bytes = 0, streamed = 0;
        var bytesByType = new Dictionary<StorageType, long>();
        foreach (var tensor in checkpoint.Tensors)
        {
            // Quantized weights count as their blocks: what the model keeps and streams.
            long tensorBytes = tensor.StoredByteLength;
            parameters += tensor.ElementCount;
            bytes += tensorBytes;
            bool lookupOnly = tensor.Name == TensorNames.TokenEmbedding && !config.TiedEmbeddings;
            if (!lookupOnly)
                streamed += tensorBytes;
            if (tensor.Shape.Length == 2)
                bytesByType[tensor.StoredType] = bytesByType.GetValueOrDefault(tensor.StoredType) + tensorBytes;
        }
        // llama-bench names a model by its file type: the storage of the matrices, or for a mix
        // (Q4_K_M's q4_k with q6_k, f16 with f32) every type, the most bytes first.
        string type = string.Join("+", bytesByType.OrderByDescending(pair => pair.Value).Select(pair => pair.Key.Name().ToUpperInvariant()));
        return new ModelFootprint(RandomModel.FamilyName(config.Family), parameters, bytes, streamed, type);
    }

    /// <summary>llama-bench's model column: family, size and weight type, e.g. "llama 1.24B F16".</summary>
    public string Description => $"{Family} {FormatCount(Parameters)} {WeightType}";

    /// <summary>1.24B, 260.1K: parameters the way model names count them.</summary>
    public static string FormatCount(long n) => n switch
    {
        >= 1_000_000_000 => string.Create(CultureInfo.InvariantCulture, $"{n / 1e9:0.00}B"),
        >= 1_000_000 => string.Create(CultureInfo.InvariantCulture, $"{n / 1e6:0.0}M"),
        >= 1_000 => string.Create(CultureInfo.InvariantCulture, $"{n / 1e3:0.0}K"),
        _ => n.ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>Binary units, as llama-bench prints sizes: 2.30 GiB, 1.0 MiB.</summary>
    public static string FormatBytes(long n) => n switch
    {
        >= 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{n / (double)(1L << 30):0.00} GiB"),
        >= 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{n / (double)(1L << 20):0.00} MiB"),
        >= 1L << 10 => string.Create(CultureInfo.InvariantCulture, $"{n / 1024.0:0.00} KiB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{n} B"),
    };
}
