using IlgpuLlm.Kernels;
using IlgpuLlm.Model.Tokenizers;
using System.Text.Json;

namespace IlgpuLlm.Model.Formats;

/// <summary>
/// Writes a model as a transformers folder: <c>config.json</c> with the model class's own field
/// names (model_type, architectures, sizes, rope_theta and rope_scaling, sliding_window and
/// layer_types, query_pre_attn_scalar, soft-caps, tie_word_embeddings, torch_dtype, token ids),
/// <c>model.safetensors</c> with transformers' tensor names and layout (Gemma norms stored as w,
/// the multiplier minus one), and, given a byte-level vocabulary, <c>tokenizer.json</c> and
/// <c>tokenizer_config.json</c>. <see cref="ModelCheckpoint"/> opens the folder as the same config
/// and tensors that were written, bit for bit.
/// </summary>
public static class HuggingFaceModelWriter
{
    public const string TokenizerFileName = "tokenizer.json";
    public const string TokenizerConfigFileName = "tokenizer_config.json";

    /// <summary>transformers' <c>model_type</c> of a family (Gemma 3: the text-only model).</summary>
    public static string ModelType(ModelFamily family) => family switch
    {
        ModelFamily.Llama => "llama",
        ModelFamily.Qwen2 => "qwen2",
        ModelFamily.Gemma => "gemma",
        ModelFamily.Gemma2 => "gemma2",
        ModelFamily.Gemma3 => "gemma3_text",
        _ => throw new ArgumentOutOfRangeException(nameof(family), family, null),
    };

    /// <summary>The transformers class config.json lists under <c>architectures</c>.</summary>
    public static string ArchitectureClass(ModelFamily family) => family switch
    {
        ModelFamily.Llama => "LlamaForCausalLM",
        ModelFamily.Qwen2 => "Qwen2ForCausalLM",
        ModelFamily.Gemma => "GemmaForCausalLM",
        ModelFamily.Gemma2 => "Gemma2ForCausalLM",
        ModelFamily.Gemma3 => "Gemma3ForCausalLM",
        _ => throw new ArgumentOutOfRangeException(nameof(family), family, null),
    };

    /// <summary>transformers' <c>torch_dtype</c> name of a storage type.</summary>
    public static string TorchDType(StorageType type) =>
        type.Format().TorchName ?? throw new NotSupportedException($"transformers has no torch_dtype for {type.Name()}");

    /// <summary>Plans writing the folder; nothing is written until <see cref="ModelWritePlan.Write"/>.</summary>
    /// <exception cref="NotSupportedException">The config has something config.json cannot express.</exception>
    /// <exception cref="ArgumentException">The tensors are not exactly the set the config implies, or the vocabulary does not fit.</exception>
    public static ModelWritePlan Plan(string folder, ModelConfig config, IEnumerable<TensorSource> tensors, TokenizerVocabulary? vocabulary = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(tensors);
        EnsureRepresentable(config);
        var matched = ModelWriting.MatchTensors(config, tensors);
        vocabulary?.Validate(config.VocabSize);

        var weights = Weights(config, matched);
        var dtype = DominantType(matched.Select(m => m.Source));
        var configJson = ConfigJson(config, dtype);
        // The weights first and config.json last: a folder whose config.json exists is complete,
        // and a write that fails part-way leaves nothing a reader would take for a model.
        string weightsPath = Path.Combine(folder, HuggingFaceModelReader.SingleFileName);
        var files = new List<PlannedFile>
        {
            new(weightsPath, weights.Length, (progress, done, cancellation) => weights.WriteTo(weightsPath, progress, done, cancellation)),
        };
        if (vocabulary is not null)
        {
            if (vocabulary.Model != "gpt2")
                throw new NotSupportedException($"only byte-level BPE (gpt2) vocabularies can be written as tokenizer.json, not '{vocabulary.Model}'");
            files.Add(Bytes(Path.Combine(folder, TokenizerFileName), TokenizerJson(config, vocabulary)));
            files.Add(Bytes(Path.Combine(folder, TokenizerConfigFileName), TokenizerConfigJson(config, vocabulary)));
        }
        files.Add(Bytes(Path.Combine(folder, HuggingFaceModelReader.ConfigFileName), configJson));
        return new ModelWritePlan(folder, ModelSourceFormat.HuggingFace, files);
    }

