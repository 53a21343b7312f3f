using IlgpuLlm.Kernels;

namespace IlgpuLlm.Model.Formats;

/// <summary>
/// Writes a model as llama.cpp's convert_hf_to_gguf.py would: architecture <c>llama</c>,
/// <c>qwen2</c>, <c>gemma</c>, <c>gemma2</c> or <c>gemma3</c>, the metadata keys llama-arch.cpp
/// names, tensors under GGUF names with ggml's innermost-first dimensions, and the converter's
/// conventions applied to the normalised tensors it is given: q/k rows permuted to adjacent-pair
/// rotary order for <c>llama</c>, Llama 3 rope scaling as a <c>rope_freqs.weight</c> tensor, norm
/// weights (already 1 + w for Gemma) and biases stored F32 like every 1-D tensor. Everything it
/// writes opens in <see cref="ModelCheckpoint"/> as the same config and tensors, bit for bit.
/// </summary>
public static class GgufModelWriter
{
    /// <summary>llama.cpp's LLAMA_FTYPE values for <c>general.file_type</c>.</summary>
    const uint FileTypeAllF32 = 0, FileTypeMostlyF16 = 1, FileTypeMostlyBF16 = 32;

    /// <summary>The GGUF architecture name of a family.</summary>
    public static string Architecture(ModelFamily family) => family switch
    {
        ModelFamily.Llama => "llama",
        ModelFamily.Qwen2 => "qwen2",
        ModelFamily.Gemma => "gemma",
        ModelFamily.Gemma2 => "gemma2",
        ModelFamily.Gemma3 => "gemma3",
        _ => throw new ArgumentOutOfRangeException(nameof(family), family, null),
    };

    /// <summary>The ggml type of a storage type.</summary>
    public static GgmlType GgmlTypeOf(StorageType type) => (GgmlType)type.Format().GgmlTypeId;

    /// <summary>Plans writing a GGUF file; nothing is written until <see cref="ModelWritePlan.Write"/>.</summary>
    public static ModelWritePlan Plan(string path, ModelConfig config, IEnumerable<TensorSource> tensors,
        TokenizerVocabulary? vocabulary = null, string? name = null)
    {
        var writer = Prepare(config, tensors, vocabulary, name);
        return new ModelWritePlan(path, ModelSourceFormat.Gguf,
            [new PlannedFile(path, writer.Length, (progress, done, cancellation) => writer.WriteTo(path, progress, done, cancellation))]);
    }

    /// <summary>
    /// The GGUF container for a model, metadata and tensor layout complete, ready to write.
    /// The tensors are in the normalised layout (<see cref="TensorSource"/>); this applies llama.cpp's conventions.
    /// </summary>
    /// <exception cref="NotSupportedException">The config has something llama.cpp cannot express for the architecture.</exception>
    /// <exception cref="ArgumentException">The tensors are not exactly the set the config implies, or the vocabulary does not fit.</exception>
    public static GgufWriter Prepare(ModelConfig config, IEnumerable<TensorSource> tensors, TokenizerVocabulary? vocabulary = null, string? name = null) =>
        Prepare(config, tensors, vocabulary, name, quantization: null);

    /// <summary>
    /// <see cref="Prepare(ModelConfig, IEnumerable{TensorSource}, TokenizerVocabulary?, string?)"/>
    /// with the matrices <paramref name="quantization"/> picks a block format for written in it.
    /// </summary>
    internal static GgufWriter Prepare(ModelConfig config, IEnumerable<TensorSource> tensors, TokenizerVocabulary? vocabulary,
        string? name, ITensorQuantization? quantization)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(tensors);
        EnsureRepresentable(config);
        var matched = ModelWriting.MatchTensors(config, tensors);
        vocabulary?.Validate(config.VocabSize);

        string arch = Architecture(config.Family);
        string Key(string suffix) => $"{arch}.{suffix}";
        var w = new GgufWriter();
        w.AddString(GgufModelReader.ArchitectureKey, arch);
        if (!string.IsNullOrEmpty(name))
            w.AddString("general.name", name);

