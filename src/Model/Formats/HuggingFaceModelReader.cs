using IlgpuLlm.Kernels;
using System.Collections.Immutable;
using System.Text.Json;

namespace IlgpuLlm.Model.Formats;

/// <summary>
/// Reads a transformers model folder: config.json (and generation_config.json for stop tokens)
/// interpreted with the defaults of transformers' config classes, weights from
/// model.safetensors or a sharded model.safetensors.index.json. Tensors are already in the
/// target layout; only Gemma norm weights change (w → 1 + w).
/// </summary>
internal static class HuggingFaceModelReader
{
    public const string ConfigFileName = "config.json";
    public const string GenerationConfigFileName = "generation_config.json";
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    public static ModelCheckpoint Open(string folder)
    {
        if (!Directory.Exists(folder))
            throw new ModelFormatException(folder, "not a folder (a Hugging Face model is a folder with config.json and safetensors)");
        string configPath = Path.Combine(folder, ConfigFileName);
        if (!File.Exists(configPath))
            throw new ModelFormatException(folder, $"{ConfigFileName} is missing");

        var store = new TensorStore();
        try
        {
            var files = OpenWeights(folder, store);
            using var configDocument = JsonConfigReader.Parse(configPath);
            var config = new JsonConfigReader(configPath, configDocument.RootElement);
            var family = ReadFamily(config);

            int tensorCount = files.Sum(f => f.Tensors.Length);
            var modelConfig = ReadConfig(config, family, tensorCount, ReadGenerationConfig(folder));

            var sources = new Dictionary<string, SourceTensor>(StringComparer.Ordinal);
            foreach (var file in files)
                foreach (var tensor in file.Tensors)
                    AddSource(file, tensor, family, modelConfig, sources);

            var normalisation = new Normalisation(
                RotaryRowsInterleaved: false,
                NormsStoreOffsetFromOne: family is ModelFamily.Gemma or ModelFamily.Gemma2 or ModelFamily.Gemma3);
            return CheckpointAssembler.Assemble(folder, ModelSourceFormat.HuggingFace, modelConfig, sources, normalisation,
                store, gguf: null, describeSourceName: name => TensorNames.ToHuggingFace(name, family));
        }
        catch
        {
            store.Dispose();
            throw;
        }
    }

    static void AddSource(SafetensorsFile file, SafetensorsTensorInfo tensor, ModelFamily family, ModelConfig config,
        Dictionary<string, SourceTensor> sources)
    {
        string? canonical = TensorNames.FromHuggingFace(tensor.Name, family, out bool ignorable);
        if (ignorable) return;
        if (canonical is null)
            throw new ModelFormatException(file.Path,
                $"unexpected tensor '{tensor.Name}': not a weight of a {family} decoder (multimodal or unsupported variant?)");
        // transformers ties lm_head to embed_tokens on load when tie_word_embeddings is set,
        // ignoring a stored copy; do the same.
        if (canonical == TensorNames.Output && config.TiedEmbeddings) return;
        var dataType = StorageFormat.FromSafetensorsName(tensor.DType)?.Type
            ?? throw new ModelFormatException(file.Path,
                $"tensor '{tensor.Name}' has dtype {tensor.DType}; only {string.Join(", ", StorageFormat.All.Select(f => f.SafetensorsName).OfType<string>())} are supported");
        if (!sources.TryAdd(canonical, new SourceTensor(canonical, tensor.Name, file.File, tensor.FileOffset, dataType, tensor.Shape)))
            throw new ModelFormatException(file.Path, $"tensor '{tensor.Name}' appears in more than one shard");
    }

    // ------------------------------------------------------------------ weights

    static List<SafetensorsFile> OpenWeights(string folder, TensorStore store)
    {
        string single = Path.Combine(folder, SingleFileName);
        string index = Path.Combine(folder, IndexFileName);
        // transformers looks for the single file first.
        if (File.Exists(single))
        {
            var file = SafetensorsFile.Open(single);
            store.Own(file);
            return [file];
        }
        if (!File.Exists(index))
            throw new ModelFormatException(folder,
                $"no weights: neither '{SingleFileName}' nor '{IndexFileName}' is present (only safetensors is supported)");
        return OpenShards(folder, index, store);
    }