    static PlannedFile Bytes(string path, byte[] bytes) =>
        new(path, bytes.Length, (progress, done, cancellation) =>
            FileOutput.Write(path, bytes.Length, stream => stream.Write(bytes), progress, done, cancellation));

    static StorageType DominantType(IEnumerable<TensorSource> tensors)
    {
        var types = tensors.Where(t => t.Shape.Length >= 2).Select(t => t.DataType).ToList();
        return types.Count == 0 ? StorageType.F32 : types.GroupBy(t => t).OrderByDescending(g => g.Count()).First().Key;
    }

    static SafetensorsWriter Weights(ModelConfig config, List<(ExpectedTensor Expected, TensorSource Source)> matched)
    {
        bool gemma = FamilyTraits.IsGemma(config.Family);
        var writer = new SafetensorsWriter().AddMetadata("format", "pt");
        foreach (var (expected, source) in matched)
        {
            string name = TensorNames.ToHuggingFace(source.Name, config.Family);
            if (gemma && expected.Role == TensorRole.Norm)
            {
                // transformers' Gemma RMSNorm multiplies by (1 + w) and stores w; the reader adds the
                // one back in f32. Keep the source's dtype where that round trip is exact, else F32.
                var type = GemmaOffsetType(source);
                writer.AddTensor(name, type, source.Shape, stream =>
                    ModelWriting.CopyMapped(stream, source, type, m => m - 1f, w => 1f + w, "a Gemma norm offset w = m - 1"));
            }
            else
                writer.AddTensor(name, source.DataType, source.Shape, stream => ModelWriting.Copy(stream, source, source.DataType));
        }
        return writer;
    }

    static StorageType GemmaOffsetType(TensorSource source)
    {
        var values = source.ToFloat32Array();
        bool Exact(StorageType type) => values.All(m =>
            BitConverter.SingleToInt32Bits(1f + type.Format().RoundTrip(m - 1f)) == BitConverter.SingleToInt32Bits(m));
        if (Exact(source.DataType)) return source.DataType;
        if (Exact(StorageType.F32)) return StorageType.F32;
        int bad = Array.FindIndex(values, m => BitConverter.SingleToInt32Bits(1f + (m - 1f)) != BitConverter.SingleToInt32Bits(m));
        throw new NotSupportedException(
            $"tensor '{source.Name}': Gemma norm multiplier {values[bad]:R} (element {bad}) is not 1 + w for any f32 w, so transformers' layout cannot hold it");
    }

    /// <summary>Refuses a config that config.json cannot state for its model class.</summary>
    /// <exception cref="NotSupportedException">Names what cannot be expressed.</exception>
    public static void EnsureRepresentable(ModelConfig c)
    {
        ArgumentNullException.ThrowIfNull(c);
        ModelLayout.Validate(c, "(Hugging Face writer)");
        ModelWriting.CheckFamilyInvariants(c, "Hugging Face");
        void Require(bool ok, string what)
        {
            if (!ok) throw new NotSupportedException($"a transformers {ModelType(c.Family)} config cannot express {what}");
        }
        Require(c.Family != ModelFamily.Llama || !c.HasQkvBias, "q/k/v biases without an o_proj bias (attention_bias adds both)");
        Require(c.Family is ModelFamily.Gemma2 or ModelFamily.Gemma3 or ModelFamily.Qwen2 || c.SlidingWindow is null, "sliding-window attention");
        if (c.RopeScaling.Type == RopeScalingType.Llama3)
        {
            Require(c.RopeScaling.Llama3 is not null, "Llama 3 rope scaling known only as frequency factors (its parameters are not stated)");
            var factors = RopeFrequencyFactors.ComputeLlama3(c.RopeTheta, c.HeadDim, c.RopeScaling.Llama3!);
            Require(factors.SequenceEqual(c.RopeFrequencyFactors!.Value), "Llama 3 frequency factors that its parameters do not produce");
            Require(c.RopeScaling.Factor == c.RopeScaling.Llama3!.Factor, "a Llama 3 factor different from its parameters' factor");
        }
        Require(c.EotTokenId is null, "an end-of-turn token id");
        Require(c.StopTokenIds.IsEmpty ? c.EosTokenId is null : c.EosTokenId is { } eos && c.StopTokenIds.Contains(eos),
            "stop tokens that do not include the EOS id");
    }

