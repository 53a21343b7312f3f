using IlgpuLlm.Kernels;
using System.Collections.Immutable;
using System.Text;
using System.Text.Json;

namespace IlgpuLlm.Model.Formats;

/// <summary>One tensor as a <see cref="SafetensorsWriter"/> lays it out (offsets relative to the data section).</summary>
public sealed record SafetensorsTensorLayout(string Name, string DType, ImmutableArray<long> Shape, long Begin, long End);

/// <summary>
/// Writes safetensors files (huggingface/safetensors): the 8-byte little-endian header length, a
/// JSON header with <c>__metadata__</c> and every tensor's dtype, shape and data_offsets, padded
/// with spaces to a multiple of 8 bytes as the reference implementation does, then the tensors
/// back to back in the order they were added. Tensor data is streamed from each tensor's writer.
/// </summary>
public sealed class SafetensorsWriter
{
    readonly Dictionary<string, string> _metadata = new(StringComparer.Ordinal);
    readonly List<(SafetensorsTensorLayout Layout, Action<Stream> Write)> _tensors = [];
    readonly HashSet<string> _names = new(StringComparer.Ordinal);
    long _dataLength;
    byte[]? _header;

    /// <summary>The safetensors dtype name of a storage type.</summary>
    public static string DTypeName(StorageType type) =>
        type.Format().SafetensorsName ?? throw new NotSupportedException($"safetensors cannot hold {type.Name()} tensors");

    public IEnumerable<SafetensorsTensorLayout> Tensors => _tensors.Select(t => t.Layout);

    /// <summary>A <c>__metadata__</c> string (transformers writes <c>format: pt</c>).</summary>
    public SafetensorsWriter AddMetadata(string key, string value)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        ArgumentNullException.ThrowIfNull(value);
        if (!_metadata.TryAdd(key, value))
            throw new ArgumentException($"metadata key '{key}' is already set", nameof(key));
        _header = null;
        return this;
    }

    /// <summary>
    /// Adds a tensor; <paramref name="writeData"/> is called once while the file is written and
    /// must write exactly shape × dtype bytes.
    /// </summary>
    public SafetensorsWriter AddTensor(string name, string dtype, IReadOnlyList<long> shape, Action<Stream> writeData)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(writeData);
        if (name == "__metadata__")
            throw new ArgumentException("'__metadata__' is reserved for the metadata", nameof(name));
        int size = SafetensorsFile.ElementSize(dtype)
            ?? throw new ArgumentException($"tensor '{name}': unknown safetensors dtype '{dtype}'", nameof(dtype));
        if (shape.Any(d => d < 0))
            throw new ArgumentException($"tensor '{name}': shape [{string.Join(", ", shape)}] has a negative dimension", nameof(shape));
        long bytes = checked(shape.Aggregate(1L, (a, b) => checked(a * b)) * size);
        if (!_names.Add(name))
            throw new ArgumentException($"tensor '{name}' is already added", nameof(name));
        _tensors.Add((new SafetensorsTensorLayout(name, dtype, [.. shape], _dataLength, _dataLength + bytes), writeData));
        _dataLength = checked(_dataLength + bytes);
        _header = null;
        return this;
    }

    public SafetensorsWriter AddTensor(string name, StorageType type, IReadOnlyList<long> shape, Action<Stream> writeData) =>
        AddTensor(name, DTypeName(type), shape, writeData);

    /// <summary>The size of the whole file.</summary>
    public long Length => 8 + Header().Length + _dataLength;

    byte[] Header()
    {
        if (_header is not null) return _header;
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream))
        {
            json.WriteStartObject();
            if (_metadata.Count > 0)
            {
                json.WriteStartObject("__metadata__");
                foreach (var (key, value) in _metadata)
                    json.WriteString(key, value);
                json.WriteEndObject();
            }
            foreach (var (layout, _) in _tensors)
            {
                json.WriteStartObject(layout.Name);
                json.WriteString("dtype", layout.DType);
                json.WriteStartArray("shape");
                foreach (long d in layout.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(layout.Begin);
                json.WriteNumberValue(layout.End);
                json.WriteEndArray();
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        // The reference implementation pads the header with spaces so the data starts 8-aligned.
        while (stream.Length % 8 != 0)
            stream.WriteByte((byte)' ');
        return _header = stream.ToArray();
    }

    /// <summary>Writes the file (via a temporary file renamed into place), reporting bytes written.</summary>
    public void WriteTo(string path, IProgress<long>? progress = null, CancellationToken cancellation = default) =>
        WriteTo(path, progress, 0, cancellation);

    internal void WriteTo(string path, IProgress<long>? progress, long progressBase, CancellationToken cancellation) =>
        FileOutput.Write(path, Length, WriteTo, progress, progressBase, cancellation);

    /// <summary>Writes the file's bytes to a stream.</summary>
    public void WriteTo(Stream destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        var header = Header();
        Span<byte> length = stackalloc byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        destination.Write(length);
        destination.Write(header);
        foreach (var (layout, write) in _tensors)
        {
            var counted = new TensorBytes(destination, layout.Name, layout.End - layout.Begin);
            write(counted);
            counted.EnsureComplete();
        }
    }
}

/// <summary>Writes small JSON files (config.json, tokenizer files) atomically.</summary>
internal static class JsonFileOutput
{
    public static void Write(string path, Action<Utf8JsonWriter> write, IProgress<long>? progress, long progressBase, CancellationToken cancellation)
    {
        var bytes = Build(write);
        FileOutput.Write(path, bytes.Length, stream => stream.Write(bytes), progress, progressBase, cancellation);
    }

    public static byte[] Build(Action<Utf8JsonWriter> write)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions
        {
            Indented = true,
            // Token spellings are arbitrary Unicode; keep them readable rather than \u-escaped.
            Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        }))
            write(json);
        stream.WriteByte((byte)'\n');
        return stream.ToArray();
    }
}