    static List<SafetensorsFile> OpenShards(string folder, string indexPath, TensorStore store)
    {
        using var document = JsonConfigReader.Parse(indexPath);
        var index = new JsonConfigReader(indexPath, document.RootElement);
        if (!index.TryGet("weight_map", out var weightMap) || weightMap.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException(indexPath, "key 'weight_map' is missing or not an object");

        var shardOfTensor = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in weightMap.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.String)
                throw new ModelFormatException(indexPath, $"key 'weight_map.{entry.Name}': expected a shard file name, found {entry.Value.ValueKind}");
            string shard = entry.Value.GetString()!;
            // Shards are files beside the index; anything else (a path, "..") is refused.
            if (shard.Length == 0 || shard != Path.GetFileName(shard) || shard is "." or ".." || shard.Contains('/') || shard.Contains('\\'))
                throw new ModelFormatException(indexPath, $"key 'weight_map.{entry.Name}': shard '{shard}' is not a plain file name in the model folder");
            if (!shardOfTensor.TryAdd(entry.Name, shard))
                throw new ModelFormatException(indexPath, $"key 'weight_map.{entry.Name}' appears twice");
        }
        if (shardOfTensor.Count == 0)
            throw new ModelFormatException(indexPath, "key 'weight_map' lists no tensors");

