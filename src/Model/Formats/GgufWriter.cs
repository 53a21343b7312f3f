using System.Collections.Immutable;
using System.Text;

namespace IlgpuLlm.Model.Formats;

/// <summary>One tensor as a <see cref="GgufWriter"/> lays it out.</summary>
public sealed record GgufTensorLayout(string Name, GgmlType Type, ImmutableArray<long> Dimensions, long ByteLength, long RelativeOffset)
{
    /// <summary>Row-major shape, outermost first (the reverse of <see cref="Dimensions"/>).</summary>
    public ImmutableArray<long> Shape => [.. Dimensions.Reverse()];
}

/// <summary>
/// Writes GGUF v3 files (ggml docs/gguf.md): metadata of every value type, tensor infos with
/// ggml's innermost-first dimensions, and tensor data aligned to <see cref="Alignment"/>, which is
/// also stated as <c>general.alignment</c>. Tensor data is pulled from each tensor's writer while
/// the file is written, so a multi-GB model never sits in memory; only the header is built in
/// memory. <see cref="GgufFile"/> opens everything this writes, and so does llama.cpp's gguf.cpp.
/// </summary>
public sealed class GgufWriter
{
    /// <summary>The GGUF version written.</summary>
    public const uint Version = 3;

    /// <summary>ggml's GGML_MAX_NAME: names must be shorter than this many bytes.</summary>
    const int MaxTensorNameBytes = 64;

    readonly List<GgufMetadataEntry> _metadata = [];
    readonly HashSet<string> _keys = new(StringComparer.Ordinal);
    readonly List<(GgufTensorLayout Layout, Action<Stream> Write)> _tensors = [];
    readonly HashSet<string> _tensorNames = new(StringComparer.Ordinal);
    long _dataLength;
    byte[]? _header;

