using IlgpuLlm.Kernels;
using System.Collections.Immutable;

namespace IlgpuLlm.Model.Formats;

/// <summary>The file format a model was opened from.</summary>
public enum ModelSourceFormat
{
    Gguf,
    HuggingFace,
    Llama2c,

    /// <summary>Built in memory from tensors (<see cref="ModelCheckpoint.FromTensors"/>), e.g. the demo model.</summary>
    InMemory,
}

/// <summary>
/// An opened model: one normalised <see cref="ModelConfig"/> and its weights under canonical
/// names, the same whichever format the file was (GGUF, Hugging Face folder, llama2.c). Weights
/// point into memory maps; dispose the checkpoint to release them.
/// </summary>
public sealed class ModelCheckpoint : IDisposable
{
    readonly TensorStore _store;
    readonly Dictionary<string, ModelTensor> _tensorsByName;

    internal ModelCheckpoint(string sourcePath, ModelSourceFormat format, ModelConfig config,
        ImmutableArray<ModelTensor> tensors, TensorStore store, GgufFile? gguf)
    {
        SourcePath = sourcePath;
        Format = format;
        Config = config;
        Tensors = tensors;
        _store = store;
        Gguf = gguf;
        _tensorsByName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>The file or folder that was opened.</summary>
    public string SourcePath { get; }

    public ModelSourceFormat Format { get; }

    public ModelConfig Config { get; }

    /// <summary>
    /// Every weight in canonical order (token_embd, then blk.0 …, output_norm, output), exactly the
    /// set the config implies. Transformers layout and conventions; see <see cref="ModelConfig"/>.
    /// </summary>
    public ImmutableArray<ModelTensor> Tensors { get; }

    /// <summary>
    /// The GGUF file itself (its metadata carries the tokenizer), when the source is a GGUF.
    /// Owned by this checkpoint: disposing the checkpoint disposes it.
    /// </summary>
    public GgufFile? Gguf { get; }

    /// <summary>
    /// Opens any supported model: a folder (or a file inside it) with config.json and safetensors;
    /// a GGUF file; otherwise a llama2.c checkpoint.
    /// </summary>
    public static ModelCheckpoint Open(string path)
    {
        if (Directory.Exists(path))
            return HuggingFaceModelReader.Open(path);
        if (FileKind.WhyNotRegularFile(path) is string why)
            throw new ModelFormatException(path, why);
        if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)
            || path.EndsWith(".safetensors.index.json", StringComparison.OrdinalIgnoreCase)
            || System.IO.Path.GetFileName(path) == "config.json")
            return HuggingFaceModelReader.Open(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
        if (path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) || StartsWithGgufMagic(path))
            return GgufModelReader.Open(path);
        if (path.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
            throw new ModelFormatException(path, "a JSON file other than config.json is not a model; name the model's folder (config.json and safetensors), a GGUF file or a llama2.c checkpoint");
        try
        {
            return Llama2cModelReader.Open(path);
        }
        catch (ModelFormatException) when (IsTokenizer(path))
        {
            // Any file that is not GGUF or safetensors is read as a llama2.c checkpoint, whose header
            // check would otherwise complain about a tokenizer's bytes as if they were a model's.
            throw new ModelFormatException(path, "this is a tokenizer, not a model; pass it with --tokenizer and name the model (a GGUF file, a Hugging Face folder or a llama2.c checkpoint)");
        }
    }

    /// <summary>
    /// Whether a file that failed as a checkpoint reads as a real tokenizer (every real vocabulary
    /// has at least its 256 byte tokens; a few bytes of a broken checkpoint may parse as a tiny one).
    /// </summary>
    static bool IsTokenizer(string path)
    {
        try
        {
            return Tokenizers.TokenizerFactory.Open(path).VocabSize >= 256;
        }
        catch (Exception e) when (e is Tokenizers.TokenizerLoadException or ModelFormatException or ArgumentException or InvalidDataException)
        {
            return false;
        }
    }

    public static ModelCheckpoint OpenGguf(string path) => GgufModelReader.Open(path);

    /// <summary>A GGUF model held in memory (one shipped inside an assembly); <paramref name="name"/> is its <see cref="SourcePath"/>.</summary>
    public static ModelCheckpoint OpenGguf(string name, ReadOnlySpan<byte> bytes) => GgufModelReader.Open(GgufFile.FromBytes(name, bytes));

    /// <summary>Opens a transformers folder: config.json (+ generation_config.json) and model.safetensors or its sharded index.</summary>
    public static ModelCheckpoint OpenHuggingFace(string folder) => HuggingFaceModelReader.Open(folder);

    /// <summary>Opens a llama2.c <c>run.c</c> checkpoint (the 7-int32 legacy header).</summary>
    public static ModelCheckpoint OpenLlama2c(string path) => Llama2cModelReader.Open(path);

