using System.Globalization;

namespace IlgpuLlm.Model.Formats;

/// <summary>
/// The canonical tensor names: llama.cpp's GGUF names (gguf-py <c>TENSOR_NAMES</c>), used for
/// every source. Hugging Face and llama2.c names are mapped onto them on load.
/// </summary>
public static class TensorNames
{
    public const string TokenEmbedding = "token_embd.weight";
    public const string OutputNorm = "output_norm.weight";

    /// <summary>The classifier; absent when <see cref="IlgpuLlm.Model.ModelConfig.TiedEmbeddings"/>.</summary>
    public const string Output = "output.weight";

    /// <summary>
    /// llama.cpp's Llama 3 per-frequency rope divisors. Consumed into
    /// <see cref="IlgpuLlm.Model.ModelConfig.RopeFrequencyFactors"/>, never exposed as a weight.
    /// </summary>
    public const string RopeFrequencies = "rope_freqs.weight";

    public static string AttentionNorm(int layer) => Block(layer, "attn_norm.weight");
    public static string AttentionQuery(int layer) => Block(layer, "attn_q.weight");
    public static string AttentionKey(int layer) => Block(layer, "attn_k.weight");
    public static string AttentionValue(int layer) => Block(layer, "attn_v.weight");
    public static string AttentionOutput(int layer) => Block(layer, "attn_output.weight");
    public static string AttentionQueryBias(int layer) => Block(layer, "attn_q.bias");
    public static string AttentionKeyBias(int layer) => Block(layer, "attn_k.bias");
    public static string AttentionValueBias(int layer) => Block(layer, "attn_v.bias");
    public static string AttentionQueryNorm(int layer) => Block(layer, "attn_q_norm.weight");
    public static string AttentionKeyNorm(int layer) => Block(layer, "attn_k_norm.weight");

    /// <summary>Gemma 2/3: the norm on the attention output (transformers' <c>post_attention_layernorm</c>).</summary>
    public static string PostAttentionNorm(int layer) => Block(layer, "post_attention_norm.weight");

    /// <summary>
    /// The norm before the feed-forward block: transformers' <c>post_attention_layernorm</c> in
    /// Llama/Qwen2/Gemma, <c>pre_feedforward_layernorm</c> in Gemma 2/3.
    /// </summary>
    public static string FeedForwardNorm(int layer) => Block(layer, "ffn_norm.weight");
    public static string FeedForwardGate(int layer) => Block(layer, "ffn_gate.weight");
    public static string FeedForwardUp(int layer) => Block(layer, "ffn_up.weight");
    public static string FeedForwardDown(int layer) => Block(layer, "ffn_down.weight");

    /// <summary>Gemma 2/3: the norm on the feed-forward output (transformers' <c>post_feedforward_layernorm</c>).</summary>
    public static string PostFeedForwardNorm(int layer) => Block(layer, "post_ffw_norm.weight");

    /// <summary>The transformers name of a canonical tensor, for messages about tensors a folder lacks.</summary>
    public static string ToHuggingFace(string canonicalName, ModelFamily family)
    {
        switch (canonicalName)
        {
            case TokenEmbedding: return "model.embed_tokens.weight";
            case OutputNorm: return "model.norm.weight";
            case Output: return "lm_head.weight";
        }
        var parts = canonicalName.Split('.', 3);
        if (parts.Length != 3 || parts[0] != "blk") return canonicalName;
        bool gemmaSandwich = family is ModelFamily.Gemma2 or ModelFamily.Gemma3;
        string? suffix = parts[2] switch
        {
            "attn_norm.weight" => "input_layernorm.weight",
            "attn_q.weight" => "self_attn.q_proj.weight",
            "attn_k.weight" => "self_attn.k_proj.weight",
            "attn_v.weight" => "self_attn.v_proj.weight",
            "attn_output.weight" => "self_attn.o_proj.weight",
            "attn_q.bias" => "self_attn.q_proj.bias",
            "attn_k.bias" => "self_attn.k_proj.bias",
            "attn_v.bias" => "self_attn.v_proj.bias",
            "attn_q_norm.weight" => "self_attn.q_norm.weight",
            "attn_k_norm.weight" => "self_attn.k_norm.weight",
            "post_attention_norm.weight" => "post_attention_layernorm.weight",
            "ffn_norm.weight" => gemmaSandwich ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight",
            "post_ffw_norm.weight" => "post_feedforward_layernorm.weight",
            "ffn_gate.weight" => "mlp.gate_proj.weight",
            "ffn_up.weight" => "mlp.up_proj.weight",
            "ffn_down.weight" => "mlp.down_proj.weight",
            _ => null,
        };
        return suffix is null ? canonicalName : $"model.layers.{parts[1]}.{suffix}";
    }

