using System.Collections.Immutable;

namespace IlgpuLlm.Model;

/// <summary>The model families the engine runs; each is one decoder with its features as data.</summary>
public enum ModelFamily
{
    /// <summary>Llama 1/2/3 (and llama2.c checkpoints): SwiGLU, RMSNorm, optional Llama 3 rope scaling.</summary>
    Llama,

    /// <summary>Qwen2 / Qwen2.5: Llama plus q/k/v biases.</summary>
    Qwen2,

    /// <summary>Gemma 1: GeGLU (tanh), (1 + w) norms, embeddings scaled by sqrt(hidden).</summary>
    Gemma,

    /// <summary>Gemma 2: Gemma plus soft-caps, alternating sliding-window layers and post norms.</summary>
    Gemma2,

    /// <summary>Gemma 3 (text): Gemma 2 without soft-caps, plus q/k norms and a local rope base.</summary>
    Gemma3,
}

/// <summary>The gate activation of the feed-forward block.</summary>
public enum FeedForwardActivation
{
    /// <summary>SwiGLU: silu(gate) · up (Llama, Qwen2).</summary>
    Silu,

    /// <summary>
    /// GeGLU with the tanh approximation of GELU, transformers' <c>gelu_pytorch_tanh</c> (Gemma).
    /// Not erf-GELU: transformers' Gemma configs name the tanh form, and llama.cpp's
    /// <c>ggml_gelu</c> is the tanh form too.
    /// </summary>
    GeluTanh,
}

/// <summary>How the two halves of each rotary pair are laid out in a q/k head.</summary>
public enum RotaryLayout
{
    /// <summary>
    /// Pair i is (x[i], x[i + head_dim/2]): transformers' <c>rotate_half</c>, llama.cpp's NEOX
    /// rope. Every loader produces this layout: q/k rows of llama.cpp <c>llama</c> GGUFs and of
    /// llama2.c checkpoints (which pair adjacent elements) are permuted back on load.
    /// </summary>
    HalfSplit,
}

/// <summary>What an RMSNorm weight tensor means.</summary>
public enum NormWeightConvention
{
    /// <summary>
    /// y = x / rms(x) · w: the weight is the multiplier itself. Every loader produces this: the
    /// Gemma (1 + w) of transformers is folded into the tensor on load, matching what llama.cpp's
    /// converter stores in Gemma GGUFs.
    /// </summary>
    Multiplier,
}

/// <summary>How rotary positions or frequencies are scaled beyond plain rope.</summary>
public enum RopeScalingType
{
    None,

    /// <summary>Positions divided by <see cref="RopeScaling.Factor"/> (transformers "linear").</summary>
    Linear,

    /// <summary>
    /// Llama 3.1 per-frequency scaling. Applied through <see cref="ModelConfig.RopeFrequencyFactors"/>,
    /// which every source provides (GGUF as the <c>rope_freqs.weight</c> tensor, Hugging Face
    /// computed from <c>rope_scaling</c>).
    /// </summary>
    Llama3,
}

/// <summary>The parameters of transformers' <c>rope_type: llama3</c> scaling, as config.json states them.</summary>
public sealed record Llama3RopeParameters(
    float Factor,
    float LowFreqFactor,
    float HighFreqFactor,
    int OriginalMaxPositionEmbeddings);

/// <summary>
/// Rope scaling of the layers that use <see cref="ModelConfig.RopeTheta"/>. Layers that use
/// <see cref="ModelConfig.RopeLocalTheta"/> (Gemma 3 sliding layers) are never scaled:
/// transformers builds their rotary embedding without rope_scaling and llama.cpp sets
/// <c>rope_freq_scale_train_swa = 1</c>.
/// </summary>
public sealed record RopeScaling
{
    public static RopeScaling None { get; } = new() { Type = RopeScalingType.None, Factor = 1f };

    public required RopeScalingType Type { get; init; }

    /// <summary>The scaling factor (1 when <see cref="Type"/> is None).</summary>
    public required float Factor { get; init; }

    /// <summary>
    /// The Llama 3 parameters when the source states them (Hugging Face config.json). GGUF files
    /// carry only the per-frequency factors they produce, so this is null for them; the factors
    /// in <see cref="ModelConfig.RopeFrequencyFactors"/> are what both agree on.
    /// </summary>
    public Llama3RopeParameters? Llama3 { get; init; }

    public static RopeScaling Linear(float factor) => new() { Type = RopeScalingType.Linear, Factor = factor };
}