    /// <summary>
    /// A checkpoint built in memory from tensors in the normalised layout (see
    /// <see cref="TensorSource"/>), with no file behind it: the built-in demo model, or weights made
    /// by code. The config and tensor set pass the same validation as a file's, and each tensor is
    /// copied once into native memory owned by the checkpoint.
    /// </summary>
    /// <param name="name">What messages call the model (it is also <see cref="SourcePath"/>).</param>
    public static ModelCheckpoint FromTensors(ModelConfig config, IEnumerable<TensorSource> tensors, string name = "(in-memory model)") =>
        InMemoryCheckpoint.Build(config, tensors, name);

    public bool TryGetTensor(string name, out ModelTensor tensor) => _tensorsByName.TryGetValue(name, out tensor!);

    /// <summary>A weight by canonical name (see <see cref="TensorNames"/>).</summary>
    public ModelTensor GetTensor(string name) =>
        _tensorsByName.TryGetValue(name, out var tensor)
            ? tensor
            : throw new KeyNotFoundException($"{SourcePath}: the model has no tensor '{name}'");

    /// <summary>
    /// Checks every weight for NaN/infinity (see <see cref="WeightFiniteness"/>); reads every
    /// byte, so it belongs where the engine uploads weights, not in <see cref="Open"/>.
    /// </summary>
    public void EnsureAllFinite()
    {
        foreach (var tensor in Tensors)
            WeightFiniteness.EnsureFinite(tensor);
    }

    public void Dispose() => _store.Dispose();

    static bool StartsWithGgufMagic(string path)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1);
            Span<byte> magic = stackalloc byte[4];
            return stream.ReadAtLeast(magic, 4, throwOnEndOfStream: false) == 4 && magic.SequenceEqual("GGUF"u8);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new ModelFormatException(path, $"cannot open the file ({e.Message})", e);
        }
    }
}

/// <summary>A tensor as a reader found it in a file, already named canonically.</summary>
internal sealed record SourceTensor(
    string CanonicalName, string SourceName, MappedFile File, long FileOffset, StorageType DataType, ImmutableArray<long> Shape,
    QuantFormat? Quantized = null);

/// <summary>What a source's tensors need to reach the normalised (transformers) layout.</summary>
internal sealed record Normalisation(
    bool RotaryRowsInterleaved,
    bool NormsStoreOffsetFromOne);

/// <summary>
/// Checks a reader's tensors against the tensor set its config implies and wraps them as
/// <see cref="ModelTensor"/>s, attaching the lazy transformations that normalisation needs.
/// </summary>
internal static unsafe class CheckpointAssembler
{
    public static ModelCheckpoint Assemble(string sourcePath, ModelSourceFormat format, ModelConfig config,
        IReadOnlyDictionary<string, SourceTensor> sources, Normalisation normalisation, TensorStore store,
        GgufFile? gguf, Func<string, string>? describeSourceName = null)
    {
        ModelLayout.Validate(config, sourcePath);
        var expected = ModelLayout.Expected(config);
        var expectedNames = expected.Select(e => e.Name).ToHashSet(StringComparer.Ordinal);

        foreach (var source in sources.Values)
            if (!expectedNames.Contains(source.CanonicalName))
                throw new ModelFormatException(source.File.Path,
                    $"unexpected tensor '{source.SourceName}'" +
                    (source.SourceName != source.CanonicalName ? $" (canonical '{source.CanonicalName}')" : "") +
                    $": not part of a {config.Family} model with {config.LayerCount} layers" +
                    $"{(config.TiedEmbeddings ? ", tied embeddings" : "")}{(config.HasQkvBias ? ", q/k/v biases" : ", no biases")}");

        var tensors = ImmutableArray.CreateBuilder<ModelTensor>(expected.Count);
        foreach (var e in expected)
        {
            if (!sources.TryGetValue(e.Name, out var source))
            {
                string fileName = describeSourceName?.Invoke(e.Name) is { } n && n != e.Name ? $" ('{n}' in this format)" : "";
                throw new ModelFormatException(sourcePath,
                    $"tensor '{e.Name}'{fileName} is missing: a {config.Family} model with this config needs it, shape [{string.Join(", ", e.Shape)}]");
            }
            if (!source.Shape.SequenceEqual(e.Shape))
                throw new ModelFormatException(source.File.Path,
                    $"tensor '{source.SourceName}': expected shape [{string.Join(", ", e.Shape)}] (from the config), " +
                    $"found [{string.Join(", ", source.Shape)}]");
            tensors.Add(Wrap(e, source, config, normalisation, store));
        }
        return new ModelCheckpoint(sourcePath, format, config, tensors.MoveToImmutable(), store, gguf);
    }