    /// <summary>The config.json bytes transformers reads this model from.</summary>
    public static byte[] ConfigJson(ModelConfig c, StorageType torchDtype)
    {
        EnsureRepresentable(c);
        bool gemma = FamilyTraits.IsGemma(c.Family);
        bool sandwich = FamilyTraits.HasSandwichNorms(c.Family);
        return JsonFileOutput.Build(json =>
        {
            void Float(string key, float value) { json.WritePropertyName(key); json.WriteRawValue(ModelWriting.JsonNumber(value)); }
            void OptionalFloat(string key, float? value)
            {
                if (value is { } v) Float(key, v);
                else json.WriteNull(key);
            }
            void Id(string key, int? id)
            {
                if (id is { } v) json.WriteNumber(key, v);
                else json.WriteNull(key);
            }

            json.WriteStartObject();
            json.WriteStartArray("architectures");
            json.WriteStringValue(ArchitectureClass(c.Family));
            json.WriteEndArray();
            json.WriteString("model_type", ModelType(c.Family));
            json.WriteNumber("vocab_size", c.VocabSize);
            json.WriteNumber("hidden_size", c.HiddenSize);
            json.WriteNumber("intermediate_size", c.IntermediateSize);
            json.WriteNumber("num_hidden_layers", c.LayerCount);
            json.WriteNumber("num_attention_heads", c.HeadCount);
            json.WriteNumber("num_key_value_heads", c.KeyValueHeadCount);
            json.WriteNumber("head_dim", c.HeadDim);
            json.WriteNumber("max_position_embeddings", c.ContextLength);
            Float("rms_norm_eps", c.RmsNormEpsilon);
            Float("rope_theta", c.RopeTheta);
            WriteRopeScaling(json, c);
            if (gemma)
            {
                json.WriteString("hidden_act", "gelu_pytorch_tanh");
                json.WriteString("hidden_activation", "gelu_pytorch_tanh");
            }
            else
                json.WriteString("hidden_act", "silu");
            if (c.Family != ModelFamily.Qwen2)
                json.WriteBoolean("attention_bias", false);
            if (c.Family == ModelFamily.Llama)
            {
                json.WriteBoolean("mlp_bias", false);
                json.WriteNumber("pretraining_tp", 1);
            }
            if (c.Family == ModelFamily.Qwen2)
            {
                bool sliding = c.SlidingWindow is not null;
                json.WriteBoolean("use_sliding_window", sliding);
                if (sliding) json.WriteNumber("sliding_window", c.SlidingWindow!.Value);
                else json.WriteNull("sliding_window");
                int first = c.SlidingWindowLayers.IndexOf(true);
                json.WriteNumber("max_window_layers", first < 0 ? c.LayerCount : first);
                if (sliding) WriteLayerTypes(json, c);
            }
            if (sandwich)
            {
                Float("query_pre_attn_scalar", c.QueryPreAttentionScalar);
                // Both config classes default the window to 4096; it only matters where a layer slides.
                json.WriteNumber("sliding_window", c.SlidingWindow ?? 4096);
                WriteLayerTypes(json, c);
                if (c.Family == ModelFamily.Gemma3)
                {
                    Float("rope_local_base_freq", c.RopeLocalTheta!.Value);
                    if (Enumerable.Range(0, c.LayerCount).All(l => c.SlidingWindowLayers[l] == ((l + 1) % 6 != 0)))
                        json.WriteNumber("sliding_window_pattern", 6);
                }
                // An explicit null disables a cap (Gemma2Config would otherwise default to 50 / 30).
                OptionalFloat("attn_logit_softcapping", c.AttentionLogitSoftCap);
                OptionalFloat("final_logit_softcapping", c.FinalLogitSoftCap);
                json.WriteString("cache_implementation", "hybrid");
            }
            json.WriteBoolean("tie_word_embeddings", c.TiedEmbeddings);
            Id("bos_token_id", c.BosTokenId);
            var stops = c.EosTokenId is { } eos ? new[] { eos }.Concat(c.StopTokenIds.Where(id => id != eos)).ToArray() : [];
            if (stops.Length > 1)
            {
                json.WriteStartArray("eos_token_id");
                foreach (int id in stops) json.WriteNumberValue(id);
                json.WriteEndArray();
            }
            else
                Id("eos_token_id", c.EosTokenId);
            if (c.PadTokenId is { } pad) json.WriteNumber("pad_token_id", pad);
            json.WriteString("torch_dtype", TorchDType(torchDtype));
            json.WritePropertyName("attention_dropout");
            json.WriteRawValue("0.0");
            json.WritePropertyName("initializer_range");
            json.WriteRawValue("0.02");
            json.WriteBoolean("use_cache", true);
            json.WriteEndObject();
        });
    }