    /// <param name="alignment">Alignment of tensor data; a power of two (GGUF's default is 32).</param>
    public GgufWriter(int alignment = GgufFile.DefaultAlignment)
    {
        if (alignment <= 0 || (alignment & (alignment - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(alignment), alignment, "the alignment must be a power of two");
        Alignment = alignment;
    }

    public int Alignment { get; }

    /// <summary>The metadata in the order it will be written (<c>general.alignment</c> is appended if absent).</summary>
    public IReadOnlyList<GgufMetadataEntry> Metadata => _metadata;

    /// <summary>The tensors in file order, with their offsets in the data section.</summary>
    public IEnumerable<GgufTensorLayout> Tensors => _tensors.Select(t => t.Layout);

    // ---------------------------------------------------------------- metadata

    public GgufWriter AddString(string key, string value) => Add(key, GgufValueType.String, value ?? throw new ArgumentNullException(nameof(value)));
    public GgufWriter AddUInt8(string key, byte value) => Add(key, GgufValueType.UInt8, value);
    public GgufWriter AddInt8(string key, sbyte value) => Add(key, GgufValueType.Int8, value);
    public GgufWriter AddUInt16(string key, ushort value) => Add(key, GgufValueType.UInt16, value);
    public GgufWriter AddInt16(string key, short value) => Add(key, GgufValueType.Int16, value);
    public GgufWriter AddUInt32(string key, uint value) => Add(key, GgufValueType.UInt32, value);
    public GgufWriter AddInt32(string key, int value) => Add(key, GgufValueType.Int32, value);
    public GgufWriter AddUInt64(string key, ulong value) => Add(key, GgufValueType.UInt64, value);
    public GgufWriter AddInt64(string key, long value) => Add(key, GgufValueType.Int64, value);
    public GgufWriter AddFloat32(string key, float value) => Add(key, GgufValueType.Float32, value);
    public GgufWriter AddFloat64(string key, double value) => Add(key, GgufValueType.Float64, value);
    public GgufWriter AddBool(string key, bool value) => Add(key, GgufValueType.Bool, value);

    public GgufWriter AddStringArray(string key, IEnumerable<string> values) => AddArray(key, GgufValueType.String, values.ToArray());
    public GgufWriter AddFloat32Array(string key, IEnumerable<float> values) => AddArray(key, GgufValueType.Float32, values.ToArray());
    public GgufWriter AddInt32Array(string key, IEnumerable<int> values) => AddArray(key, GgufValueType.Int32, values.ToArray());
    public GgufWriter AddUInt32Array(string key, IEnumerable<uint> values) => AddArray(key, GgufValueType.UInt32, values.ToArray());
    public GgufWriter AddInt64Array(string key, IEnumerable<long> values) => AddArray(key, GgufValueType.Int64, values.ToArray());
    public GgufWriter AddBoolArray(string key, IEnumerable<bool> values) => AddArray(key, GgufValueType.Bool, values.ToArray());

    GgufWriter AddArray(string key, GgufValueType elementType, Array items) =>
        Add(key, GgufValueType.Array, new GgufArray(elementType, items));

    /// <summary>
    /// Adds an entry as <see cref="GgufFile"/> reads it (copying metadata from one file to another);
    /// the boxed value must be the CLR type of its GGUF type.
    /// </summary>
    public GgufWriter Add(GgufMetadataEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        return Add(entry.Key, entry.Type, entry.Value);
    }

    GgufWriter Add(string key, GgufValueType type, object value)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        CheckValue(key, type, value, depth: 0);
        if (key == GgufFile.AlignmentKey && !(value is uint a && a == Alignment))
            throw new ArgumentException($"metadata key '{key}' must be the uint32 {Alignment} this writer aligns to, not {type} {value}", nameof(value));
        if (!_keys.Add(key))
            throw new ArgumentException($"metadata key '{key}' is already set", nameof(key));
        _metadata.Add(new GgufMetadataEntry(key, type, value));
        _header = null;
        return this;
    }

    static void CheckValue(string key, GgufValueType type, object value, int depth)
    {
        bool ok = (type, value) switch
        {
            (GgufValueType.UInt8, byte) or (GgufValueType.Int8, sbyte) or (GgufValueType.UInt16, ushort)
                or (GgufValueType.Int16, short) or (GgufValueType.UInt32, uint) or (GgufValueType.Int32, int)
                or (GgufValueType.Float32, float) or (GgufValueType.Bool, bool) or (GgufValueType.String, string)
                or (GgufValueType.UInt64, ulong) or (GgufValueType.Int64, long) or (GgufValueType.Float64, double) => true,
            (GgufValueType.Array, GgufArray array) => CheckArray(key, array, depth),
            _ => false,
        };
        if (!ok)
            throw new ArgumentException($"metadata key '{key}': a {value?.GetType().Name ?? "null"} cannot be written as GGUF {type}");
    }

    static bool CheckArray(string key, GgufArray array, int depth)
    {
        if (depth > 8)
            throw new ArgumentException($"metadata key '{key}': arrays nested deeper than 8 levels");
        Type? expected = array.ElementType switch
        {
            GgufValueType.UInt8 => typeof(byte[]),
            GgufValueType.Int8 => typeof(sbyte[]),
            GgufValueType.UInt16 => typeof(ushort[]),
            GgufValueType.Int16 => typeof(short[]),
            GgufValueType.UInt32 => typeof(uint[]),
            GgufValueType.Int32 => typeof(int[]),
            GgufValueType.Float32 => typeof(float[]),
            GgufValueType.Bool => typeof(bool[]),
            GgufValueType.String => typeof(string[]),
            GgufValueType.UInt64 => typeof(ulong[]),
            GgufValueType.Int64 => typeof(long[]),
            GgufValueType.Float64 => typeof(double[]),
            GgufValueType.Array => typeof(GgufArray[]),
            _ => null,
        };
        if (expected is null || array.Items.GetType() != expected)
            return false;
        if (array.Items is string[] strings && strings.Any(s => s is null))
            throw new ArgumentException($"metadata key '{key}': a string array element is null");
        if (array.Items is GgufArray[] nested)
            foreach (var inner in nested)
                if (!CheckArray(key, inner ?? throw new ArgumentException($"metadata key '{key}': a nested array is null"), depth + 1))
                    return false;
        return true;
    }

    // ---------------------------------------------------------------- tensors

    /// <summary>
    /// Adds a tensor with its row-major <paramref name="shape"/> (written innermost-first, as ggml's
    /// <c>ne</c>). <paramref name="writeData"/> is called once, while the file is written, and must
    /// write exactly the tensor's bytes; it may write them in any number of pieces.
    /// </summary>
    public GgufWriter AddTensor(string name, GgmlType type, IReadOnlyList<long> shape, Action<Stream> writeData)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(writeData);
        if (Encoding.UTF8.GetByteCount(name) >= MaxTensorNameBytes)
            throw new ArgumentException($"tensor '{name}': ggml names are at most {MaxTensorNameBytes - 1} bytes", nameof(name));
        if (shape.Count > 4)
            throw new ArgumentException($"tensor '{name}': ggml tensors have at most 4 dimensions, not {shape.Count}", nameof(shape));
        if (shape.Any(d => d < 0))
            throw new ArgumentException($"tensor '{name}': shape [{string.Join(", ", shape)}] has a negative dimension", nameof(shape));
        if (!GgmlTypeLayout.TryGetBlockLayout(type, out int blockSize, out int bytesPerBlock))
            throw new ArgumentException($"tensor '{name}': {GgmlTypeLayout.Name(type)} is not a tensor type ggml defines", nameof(type));
        var dims = ImmutableArray.CreateRange(shape.Reverse());
        long rowLength = dims.IsEmpty ? 1 : dims[0];
        if (rowLength % blockSize != 0)
            throw new ArgumentException($"tensor '{name}': row length {rowLength} is not a multiple of the {GgmlTypeLayout.Name(type)} block size {blockSize}", nameof(shape));
        long elements = dims.Aggregate(1L, (a, b) => checked(a * b));
        long bytes = checked(elements / blockSize * bytesPerBlock);
        if (!_tensorNames.Add(name))
            throw new ArgumentException($"tensor '{name}' is already added", nameof(name));
        _tensors.Add((new GgufTensorLayout(name, type, dims, bytes, _dataLength), writeData));
        _dataLength = checked(_dataLength + FileOutput.AlignUp(bytes, Alignment));
        _header = null;
        return this;
    }

