using System.Collections.Immutable;

namespace IlgpuLlm.Model.Formats;

/// <summary>
/// Reads a llama2.c checkpoint as <c>run.c</c> does: a 7 × int32 header
/// (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size
/// means the classifier is stored separately) followed by f32 weights in
/// <c>memory_map_weights</c> order. The file states nothing else, so the rest of the config is
/// what run.c hard-codes: RMSNorm epsilon 1e-5, rope base 10000, BOS 1 / EOS 2.
/// </summary>
internal static class Llama2cModelReader
{
    const int HeaderBytes = 7 * sizeof(int);

    /// <summary>export.py's version 1+ files start with this magic ("ak42") instead of the legacy header.</summary>
    const uint VersionedExportMagic = 0x616b3432;

    public static ModelCheckpoint Open(string path)
    {
        var file = MappedFile.Open(path);
        var store = new TensorStore();
        store.Own(file);
        try
        {
            return Build(file, store);
        }
        catch
        {
            store.Dispose();
            throw;
        }
    }

    static unsafe ModelCheckpoint Build(MappedFile file, TensorStore store)
    {
        var header = file.Length >= HeaderBytes
            ? new ReadOnlySpan<int>(file.PointerAt(0), 7)
            : throw new ModelFormatException(file.Path,
                $"header: expected at least {HeaderBytes} bytes (7 int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len), found {file.Length}");
        if (file.Span(0, 4, "header").SequenceEqual("PK\u0003\u0004"u8))
            throw new ModelFormatException(file.Path,
                "header: this is a zip archive (a PyTorch pytorch_model.bin?), not a llama2.c checkpoint; use the safetensors export");
        if ((uint)header[0] == VersionedExportMagic)
            throw new ModelFormatException(file.Path,
                $"header: magic 'ak42' marks a llama2.c export of version {header[1]}; only the legacy 7-int32 header (run.c) is supported");

        string[] fields = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"];
        for (int i = 0; i < 7; i++)
            if ((i == 5 ? Math.Abs((long)header[i]) : header[i]) <= 0)
                throw new ModelFormatException(file.Path, $"header field '{fields[i]}': expected a positive value, found {header[i]}");
        int dim = header[0], hiddenDim = header[1], layers = header[2], heads = header[3], kvHeads = header[4], seqLen = header[6];
        bool sharedClassifier = header[5] > 0; // run.c: shared_weights = vocab_size > 0
        int vocab = header[5] != int.MinValue ? Math.Abs(header[5])
            : throw new ModelFormatException(file.Path, $"header field 'vocab_size': {header[5]} is out of range");
        if (dim % heads != 0)
            throw new ModelFormatException(file.Path, $"header field 'n_heads': {heads} does not divide dim {dim}");
        if (heads % kvHeads != 0)
            throw new ModelFormatException(file.Path, $"header field 'n_kv_heads': {kvHeads} does not divide n_heads {heads}");
        int headSize = dim / heads;
        if (headSize % 2 != 0)
            throw new ModelFormatException(file.Path, $"header field 'n_heads': head size {headSize} (dim / n_heads) is odd; rope needs pairs");

        // memory_map_weights, in order, with element counts in ulong so no header can overflow them.
        // Element counts in UInt128: four factors below 2^31 cannot wrap it, so no header can
        // make the arithmetic lie.
        UInt128 d = (uint)dim, h = (uint)hiddenDim, l = (uint)layers, kv = (UInt128)(uint)kvHeads * (uint)headSize, voc = (uint)vocab;
        var blocks = new List<(string Name, UInt128 Elements)>
        {
            ("token_embedding_table", voc * d),
            ("rms_att_weight", l * d),
            ("wq", l * d * d),
            ("wk", l * d * kv),
            ("wv", l * d * kv),
            ("wo", l * d * d),
            ("rms_ffn_weight", l * d),
            ("w1", l * d * h),
            ("w2", l * h * d),
            ("w3", l * d * h),
            ("rms_final_weight", d),
            // "skip what used to be freq_cis_real/imag (for RoPE)": seq_len · head_size / 2 floats each
            ("freq_cis_real", (UInt128)(uint)seqLen * (uint)headSize / 2),
            ("freq_cis_imag", (UInt128)(uint)seqLen * (uint)headSize / 2),
        };
        if (!sharedClassifier)
            blocks.Add(("wcls", voc * d));

        var offsets = new Dictionary<string, long>(StringComparer.Ordinal);
        UInt128 offset = HeaderBytes;
        UInt128 fileLength = (ulong)file.Length;
        foreach (var (name, elements) in blocks)
        {
            UInt128 bytes = elements * 4;
            if (offset + bytes > fileLength)
                throw new ModelFormatException(file.Path,
                    $"tensor '{name}': the header implies {bytes} bytes at offset {offset}, " +
                    $"but the file has {file.Length} bytes (truncated, or a wrong header)");
            offsets[name] = (long)offset;
            offset += bytes;
        }
        if (offset != fileLength)
            throw new ModelFormatException(file.Path,
                $"file size: the header implies {offset} bytes ({(sharedClassifier ? "shared" : "separate")} classifier), found {file.Length}" +
                (sharedClassifier && fileLength - offset == voc * d * 4 ? " (exactly one classifier more: should vocab_size be negative?)" : ""));

        var config = new ModelConfig
        {
            Family = ModelFamily.Llama,
            HiddenSize = dim,
            LayerCount = layers,
            HeadCount = heads,
            KeyValueHeadCount = kvHeads,
            HeadDim = headSize,
            IntermediateSize = hiddenDim,
            VocabSize = vocab,
            ContextLength = seqLen,
            RmsNormEpsilon = 1e-5f, // run.c rmsnorm: ss += 1e-5f
            RopeTheta = 10000f, // run.c: powf(10000.0f, head_dim / (float)head_size)
            RopeScaling = RopeScaling.None,
            SlidingWindowLayers = ImmutableArray.Create(new bool[layers]),
            QueryPreAttentionScalar = headSize,
            HasQueryKeyNorm = false,
            HasQkvBias = false,
            TiedEmbeddings = sharedClassifier,
            HasPostAttentionNorm = false,
            HasPostFeedForwardNorm = false,
            Activation = FeedForwardActivation.Silu,
            EmbeddingScale = 1f,
            BosTokenId = 1, // run.c encode(): BOS = 1, EOS = 2 (the Llama 2 sentencepiece ids)
            EosTokenId = 2,
            StopTokenIds = [2],
        };

        // Per-layer tensors are consecutive slices of each block; shapes are run.c's matmul
        // layouts, which are transformers' [out, in].
        var sources = new Dictionary<string, SourceTensor>(StringComparer.Ordinal);
        void Add(string canonical, string block, long index, params long[] shape)
        {
            long elements = shape.Aggregate(1L, (a, b) => a * b);
            string sourceName = index < 0 ? block : $"{block}[{index}]";
            sources.Add(canonical, new SourceTensor(canonical, sourceName, file, offsets[block] + Math.Max(0, index) * elements * 4,
                TensorDataType.F32, [.. shape]));
        }
        long kvWidth = (long)kvHeads * headSize;
        Add(TensorNames.TokenEmbedding, "token_embedding_table", -1, vocab, dim);
        for (int layer = 0; layer < layers; layer++)
        {
            Add(TensorNames.AttentionNorm(layer), "rms_att_weight", layer, dim);
            Add(TensorNames.AttentionQuery(layer), "wq", layer, dim, dim);
            Add(TensorNames.AttentionKey(layer), "wk", layer, kvWidth, dim);
            Add(TensorNames.AttentionValue(layer), "wv", layer, kvWidth, dim);
            Add(TensorNames.AttentionOutput(layer), "wo", layer, dim, dim);
            Add(TensorNames.FeedForwardNorm(layer), "rms_ffn_weight", layer, dim);
            Add(TensorNames.FeedForwardGate(layer), "w1", layer, hiddenDim, dim);
            Add(TensorNames.FeedForwardDown(layer), "w2", layer, dim, hiddenDim);
            Add(TensorNames.FeedForwardUp(layer), "w3", layer, hiddenDim, dim);
        }
        Add(TensorNames.OutputNorm, "rms_final_weight", -1, dim);
        if (!sharedClassifier)
            Add(TensorNames.Output, "wcls", -1, vocab, dim);

        // run.c rotates adjacent pairs (v0 = vec[i], v1 = vec[i+1]) on weights that export.py
        // wrote in Meta's order, so q/k rows are un-permuted like a llama GGUF's.
        var normalisation = new Normalisation(RotaryRowsInterleaved: true, NormsStoreOffsetFromOne: false);
        return CheckpointAssembler.Assemble(file.Path, ModelSourceFormat.Llama2c, config, sources, normalisation, store, gguf: null);
    }
}