/// <summary>
/// The one description of a model the engine needs, identical whichever file it came from
/// (GGUF, Hugging Face folder, llama2.c checkpoint). Conventions are those of transformers'
/// reference implementation on tensors laid out as transformers stores them, after the loader's
/// normalisation: see <see cref="RotaryLayout"/> and <see cref="NormWeights"/>.
/// </summary>
public sealed record ModelConfig
{
    public required ModelFamily Family { get; init; }

    public required int HiddenSize { get; init; }

    public required int LayerCount { get; init; }

    public required int HeadCount { get; init; }

    public required int KeyValueHeadCount { get; init; }

    /// <summary>Per-head q/k/v width; not always HiddenSize / HeadCount (Gemma: 256 with 2048 / 8).</summary>
    public required int HeadDim { get; init; }

    public required int IntermediateSize { get; init; }

    public required int VocabSize { get; init; }

    /// <summary>The training context length (max_position_embeddings / context_length / seq_len).</summary>
    public required int ContextLength { get; init; }

    /// <summary>Added to the mean square inside RMSNorm, in f32 (GGUF stores it as f32).</summary>
    public required float RmsNormEpsilon { get; init; }

    /// <summary>The rope base of global (or all) layers.</summary>
    public required float RopeTheta { get; init; }

    public required RopeScaling RopeScaling { get; init; }

    /// <summary>
    /// Per-frequency divisors, head_dim/2 of them, as llama.cpp's <c>rope_freqs</c> tensor holds
    /// them: the angle of frequency i at position p is p · RopeTheta^(-2i/head_dim) / factor[i].
    /// Present exactly when <see cref="RopeScaling"/> is Llama3; computed from config.json the way
    /// llama.cpp's convert_hf_to_gguf.py computes the tensor, so GGUF and Hugging Face sources
    /// yield bit-identical factors.
    /// </summary>
    public ImmutableArray<float>? RopeFrequencyFactors { get; init; }

    /// <summary>The rope base of sliding-window layers when it differs (Gemma 3: 10000); else null.</summary>
    public float? RopeLocalTheta { get; init; }

    public RotaryLayout RotaryLayout { get; init; } = RotaryLayout.HalfSplit;

    /// <summary>
    /// Window of sliding-window attention: query at position q sees keys k with q - k &lt; window
    /// (transformers masks q - k &gt;= window). Null when no layer slides.
    /// </summary>
    public int? SlidingWindow { get; init; }

    /// <summary>One entry per layer: true where the layer uses <see cref="SlidingWindow"/>.</summary>
    public required ImmutableArray<bool> SlidingWindowLayers { get; init; }

    /// <summary>Gemma 2: attention scores become cap · tanh(scores / cap) before masking. Null: no cap.</summary>
    public float? AttentionLogitSoftCap { get; init; }

    /// <summary>Gemma 2: logits become cap · tanh(logits / cap). Null: no cap.</summary>
    public float? FinalLogitSoftCap { get; init; }

    /// <summary>
    /// Attention scores are scaled by QueryPreAttentionScalar^-0.5 (transformers'
    /// <c>query_pre_attn_scalar</c>); HeadDim for families that have no such setting.
    /// </summary>
    public required float QueryPreAttentionScalar { get; init; }

    /// <summary>
    /// The score scale as transformers computes it: <c>query_pre_attn_scalar ** -0.5</c> (or
    /// <c>head_dim ** -0.5</c>) in double, rounded to f32 when it meets f32 activations.
    /// </summary>
    public float AttentionScale => (float)Math.Pow(QueryPreAttentionScalar, -0.5);

    /// <summary>Gemma 3: per-head RMSNorm of q and k (attn_q_norm / attn_k_norm) before rope.</summary>
    public required bool HasQueryKeyNorm { get; init; }

    /// <summary>Qwen2: attn_q/k/v carry biases.</summary>
    public required bool HasQkvBias { get; init; }

    /// <summary>The classifier is token_embd.weight; no output.weight tensor exists.</summary>
    public required bool TiedEmbeddings { get; init; }

    /// <summary>Gemma 2/3: post_attention_norm applied to the attention output before the residual add.</summary>
    public required bool HasPostAttentionNorm { get; init; }

    /// <summary>Gemma 2/3: post_ffw_norm applied to the feed-forward output before the residual add.</summary>
    public required bool HasPostFeedForwardNorm { get; init; }

