using IlgpuLlm.Kernels;
using System.Collections.Immutable;

namespace IlgpuLlm.Model.Formats;

/// <summary>
/// Reads a llama.cpp GGUF into the normalised model: metadata keys as llama.cpp's
/// llama-model.cpp reads them (with its defaults where a key is optional), the hyper-parameters
/// llama.cpp hard-codes per architecture, and the llama-architecture q/k permutation undone.
/// </summary>
internal static class GgufModelReader
{
    public const string ArchitectureKey = "general.architecture";

    public static ModelCheckpoint Open(string path) => Open(GgufFile.Open(path));

    public static ModelCheckpoint Open(GgufFile gguf)
    {
        try
        {
            return Build(gguf);
        }
        catch
        {
            gguf.Dispose();
            throw;
        }
    }

    static ModelCheckpoint Build(GgufFile gguf)
    {
        foreach (var tensor in gguf.Tensors)
            if (GgmlTypeLayout.ToTensorDataType(tensor.Type) is null && GgmlTypeLayout.ToQuantFormat(tensor.Type) is null)
                throw new ModelFormatException(gguf.Path,
                    $"tensor '{tensor.Name}' is {GgmlTypeLayout.Name(tensor.Type)}; the supported tensor types are {GgmlTypeLayout.Readable} " +
                    "(the IQ*, TQ* and integer types are not)");

        var config = ReadConfig(gguf);

        var sources = new Dictionary<string, SourceTensor>(StringComparer.Ordinal);
        foreach (var tensor in gguf.Tensors)
        {
            if (tensor.Name == TensorNames.RopeFrequencies) continue; // consumed into the config
            var quantized = GgmlTypeLayout.ToQuantFormat(tensor.Type);
            sources.Add(tensor.Name, new SourceTensor(tensor.Name, tensor.Name, gguf.File, tensor.FileOffset,
                GgmlTypeLayout.ToTensorDataType(tensor.Type) ?? StorageType.F32, tensor.Shape, quantized));
        }

        var store = new TensorStore();
        store.Own(gguf);
        // llama.cpp applies adjacent-pair ("NORM") rope to the llama architecture only, which is
        // why its converter permutes q/k rows for it; qwen2 and the Gemmas use NEOX rope on
        // transformers-ordered rows and need nothing.
        var normalisation = new Normalisation(
            RotaryRowsInterleaved: config.Family == ModelFamily.Llama,
            NormsStoreOffsetFromOne: false); // Gemma GGUFs already hold 1 + w (convert_hf_to_gguf.py GemmaModel)
        return CheckpointAssembler.Assemble(gguf.Path, ModelSourceFormat.Gguf, config, sources, normalisation, store, gguf);
    }