    static ModelTensor Wrap(ExpectedTensor e, SourceTensor s, ModelConfig config, Normalisation normalisation, TensorStore store)
    {
        if (s.Quantized is QuantFormat format)
            return WrapQuantized(e, s, format, config, normalisation, store);
        // Check the bytes exist before any lazy transform could read them.
        var mapped = ModelTensor.Mapped(store, e.Name, s.SourceName, s.DataType, s.Shape, s.File, s.FileOffset);
        if (normalisation.RotaryRowsInterleaved && e.Role is TensorRole.Query or TensorRole.Key or TensorRole.QueryBias or TensorRole.KeyBias)
        {
            int heads = e.Role is TensorRole.Query or TensorRole.QueryBias ? config.HeadCount : config.KeyValueHeadCount;
            return ModelTensor.Derived(store, e.Name, s.SourceName, s.File.Path, s.DataType, s.Shape,
                "rows un-permuted from adjacent-pair rotary order (llama.cpp / Meta) to transformers' half-split order",
                destination => RotaryRowOrder.ToHalfSplit(mapped.Pointer, (byte*)destination, heads, config.HeadDim,
                    mapped.ByteLength / (heads * (long)config.HeadDim)));
        }
        if (normalisation.NormsStoreOffsetFromOne && e.Role is TensorRole.Norm)
        {
            return ModelTensor.Derived(store, e.Name, s.SourceName, s.File.Path, StorageType.F32, s.Shape,
                $"Gemma norm weight: 1 + w computed in f32 (transformers' 1.0 + weight.float()), stored F32 (was {s.DataType})",
                destination => GemmaNormWeights.AddOne(mapped, new Span<float>((void*)destination, checked((int)mapped.ElementCount))));
        }
        return mapped;
    }

    /// <summary>
    /// A tensor in a block format: its blocks as they are (or with q/k rows un-permuted, whole rows
    /// of blocks moving together), and the f32 dequantization as the tensor's values.
    /// </summary>
    static ModelTensor WrapQuantized(ExpectedTensor e, SourceTensor s, QuantFormat format, ModelConfig config,
        Normalisation normalisation, TensorStore store)
    {
        var mapped = QuantizedData.Mapped(store, format, s.Shape, s.File, s.FileOffset, $"tensor '{s.SourceName}'");
        if (normalisation.RotaryRowsInterleaved && e.Role is TensorRole.Query or TensorRole.Key or TensorRole.QueryBias or TensorRole.KeyBias)
        {
            int heads = e.Role is TensorRole.Query or TensorRole.QueryBias ? config.HeadCount : config.KeyValueHeadCount;
            var unpermuted = QuantizedData.Derived(store, format, s.Shape,
                destination => RotaryRowOrder.ToHalfSplit(mapped.Pointer, (byte*)destination, heads, config.HeadDim,
                    mapped.ByteLength / (heads * (long)config.HeadDim)));
            return ModelTensor.Dequantized(store, e.Name, s.SourceName, s.File.Path, s.Shape, unpermuted,
                "rows un-permuted from adjacent-pair rotary order (llama.cpp / Meta) to transformers' half-split order");
        }
        if (normalisation.NormsStoreOffsetFromOne && e.Role is TensorRole.Norm)
            throw new ModelFormatException(s.File.Path, $"tensor '{s.SourceName}' is a Gemma norm in {format.Name()}; norms must be F32, F16 or BF16");
        return ModelTensor.Dequantized(store, e.Name, s.SourceName, s.File.Path, s.Shape, mapped, null);
    }
}

/// <summary>The q/k row order of adjacent-pair rotary (llama.cpp NORM rope, Meta/llama2.c checkpoints).</summary>
public static unsafe class RotaryRowOrder
{
    /// <summary>
    /// Inverts convert_hf_to_gguf.py <c>LlamaModel.permute</c>, which reshapes the rows of each head
    /// to [2, head_dim/2] and swaps the axes: file row h·d + 2k + j holds transformers row
    /// h·d + j·d/2 + k. Applied with n_head for q and n_kv_head for k, as the converter does.
    /// </summary>
    public static void ToHalfSplit(byte* source, byte* destination, int heads, int headDim, long rowBytes)
    {
        int half = headDim / 2;
        for (int h = 0; h < heads; h++)
            for (int j = 0; j < 2; j++)
                for (int k = 0; k < half; k++)
                {
                    long from = (long)h * headDim + 2 * k + j;
                    long to = (long)h * headDim + j * half + k;
                    Buffer.MemoryCopy(source + from * rowBytes, destination + to * rowBytes, rowBytes, rowBytes);
                }
    }
}

/// <summary>Gemma's RMSNorm multiplies by (1 + w); transformers stores w, llama.cpp GGUFs store 1 + w.</summary>
internal static class GemmaNormWeights
{
    /// <summary>
    /// 1 + w in f32, as transformers' GemmaRMSNorm computes it at run time
    /// (<c>output * (1.0 + self.weight.float())</c>), so a folder's weights equal a GGUF's stored ones.
    /// </summary>
    public static void AddOne(ModelTensor weights, Span<float> destination)
    {
        weights.CopyToFloat32(destination);
        for (int i = 0; i < destination.Length; i++)
            destination[i] = 1.0f + destination[i];
    }
}