        // The keys convert_hf_to_gguf.py writes (TextModel.set_gguf_parameters and each model's additions).
        w.AddUInt32(Key("context_length"), (uint)config.ContextLength);
        w.AddUInt32(Key("embedding_length"), (uint)config.HiddenSize);
        w.AddUInt32(Key("block_count"), (uint)config.LayerCount);
        w.AddUInt32(Key("feed_forward_length"), (uint)config.IntermediateSize);
        w.AddUInt32(Key("attention.head_count"), (uint)config.HeadCount);
        w.AddUInt32(Key("attention.head_count_kv"), (uint)config.KeyValueHeadCount);
        w.AddFloat32(Key("rope.freq_base"), config.RopeTheta);
        w.AddFloat32(Key("attention.layer_norm_rms_epsilon"), config.RmsNormEpsilon);
        bool gemma = FamilyTraits.IsGemma(config.Family);
        // llama.cpp defaults head_dim to n_embd / n_head; the Gemma converters always state it.
        if (gemma || config.HiddenSize % config.HeadCount != 0 || config.HiddenSize / config.HeadCount != config.HeadDim)
        {
            w.AddUInt32(Key("attention.key_length"), (uint)config.HeadDim);
            w.AddUInt32(Key("attention.value_length"), (uint)config.HeadDim);
        }
        if (config.Family == ModelFamily.Llama || vocabulary is null)
            w.AddUInt32(Key("vocab_size"), (uint)config.VocabSize);
        if (config.Family == ModelFamily.Llama)
            w.AddUInt32(Key("rope.dimension_count"), (uint)config.HeadDim);
        if (config.RopeScaling.Type == RopeScalingType.Linear)
        {
            w.AddString(Key("rope.scaling.type"), "linear");
            w.AddFloat32(Key("rope.scaling.factor"), config.RopeScaling.Factor);
        }
        if (config.Family == ModelFamily.Gemma2)
        {
            w.AddFloat32(Key("attn_logit_softcapping"), config.AttentionLogitSoftCap!.Value);
            w.AddFloat32(Key("final_logit_softcapping"), config.FinalLogitSoftCap ?? 0f); // 0: llama.cpp skips the cap
        }
        if (config.SlidingWindow is { } window)
            w.AddUInt32(Key("attention.sliding_window"), (uint)window);
        w.AddUInt32("general.file_type", quantization?.FileType ?? FileType(matched.Select(m => m.Source)));
        if (quantization is not null)
            w.AddUInt32(TensorQuantization.VersionKey, TensorQuantization.Version);

        AddVocabulary(w, config, vocabulary);