    static void WriteRopeScaling(Utf8JsonWriter json, ModelConfig c)
    {
        switch (c.RopeScaling.Type)
        {
            case RopeScalingType.None:
                json.WriteNull("rope_scaling");
                break;
            case RopeScalingType.Linear:
                json.WriteStartObject("rope_scaling");
                json.WriteString("rope_type", "linear");
                json.WritePropertyName("factor");
                json.WriteRawValue(ModelWriting.JsonNumber(c.RopeScaling.Factor));
                json.WriteEndObject();
                break;
            case RopeScalingType.Llama3:
                var p = c.RopeScaling.Llama3!;
                json.WriteStartObject("rope_scaling");
                json.WriteString("rope_type", "llama3");
                json.WritePropertyName("factor");
                json.WriteRawValue(ModelWriting.JsonNumber(p.Factor));
                json.WritePropertyName("low_freq_factor");
                json.WriteRawValue(ModelWriting.JsonNumber(p.LowFreqFactor));
                json.WritePropertyName("high_freq_factor");
                json.WriteRawValue(ModelWriting.JsonNumber(p.HighFreqFactor));
                json.WriteNumber("original_max_position_embeddings", p.OriginalMaxPositionEmbeddings);
                json.WriteEndObject();
                break;
        }
    }

    static void WriteLayerTypes(Utf8JsonWriter json, ModelConfig c)
    {
        json.WriteStartArray("layer_types");
        foreach (bool sliding in c.SlidingWindowLayers)
            json.WriteStringValue(sliding ? "sliding_attention" : "full_attention");
        json.WriteEndArray();
    }

    // ---------------------------------------------------------------- tokenizer files

    static string? TokenText(TokenizerVocabulary vocabulary, int? id) => id is { } i ? vocabulary.Tokens[i] : null;

