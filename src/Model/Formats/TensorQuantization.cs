using System.Text.RegularExpressions;
using IlgpuLlm.Kernels;

namespace IlgpuLlm.Model.Formats;

/// <summary>The file types <c>quantize</c> writes, by llama-quantize's names.</summary>
public enum QuantizationType
{
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,

    /// <summary>Every matrix Q4_K (llama-quantize Q4_K_S --pure), no per-tensor rules.</summary>
    Q4_K,

    /// <summary>Every matrix Q5_K (llama-quantize Q5_K_S --pure), no per-tensor rules.</summary>
    Q5_K,

    /// <summary>llama.cpp's default mix: Q4_K, with Q6_K for the output and some attn_v / ffn_down.</summary>
    Q4_K_M,

    /// <summary>Q5_K, with Q6_K for the output and some attn_v / ffn_down.</summary>
    Q5_K_M,
    Q6_K,
}

/// <summary>What a writer asks of a quantization: each tensor's type and the file type to state.</summary>
internal interface ITensorQuantization
{
    uint FileType { get; }

    /// <summary>The type to store a tensor in, or null to keep it as it is.</summary>
    GgmlType? TypeOf(string name, IReadOnlyList<long> shape);
}

/// <summary>
/// llama.cpp's per-tensor choice of types for a file type (<c>llama_tensor_get_type</c> in
/// llama-quant.cpp, for the architectures the engine runs): which tensors are quantized, the
/// _M mixes' Q6_K for attn_v and ffn_down in the layers <c>use_more_bits</c> names, the output
/// (or tied token embedding) in Q6_K, and the fallbacks for rows that are not whole blocks.
/// </summary>
public sealed partial class TensorQuantization : ITensorQuantization
{
    /// <summary>The key llama-quantize writes with ggml's GGML_QNT_VERSION.</summary>
    public const string VersionKey = "general.quantization_version";

    public const uint Version = 2;

    readonly ModelConfig _config;
    readonly bool _hasOutput;

    public TensorQuantization(QuantizationType type, ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        Type = type;
        _config = config;
        _hasOutput = !config.TiedEmbeddings;
    }

    public QuantizationType Type { get; }

    public static QuantizationType Parse(string name) =>
        Enum.TryParse<QuantizationType>(name, ignoreCase: true, out var type) && Enum.IsDefined(type)
            ? type
            : throw new ArgumentException($"unknown quantization type '{name}': expected one of {string.Join(", ", Enum.GetNames<QuantizationType>())}");

    /// <summary>llama.cpp's LLAMA_FTYPE value for <c>general.file_type</c>.</summary>
    public uint FileType => Type switch
    {
        QuantizationType.Q4_0 => 2,
        QuantizationType.Q4_1 => 3,
        QuantizationType.Q8_0 => 7,
        QuantizationType.Q5_0 => 8,
        QuantizationType.Q5_1 => 9,
        QuantizationType.Q4_K => 14, // MOSTLY_Q4_K_S
        QuantizationType.Q4_K_M => 15,
        QuantizationType.Q5_K => 16, // MOSTLY_Q5_K_S
        QuantizationType.Q5_K_M => 17,
        _ => 18, // MOSTLY_Q6_K
    };

    /// <summary>The type most matrices get.</summary>
    public GgmlType DefaultType => Type switch
    {
        QuantizationType.Q4_0 => GgmlType.Q4_0,
        QuantizationType.Q4_1 => GgmlType.Q4_1,
        QuantizationType.Q5_0 => GgmlType.Q5_0,
        QuantizationType.Q5_1 => GgmlType.Q5_1,
        QuantizationType.Q8_0 => GgmlType.Q8_0,
        QuantizationType.Q4_K or QuantizationType.Q4_K_M => GgmlType.Q4_K,
        QuantizationType.Q5_K or QuantizationType.Q5_K_M => GgmlType.Q5_K,
        _ => GgmlType.Q6_K,
    };

    bool Pure => Type is QuantizationType.Q4_K or QuantizationType.Q5_K;

    /// <summary>
    /// llama-quantize's test of which tensors to quantize: names ending in "weight" with two or more
    /// dimensions, except norms (every *_norm.weight).
    /// </summary>
    public static bool IsQuantizable(string name, IReadOnlyList<long> shape) =>
        name.EndsWith("weight", StringComparison.Ordinal) && shape.Count >= 2 && !name.Contains("_norm.weight", StringComparison.Ordinal);

    [GeneratedRegex(@"^blk\.(\d+)\.")]
    private static partial Regex LayerPattern();

    /// <summary>llama.cpp's use_more_bits: the first and last eighth of the layers, and every third in between.</summary>
    static bool UseMoreBits(int layer, int layers) => layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;

    /// <summary>llama.cpp's LLM_TYPE_70B for these architectures: 80 layers (with grouped kv heads for Llama).</summary>
    bool Is70B => _config.LayerCount == 80 && (_config.Family == ModelFamily.Qwen2
        || (_config.Family == ModelFamily.Llama && _config.HeadCount != _config.KeyValueHeadCount));

    public GgmlType? TypeOf(string name, IReadOnlyList<long> shape)
    {
        if (!IsQuantizable(name, shape))
            return null;
        long width = shape[^1];
        var type = DefaultType;
        if (!Pure)
        {
            // The weights llama-quantize visits in layer order; attn_v and ffn_down count one per layer.
            var match = LayerPattern().Match(name);
            int layer = match.Success ? int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : -1;
            bool mix = Type is QuantizationType.Q4_K_M or QuantizationType.Q5_K_M;
            if (name == TensorNames.Output || (!_hasOutput && name == TensorNames.TokenEmbedding))
            {
                if (width % BlockSize(type) != 0)
                    type = GgmlType.Q8_0;
                else if (type != GgmlType.Q8_0)
                    type = GgmlType.Q6_K;
            }
            else if (name == TensorNames.TokenEmbedding)
            {
                // Unchanged for these file types.
            }
            else if (name.Contains("attn_v.weight", StringComparison.Ordinal))
            {
                if (mix && UseMoreBits(layer, _config.LayerCount))
                    type = GgmlType.Q6_K;
                if (Is70B && type is GgmlType.Q3_K or GgmlType.Q4_K)
                    type = GgmlType.Q5_K;
            }
            else if (name.Contains("ffn_down", StringComparison.Ordinal))
            {
                if (mix && UseMoreBits(layer, _config.LayerCount))
                    type = GgmlType.Q6_K;
            }
        }
        if (width % BlockSize(type) != 0)
        {
            // llama.cpp's fallbacks for rows that are not whole blocks.
            type = type switch
            {
                GgmlType.Q4_K => GgmlType.Q5_0,
                GgmlType.Q5_K => GgmlType.Q5_1,
                GgmlType.Q6_K => GgmlType.Q8_0,
                _ => throw new NotSupportedException(
                    $"tensor '{name}': rows of {width} weights are not whole {GgmlTypeLayout.Name(type)} blocks of {BlockSize(type)} (llama.cpp refuses this size too)"),
            };
            if (width % BlockSize(type) != 0)
                type = GgmlType.F16;
        }
        return type;
    }

    static int BlockSize(GgmlType type) => GgmlTypeLayout.TryGetBlockLayout(type, out int size, out _) ? size : 1;
}
