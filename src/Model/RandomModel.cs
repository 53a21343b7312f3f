using IlgpuLlm.Kernels;
using IlgpuLlm.Model.Formats;
using IlgpuLlm.Model.Tokenizers;
using System.Collections.Immutable;
using System.Text;

namespace IlgpuLlm.Model;

/// <summary>How a random model scales its weights.</summary>
public enum RandomWeightScale
{
    /// <summary>Every matrix and bias with std 0.02, transformers' usual <c>initializer_range</c>.</summary>
    InitializerRange,

    /// <summary>
    /// Embeddings with std 1, every other matrix with std 1/sqrt(fan-in): activations and logits of
    /// order one at any width, so even a tiny model's output depends on its context. The demo uses it.
    /// </summary>
    FanIn,
}

/// <summary>A named shape of a family: a real checkpoint's hyper-parameters, or a tiny one for tests.</summary>
public sealed record RandomModelPreset(ModelFamily Family, string Name, ModelConfig Config, string Description)
{
    /// <summary>Weights of a model of this shape (norms, biases and embeddings included, each tied matrix once).</summary>
    public long ParameterCount => ModelLayout.Expected(Config).Sum(e => e.Shape.Aggregate(1L, (a, b) => a * b));
}

/// <summary>
/// Random-weight models in real shapes, for exercising formats, backends and tools without
/// downloading checkpoints. Values come from a counter-based generator keyed by (seed, tensor
/// name, element index) in integer arithmetic plus one f32 multiply, so every element is
/// reproducible on any machine, in any order and in parallel, and a tensor is produced range by
/// range while it is written: a multi-GB model never sits in memory. Matrices are Gaussian-like
/// (a sum of four uniforms, within 3.5 std), norm weights are 1 + k/128 for |k| ≤ 8 (exact in
/// f16 and bf16, and so is the Gemma offset k/128), and the vocabulary is
/// <see cref="SyntheticVocabulary"/>.
/// </summary>
public sealed class RandomModel
{
    /// <summary>The std of <see cref="RandomWeightScale.InitializerRange"/>.</summary>
    public const float InitializerRange = 0.02f;

    /// <summary>The seed of the built-in demo model.</summary>
    public const ulong DemoSeed = 20240607;

    RandomModel(ModelConfig config, StorageType dataType, ulong seed, string name, RandomWeightScale scale)
    {
        ModelLayout.Validate(config, name);
        if (config.VocabSize < SyntheticVocabulary.MinimumSize)
            throw new ArgumentException($"a random model needs a vocabulary of at least {SyntheticVocabulary.MinimumSize} tokens, not {config.VocabSize}");
        Config = config;
        DataType = dataType;
        Seed = seed;
        Name = name;
        WeightScale = scale;
        Tensors = [.. ModelLayout.Expected(config).Select(e => Tensor(e, dataType, seed, scale))];
        _vocabulary = new(() => SyntheticVocabulary.Create(config.VocabSize));
        ParameterCount = Tensors.Sum(t => t.ElementCount);
    }

    public ModelConfig Config { get; }

    public StorageType DataType { get; }

    public ulong Seed { get; }

    /// <summary>Written as the GGUF's <c>general.name</c>.</summary>
    public string Name { get; }

    public RandomWeightScale WeightScale { get; }

    /// <summary>Every weight, in canonical order and the normalised layout, produced on demand.</summary>
    public ImmutableArray<TensorSource> Tensors { get; }

    public long ParameterCount { get; }

    /// <summary>The byte-level vocabulary the files carry.</summary>
    public TokenizerVocabulary Vocabulary => _vocabulary.Value;

    readonly Lazy<TokenizerVocabulary> _vocabulary;

    // ---------------------------------------------------------------- presets

    public static ImmutableArray<RandomModelPreset> Presets { get; } = BuildPresets();