    static ModelConfig ReadConfig(GgufFile gguf)
    {
        string architecture = gguf.GetString(ArchitectureKey);
        var family = architecture switch
        {
            "llama" => ModelFamily.Llama,
            "qwen2" => ModelFamily.Qwen2,
            "gemma" => ModelFamily.Gemma,
            "gemma2" => ModelFamily.Gemma2,
            "gemma3" => ModelFamily.Gemma3,
            _ => throw new ModelFormatException(gguf.Path,
                $"metadata key '{ArchitectureKey}': architecture '{architecture}' is not supported; expected llama, qwen2, gemma, gemma2 or gemma3"),
        };
        string Key(string name) => $"{architecture}.{name}";
        ModelFormatException Error(string key, string message) => new(gguf.Path, $"metadata key '{key}': {message}");

        int Positive(string key, uint value) =>
            value is > 0 and <= int.MaxValue ? (int)value : throw Error(key, $"expected a positive count, found {value}");

        int RequiredPositive(string key) => Positive(key, gguf.GetUInt32(key));

        // llama.cpp's get_key_or_arr: a per-layer array is allowed; the engine needs it uniform.
        int UniformPerLayer(string key, int layers, int? fallback)
        {
            if (!gguf.TryGetEntry(key, out var entry))
                return fallback ?? throw new ModelFormatException(gguf.Path, $"metadata key '{key}' is missing");
            if (entry.Value is not GgufArray)
                return RequiredPositive(key);
            int[] values = gguf.GetInt32Array(key);
            if (values.Length != layers)
                throw Error(key, $"expected one value per layer ({layers}), found {values.Length}");
            if (values.Any(v => v != values[0]))
                throw Error(key, $"per-layer values differ ({string.Join(", ", values.Distinct().Take(4))}…); only uniform layers are supported");
            return Positive(key, (uint)Math.Max(0, values[0]));
        }

        int hidden = RequiredPositive(Key("embedding_length"));
        int layers = RequiredPositive(Key("block_count"));
        long minimumTensors = (long)layers * ModelLayout.MinimumTensorsPerLayer;
        if (minimumTensors > gguf.Tensors.Count)
            throw Error(Key("block_count"),
                $"{layers} layers need at least {minimumTensors} tensors, the file has {gguf.Tensors.Count}");
        int heads = UniformPerLayer(Key("attention.head_count"), layers, null);
        int kvHeads = UniformPerLayer(Key("attention.head_count_kv"), layers, heads);
        int feedForward = UniformPerLayer(Key("feed_forward_length"), layers, null);
        if (heads % kvHeads != 0)
            throw Error(Key("attention.head_count_kv"), $"expected a divisor of head_count {heads}, found {kvHeads}");

        // llama.cpp: n_embd_head_k defaults to n_embd / n_head; GGUF Gemmas state it (256 ≠ 2048/8).
        int headDim;
        if (gguf.TryGetUInt32(Key("attention.key_length"), out uint keyLength))
            headDim = Positive(Key("attention.key_length"), keyLength);
        else if (hidden % heads == 0)
            headDim = hidden / heads;
        else
            throw Error(Key("attention.key_length"), $"missing, and embedding_length {hidden} is not a multiple of head_count {heads}");
        if (gguf.TryGetUInt32(Key("attention.value_length"), out uint valueLength) && valueLength != headDim)
            throw Error(Key("attention.value_length"), $"expected {headDim} (= key_length), found {valueLength}");
        if (gguf.TryGetUInt32(Key("rope.dimension_count"), out uint ropeDimensions) && ropeDimensions != headDim)
            throw Error(Key("rope.dimension_count"), $"expected {headDim} (rope over the whole head), found {ropeDimensions}; partial rotary is not supported");

        var embedding = gguf.TryGetTensor(TensorNames.TokenEmbedding, out var e) ? e
            : throw new ModelFormatException(gguf.Path, $"tensor '{TensorNames.TokenEmbedding}' is missing");
        if (embedding.Shape.Length != 2 || embedding.Shape[0] > int.MaxValue)
            throw new ModelFormatException(gguf.Path,
                $"tensor '{TensorNames.TokenEmbedding}': expected shape [vocab, {hidden}], found [{string.Join(", ", embedding.Shape)}]");
        int vocab = (int)embedding.Shape[0];
        if (gguf.TryGetUInt32(Key("vocab_size"), out uint statedVocab) && statedVocab != vocab)
            throw Error(Key("vocab_size"), $"expected {vocab} (rows of {TensorNames.TokenEmbedding}), found {statedVocab}");
        // llama.cpp sizes token_embd from the token list, so the two must agree.
        if (gguf.TryGetArray("tokenizer.ggml.tokens", out var tokens) && tokens.Count != vocab)
            throw Error("tokenizer.ggml.tokens", $"expected {vocab} tokens (rows of {TensorNames.TokenEmbedding}), found {tokens.Count}");

        float theta = gguf.TryGetFloat32(Key("rope.freq_base"), out float b) ? b : 10000f; // llama.cpp default
        var (ropeScaling, frequencyFactors) = ReadRopeScaling(gguf, architecture, family, headDim);

        bool gemma = family is ModelFamily.Gemma or ModelFamily.Gemma2 or ModelFamily.Gemma3;
        var (slidingWindow, slidingLayers) = ReadSlidingWindow(gguf, architecture, family, layers);

        float? attentionSoftCap = null, finalSoftCap = null;
        if (family == ModelFamily.Gemma2)
        {
            // llama.cpp's hparams default both caps to Gemma 2's values (50, 30) when the keys are absent.
            attentionSoftCap = OptionalCap(gguf, Key("attn_logit_softcapping"), 50f);
            finalSoftCap = OptionalCap(gguf, Key("final_logit_softcapping"), 30f);
        }

        // GGUFs carry no query_pre_attn_scalar. llama.cpp hard-codes it per model size: build_gemma2
        // and build_gemma3 scale q by 1/sqrt(n_embd / n_head) for the 27B models (46 and 62 layers)
        // and by 1/sqrt(head_dim) otherwise, matching the released configs.
        float queryPreAttentionScalar = (family, layers) switch
        {
            (ModelFamily.Gemma2, 46) or (ModelFamily.Gemma3, 62) => hidden / heads,
            _ => headDim,
        };

        // Gemma 3 sliding layers use a fixed local rope base in llama.cpp (10000, its
        // rope_freq_base_train_swa) unless a newer file states rope.freq_base_swa.
        float? localTheta = family == ModelFamily.Gemma3
            ? gguf.TryGetFloat32(Key("rope.freq_base_swa"), out float localBase) ? localBase : 10000f
            : null;

        int? bos = OptionalTokenId(gguf, "tokenizer.ggml.bos_token_id", vocab);
        int? eos = OptionalTokenId(gguf, "tokenizer.ggml.eos_token_id", vocab);
        int? eot = OptionalTokenId(gguf, "tokenizer.ggml.eot_token_id", vocab);
        int? pad = OptionalTokenId(gguf, "tokenizer.ggml.padding_token_id", vocab);

        return new ModelConfig
        {
            Family = family,
            HiddenSize = hidden,
            LayerCount = layers,
            HeadCount = heads,
            KeyValueHeadCount = kvHeads,
            HeadDim = headDim,
            IntermediateSize = feedForward,
            VocabSize = vocab,
            ContextLength = RequiredPositive(Key("context_length")),
            RmsNormEpsilon = gguf.GetFloat32(Key("attention.layer_norm_rms_epsilon")),
            RopeTheta = theta,
            RopeScaling = ropeScaling,
            RopeFrequencyFactors = frequencyFactors,
            RopeLocalTheta = localTheta,
            SlidingWindow = slidingWindow,
            SlidingWindowLayers = slidingLayers,
            AttentionLogitSoftCap = attentionSoftCap,
            FinalLogitSoftCap = finalSoftCap,
            QueryPreAttentionScalar = queryPreAttentionScalar,
            HasQueryKeyNorm = family == ModelFamily.Gemma3,
            HasQkvBias = family == ModelFamily.Qwen2
                || (family == ModelFamily.Llama && gguf.TryGetTensor(TensorNames.AttentionQueryBias(0), out _)),
            TiedEmbeddings = !gguf.TryGetTensor(TensorNames.Output, out _),
            HasPostAttentionNorm = family is ModelFamily.Gemma2 or ModelFamily.Gemma3,
            HasPostFeedForwardNorm = family is ModelFamily.Gemma2 or ModelFamily.Gemma3,
            Activation = gemma ? Activation.GeluTanh : Activation.Silu,
            EmbeddingScale = gemma ? (float)Math.Sqrt(hidden) : 1f,
            BosTokenId = bos,
            EosTokenId = eos,
            EotTokenId = eot,
            PadTokenId = pad,
            StopTokenIds = [.. new[] { eos, eot }.OfType<int>().Distinct().Order()],
        };
    }