    // ---------------------------------------------------------------- layout

    /// <summary>Bytes before the tensor data: header, metadata, tensor infos and padding.</summary>
    public long DataOffset => FileOutput.AlignUp(Header().Length, Alignment);

    /// <summary>The size of the whole file.</summary>
    public long Length => DataOffset + _dataLength;

    byte[] Header()
    {
        if (_header is not null) return _header;
        using var stream = new MemoryStream();
        using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        var entries = new List<GgufMetadataEntry>(_metadata);
        if (!_keys.Contains(GgufFile.AlignmentKey))
            entries.Add(new GgufMetadataEntry(GgufFile.AlignmentKey, GgufValueType.UInt32, (uint)Alignment));
        w.Write(GgufFile.Magic);
        w.Write(Version);
        w.Write((ulong)_tensors.Count);
        w.Write((ulong)entries.Count);
        foreach (var entry in entries)
        {
            WriteString(w, entry.Key);
            w.Write((uint)entry.Type);
            WriteValue(w, entry.Value);
        }
        foreach (var (layout, _) in _tensors)
        {
            WriteString(w, layout.Name);
            w.Write((uint)layout.Dimensions.Length);
            foreach (long dim in layout.Dimensions)
                w.Write((ulong)dim);
            w.Write((uint)layout.Type);
            w.Write((ulong)layout.RelativeOffset);
        }
        w.Flush();
        return _header = stream.ToArray();
    }

    static void WriteString(BinaryWriter w, string value)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    static void WriteValue(BinaryWriter w, object value)
    {
        switch (value)
        {
            case byte v: w.Write(v); break;
            case sbyte v: w.Write(v); break;
            case ushort v: w.Write(v); break;
            case short v: w.Write(v); break;
            case uint v: w.Write(v); break;
            case int v: w.Write(v); break;
            case float v: w.Write(v); break;
            case bool v: w.Write((byte)(v ? 1 : 0)); break;
            case ulong v: w.Write(v); break;
            case long v: w.Write(v); break;
            case double v: w.Write(v); break;
            case string v: WriteString(w, v); break;
            case GgufArray a:
                w.Write((uint)a.ElementType);
                w.Write((ulong)a.Count);
                foreach (var item in a.Items)
                    WriteValue(w, item!);
                break;
            default:
                throw new InvalidOperationException($"cannot write a {value.GetType().Name}");
        }
    }

    // ---------------------------------------------------------------- output

    /// <summary>
    /// Writes the file (via a temporary file renamed into place). <paramref name="progress"/>
    /// receives the bytes written so far, up to <see cref="Length"/>.
    /// </summary>
    public void WriteTo(string path, IProgress<long>? progress = null, CancellationToken cancellation = default) =>
        WriteTo(path, progress, 0, cancellation);

    internal void WriteTo(string path, IProgress<long>? progress, long progressBase, CancellationToken cancellation) =>
        FileOutput.Write(path, Length, WriteTo, progress, progressBase, cancellation);

    /// <summary>Writes the file's bytes to a stream, from its current position.</summary>
    public void WriteTo(Stream destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        var header = Header();
        destination.Write(header);
        long position = header.Length;
        FileOutput.Pad(destination, position, Alignment);
        position = FileOutput.AlignUp(position, Alignment);
        foreach (var (layout, write) in _tensors)
        {
            var counted = new TensorBytes(destination, layout.Name, layout.ByteLength);
            write(counted);
            counted.EnsureComplete();
            position += layout.ByteLength;
            FileOutput.Pad(destination, position, Alignment);
            position = FileOutput.AlignUp(position, Alignment);
        }
    }
}

/// <summary>
/// The stream a tensor's writer gets: it passes bytes through and refuses more than the tensor's
/// length, so a wrong source fails naming its tensor instead of shifting every tensor after it.
/// </summary>
internal sealed class TensorBytes(Stream inner, string name, long length) : Stream
{
    long _written;

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => length;
    public override long Position { get => _written; set => throw new NotSupportedException(); }

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        if (buffer.Length > length - _written)
            throw new InvalidOperationException($"tensor '{name}': its source wrote more than its {length} bytes");
        inner.Write(buffer);
        _written += buffer.Length;
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public void EnsureComplete()
    {
        if (_written != length)
            throw new InvalidOperationException($"tensor '{name}': its source wrote {_written} of its {length} bytes");
    }

    public override void Flush() => inner.Flush();
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