    /// <summary>The preset of a family by name (case-insensitive).</summary>
    /// <exception cref="ArgumentException">No such preset for the family; the message lists the ones there are.</exception>
    public static RandomModelPreset GetPreset(ModelFamily family, string name)
    {
        var preset = Presets.FirstOrDefault(p => p.Family == family && string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase));
        if (preset is not null) return preset;
        var elsewhere = Presets.Where(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase)).Select(p => FamilyName(p.Family)).ToList();
        throw new ArgumentException($"no preset '{name}' for family {FamilyName(family)}; " +
            $"{FamilyName(family)} has {string.Join(", ", Presets.Where(p => p.Family == family).Select(p => p.Name))}" +
            (elsewhere.Count > 0 ? $" ('{name}' is a {string.Join("/", elsewhere)} preset)" : ""));
    }

    /// <summary>The family names the CLI and file formats use: llama, qwen2, gemma, gemma2, gemma3.</summary>
    public static string FamilyName(ModelFamily family) => GgufModelWriter.Architecture(family);

    /// <exception cref="ArgumentException">Not one of the family names.</exception>
    public static ModelFamily ParseFamily(string name)
    {
        foreach (var family in Enum.GetValues<ModelFamily>())
            if (string.Equals(FamilyName(family), name, StringComparison.OrdinalIgnoreCase))
                return family;
        throw new ArgumentException($"unknown family '{name}': expected {string.Join(", ", Enum.GetValues<ModelFamily>().Select(FamilyName))}");
    }

    static ImmutableArray<RandomModelPreset> BuildPresets()
    {
        var llama3Scaling = new Llama3RopeParameters(Factor: 32f, LowFreqFactor: 1f, HighFreqFactor: 4f, OriginalMaxPositionEmbeddings: 8192);
        return
        [
            new(ModelFamily.Llama, "tiny", Shape(ModelFamily.Llama, hidden: 64, layers: 2, heads: 4, kvHeads: 2, headDim: 16,
                    intermediate: 192, vocab: 512, context: 2048, epsilon: 1e-5f, theta: 500_000f, tied: false, llama3: llama3Scaling),
                "Llama 3 in miniature: GQA 4:2, Llama 3.2's rope scaling (rope_freqs in the GGUF), untied classifier"),
            new(ModelFamily.Llama, "llama-3.2-1b", Shape(ModelFamily.Llama, hidden: 2048, layers: 16, heads: 32, kvHeads: 8, headDim: 64,
                    intermediate: 8192, vocab: 128256, context: 131072, epsilon: 1e-5f, theta: 500_000f, tied: true, llama3: llama3Scaling),
                "the shape of meta-llama/Llama-3.2-1B"),
            new(ModelFamily.Qwen2, "tiny", Shape(ModelFamily.Qwen2, hidden: 64, layers: 2, heads: 4, kvHeads: 2, headDim: 16,
                    intermediate: 160, vocab: 1024, context: 4096, epsilon: 1e-6f, theta: 1_000_000f, tied: true),
                "Qwen2 in miniature: q/k/v biases, tied embeddings"),
            new(ModelFamily.Qwen2, "qwen2.5-0.5b", Shape(ModelFamily.Qwen2, hidden: 896, layers: 24, heads: 14, kvHeads: 2, headDim: 64,
                    intermediate: 4864, vocab: 151936, context: 32768, epsilon: 1e-6f, theta: 1_000_000f, tied: true),
                "the shape of Qwen/Qwen2.5-0.5B"),
            new(ModelFamily.Gemma, "tiny", Shape(ModelFamily.Gemma, hidden: 64, layers: 2, heads: 4, kvHeads: 1, headDim: 32,
                    intermediate: 128, vocab: 512, context: 2048, epsilon: 1e-6f, theta: 10_000f, tied: true),
                "Gemma in miniature: head_dim 32 ≠ hidden / heads, one kv head"),
            new(ModelFamily.Gemma, "gemma-2b", Shape(ModelFamily.Gemma, hidden: 2048, layers: 18, heads: 8, kvHeads: 1, headDim: 256,
                    intermediate: 16384, vocab: 256000, context: 8192, epsilon: 1e-6f, theta: 10_000f, tied: true),
                "the shape of google/gemma-2b"),
            // Older llama.cpp builds abort on a gemma2 GGUF whose layer count is not 26, 42 or 46.
            new(ModelFamily.Gemma2, "tiny", Shape(ModelFamily.Gemma2, hidden: 64, layers: 26, heads: 4, kvHeads: 2, headDim: 16,
                    intermediate: 128, vocab: 512, context: 2048, epsilon: 1e-6f, theta: 10_000f, tied: true,
                    window: 32, attentionSoftCap: 50f, finalSoftCap: 30f),
                "Gemma 2 in miniature: soft-caps, window 32 on even layers; 26 layers, the 2B count llama.cpp recognises"),
            new(ModelFamily.Gemma2, "gemma-2-2b", Shape(ModelFamily.Gemma2, hidden: 2304, layers: 26, heads: 8, kvHeads: 4, headDim: 256,
                    intermediate: 9216, vocab: 256000, context: 8192, epsilon: 1e-6f, theta: 10_000f, tied: true,
                    window: 4096, attentionSoftCap: 50f, finalSoftCap: 30f),
                "the shape of google/gemma-2-2b"),
            new(ModelFamily.Gemma3, "tiny", Shape(ModelFamily.Gemma3, hidden: 64, layers: 6, heads: 4, kvHeads: 1, headDim: 32,
                    intermediate: 128, vocab: 512, context: 4096, epsilon: 1e-6f, theta: 1_000_000f, tied: true,
                    window: 32, localTheta: 10_000f),
                "Gemma 3 in miniature: q/k norms, window 32 on 5 of 6 layers, local rope base 10000"),
            new(ModelFamily.Gemma3, "gemma-3-1b", Shape(ModelFamily.Gemma3, hidden: 1152, layers: 26, heads: 4, kvHeads: 1, headDim: 256,
                    intermediate: 6912, vocab: 262144, context: 32768, epsilon: 1e-6f, theta: 1_000_000f, tied: true,
                    window: 512, localTheta: 10_000f),
                "the shape of google/gemma-3-1b-pt"),
        ];
    }

    /// <summary>
    /// A config with every field the family fixes set as the readers set it, the synthetic
    /// vocabulary's BOS/EOS, and query_pre_attn_scalar = head_dim (as in every preset's original).
    /// </summary>
    public static ModelConfig Shape(ModelFamily family, int hidden, int layers, int heads, int kvHeads, int headDim, int intermediate,
        int vocab, int context, float epsilon, float theta, bool tied, Llama3RopeParameters? llama3 = null, int? window = null,
        float? localTheta = null, float? attentionSoftCap = null, float? finalSoftCap = null)
    {
        bool sandwich = FamilyTraits.HasSandwichNorms(family);
        var sliding = new bool[layers];
        if (window is not null)
            for (int l = 0; l < layers; l++)
                sliding[l] = family == ModelFamily.Gemma2 ? l % 2 == 0 : (l + 1) % 6 != 0;
        var scaling = llama3 is null
            ? RopeScaling.None
            : new RopeScaling { Type = RopeScalingType.Llama3, Factor = llama3.Factor, Llama3 = llama3 };
        return new ModelConfig
        {
            Family = family,
            HiddenSize = hidden,
            LayerCount = layers,
            HeadCount = heads,
            KeyValueHeadCount = kvHeads,
            HeadDim = headDim,
            IntermediateSize = intermediate,
            VocabSize = vocab,
            ContextLength = context,
            RmsNormEpsilon = epsilon,
            RopeTheta = theta,
            RopeScaling = scaling,
            RopeFrequencyFactors = llama3 is null ? null : RopeFrequencyFactors.ComputeLlama3(theta, headDim, llama3),
            RopeLocalTheta = localTheta,
            SlidingWindow = window,
            SlidingWindowLayers = [.. sliding],
            AttentionLogitSoftCap = attentionSoftCap,
            FinalLogitSoftCap = finalSoftCap,
            QueryPreAttentionScalar = headDim,
            HasQueryKeyNorm = FamilyTraits.HasQueryKeyNorm(family),
            HasQkvBias = family == ModelFamily.Qwen2,
            TiedEmbeddings = tied,
            HasPostAttentionNorm = sandwich,
            HasPostFeedForwardNorm = sandwich,
            Activation = FamilyTraits.Activation(family),
            EmbeddingScale = FamilyTraits.EmbeddingScale(family, hidden),
            BosTokenId = SyntheticVocabulary.BosId,
            EosTokenId = SyntheticVocabulary.EosId,
            StopTokenIds = [SyntheticVocabulary.EosId],
        };
    }

    // ---------------------------------------------------------------- models

    /// <summary>A random model of a preset.</summary>
    /// <exception cref="ArgumentException">The family has no such preset.</exception>
    public static RandomModel Create(ModelFamily family, string preset, StorageType dataType, ulong seed) =>
        new(GetPreset(family, preset).Config, dataType, seed, $"random-{FamilyName(family)}-{GetPreset(family, preset).Name}-seed{seed}",
            RandomWeightScale.InitializerRange);

    /// <summary>A random model of any shape (its vocabulary must hold at least the 256 bytes, BOS and EOS).</summary>
    public static RandomModel Create(ModelConfig config, StorageType dataType, ulong seed, string name = "random",
        RandomWeightScale scale = RandomWeightScale.InitializerRange) =>
        new(config, dataType, seed, name, scale);

    /// <summary>Plans writing the model as a GGUF file.</summary>
    public ModelWritePlan PlanGguf(string path) => GgufModelWriter.Plan(path, Config, Tensors, Vocabulary, Name);

    /// <summary>Plans writing the model as a Hugging Face folder (config.json, model.safetensors, tokenizer files).</summary>
    public ModelWritePlan PlanHuggingFace(string folder) => HuggingFaceModelWriter.Plan(folder, Config, Tensors, Vocabulary);

    public ModelWritePlan Plan(ModelSourceFormat format, string path) => format switch
    {
        ModelSourceFormat.Gguf => PlanGguf(path),
        ModelSourceFormat.HuggingFace => PlanHuggingFace(path),
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "random models are written as GGUF or Hugging Face folders"),
    };

    /// <summary>The model as a checkpoint in memory, without any file (every tensor materialised).</summary>
    public ModelCheckpoint ToCheckpoint() => ModelCheckpoint.FromTensors(Config, Tensors, Name);

    // ---------------------------------------------------------------- demo

    /// <summary>
    /// The built-in demo model: Llama-style, hidden 64, 2 layers, 4 heads (2 kv), the 258-token byte
    /// vocabulary, context 512, f32, fan-in scaled weights from <see cref="DemoSeed"/>. Under 200K
    /// parameters, so it is built in milliseconds.
    /// </summary>
    public static ModelConfig DemoConfig { get; } = Shape(ModelFamily.Llama, hidden: 64, layers: 2, heads: 4, kvHeads: 2, headDim: 16,
        intermediate: 192, vocab: ByteTokenizer.Size, context: 512, epsilon: 1e-5f, theta: 10_000f, tied: false);

    /// <summary>The demo model as a checkpoint in memory; pair it with <see cref="DemoTokenizer"/>.</summary>
    public static ModelCheckpoint Demo() =>
        Create(DemoConfig, StorageType.F32, DemoSeed, "built-in demo model", RandomWeightScale.FanIn).ToCheckpoint();

    /// <summary>The demo model's tokenizer: one token per UTF-8 byte, then BOS and EOS.</summary>
    public static ByteTokenizer DemoTokenizer() => new();

    // ---------------------------------------------------------------- values

    static TensorSource Tensor(ExpectedTensor e, StorageType dataType, ulong seed, RandomWeightScale scale)
    {
        ulong key = Mix(Mix(seed) ^ NameHash(e.Name));
        if (e.Role == TensorRole.Norm)
            return TensorSource.FromFloat32(e.Name, dataType, e.Shape, (first, values) => NormValues(key, first, values));
        float std = scale switch
        {
            RandomWeightScale.FanIn => e.Role switch
            {
                TensorRole.Embedding => 1f,
                TensorRole.QueryBias or TensorRole.KeyBias or TensorRole.ValueBias => InitializerRange,
                _ => (float)(1 / Math.Sqrt(e.Shape[1])),
            },
            _ => InitializerRange,
        };
        // The sum of four 16-bit uniforms, centred: an integer x with std 2^17 / sqrt(3).
        float unit = (float)(std * Math.Sqrt(3) / (2 * 65536.0));
        return TensorSource.FromFloat32(e.Name, dataType, e.Shape, (first, values) => GaussianValues(key, unit, first, values));
    }

    static unsafe void GaussianValues(ulong key, float unit, long first, Span<float> values)
    {
        const int block = 1 << 15;
        fixed (float* start = values)
        {
            var p = (IntPtr)start;
            int count = values.Length;
            void Fill(int from, int to)
            {
                float* v = (float*)p;
                for (int i = from; i < to; i++)
                {
                    ulong bits = Mix(key + (ulong)(first + i) * Golden);
                    int sum = (int)(bits & 0xFFFF) + (int)((bits >> 16) & 0xFFFF) + (int)((bits >> 32) & 0xFFFF) + (int)(bits >> 48);
                    v[i] = (2 * sum - 4 * 65535) * unit;
                }
            }
            if (count <= 2 * block)
                Fill(0, count);
            else
                Parallel.For(0, (count + block - 1) / block, b => Fill(b * block, Math.Min(count, (b + 1) * block)));
        }
    }

    static void NormValues(ulong key, long first, Span<float> values)
    {
        for (int i = 0; i < values.Length; i++)
        {
            int k = (int)(Mix(key + (ulong)(first + i) * Golden) % 17) - 8;
            values[i] = (128 + k) / 128f;
        }
    }

    const ulong Golden = 0x9E3779B97F4A7C15;

    /// <summary>SplitMix64's finaliser: a bijection that scrambles every input bit into every output bit.</summary>
    static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
        return z ^ (z >> 31);
    }

    /// <summary>FNV-1a over the UTF-8 name: stable across runs and machines, unlike string.GetHashCode.</summary>
    static ulong NameHash(string name)
    {
        ulong hash = 0xCBF29CE484222325;
        foreach (byte b in Encoding.UTF8.GetBytes(name))
            hash = (hash ^ b) * 0x100000001B3;
        return hash;
    }
}