    static (RopeScaling, ImmutableArray<float>?) ReadRopeScaling(GgufFile gguf, string architecture, ModelFamily family, int headDim)
    {
        string typeKey = $"{architecture}.rope.scaling.type";
        float factor = gguf.TryGetFloat32($"{architecture}.rope.scaling.factor", out float f) ? f
            : gguf.TryGetFloat32($"{architecture}.rope.scale_linear", out float legacy) ? legacy
            : 0f;
        // llama.cpp: the type defaults to "linear", and a factor of 0 (absent) means no scaling.
        string type = gguf.TryGetString(typeKey, out string t) ? t : "linear";
        RopeScaling scaling = type switch
        {
            "none" => RopeScaling.None,
            "linear" when factor == 0 || factor == 1 => RopeScaling.None,
            "linear" when float.IsFinite(factor) && factor > 0 => RopeScaling.Linear(factor),
            "linear" => throw new ModelFormatException(gguf.Path,
                $"metadata key '{architecture}.rope.scaling.factor': expected a positive factor, found {factor}"),
            _ => throw new ModelFormatException(gguf.Path,
                $"metadata key '{typeKey}': rope scaling '{type}' is not supported; expected none, linear, or Llama 3 factors in {TensorNames.RopeFrequencies}"),
        };

        if (!gguf.TryGetTensor(TensorNames.RopeFrequencies, out var frequencies))
            return (scaling, null);

        // llama.cpp's converter writes rope_freqs only for Llama 3 rope scaling (LlamaModel.generate_extra_tensors).
        if (family != ModelFamily.Llama)
            throw new ModelFormatException(gguf.Path,
                $"tensor '{TensorNames.RopeFrequencies}' is unexpected in a {architecture} model (llama.cpp writes it for Llama 3 rope scaling only)");
        if (scaling.Type != RopeScalingType.None)
            throw new ModelFormatException(gguf.Path,
                $"tensor '{TensorNames.RopeFrequencies}' together with metadata key '{typeKey}' = {type} is not supported (two rope scalings at once)");
        if (frequencies.Shape.Length != 1 || frequencies.Shape[0] != headDim / 2)
            throw new ModelFormatException(gguf.Path,
                $"tensor '{TensorNames.RopeFrequencies}': expected shape [{headDim / 2}] (head_dim / 2), found [{string.Join(", ", frequencies.Shape)}]");

        if (GgmlTypeLayout.ToTensorDataType(frequencies.Type) is not StorageType frequencyType)
            throw new ModelFormatException(gguf.Path,
                $"tensor '{TensorNames.RopeFrequencies}' is {GgmlTypeLayout.Name(frequencies.Type)}; expected F32 (llama.cpp's converter writes it so)");
        var values = new float[headDim / 2];
        frequencyType.Format().Widen(gguf.GetTensorBytes(frequencies), values);
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i]) || values[i] <= 0)
                throw new ModelFormatException(gguf.Path,
                    $"tensor '{TensorNames.RopeFrequencies}': element {i} is {values[i]}; expected a positive finite divisor");
        // The GGUF does not state the Llama 3 parameters, only their outcome. The largest divisor is
        // the scaling factor for any model whose lowest frequency lies in the low-frequency band,
        // which holds for every released Llama 3.x (and the shared test models).
        return (new RopeScaling { Type = RopeScalingType.Llama3, Factor = values.Max() }, [.. values]);
    }

    static (int?, ImmutableArray<bool>) ReadSlidingWindow(GgufFile gguf, string architecture, ModelFamily family, int layers)
    {
        if (family is not (ModelFamily.Gemma2 or ModelFamily.Gemma3))
            return (null, ImmutableArray.Create(new bool[layers]));

        string windowKey = $"{architecture}.attention.sliding_window";
        int window;
        if (gguf.TryGetUInt32(windowKey, out uint w))
            window = w is > 0 and <= int.MaxValue ? (int)w : throw new ModelFormatException(gguf.Path,
                $"metadata key '{windowKey}': expected a positive window, found {w}");
        else if (family == ModelFamily.Gemma2)
            window = 4096; // llama.cpp: "default value of gemma 2" when the key is absent
        else
            throw new ModelFormatException(gguf.Path, $"metadata key '{windowKey}' is missing");

        // Neither Gemma 2 nor Gemma 3 GGUFs from convert_hf_to_gguf.py state which layers slide;
        // llama.cpp hard-codes the pattern: every other layer starting with layer 0 for Gemma 2
        // (il % 2 == 0, transformers' layer_types likewise), and 5 of every 6 for Gemma 3
        // (llama.cpp PR #12343: pattern 6, the 6th layer global). A newer file may state it in
        // attention.sliding_window_pattern: a period n (llama.cpp's set_swa_pattern: layer il
        // slides iff n == 0 or il % n < n - 1) or one bool per layer.
        string patternKey = $"{architecture}.attention.sliding_window_pattern";
        var sliding = new bool[layers];
        if (gguf.TryGetEntry(patternKey, out var entry) && entry.Value is GgufArray)
        {
            var stated = gguf.GetBoolArray(patternKey);
            if (stated.Length != layers)
                throw new ModelFormatException(gguf.Path,
                    $"metadata key '{patternKey}': expected one bool per layer ({layers}), found {stated.Length}");
            sliding = stated;
        }
        else
        {
            uint period = entry is not null ? gguf.GetUInt32(patternKey) : family == ModelFamily.Gemma2 ? 2u : 6u;
            for (int layer = 0; layer < layers; layer++)
                sliding[layer] = period == 0 || layer % period < period - 1;
        }
        return sliding.Contains(true) ? (window, [.. sliding]) : (null, [.. sliding]);
    }

    static float? OptionalCap(GgufFile gguf, string key, float fallback)
    {
        float cap = gguf.TryGetFloat32(key, out float value) ? value : fallback;
        return cap == 0 ? null : cap;
    }

    /// <summary>A token id, or null when absent or negative / LLAMA_TOKEN_NULL (writers use -1 for "none").</summary>
    static int? OptionalTokenId(GgufFile gguf, string key, int vocab)
    {
        if (!gguf.TryGetEntry(key, out var entry)) return null;
        long id = entry.Value switch
        {
            uint u => u,
            int i => i,
            ulong u => u > int.MaxValue ? -1 : (long)u,
            long l => l,
            ushort u => u,
            short s => s,
            byte u => u,
            sbyte s => s,
            _ => throw new ModelFormatException(gguf.Path, $"metadata key '{key}': expected an integer token id, found {entry.Type}"),
        };
        if (id is < 0 or >= int.MaxValue) return null;
        return id < vocab ? (int)id
            : throw new ModelFormatException(gguf.Path, $"metadata key '{key}': token id {id} is not below the vocabulary size {vocab}");
    }
}
