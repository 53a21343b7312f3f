using System.Collections.Immutable;
using System.Text;

namespace IlgpuLlm.Model.Formats;

/// <summary>
/// A GGUF v2/v3 file (ggml docs/gguf.md): metadata parsed eagerly, tensor data left in a memory
/// map. Every count, length and offset in the header is checked against the bytes that remain
/// before anything is allocated for it, so a lying header fails with a
/// <see cref="ModelFormatException"/> instead of an OutOfMemoryException or a hang.
/// Opening reads only the header; no tensor byte is touched.
/// The typed getters name the file and key in every error; their Try forms return false only
/// for a missing key, a key of the wrong type is still an error.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    /// <summary>"GGUF" read as a little-endian uint32.</summary>
    public const uint Magic = 0x46554747;

    /// <summary>GGUF_DEFAULT_ALIGNMENT, used when <c>general.alignment</c> is absent.</summary>
    public const int DefaultAlignment = 32;

    public const string AlignmentKey = "general.alignment";

    /// <summary>ggml's GGML_MAX_NAME: gguf.cpp rejects tensor names of this many bytes or more.</summary>
    const int MaxTensorNameBytes = 64;

    /// <summary>GGML_MAX_DIMS.</summary>
    const int MaxDimensions = 4;

    /// <summary>Arrays of arrays are legal GGUF; deeper nesting than this is taken as corruption.</summary>
    const int MaxArrayNesting = 8;

    readonly MappedFile _file;
    readonly ImmutableArray<GgufMetadataEntry> _metadata;
    readonly Dictionary<string, GgufMetadataEntry> _metadataByKey;
    readonly ImmutableArray<GgufTensorInfo> _tensors;
    readonly Dictionary<string, GgufTensorInfo> _tensorsByName;

    GgufFile(MappedFile file, uint version, int alignment, long dataOffset,
        ImmutableArray<GgufMetadataEntry> metadata, Dictionary<string, GgufMetadataEntry> metadataByKey,
        ImmutableArray<GgufTensorInfo> tensors, Dictionary<string, GgufTensorInfo> tensorsByName)
    {
        _file = file;
        Version = version;
        Alignment = alignment;
        DataOffset = dataOffset;
        _metadata = metadata;
        _metadataByKey = metadataByKey;
        _tensors = tensors;
        _tensorsByName = tensorsByName;
    }

    public string Path => _file.Path;

    public long FileLength => _file.Length;

    public uint Version { get; }

    /// <summary>Alignment of tensor data (<c>general.alignment</c>, default 32).</summary>
    public int Alignment { get; }

    /// <summary>Absolute offset of the tensor data section.</summary>
    public long DataOffset { get; }

    /// <summary>All metadata in file order.</summary>
    public IReadOnlyList<GgufMetadataEntry> Metadata => _metadata;

    public IEnumerable<string> Keys => _metadata.Select(e => e.Key);

    /// <summary>All tensor infos in file order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors => _tensors;

    internal MappedFile File => _file;

    /// <summary>Opens and validates a GGUF file; throws <see cref="ModelFormatException"/> for anything malformed.</summary>
    public static GgufFile Open(string path)
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("GGUF reading assumes a little-endian host");
        return Open(MappedFile.Open(path));
    }

    /// <summary>A GGUF held in memory (a model shipped inside an assembly); <paramref name="name"/> is what messages call it.</summary>
    public static GgufFile FromBytes(string name, ReadOnlySpan<byte> bytes) => Open(MappedFile.FromBytes(name, bytes));

    static GgufFile Open(MappedFile file)
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("GGUF reading assumes a little-endian host");
        try
        {
            return Parse(file);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    public void Dispose() => _file.Dispose();

    // ---------------------------------------------------------------- metadata access

    public bool Contains(string key) => _metadataByKey.ContainsKey(key);

    public bool TryGetEntry(string key, out GgufMetadataEntry entry) =>
        _metadataByKey.TryGetValue(key, out entry!);

    public GgufMetadataEntry GetEntry(string key) =>
        _metadataByKey.TryGetValue(key, out var entry)
            ? entry
            : throw new ModelFormatException(Path, $"metadata key '{key}' is missing");

    public bool TryGetString(string key, out string value)
    {
        if (_metadataByKey.TryGetValue(key, out var entry))
        {
            value = entry.Value as string ?? throw WrongType(entry, "string");
            return true;
        }
        value = "";
        return false;
    }

    public string GetString(string key) => GetEntry(key).Value as string ?? throw WrongType(GetEntry(key), "string");

    /// <summary>Any integer type whose value fits in a uint32 is accepted (converters differ in the width they write).</summary>
    public bool TryGetUInt32(string key, out uint value)
    {
        value = 0;
        if (!_metadataByKey.TryGetValue(key, out var entry)) return false;
        value = checked((uint)IntegerInRange(entry, uint.MinValue, uint.MaxValue, "uint32"));
        return true;
    }

    public uint GetUInt32(string key) =>
        TryGetUInt32(key, out var value) ? value : throw Missing(key);

    /// <summary>Any integer type whose value fits in an int32 is accepted.</summary>
    public bool TryGetInt32(string key, out int value)
    {
        value = 0;
        if (!_metadataByKey.TryGetValue(key, out var entry)) return false;
        value = checked((int)IntegerInRange(entry, int.MinValue, int.MaxValue, "int32"));
        return true;
    }

    public int GetInt32(string key) =>
        TryGetInt32(key, out var value) ? value : throw Missing(key);

    /// <summary>Any non-negative integer value is accepted.</summary>
    public bool TryGetUInt64(string key, out ulong value)
    {
        value = 0;
        if (!_metadataByKey.TryGetValue(key, out var entry)) return false;
        value = entry.Value switch
        {
            ulong u => u,
            _ => (ulong)IntegerInRange(entry, 0, long.MaxValue, "uint64"),
        };
        return true;
    }

    public ulong GetUInt64(string key) =>
        TryGetUInt64(key, out var value) ? value : throw Missing(key);

    /// <summary>float32 or float64 values (the latter rounded to float32).</summary>
    public bool TryGetFloat32(string key, out float value)
    {
        value = 0;
        if (!_metadataByKey.TryGetValue(key, out var entry)) return false;
        value = entry.Value switch
        {
            float f => f,
            double d => (float)d,
            _ => throw WrongType(entry, "float32"),
        };
        return true;
    }

    public float GetFloat32(string key) =>
        TryGetFloat32(key, out var value) ? value : throw Missing(key);

    public bool TryGetBool(string key, out bool value)
    {
        value = false;
        if (!_metadataByKey.TryGetValue(key, out var entry)) return false;
        value = entry.Value is bool b ? b : throw WrongType(entry, "bool");
        return true;
    }

    public bool GetBool(string key) =>
        TryGetBool(key, out var value) ? value : throw Missing(key);

    public GgufArray GetArray(string key)
    {
        var entry = GetEntry(key);
        return entry.Value as GgufArray ?? throw WrongType(entry, "array");
    }

    public bool TryGetArray(string key, out GgufArray array)
    {
        if (_metadataByKey.TryGetValue(key, out var entry))
        {
            array = entry.Value as GgufArray ?? throw WrongType(entry, "array");
            return true;
        }
        array = null!;
        return false;
    }

    /// <summary>A copy of an array of strings (e.g. <c>tokenizer.ggml.tokens</c>, <c>tokenizer.ggml.merges</c>).</summary>
    public string[] GetStringArray(string key) => (string[])TypedArray(key, GgufValueType.String, "array of string").Clone();

    /// <summary>A copy of an array of float32 (float64 elements are rounded), e.g. <c>tokenizer.ggml.scores</c>.</summary>
    public float[] GetFloat32Array(string key)
    {
        var array = GetArray(key);
        return array.Items switch
        {
            float[] f => (float[])f.Clone(),
            double[] d => Array.ConvertAll(d, x => (float)x),
            _ => throw WrongArrayType(key, array, "array of float32"),
        };
    }

    /// <summary>
    /// A copy of an integer array as int32 (e.g. <c>tokenizer.ggml.token_type</c>); elements of any
    /// integer type are accepted when every value fits.
    /// </summary>
    public int[] GetInt32Array(string key)
    {
        var array = GetArray(key);
        if (array.Items is int[] ints) return (int[])ints.Clone();
        var result = new int[array.Count];
        for (int i = 0; i < result.Length; i++)
        {
            long value = array.Items switch
            {
                byte[] a => a[i],
                sbyte[] a => a[i],
                ushort[] a => a[i],
                short[] a => a[i],
                uint[] a => a[i],
                long[] a => a[i],
                ulong[] a => a[i] > long.MaxValue ? long.MaxValue : (long)a[i],
                _ => throw WrongArrayType(key, array, "array of int32"),
            };
            if (value is < int.MinValue or > int.MaxValue)
                throw new ModelFormatException(Path, $"metadata key '{key}': element {i} = {value} does not fit in int32");
            result[i] = (int)value;
        }
        return result;
    }

    /// <summary>A copy of an array of bools (e.g. a per-layer sliding-window pattern).</summary>
    public bool[] GetBoolArray(string key) => (bool[])TypedArray(key, GgufValueType.Bool, "array of bool").Clone();

    // ---------------------------------------------------------------- tensors

    public bool TryGetTensor(string name, out GgufTensorInfo info) => _tensorsByName.TryGetValue(name, out info!);

    public GgufTensorInfo GetTensor(string name) =>
        _tensorsByName.TryGetValue(name, out var info)
            ? info
            : throw new ModelFormatException(Path, $"tensor '{name}' is missing");

    /// <summary>The tensor's bytes inside the map (no copy). For tensors under 2 GiB; use <see cref="GetTensorPointer"/> beyond.</summary>
    public ReadOnlySpan<byte> GetTensorBytes(GgufTensorInfo info)
    {
        if (info.ByteLength > int.MaxValue)
            throw new InvalidOperationException($"tensor '{info.Name}' has {info.ByteLength} bytes, more than a span can hold; use GetTensorPointer");
        return new ReadOnlySpan<byte>(GetTensorPointer(info), (int)info.ByteLength);
    }

    /// <summary>The address of the tensor's first byte; valid until this file is disposed.</summary>
    public byte* GetTensorPointer(GgufTensorInfo info) => _file.PointerAt(info.FileOffset);

    // ---------------------------------------------------------------- errors

    ModelFormatException Missing(string key) => new(Path, $"metadata key '{key}' is missing");

    ModelFormatException WrongType(GgufMetadataEntry entry, string expected) =>
        new(Path, $"metadata key '{entry.Key}': expected {expected}, found {Describe(entry)}");

    ModelFormatException WrongArrayType(string key, GgufArray array, string expected) =>
        new(Path, $"metadata key '{key}': expected {expected}, found array of {array.ElementType}");

    static string Describe(GgufMetadataEntry entry) => entry.Value switch
    {
        GgufArray a => $"array of {a.ElementType}",
        string s => $"string \"{(s.Length > 40 ? s[..40] + "…" : s)}\"",
        var v => $"{entry.Type} {v}",
    };

    long IntegerInRange(GgufMetadataEntry entry, long min, long max, string expected)
    {
        long value = entry.Value switch
        {
            byte v => v,
            sbyte v => v,
            ushort v => v,
            short v => v,
            uint v => v,
            int v => v,
            long v => v,
            ulong v => v > long.MaxValue
                ? throw new ModelFormatException(Path, $"metadata key '{entry.Key}': expected {expected}, found {v}, out of range")
                : (long)v,
            _ => throw WrongType(entry, expected),
        };
        if (value < min || value > max)
            throw new ModelFormatException(Path, $"metadata key '{entry.Key}': expected {expected}, found {value}, out of range");
        return value;
    }

    Array TypedArray(string key, GgufValueType elementType, string expected)
    {
        var array = GetArray(key);
        return array.ElementType == elementType ? array.Items : throw WrongArrayType(key, array, expected);
    }

    // ---------------------------------------------------------------- parsing

    static GgufFile Parse(MappedFile file)
    {
        var reader = new HeaderReader(file);
        uint magic = reader.ReadUInt32("magic");
        if (magic != Magic)
        {
            var bytes = file.Span(0, 4, "magic");
            throw new ModelFormatException(file.Path,
                $"not a GGUF file: magic is {Convert.ToHexString(bytes)}, expected 47475546 ('GGUF')");
        }
        uint version = reader.ReadUInt32("version");
        if (version is 2 or 3)
        {
            // supported
        }
        else if (version == 1)
            throw new ModelFormatException(file.Path, "version: GGUF v1 (32-bit counts) is not supported; expected version 2 or 3");
        else if ((version & 0xFFFF) == 0 && version != 0)
            throw new ModelFormatException(file.Path,
                $"version: found 0x{version:X8}, which is a byte-swapped version: a big-endian GGUF, not supported on this little-endian host");
        else
            throw new ModelFormatException(file.Path, $"version: expected 2 or 3, found {version}");

        ulong tensorCount = reader.ReadUInt64("tensor_count");
        ulong metadataCount = reader.ReadUInt64("metadata_kv_count");

        // Each entry needs at least: key length (8) + value type (4) + a one-byte value.
        reader.RequireCount(metadataCount, 8 + 4 + 1, "metadata_kv_count");
        var entries = ImmutableArray.CreateBuilder<GgufMetadataEntry>(InitialCapacity(metadataCount));
        var byKey = new Dictionary<string, GgufMetadataEntry>(InitialCapacity(metadataCount), StringComparer.Ordinal);
        for (ulong i = 0; i < metadataCount; i++)
        {
            string key = reader.ReadString($"metadata entry #{i} key");
            uint rawType = reader.ReadUInt32($"metadata key '{key}' value type");
            var value = ReadValue(reader, (GgufValueType)rawType, key, depth: 0);
            var entry = new GgufMetadataEntry(key, (GgufValueType)rawType, value);
            if (!byKey.TryAdd(key, entry))
                throw new ModelFormatException(file.Path, $"metadata key '{key}' appears twice");
            entries.Add(entry);
        }

        int alignment = DefaultAlignment;
        if (byKey.TryGetValue(AlignmentKey, out var alignmentEntry))
        {
            // gguf.cpp accepts general.alignment only as a uint32 power of two.
            if (alignmentEntry.Value is not uint a || a == 0 || (a & (a - 1)) != 0 || a > 1u << 30)
                throw new ModelFormatException(file.Path,
                    $"metadata key '{AlignmentKey}': expected a uint32 power of two, found {Describe(alignmentEntry)}");
            alignment = (int)a;
        }

        // Each tensor info needs at least: name length (8) + n_dims (4) + type (4) + offset (8).
        reader.RequireCount(tensorCount, 8 + 4 + 4 + 8, "tensor_count");
        var pending = new List<(string Name, GgmlType Type, ImmutableArray<long> Dims, long Elements, long Bytes, ulong Offset)>(InitialCapacity(tensorCount));
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (ulong i = 0; i < tensorCount; i++)
        {
            string name = reader.ReadString($"tensor info #{i} name");
            if (Encoding.UTF8.GetByteCount(name) >= MaxTensorNameBytes)
                throw new ModelFormatException(file.Path,
                    $"tensor '{Shorten(name)}': name is {Encoding.UTF8.GetByteCount(name)} bytes, ggml allows at most {MaxTensorNameBytes - 1}");
            if (!names.Add(name))
                throw new ModelFormatException(file.Path, $"tensor '{name}' is listed twice");
            uint dimensionCount = reader.ReadUInt32($"tensor '{name}' n_dimensions");
            if (dimensionCount > MaxDimensions)
                throw new ModelFormatException(file.Path,
                    $"tensor '{name}': n_dimensions is {dimensionCount}, ggml allows at most {MaxDimensions}");
            var dims = ImmutableArray.CreateBuilder<long>((int)dimensionCount);
            long elements = 1;
            for (int d = 0; d < dimensionCount; d++)
            {
                ulong dim = reader.ReadUInt64($"tensor '{name}' dimension {d}");
                if (dim > long.MaxValue)
                    throw new ModelFormatException(file.Path, $"tensor '{name}': dimension {d} is {dim}, larger than ggml's int64 limit");
                if (!TryMultiply(elements, (long)dim, out elements))
                    throw new ModelFormatException(file.Path,
                        $"tensor '{name}': dimensions [{string.Join(", ", dims)}, {dim}…] overflow a 64-bit element count");
                dims.Add((long)dim);
            }
            var type = (GgmlType)reader.ReadUInt32($"tensor '{name}' type");
            if (!GgmlTypeLayout.TryGetBlockLayout(type, out int blockSize, out int bytesPerBlock))
                throw new ModelFormatException(file.Path,
                    $"tensor '{name}': {GgmlTypeLayout.Name(type)} is not a tensor type current ggml defines");
            long rowLength = dimensionCount == 0 ? 1 : dims[0];
            if (rowLength % blockSize != 0)
                throw new ModelFormatException(file.Path,
                    $"tensor '{name}': row length {rowLength} is not a multiple of the {GgmlTypeLayout.Name(type)} block size {blockSize}");
            if (!TryMultiply(elements / blockSize, bytesPerBlock, out long bytes))
                throw new ModelFormatException(file.Path, $"tensor '{name}': byte size overflows 64 bits");
            ulong offset = reader.ReadUInt64($"tensor '{name}' offset");
            pending.Add((name, type, dims.MoveToImmutable(), elements, bytes, offset));
        }

        long dataOffset = AlignUp(reader.Position, alignment);
        var tensors = ImmutableArray.CreateBuilder<GgufTensorInfo>(pending.Count);
        var byName = new Dictionary<string, GgufTensorInfo>(pending.Count, StringComparer.Ordinal);
        if (pending.Count > 0 && dataOffset > file.Length)
            throw new ModelFormatException(file.Path,
                $"tensor data section: starts at byte {dataOffset} but the file has {file.Length} bytes (truncated)");
        long dataLength = file.Length - dataOffset;
        foreach (var t in pending)
        {
            if (t.Offset % (ulong)alignment != 0)
                throw new ModelFormatException(file.Path,
                    $"tensor '{t.Name}': offset {t.Offset} is not a multiple of the alignment {alignment}");
            if (t.Offset > (ulong)dataLength || (ulong)t.Bytes > (ulong)dataLength - t.Offset)
                throw new ModelFormatException(file.Path,
                    $"tensor '{t.Name}': data needs bytes [{t.Offset}, {t.Offset + (ulong)t.Bytes}) of the data section, " +
                    $"which has {dataLength} bytes (file truncated or offset/size wrong)");
            var info = new GgufTensorInfo(t.Name, t.Type, t.Dims, t.Elements, t.Bytes, (long)t.Offset, dataOffset + (long)t.Offset);
            tensors.Add(info);
            byName.Add(t.Name, info);
        }

        CheckNoOverlap(file.Path, tensors);
        GgufLayout.Check(file.Path, tensors, alignment);
        return new GgufFile(file, version, alignment, dataOffset, entries.ToImmutable(), byKey,
            tensors.MoveToImmutable(), byName);
    }

    static void CheckNoOverlap(string path, IEnumerable<GgufTensorInfo> tensors)
    {
        GgufTensorInfo? previous = null;
        foreach (var t in tensors.Where(t => t.ByteLength > 0).OrderBy(t => t.RelativeOffset))
        {
            if (previous != null && t.RelativeOffset < previous.RelativeOffset + previous.ByteLength)
                throw new ModelFormatException(path,
                    $"tensor '{t.Name}': data at [{t.RelativeOffset}, {t.RelativeOffset + t.ByteLength}) overlaps tensor " +
                    $"'{previous.Name}' at [{previous.RelativeOffset}, {previous.RelativeOffset + previous.ByteLength})");
            previous = t;
        }
    }

    static object ReadValue(HeaderReader reader, GgufValueType type, string key, int depth)
    {
        string what = $"metadata key '{key}'";
        return type switch
        {
            GgufValueType.UInt8 => reader.ReadScalar<byte>(what),
            GgufValueType.Int8 => reader.ReadScalar<sbyte>(what),
            GgufValueType.UInt16 => reader.ReadScalar<ushort>(what),
            GgufValueType.Int16 => reader.ReadScalar<short>(what),
            GgufValueType.UInt32 => reader.ReadScalar<uint>(what),
            GgufValueType.Int32 => reader.ReadScalar<int>(what),
            GgufValueType.Float32 => reader.ReadScalar<float>(what),
            GgufValueType.Bool => reader.ReadScalar<byte>(what) != 0,
            GgufValueType.UInt64 => reader.ReadScalar<ulong>(what),
            GgufValueType.Int64 => reader.ReadScalar<long>(what),
            GgufValueType.Float64 => reader.ReadScalar<double>(what),
            GgufValueType.String => reader.ReadString(what),
            GgufValueType.Array => ReadArray(reader, key, depth),
            _ => throw new ModelFormatException(reader.Path, $"{what}: unknown value type id {(uint)type}"),
        };
    }

    static GgufArray ReadArray(HeaderReader reader, string key, int depth)
    {
        string what = $"metadata key '{key}'";
        if (depth >= MaxArrayNesting)
            throw new ModelFormatException(reader.Path, $"{what}: arrays nested deeper than {MaxArrayNesting} levels");
        var elementType = (GgufValueType)reader.ReadUInt32($"{what} array element type");
        ulong count = reader.ReadUInt64($"{what} array length");
        int minimumSize = elementType switch
        {
            GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
            GgufValueType.UInt16 or GgufValueType.Int16 => 2,
            GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
            GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
            GgufValueType.String => 8,
            GgufValueType.Array => 4 + 8,
            _ => throw new ModelFormatException(reader.Path, $"{what}: unknown array element type id {(uint)elementType}"),
        };
        reader.RequireCount(count, minimumSize, $"{what} array length");
        int n = (int)count;
        Array items = elementType switch
        {
            GgufValueType.UInt8 => reader.ReadBlock<byte>(n, what),
            GgufValueType.Int8 => reader.ReadBlock<sbyte>(n, what),
            GgufValueType.UInt16 => reader.ReadBlock<ushort>(n, what),
            GgufValueType.Int16 => reader.ReadBlock<short>(n, what),
            GgufValueType.UInt32 => reader.ReadBlock<uint>(n, what),
            GgufValueType.Int32 => reader.ReadBlock<int>(n, what),
            GgufValueType.Float32 => reader.ReadBlock<float>(n, what),
            GgufValueType.UInt64 => reader.ReadBlock<ulong>(n, what),
            GgufValueType.Int64 => reader.ReadBlock<long>(n, what),
            GgufValueType.Float64 => reader.ReadBlock<double>(n, what),
            GgufValueType.Bool => Array.ConvertAll(reader.ReadBlock<byte>(n, what), b => b != 0),
            GgufValueType.String => ReadStrings(reader, n, key),
            _ => ReadNested(reader, n, key, depth),
        };
        return new GgufArray(elementType, items);
    }

    static string[] ReadStrings(HeaderReader reader, int count, string key)
    {
        var strings = new List<string>(InitialCapacity((ulong)count));
        string what = $"metadata key '{key}'";
        for (int i = 0; i < count; i++)
            strings.Add(reader.ReadString(what, i));
        return [.. strings];
    }

    static GgufArray[] ReadNested(HeaderReader reader, int count, string key, int depth)
    {
        var arrays = new List<GgufArray>(InitialCapacity((ulong)count));
        for (int i = 0; i < count; i++)
            arrays.Add(ReadArray(reader, $"{key}[{i}]", depth + 1));
        return [.. arrays];
    }

    /// <summary>
    /// Collections of variable-size items grow as items actually parse instead of trusting the
    /// claimed count up front: a count that fits the file's size can still be a lie, and
    /// pre-sizing for it would allocate memory the file never backs.
    /// </summary>
    static int InitialCapacity(ulong claimedCount) => (int)Math.Min(claimedCount, 4096);

    static bool TryMultiply(long a, long b, out long product)
    {
        try
        {
            product = checked(a * b);
            return true;
        }
        catch (OverflowException)
        {
            product = 0;
            return false;
        }
    }

    static long AlignUp(long value, int alignment) => checked((value + alignment - 1) / alignment * alignment);

    static string Shorten(string s) => s.Length > 80 ? s[..80] + "…" : s;

    /// <summary>A cursor over the header with every read bounds-checked against the file length.</summary>
    sealed class HeaderReader(MappedFile file)
    {
        public long Position { get; private set; }

        public string Path => file.Path;

        long Remaining => file.Length - Position;

        // Error context is passed as (what, element index) and formatted only when a read fails:
        // a vocabulary has 10^5 strings, and building a description for each would dominate the parse.
        static string Describe(string what, long element) => element < 0 ? what : $"{what} element {element}";

        byte* Take(long count, string what, long element = -1)
        {
            if (count > Remaining)
                throw new ModelFormatException(file.Path,
                    $"{Describe(what, element)}: needs {count} bytes at offset {Position} but the file ends at {file.Length} (truncated)");
            byte* p = file.PointerAt(Position);
            Position += count;
            return p;
        }

        public T ReadScalar<T>(string what) where T : unmanaged =>
            System.Runtime.CompilerServices.Unsafe.ReadUnaligned<T>(Take(sizeof(T), what));

        public uint ReadUInt32(string what) => ReadScalar<uint>(what);

        public ulong ReadUInt64(string what) => ReadScalar<ulong>(what);

        /// <summary>Rejects a count whose smallest possible encoding already exceeds the rest of the file.</summary>
        public void RequireCount(ulong count, int minimumBytesEach, string what)
        {
            if (count > (ulong)Array.MaxLength || count > (ulong)Remaining / (ulong)minimumBytesEach)
                throw new ModelFormatException(file.Path,
                    $"{what}: claims {count} items of at least {minimumBytesEach} bytes each, but only {Remaining} bytes remain in the file");
        }

        public string ReadString(string what, long element = -1)
        {
            ulong length = System.Runtime.CompilerServices.Unsafe.ReadUnaligned<ulong>(Take(sizeof(ulong), what, element));
            if (length > (ulong)Remaining)
                throw new ModelFormatException(file.Path,
                    $"{Describe(what, element)}: string claims {length} bytes at offset {Position} but only {Remaining} bytes remain in the file");
            if (length > int.MaxValue)
                throw new ModelFormatException(file.Path, $"{Describe(what, element)}: string of {length} bytes is too long");
            // gguf.md: strings are UTF-8. Invalid sequences are replaced (U+FFFD) rather than
            // rejected, as gguf-py does when it decodes, so a vocabulary with one bad piece still opens.
            return Encoding.UTF8.GetString(Take((long)length, what, element), (int)length);
        }

        public T[] ReadBlock<T>(int count, string what) where T : unmanaged
        {
            long bytes = (long)count * sizeof(T);
            byte* p = Take(bytes, what);
            var result = new T[count];
            fixed (T* destination = result)
                Buffer.MemoryCopy(p, destination, bytes, bytes);
            return result;
        }
    }
}