    public required FeedForwardActivation Activation { get; init; }

    /// <summary>
    /// Embeddings are multiplied by this after lookup. Gemma: sqrt(HiddenSize) rounded once to
    /// f32, i.e. <c>(float)Math.Sqrt(hidden)</c>. transformers multiplies by
    /// <c>torch.tensor(hidden**0.5, dtype=hidden.dtype)</c> (the double rounded to the activation
    /// dtype; with f32 activations that is this value) and llama.cpp by <c>sqrtf(n_embd)</c>, the
    /// same f32 since square root double-rounded through double is correctly rounded.
    /// 1 for the other families.
    /// </summary>
    public required float EmbeddingScale { get; init; }

    public NormWeightConvention NormWeights { get; init; } = NormWeightConvention.Multiplier;

    public int? BosTokenId { get; init; }

    public int? EosTokenId { get; init; }

    /// <summary>End-of-turn token (GGUF tokenizer.ggml.eot_token_id) where the source names one.</summary>
    public int? EotTokenId { get; init; }

    public int? PadTokenId { get; init; }

    /// <summary>
    /// Every id that ends generation: EOS, EOT, and the extra ids transformers' configs list in
    /// <c>eos_token_id</c> arrays (config.json and generation_config.json). Sorted, distinct.
    /// </summary>
    public ImmutableArray<int> StopTokenIds { get; init; } = [];

    public bool IsSlidingWindowLayer(int layer) => SlidingWindowLayers[layer];

    /// <summary>The rope base of one layer: the local base on sliding layers where the family has one.</summary>
    public float RopeThetaForLayer(int layer) =>
        RopeLocalTheta is { } local && SlidingWindowLayers[layer] ? local : RopeTheta;

    /// <summary>Whether <see cref="RopeScaling"/> applies to a layer (not to Gemma 3's local-base layers).</summary>
    public bool RopeScalingAppliesToLayer(int layer) =>
        !(RopeLocalTheta is not null && SlidingWindowLayers[layer]);

    public bool Equals(ModelConfig? other)
    {
        if (other is null) return false;
        if (ReferenceEquals(this, other)) return true;
        return Family == other.Family
            && HiddenSize == other.HiddenSize
            && LayerCount == other.LayerCount
            && HeadCount == other.HeadCount
            && KeyValueHeadCount == other.KeyValueHeadCount
            && HeadDim == other.HeadDim
            && IntermediateSize == other.IntermediateSize
            && VocabSize == other.VocabSize
            && ContextLength == other.ContextLength
            && RmsNormEpsilon.Equals(other.RmsNormEpsilon)
            && RopeTheta.Equals(other.RopeTheta)
            && RopeScaling == other.RopeScaling
            && SequenceEqual(RopeFrequencyFactors, other.RopeFrequencyFactors)
            && Nullable.Equals(RopeLocalTheta, other.RopeLocalTheta)
            && RotaryLayout == other.RotaryLayout
            && SlidingWindow == other.SlidingWindow
            && SlidingWindowLayers.SequenceEqual(other.SlidingWindowLayers)
            && Nullable.Equals(AttentionLogitSoftCap, other.AttentionLogitSoftCap)
            && Nullable.Equals(FinalLogitSoftCap, other.FinalLogitSoftCap)
            && QueryPreAttentionScalar.Equals(other.QueryPreAttentionScalar)
            && HasQueryKeyNorm == other.HasQueryKeyNorm
            && HasQkvBias == other.HasQkvBias
            && TiedEmbeddings == other.TiedEmbeddings
            && HasPostAttentionNorm == other.HasPostAttentionNorm
            && HasPostFeedForwardNorm == other.HasPostFeedForwardNorm
            && Activation == other.Activation
            && EmbeddingScale.Equals(other.EmbeddingScale)
            && NormWeights == other.NormWeights
            && BosTokenId == other.BosTokenId
            && EosTokenId == other.EosTokenId
            && EotTokenId == other.EotTokenId
            && PadTokenId == other.PadTokenId
            && StopTokenIds.SequenceEqual(other.StopTokenIds);
    }

    public override int GetHashCode() =>
        HashCode.Combine(Family, HiddenSize, LayerCount, HeadCount, KeyValueHeadCount, HeadDim, IntermediateSize, VocabSize);

    static bool SequenceEqual(ImmutableArray<float>? a, ImmutableArray<float>? b) =>
        a is null ? b is null : b is not null && a.Value.SequenceEqual(b.Value);
}