    /// <summary>A Hugging Face fast-tokenizer file for a byte-level BPE vocabulary (GPT-2's pre-tokenizer and decoder).</summary>
    static byte[] TokenizerJson(ModelConfig config, TokenizerVocabulary vocabulary) => JsonFileOutput.Build(json =>
    {
        string? bos = TokenText(vocabulary, config.BosTokenId);
        bool addBos = vocabulary.AddBos && bos is not null;
        json.WriteStartObject();
        json.WriteString("version", "1.0");
        json.WriteNull("truncation");
        json.WriteNull("padding");
        json.WriteStartArray("added_tokens");
        for (int id = 0; id < vocabulary.Tokens.Length; id++)
        {
            var kind = vocabulary.Kinds[id];
            if (kind is not (TokenKind.Control or TokenKind.UserDefined)) continue;
            json.WriteStartObject();
            json.WriteNumber("id", id);
            json.WriteString("content", vocabulary.Tokens[id]);
            json.WriteBoolean("single_word", false);
            json.WriteBoolean("lstrip", false);
            json.WriteBoolean("rstrip", false);
            json.WriteBoolean("normalized", false);
            json.WriteBoolean("special", kind == TokenKind.Control);
            json.WriteEndObject();
        }
        json.WriteEndArray();
        json.WriteNull("normalizer");
        json.WriteStartObject("pre_tokenizer");
        json.WriteString("type", "ByteLevel");
        json.WriteBoolean("add_prefix_space", false);
        json.WriteBoolean("trim_offsets", true);
        json.WriteBoolean("use_regex", true);
        json.WriteEndObject();
        if (addBos)
        {
            // Llama 3's form: a template that puts BOS before every sequence.
            json.WriteStartObject("post_processor");
            json.WriteString("type", "TemplateProcessing");
            void Piece(string kind, string id)
            {
                json.WriteStartObject();
                json.WriteStartObject(kind);
                json.WriteString("id", id);
                json.WriteNumber("type_id", 0);
                json.WriteEndObject();
                json.WriteEndObject();
            }
            json.WriteStartArray("single");
            Piece("SpecialToken", bos!);
            Piece("Sequence", "A");
            json.WriteEndArray();
            json.WriteStartArray("pair");
            Piece("SpecialToken", bos!);
            Piece("Sequence", "A");
            Piece("SpecialToken", bos!);
            Piece("Sequence", "B");
            json.WriteEndArray();
            json.WriteStartObject("special_tokens");
            json.WriteStartObject(bos!);
            json.WriteString("id", bos);
            json.WriteStartArray("ids");
            json.WriteNumberValue(config.BosTokenId!.Value);
            json.WriteEndArray();
            json.WriteStartArray("tokens");
            json.WriteStringValue(bos);
            json.WriteEndArray();
            json.WriteEndObject();
            json.WriteEndObject();
            json.WriteEndObject();
        }
        else
            json.WriteNull("post_processor");
        json.WriteStartObject("decoder");
        json.WriteString("type", "ByteLevel");
        json.WriteBoolean("add_prefix_space", true);
        json.WriteBoolean("trim_offsets", true);
        json.WriteBoolean("use_regex", true);
        json.WriteEndObject();
        json.WriteStartObject("model");
        json.WriteString("type", "BPE");
        json.WriteNull("dropout");
        json.WriteNull("unk_token");
        json.WriteNull("continuing_subword_prefix");
        json.WriteNull("end_of_word_suffix");
        json.WriteBoolean("fuse_unk", false);
        json.WriteBoolean("byte_fallback", false);
        json.WriteBoolean("ignore_merges", false);
        json.WriteStartObject("vocab");
        for (int id = 0; id < vocabulary.Tokens.Length; id++)
            if (vocabulary.Kinds[id] is not (TokenKind.Control or TokenKind.UserDefined))
                json.WriteNumber(vocabulary.Tokens[id], id);
        json.WriteEndObject();
        json.WriteStartArray("merges");
        foreach (var merge in vocabulary.Merges)
            json.WriteStringValue(merge);
        json.WriteEndArray();
        json.WriteEndObject();
        json.WriteEndObject();
    });

    static byte[] TokenizerConfigJson(ModelConfig config, TokenizerVocabulary vocabulary) => JsonFileOutput.Build(json =>
    {
        json.WriteStartObject();
        json.WriteStartObject("added_tokens_decoder");
        for (int id = 0; id < vocabulary.Tokens.Length; id++)
        {
            var kind = vocabulary.Kinds[id];
            if (kind is not (TokenKind.Control or TokenKind.UserDefined)) continue;
            json.WriteStartObject(id.ToString(System.Globalization.CultureInfo.InvariantCulture));
            json.WriteString("content", vocabulary.Tokens[id]);
            json.WriteBoolean("lstrip", false);
            json.WriteBoolean("normalized", false);
            json.WriteBoolean("rstrip", false);
            json.WriteBoolean("single_word", false);
            json.WriteBoolean("special", kind == TokenKind.Control);
            json.WriteEndObject();
        }
        json.WriteEndObject();
        void Token(string key, int? id)
        {
            if (TokenText(vocabulary, id) is { } text) json.WriteString(key, text);
            else json.WriteNull(key);
        }
        Token("bos_token", config.BosTokenId);
        Token("eos_token", config.EosTokenId);
        if (config.PadTokenId is not null) Token("pad_token", config.PadTokenId);
        json.WriteBoolean("add_bos_token", vocabulary.AddBos && config.BosTokenId is not null);
        json.WriteBoolean("add_eos_token", false);
        json.WriteBoolean("clean_up_tokenization_spaces", false);
        json.WriteNumber("model_max_length", config.ContextLength);
        json.WriteString("tokenizer_class", "PreTrainedTokenizerFast");
        json.WriteEndObject();
    });
}
