using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text.RegularExpressions;
using IlgpuLlm.Model.Formats;

namespace IlgpuLlm.Model;

/// <summary>
/// Where an op of the forward pass is, read from the names of the weights and caches it touches:
/// blk.3.ffn_down.weight is layer 3's feed-forward down projection, "layer 3 key cache" is layer 3's
/// cache. Decorators of a backend (the non-finite checker, the profiler) name ops by these.
/// </summary>
static partial class OpNames
{
    /// <summary>A block weight's layer and GGUF role (attn_q, ffn_down, …).</summary>
    public static bool TryBlockWeight(string name, out int layer, [NotNullWhen(true)] out string? role)
    {
        if (BlockWeight().Match(name) is { Success: true } match)
        {
            layer = int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
            role = match.Groups[2].Value;
            return true;
        }
        layer = -1;
        role = null;
        return false;
    }

    /// <summary>The layer of a key or value cache.</summary>
    public static bool TryCacheLayer(string name, out int layer)
    {
        if (CacheLayer().Match(name) is { Success: true } match)
        {
            layer = int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
            return true;
        }
        layer = -1;
        return false;
    }

    /// <summary>A block weight's role in words.</summary>
    public static string Describe(string role) => role switch
    {
        "attn_norm" => "attention norm",
        "attn_q" => "attention q projection",
        "attn_k" => "attention k projection",
        "attn_v" => "attention v projection",
        "attn_q_norm" => "attention q norm",
        "attn_k_norm" => "attention k norm",
        "attn_output" => "attention output projection",
        "post_attention_norm" => "attention output norm",
        "ffn_norm" => "feed-forward norm",
        "ffn_gate" => "feed-forward gate projection",
        "ffn_up" => "feed-forward up projection",
        "ffn_down" => "feed-forward down projection",
        "post_ffw_norm" => "feed-forward output norm",
        _ => "weight",
    };

    /// <summary>The GGUF name of a weight outside the blocks (token_embd, output_norm, output), or null.</summary>
    public static string? TopLevel(string name) => name switch
    {
        TensorNames.TokenEmbedding or TensorNames.OutputNorm or TensorNames.Output => name.Replace(".weight", "", StringComparison.Ordinal),
        _ => null,
    };

    [GeneratedRegex(@"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")]
    private static partial Regex BlockWeight();

    [GeneratedRegex(@"^layer (\d+) (key|value) cache$")]
    private static partial Regex CacheLayer();
}