    static string Block(int layer, string suffix) => string.Create(CultureInfo.InvariantCulture, $"blk.{layer}.{suffix}");

    /// <summary>
    /// The canonical name of a transformers tensor, following llama.cpp's tensor_mapping.py, or
    /// null when the name is not part of a supported decoder. <paramref name="ignorable"/> is set
    /// for buffers transformers itself recomputes (old checkpoints' <c>rotary_emb.inv_freq</c>).
    /// </summary>
    public static string? FromHuggingFace(string name, ModelFamily family, out bool ignorable)
    {
        ignorable = false;
        switch (name)
        {
            case "model.embed_tokens.weight": return TokenEmbedding;
            case "model.norm.weight": return OutputNorm;
            case "lm_head.weight": return Output;
        }
        const string layerPrefix = "model.layers.";
        if (!name.StartsWith(layerPrefix, StringComparison.Ordinal)) return null;
        int dot = name.IndexOf('.', layerPrefix.Length);
        if (dot < 0) return null;
        var digits = name.AsSpan(layerPrefix.Length, dot - layerPrefix.Length);
        if (digits.Length is 0 or > 6 || (digits.Length > 1 && digits[0] == '0')
            || !int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out int layer))
            return null;
        bool gemmaSandwich = family is ModelFamily.Gemma2 or ModelFamily.Gemma3;
        string? suffix = name[(dot + 1)..] switch
        {
            "input_layernorm.weight" => "attn_norm.weight",
            "self_attn.q_proj.weight" => "attn_q.weight",
            "self_attn.k_proj.weight" => "attn_k.weight",
            "self_attn.v_proj.weight" => "attn_v.weight",
            "self_attn.o_proj.weight" => "attn_output.weight",
            "self_attn.q_proj.bias" => "attn_q.bias",
            "self_attn.k_proj.bias" => "attn_k.bias",
            "self_attn.v_proj.bias" => "attn_v.bias",
            "self_attn.o_proj.bias" => "attn_output.bias",
            "self_attn.q_norm.weight" => "attn_q_norm.weight",
            "self_attn.k_norm.weight" => "attn_k_norm.weight",
            "post_attention_layernorm.weight" => gemmaSandwich ? "post_attention_norm.weight" : "ffn_norm.weight",
            "pre_feedforward_layernorm.weight" => "ffn_norm.weight",
            "post_feedforward_layernorm.weight" => "post_ffw_norm.weight",
            "mlp.gate_proj.weight" => "ffn_gate.weight",
            "mlp.up_proj.weight" => "ffn_up.weight",
            "mlp.down_proj.weight" => "ffn_down.weight",
            "mlp.gate_proj.bias" => "ffn_gate.bias",
            "mlp.up_proj.bias" => "ffn_up.bias",
            "mlp.down_proj.bias" => "ffn_down.bias",
            _ => null,
        };
        if (suffix is null)
        {
            ignorable = name.EndsWith(".self_attn.rotary_emb.inv_freq", StringComparison.Ordinal);
            return null;
        }
        return Block(layer, suffix);
    }
}