        // convert_hf_to_gguf.py emits rope_freqs (generate_extra_tensors) before the model's tensors.
        if (config.RopeScaling.Type == RopeScalingType.Llama3)
        {
            var factors = config.RopeFrequencyFactors!.Value.ToArray();
            w.AddTensor(TensorNames.RopeFrequencies, GgmlType.F32, [factors.Length],
                stream => stream.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(factors.AsSpan())));
        }
        foreach (var (expected, source) in matched)
        {
            // The converter keeps every 1-D tensor (norms, biases) in F32, whatever the file type.
            var type = source.Shape.Length <= 1 ? StorageType.F32 : source.DataType;
            // llama.cpp's llama architecture rotates adjacent pairs (NORM rope), so the converter
            // permutes q/k rows per head; the reader undoes exactly this.
            int? heads = config.Family == ModelFamily.Llama && expected.Role is TensorRole.Query or TensorRole.Key or TensorRole.QueryBias or TensorRole.KeyBias
                ? expected.Role is TensorRole.Query or TensorRole.QueryBias ? config.HeadCount : config.KeyValueHeadCount
                : null;
            if (quantization?.TypeOf(source.Name, source.Shape) is GgmlType chosen)
            {
                if (GgmlTypeLayout.ToQuantFormat(chosen) is QuantFormat format)
                {
                    w.AddTensor(source.Name, chosen, source.Shape, stream => ModelWriting.CopyQuantized(stream, source, format, heads, config.HeadDim));
                    continue;
                }
                type = GgmlTypeLayout.ToTensorDataType(chosen) ?? throw new InvalidOperationException($"tensor '{source.Name}': cannot write {chosen}");
            }
            var storage = type;
            Action<Stream> write = heads is int h
                ? stream => ModelWriting.CopyRotaryInterleaved(stream, source, h, config.HeadDim, storage)
                : stream => ModelWriting.Copy(stream, source, storage);
            w.AddTensor(source.Name, GgmlTypeOf(type), source.Shape, write);
        }
        return w;
    }

    static uint FileType(IEnumerable<TensorSource> tensors)
    {
        var matrices = tensors.Where(t => t.Shape.Length >= 2).Select(t => t.DataType).ToList();
        if (matrices.Count == 0 || matrices.All(t => t == StorageType.F32)) return FileTypeAllF32;
        return matrices.Count(t => t == StorageType.BF16) > matrices.Count(t => t == StorageType.F16) ? FileTypeMostlyBF16 : FileTypeMostlyF16;
    }

    static void AddVocabulary(GgufWriter w, ModelConfig config, TokenizerVocabulary? vocabulary)
    {
        if (vocabulary is null)
        {
            // llama.cpp's "no vocabulary" model: it sizes the vocabulary from {arch}.vocab_size.
            w.AddString("tokenizer.ggml.model", "none");
        }
        else
        {
            w.AddString("tokenizer.ggml.model", vocabulary.Model);
            if (vocabulary.PreTokenizer is { } pre)
                w.AddString("tokenizer.ggml.pre", pre);
            w.AddStringArray("tokenizer.ggml.tokens", vocabulary.Tokens);
            if (!vocabulary.Scores.IsEmpty)
                w.AddFloat32Array("tokenizer.ggml.scores", vocabulary.Scores);
            w.AddInt32Array("tokenizer.ggml.token_type", vocabulary.Kinds.Select(k => (int)k));
            // llama.cpp refuses a gpt2 vocabulary without the merges key, even an empty one.
            if (vocabulary.Model == "gpt2" || !vocabulary.Merges.IsEmpty)
                w.AddStringArray("tokenizer.ggml.merges", vocabulary.Merges);
        }
        if (config.BosTokenId is { } bos) w.AddUInt32("tokenizer.ggml.bos_token_id", (uint)bos);
        if (config.EosTokenId is { } eos) w.AddUInt32("tokenizer.ggml.eos_token_id", (uint)eos);
        if (config.EotTokenId is { } eot) w.AddUInt32("tokenizer.ggml.eot_token_id", (uint)eot);
        if (config.PadTokenId is { } pad) w.AddUInt32("tokenizer.ggml.padding_token_id", (uint)pad);
        if (vocabulary is not null)
        {
            w.AddBool("tokenizer.ggml.add_bos_token", vocabulary.AddBos && config.BosTokenId is not null);
            w.AddBool("tokenizer.ggml.add_eos_token", false);
        }
    }

    /// <summary>
    /// Refuses a config that a GGUF of its architecture cannot state, because llama.cpp (and so the
    /// reader) hard-codes that part: the sliding-window layer pattern, the Gemma 3 local rope base,
    /// the attention scale, which ids stop generation.
    /// </summary>
    /// <exception cref="NotSupportedException">Names what cannot be expressed.</exception>
    public static void EnsureRepresentable(ModelConfig c)
    {
        ArgumentNullException.ThrowIfNull(c);
        ModelLayout.Validate(c, "(GGUF writer)");
        ModelWriting.CheckFamilyInvariants(c, "GGUF");
        string arch = Architecture(c.Family);
        void Require(bool ok, string what)
        {
            if (!ok) throw new NotSupportedException($"a GGUF of architecture {arch} cannot express {what} (llama.cpp hard-codes it)");
        }

        // llama.cpp scales q by 1/sqrt(n_embd / n_head) for the 27B Gemma 2/3 (46 / 62 layers), else by 1/sqrt(head_dim).
        float scalar = (c.Family, c.LayerCount) switch
        {
            (ModelFamily.Gemma2, 46) or (ModelFamily.Gemma3, 62) => c.HiddenSize / c.HeadCount,
            _ => c.HeadDim,
        };
        Require(c.QueryPreAttentionScalar == scalar, $"query_pre_attn_scalar {c.QueryPreAttentionScalar} (it uses {scalar})");

        switch (c.Family)
        {
            case ModelFamily.Gemma2:
                Require(Enumerable.Range(0, c.LayerCount).All(l => c.SlidingWindowLayers[l] == (l % 2 == 0)),
                    "a sliding-window pattern other than every even layer");
                Require(c.AttentionLogitSoftCap is not null, "Gemma 2 without an attention soft-cap");
                break;
            case ModelFamily.Gemma3:
                Require(Enumerable.Range(0, c.LayerCount).All(l => c.SlidingWindowLayers[l] == (l % 6 < 5)),
                    "a sliding-window pattern other than 5 sliding layers of every 6");
                Require(c.SlidingWindow is not null, "Gemma 3 without a sliding window");
                Require(c.RopeLocalTheta == 10000f, $"a local rope base of {c.RopeLocalTheta} (it uses 10000)");
                Require(c.AttentionLogitSoftCap is null && c.FinalLogitSoftCap is null, "soft-capping in Gemma 3");
                break;
            default:
                Require(c.SlidingWindow is null, "sliding-window attention");
                break;
        }

        if (c.RopeScaling.Type == RopeScalingType.Llama3)
            // The reader takes the largest divisor in rope_freqs as the factor.
            Require(c.RopeScaling.Factor == c.RopeFrequencyFactors!.Value.Max(),
                $"a Llama 3 factor {c.RopeScaling.Factor} other than the largest frequency divisor {c.RopeFrequencyFactors!.Value.Max()}");
        Require(c.StopTokenIds.SequenceEqual(new[] { c.EosTokenId, c.EotTokenId }.OfType<int>().Distinct().Order()),
            $"stop tokens [{string.Join(", ", c.StopTokenIds)}] beyond EOS and EOT");
    }
}