        var files = new List<SafetensorsFile>();
        foreach (string shard in shardOfTensor.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal))
        {
            string shardPath = Path.Combine(folder, shard);
            if (!File.Exists(shardPath))
                throw new ModelFormatException(indexPath, $"shard '{shard}' named in weight_map is missing");
            var file = SafetensorsFile.Open(shardPath);
            store.Own(file);
            files.Add(file);
            foreach (var tensor in file.Tensors)
                if (!shardOfTensor.TryGetValue(tensor.Name, out var listed) || listed != shard)
                    throw new ModelFormatException(shardPath,
                        $"tensor '{tensor.Name}' is in this shard but weight_map {(listed is null ? "does not list it" : $"places it in '{listed}'")}");
        }
        foreach (var (tensor, shard) in shardOfTensor)
            if (!files.First(f => Path.GetFileName(f.Path) == shard).TensorsByName.ContainsKey(tensor))
                throw new ModelFormatException(Path.Combine(folder, shard), $"tensor '{tensor}' is listed in {IndexFileName} but absent from this shard");
        return files;
    }

    // ------------------------------------------------------------------ config

    static ModelFamily ReadFamily(JsonConfigReader config)
    {
        string modelType = config.OptionalString("model_type")
            ?? throw new ModelFormatException(config.Path, "key 'model_type' is missing");
        return modelType switch
        {
            "llama" => ModelFamily.Llama,
            "qwen2" => ModelFamily.Qwen2,
            "gemma" => ModelFamily.Gemma,
            "gemma2" => ModelFamily.Gemma2,
            "gemma3_text" => ModelFamily.Gemma3,
            "gemma3" => throw new ModelFormatException(config.Path,
                "key 'model_type': 'gemma3' is the multimodal Gemma3ForConditionalGeneration; only the text model ('gemma3_text') is supported"),
            _ => throw new ModelFormatException(config.Path,
                $"key 'model_type': architecture '{modelType}' is not supported; expected llama, qwen2, gemma, gemma2 or gemma3_text"),
        };
    }

    sealed record GenerationConfig(int? Bos, int[] Eos, int? Pad);

    static GenerationConfig? ReadGenerationConfig(string folder)
    {
        string path = Path.Combine(folder, GenerationConfigFileName);
        if (!File.Exists(path)) return null;
        using var document = JsonConfigReader.Parse(path);
        var reader = new JsonConfigReader(path, document.RootElement);
        return new GenerationConfig(reader.OptionalInt("bos_token_id"), reader.IntOrIntArray("eos_token_id"), reader.OptionalInt("pad_token_id"));
    }

    static ModelConfig ReadConfig(JsonConfigReader c, ModelFamily family, int tensorCount, GenerationConfig? generation)
    {
        bool gemma = family is ModelFamily.Gemma or ModelFamily.Gemma2 or ModelFamily.Gemma3;
        bool sandwich = family is ModelFamily.Gemma2 or ModelFamily.Gemma3;
        ModelFormatException Error(string key, string message) => new(c.Path, $"key '{key}': {message}");

        int hidden = c.RequiredPositiveInt("hidden_size");
        int layers = c.RequiredPositiveInt("num_hidden_layers");
        long minimumTensors = (long)layers * ModelLayout.MinimumTensorsPerLayer;
        if (minimumTensors > tensorCount)
            throw Error("num_hidden_layers", $"{layers} layers need at least {minimumTensors} tensors, the safetensors hold {tensorCount}");
        int heads = c.RequiredPositiveInt("num_attention_heads");
        int kvHeads = c.OptionalPositiveInt("num_key_value_heads") ?? heads;
        if (heads % kvHeads != 0)
            throw Error("num_key_value_heads", $"expected a divisor of num_attention_heads {heads}, found {kvHeads}");
        // transformers: Gemma's head_dim defaults to 256; Llama/Qwen2 fall back to hidden / heads.
        int headDim = c.OptionalPositiveInt("head_dim") ?? (gemma ? 256
            : hidden % heads == 0 ? hidden / heads
            : throw Error("head_dim", $"missing, and hidden_size {hidden} is not a multiple of num_attention_heads {heads}"));

        // Defaults of transformers' config classes where a key may be absent.
        float defaultTheta = family == ModelFamily.Gemma3 ? 1_000_000f : 10_000f;
        int defaultContext = family switch
        {
            ModelFamily.Llama => 2048,
            ModelFamily.Qwen2 => 32768,
            ModelFamily.Gemma3 => 131072,
            _ => 8192,
        };

        // Rope: transformers ≤ 4.x states rope_theta + rope_scaling; 5.x nests both in
        // rope_parameters (per layer type for Gemma 3).
        float theta;
        float? localTheta = null;
        JsonConfigReader? scaling;
        if (!c.Has("rope_scaling") && c.OptionalObject("rope_parameters") is { } parameters)
        {
            var global = parameters.OptionalObject("full_attention") ?? parameters;
            theta = global.OptionalFloat("rope_theta") ?? c.OptionalFloat("rope_theta") ?? defaultTheta;
            scaling = global;
            localTheta = parameters.OptionalObject("sliding_attention")?.OptionalFloat("rope_theta");
        }
        else
        {
            theta = c.OptionalFloat("rope_theta") ?? defaultTheta;
            scaling = c.OptionalObject("rope_scaling");
        }
        var (ropeScaling, frequencyFactors) = ReadRopeScaling(c, scaling, family, theta, headDim);
        if (family == ModelFamily.Gemma3)
            localTheta ??= c.OptionalFloat("rope_local_base_freq") ?? 10_000f;
        else
            localTheta = null;

        var (window, slidingLayers) = ReadSlidingWindow(c, family, layers);

        float? attentionSoftCap = null, finalSoftCap = null;
        if (gemma && family != ModelFamily.Gemma)
        {
            // Gemma2Config defaults the caps to 50 and 30; Gemma3TextConfig to none. An explicit
            // null disables a cap in both.
            attentionSoftCap = c.IsExplicitNull("attn_logit_softcapping") ? null
                : c.OptionalFloat("attn_logit_softcapping") ?? (family == ModelFamily.Gemma2 ? 50f : null);
            finalSoftCap = c.IsExplicitNull("final_logit_softcapping") ? null
                : c.OptionalFloat("final_logit_softcapping") ?? (family == ModelFamily.Gemma2 ? 30f : null);
        }

        float queryPreAttentionScalar = sandwich ? c.OptionalFloat("query_pre_attn_scalar") ?? 256f : headDim;

        Activation activation;
        if (gemma)
        {
            // transformers' Gemma MLP takes hidden_activation and, when it is unset, uses
            // gelu_pytorch_tanh whatever hidden_act says (early Gemma configs said "gelu");
            // llama.cpp always uses the tanh form.
            string name = c.OptionalString("hidden_activation") ?? "gelu_pytorch_tanh";
            activation = name is "gelu_pytorch_tanh" or "gelu_new"
                ? Activation.GeluTanh
                : throw Error("hidden_activation", $"'{name}' is not supported; expected gelu_pytorch_tanh");
        }
        else
        {
            string name = c.OptionalString("hidden_act") ?? "silu";
            activation = name == "silu" ? Activation.Silu
                : throw Error("hidden_act", $"'{name}' is not supported; expected silu");
        }

        if (c.OptionalBool("mlp_bias") == true)
            throw Error("mlp_bias", "true is not supported (feed-forward biases)");
        if (family != ModelFamily.Qwen2 && c.OptionalBool("attention_bias") == true)
            throw Error("attention_bias", "true is not supported (it adds an o_proj bias as well as q/k/v biases)");

        bool tied = c.OptionalBool("tie_word_embeddings") ?? gemma; // LlamaConfig/Qwen2Config: false, Gemma*: true

        int vocab = c.RequiredPositiveInt("vocab_size");
        // transformers writes -1 (or null) for "no such token"; an id past the vocabulary is an error.
        int? TokenId(int? id, string key) => id switch
        {
            null or < 0 => null,
            _ when id >= vocab => throw Error(key, $"token id {id} is not below vocab_size {vocab}"),
            _ => id,
        };
        var eosIds = c.IntOrIntArray("eos_token_id").Select(id => TokenId(id, "eos_token_id")).OfType<int>().ToArray();
        var generationEos = (generation?.Eos ?? []).Select(id => TokenId(id, $"{GenerationConfigFileName} eos_token_id")).OfType<int>();
        var allEos = eosIds.Concat(generationEos).Distinct().Order().ToArray();

        return new ModelConfig
        {
            Family = family,
            HiddenSize = hidden,
            LayerCount = layers,
            HeadCount = heads,
            KeyValueHeadCount = kvHeads,
            HeadDim = headDim,
            IntermediateSize = c.RequiredPositiveInt("intermediate_size"),
            VocabSize = vocab,
            ContextLength = c.OptionalPositiveInt("max_position_embeddings") ?? defaultContext,
            RmsNormEpsilon = c.OptionalFloat("rms_norm_eps") ?? 1e-6f,
            RopeTheta = theta,
            RopeScaling = ropeScaling,
            RopeFrequencyFactors = frequencyFactors,
            RopeLocalTheta = localTheta,
            SlidingWindow = window,
            SlidingWindowLayers = slidingLayers,
            AttentionLogitSoftCap = attentionSoftCap,
            FinalLogitSoftCap = finalSoftCap,
            QueryPreAttentionScalar = queryPreAttentionScalar,
            HasQueryKeyNorm = family == ModelFamily.Gemma3,
            HasQkvBias = family == ModelFamily.Qwen2,
            TiedEmbeddings = tied,
            HasPostAttentionNorm = sandwich,
            HasPostFeedForwardNorm = sandwich,
            Activation = activation,
            EmbeddingScale = gemma ? (float)Math.Sqrt(hidden) : 1f,
            BosTokenId = TokenId(c.OptionalInt("bos_token_id") ?? generation?.Bos, "bos_token_id"),
            EosTokenId = eosIds.Length > 0 ? eosIds[0] : allEos.Length > 0 ? allEos[0] : null,
            PadTokenId = TokenId(c.OptionalInt("pad_token_id") ?? generation?.Pad, "pad_token_id"),
            StopTokenIds = [.. allEos],
        };
    }

    static (RopeScaling, ImmutableArray<float>?) ReadRopeScaling(JsonConfigReader config, JsonConfigReader? scaling,
        ModelFamily family, float theta, int headDim)
    {
        if (scaling is not { } s) return (RopeScaling.None, null);
        string type = s.OptionalString("rope_type") ?? s.OptionalString("type")
            ?? throw new ModelFormatException(config.Path, "key 'rope_scaling.rope_type' is missing");
        switch (type)
        {
            case "default":
                return (RopeScaling.None, null);
            case "linear":
            {
                float factor = (float)s.RequiredDouble("factor");
                if (!(factor > 0))
                    throw new ModelFormatException(config.Path, $"key 'rope_scaling.factor': expected a positive factor, found {factor}");
                return (factor == 1 ? RopeScaling.None : RopeScaling.Linear(factor), null);
            }
            case "llama3" when family == ModelFamily.Llama:
            {
                var parameters = new Llama3RopeParameters(
                    Factor: (float)s.RequiredDouble("factor"),
                    LowFreqFactor: (float)s.RequiredDouble("low_freq_factor"),
                    HighFreqFactor: (float)s.RequiredDouble("high_freq_factor"),
                    OriginalMaxPositionEmbeddings: s.RequiredPositiveInt("original_max_position_embeddings"));
                if (!(parameters.Factor > 0) || !(parameters.LowFreqFactor > 0) || !(parameters.HighFreqFactor > parameters.LowFreqFactor))
                    throw new ModelFormatException(config.Path,
                        $"key 'rope_scaling': llama3 needs factor > 0 and 0 < low_freq_factor < high_freq_factor, found {parameters}");
                var factors = RopeFrequencyFactors.ComputeLlama3(theta, headDim, parameters);
                return (new RopeScaling { Type = RopeScalingType.Llama3, Factor = parameters.Factor, Llama3 = parameters }, factors);
            }
            default:
                throw new ModelFormatException(config.Path,
                    $"key 'rope_scaling.rope_type': '{type}' is not supported for {family}; expected default, linear{(family == ModelFamily.Llama ? " or llama3" : "")}");
        }
    }

    static (int?, ImmutableArray<bool>) ReadSlidingWindow(JsonConfigReader c, ModelFamily family, int layers)
    {
        var sliding = new bool[layers];
        int? window = null;
        switch (family)
        {
            case ModelFamily.Gemma2:
            case ModelFamily.Gemma3:
                window = c.OptionalPositiveInt("sliding_window") ?? 4096; // both config classes default to 4096
                if (!ReadLayerTypes(c, sliding))
                {
                    // Older configs state no layer_types. transformers then slides even layers
                    // (Gemma 2: not bool(layer_idx % 2)) and, for Gemma 3, all but every
                    // sliding_window_pattern-th layer ((i + 1) % pattern != 0).
                    int pattern = family == ModelFamily.Gemma2 ? 2 : c.OptionalPositiveInt("sliding_window_pattern") ?? 6;
                    for (int layer = 0; layer < layers; layer++)
                        sliding[layer] = (layer + 1) % pattern != 0;
                }
                break;
            case ModelFamily.Qwen2 when c.OptionalBool("use_sliding_window") == true:
                // Qwen2Config: layers from max_window_layers on use the window (llama.cpp ignores it).
                window = c.RequiredPositiveInt("sliding_window");
                if (!ReadLayerTypes(c, sliding))
                {
                    int first = c.OptionalInt("max_window_layers") ?? 28;
                    for (int layer = 0; layer < layers; layer++)
                        sliding[layer] = layer >= first;
                }
                break;
        }
        return sliding.Contains(true) ? (window, [.. sliding]) : (null, [.. sliding]);
    }

    static bool ReadLayerTypes(JsonConfigReader c, bool[] sliding)
    {
        var types = c.OptionalStringArray("layer_types");
        if (types is null) return false;
        if (types.Length != sliding.Length)
            throw new ModelFormatException(c.Path, $"key 'layer_types': expected {sliding.Length} entries (num_hidden_layers), found {types.Length}");
        for (int i = 0; i < types.Length; i++)
            sliding[i] = types[i] switch
            {
                "sliding_attention" => true,
                "full_attention" => false,
                var other => throw new ModelFormatException(c.Path,
                    $"key 'layer_types': entry {i} is '{other}'; expected sliding_attention or full_attention"),
            };
        return true;
    }
}
