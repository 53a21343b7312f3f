using IlgpuLlm.Kernels;

namespace IlgpuLlm.Model.Formats;

/// <summary>
/// The files a model writer is about to produce: their paths, the total bytes (known before a
/// single byte is written, for progress bars) and the write itself.
/// </summary>
public sealed class ModelWritePlan
{
    readonly IReadOnlyList<PlannedFile> _files;

    internal ModelWritePlan(string path, ModelSourceFormat format, IReadOnlyList<PlannedFile> files)
    {
        Path = path;
        Format = format;
        _files = files;
        TotalBytes = files.Sum(f => f.Length);
    }

    /// <summary>The GGUF file, or the Hugging Face folder.</summary>
    public string Path { get; }

    public ModelSourceFormat Format { get; }

    /// <summary>Every file that will be written, with its size.</summary>
    public IReadOnlyList<(string Path, long Length)> Files => _files.Select(f => (f.Path, f.Length)).ToList();

    /// <summary>The bytes of all files together.</summary>
    public long TotalBytes { get; }

    /// <summary>
    /// Writes every file, each through a temporary file renamed into place.
    /// <paramref name="progress"/> receives the bytes written so far, up to <see cref="TotalBytes"/>.
    /// </summary>
    public void Write(IProgress<long>? progress = null, CancellationToken cancellation = default)
    {
        long done = 0;
        foreach (var file in _files)
        {
            file.Write(progress, done, cancellation);
            done += file.Length;
        }
    }
}

internal sealed record PlannedFile(string Path, long Length, Action<IProgress<long>?, long, CancellationToken> Write);

/// <summary>What both model writers share: the checks a config and tensor set must pass, and tensor streaming.</summary>
internal static class ModelWriting
{
    /// <summary>Elements per read from a source while streaming (4 MiB of f32).</summary>
    const int ChunkElements = 1 << 20;

    /// <summary>
    /// Checks the fields every reader derives from the family alone, so a config that differs there
    /// cannot be written faithfully by any format.
    /// </summary>
    public static void CheckFamilyInvariants(ModelConfig c, string format)
    {
        bool gemma = FamilyTraits.IsGemma(c.Family);
        bool sandwich = FamilyTraits.HasSandwichNorms(c.Family);
        void Require(bool ok, string what)
        {
            if (!ok) throw new NotSupportedException($"a {format} {c.Family} model cannot express {what}");
        }
        Require(c.Activation == FamilyTraits.Activation(c.Family), $"activation {c.Activation}");
        Require(c.EmbeddingScale == FamilyTraits.EmbeddingScale(c.Family, c.HiddenSize), $"embedding scale {c.EmbeddingScale}");
        Require(c.HasQueryKeyNorm == FamilyTraits.HasQueryKeyNorm(c.Family), $"q/k norms = {c.HasQueryKeyNorm}");
        Require(c.HasPostAttentionNorm == sandwich && c.HasPostFeedForwardNorm == sandwich,
            $"post-attention/feed-forward norms = {c.HasPostAttentionNorm}/{c.HasPostFeedForwardNorm}");
        Require(c.Family != ModelFamily.Qwen2 || c.HasQkvBias, "q/k/v without biases");
        Require(!gemma || !c.HasQkvBias, "q/k/v biases");
        Require(c.RotaryLayout == RotaryLayout.HalfSplit && c.NormWeights == NormWeightConvention.Multiplier,
            "a non-normalised rotary layout or norm convention");
        Require(c.RopeLocalTheta is null || c.Family == ModelFamily.Gemma3, "a local rope base");
        Require(sandwich || (c.AttentionLogitSoftCap is null && c.FinalLogitSoftCap is null), "logit soft-capping");
        Require(c.RopeScaling.Type != RopeScalingType.Llama3 || c.Family == ModelFamily.Llama, "Llama 3 rope scaling");
        if (c.RopeScaling.Type == RopeScalingType.Llama3)
            Require(c.RopeFrequencyFactors is not null, "Llama 3 rope scaling without its frequency factors");
        if (!sandwich)
            Require(c.QueryPreAttentionScalar == c.HeadDim, $"query_pre_attn_scalar {c.QueryPreAttentionScalar} ≠ head_dim {c.HeadDim}");
    }

    /// <summary>
    /// Checks that the tensors are exactly the set the config implies (names and shapes) and
    /// returns them in canonical order with their roles; <paramref name="error"/> makes the exception.
    /// </summary>
    public static List<(ExpectedTensor Expected, TensorSource Source)> MatchTensors(ModelConfig config, IEnumerable<TensorSource> tensors,
        Func<string, Exception>? error = null)
    {
        error ??= message => new ArgumentException(message);
        var byName = new Dictionary<string, TensorSource>(StringComparer.Ordinal);
        foreach (var tensor in tensors)
            if (!byName.TryAdd(tensor.Name, tensor))
                throw error($"tensor '{tensor.Name}' is given twice");
        var expected = ModelLayout.Expected(config);
        var expectedNames = expected.Select(e => e.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var extra in byName.Keys.Where(n => !expectedNames.Contains(n)))
            throw error($"unexpected tensor '{extra}': not part of a {config.Family} model with {config.LayerCount} layers" +
                $"{(config.TiedEmbeddings ? ", tied embeddings" : "")}{(config.HasQkvBias ? ", q/k/v biases" : ", no biases")}");
        var result = new List<(ExpectedTensor, TensorSource)>(expected.Count);
        foreach (var e in expected)
        {
            if (!byName.TryGetValue(e.Name, out var source))
                throw error($"tensor '{e.Name}' is missing: a {config.Family} model with this config needs it, shape [{string.Join(", ", e.Shape)}]");
            if (!source.Shape.SequenceEqual(e.Shape))
                throw error($"tensor '{e.Name}': expected shape [{string.Join(", ", e.Shape)}] (from the config), found [{string.Join(", ", source.Shape)}]");
            result.Add((e, source));
        }
        return result;
    }

    /// <summary>Streams a tensor's elements, converted to <paramref name="type"/> when it differs.</summary>
    public static void Copy(Stream destination, TensorSource source, StorageType type) =>
        CopyRange(destination, source, 0, source.ElementCount, type);

    static void CopyRange(Stream destination, TensorSource source, long first, long count, StorageType type)
    {
        var from = source.DataType.Format();
        var to = type.Format();
        int block = from.BlockElements;
        int chunk = (int)Math.Min(ChunkElements / block * block, Math.Max(block, count));
        var bytes = new byte[from.ByteLength(chunk)];
        var floats = type == source.DataType ? null : new float[chunk];
        var converted = type == source.DataType ? null : new byte[to.ByteLength(chunk)];
        for (long done = 0; done < count; done += chunk)
        {
            int n = (int)Math.Min(chunk, count - done);
            var span = bytes.AsSpan(0, (int)from.ByteLength(n));
            source.Read(first + done, span);
            if (floats is null)
            {
                destination.Write(span);
                continue;
            }
            from.Widen(span, floats.AsSpan(0, n));
            var narrowed = converted.AsSpan(0, (int)to.ByteLength(n));
            to.Narrow(floats.AsSpan(0, n), narrowed);
            destination.Write(narrowed);
        }
    }

    /// <summary>
    /// Streams q/k rows (or biases) permuted from transformers' half-split rotary order into the
    /// adjacent-pair order of llama.cpp's <c>llama</c> architecture: convert_hf_to_gguf.py's
    /// <c>LlamaModel.permute</c>, the exact inverse of <see cref="RotaryRowOrder.ToHalfSplit"/>.
    /// File row h·d + 2k + j holds transformers row h·d + j·d/2 + k. One head at a time.
    /// </summary>
    public static void CopyRotaryInterleaved(Stream destination, TensorSource source, int heads, int headDim, StorageType type)
    {
        long rowLength = source.RowLength;
        if (source.RowCount != (long)heads * headDim)
            throw new ArgumentException($"tensor '{source.Name}': {source.RowCount} rows is not {heads} heads × {headDim}");
        int half = headDim / 2;
        int rowBytes = checked((int)source.DataType.ByteLength(rowLength));
        var head = new byte[checked(headDim * rowBytes)];
        var permuted = new byte[head.Length];
        for (int h = 0; h < heads; h++)
        {
            source.Read((long)h * headDim * rowLength, head);
            for (int j = 0; j < 2; j++)
                for (int k = 0; k < half; k++)
                    head.AsSpan((j * half + k) * rowBytes, rowBytes).CopyTo(permuted.AsSpan((2 * k + j) * rowBytes, rowBytes));
            WriteConverted(destination, permuted, source.DataType, type);
        }
    }

    /// <summary>
    /// Streams <c>f(x)</c> of every element, computed in f32 and stored as <paramref name="type"/>;
    /// fails when a stored result does not map back to the source exactly through
    /// <paramref name="inverse"/> (in f32, as the reader computes it).
    /// </summary>
    public static void CopyMapped(Stream destination, TensorSource source, StorageType type, Func<float, float> f, Func<float, float> inverse, string what)
    {
        int chunk = (int)Math.Min(ChunkElements, Math.Max(1, source.ElementCount));
        var values = new float[chunk];
        var mapped = new float[chunk];
        var format = type.Format();
        var bytes = new byte[format.ByteLength(chunk)];
        for (long done = 0; done < source.ElementCount; done += chunk)
        {
            int n = (int)Math.Min(chunk, source.ElementCount - done);
            source.ReadFloat32(done, values.AsSpan(0, n));
            for (int i = 0; i < n; i++)
            {
                float y = format.RoundTrip(f(values[i]));
                if (BitConverter.SingleToInt32Bits(inverse(y)) != BitConverter.SingleToInt32Bits(values[i]))
                    throw new NotSupportedException(
                        $"tensor '{source.Name}': element {done + i} = {values[i]:R} cannot be stored as {what} in {type.Name()} " +
                        $"and read back exactly ({y:R} gives {inverse(y):R})");
                mapped[i] = y;
            }
            var narrowed = bytes.AsSpan(0, (int)format.ByteLength(n));
            format.Narrow(mapped.AsSpan(0, n), narrowed);
            destination.Write(narrowed);
        }
    }

    static void WriteConverted(Stream destination, byte[] bytes, StorageType from, StorageType to)
    {
        if (from == to)
        {
            destination.Write(bytes);
            return;
        }
        var floats = new float[from.ElementCount(bytes.Length)];
        from.Format().Widen(bytes, floats);
        var converted = new byte[to.ByteLength(floats.Length)];
        to.Format().Narrow(floats, converted);
        destination.Write(converted);
    }

    /// <summary>
    /// Streams a matrix quantized to <paramref name="format"/> row by row (ggml's reference
    /// quantizers, <see cref="BlockQuantizer"/>); with <paramref name="heads"/> set, its rows are
    /// first permuted into llama.cpp's adjacent-pair rotary order as <see cref="CopyRotaryInterleaved"/>
    /// does (rows are quantized independently, so permuting before or after is the same).
    /// Rows of a chunk are quantized in parallel; each row's bytes depend on that row alone.
    /// </summary>
    public static void CopyQuantized(Stream destination, TensorSource source, QuantFormat format, int? heads = null, int headDim = 0,
        CancellationToken cancellation = default)
    {
        long rowLength = source.RowLength, rows = source.RowCount;
        int rowBytes = checked((int)format.RowBytes(rowLength));
        int width = checked((int)rowLength);
        // A chunk is whole heads when rows are permuted, so each chunk permutes on its own.
        int group = heads is null ? 1 : headDim;
        if (heads is { } h && rows != (long)h * headDim)
            throw new ArgumentException($"tensor '{source.Name}': {rows} rows is not {h} heads × {headDim}");
        int chunkRows = Math.Max(group, (int)Math.Min(rows, Math.Max(1, ChunkElements / width)) / group * group);
        var values = new float[(long)chunkRows * width];
        var ordered = heads is null ? values : new float[values.Length];
        var blocks = new byte[(long)chunkRows * rowBytes];
        for (long first = 0; first < rows; first += chunkRows)
        {
            cancellation.ThrowIfCancellationRequested();
            int n = (int)Math.Min(chunkRows, rows - first);
            source.ReadFloat32(first * rowLength, values.AsSpan(0, n * width));
            if (heads is not null)
            {
                int half = headDim / 2;
                for (int head = 0; head < n / headDim; head++)
                    for (int j = 0; j < 2; j++)
                        for (int k = 0; k < half; k++)
                            values.AsSpan(((head * headDim) + j * half + k) * width, width)
                                .CopyTo(ordered.AsSpan(((head * headDim) + 2 * k + j) * width, width));
            }
            var input = ordered;
            Parallel.For(0, n, new ParallelOptions { CancellationToken = cancellation }, row =>
                BlockQuantizer.Quantize(format, input.AsSpan(row * width, width), blocks.AsSpan(row * rowBytes, rowBytes)));
            destination.Write(blocks, 0, n * rowBytes);
        }
    }

    /// <summary>A float written so that reading it back as a double and rounding to f32 gives it exactly.</summary>
    public static string JsonNumber(float value)
    {
        if (!float.IsFinite(value))
            throw new ArgumentException($"{value} cannot be written as a JSON number");
        // Python's json writes floats as repr(): 1e-05, 500000.0. The shortest string that
        // round-trips the f32 is what a config author would write; fall back to the exact double.
        string text = value.ToString("R", System.Globalization.CultureInfo.InvariantCulture).Replace("E", "e", StringComparison.Ordinal);
        if (!text.Contains('e') && !text.Contains('.'))
            text += ".0";
        double parsed = double.Parse(text, System.Globalization.CultureInfo.InvariantCulture);
        if ((float)parsed != value)
            text = ((double)value).ToString("R", System.Globalization.CultureInfo.InvariantCulture);
        return text;
    }
}
