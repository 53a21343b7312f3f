using System.Collections.Immutable;
using System.Text.Json;

namespace IlgpuLlm.Model.Formats;

/// <summary>One tensor entry of a safetensors header, checked against the file.</summary>
public sealed record SafetensorsTensorInfo(string Name, string DType, ImmutableArray<long> Shape, long FileOffset, long ByteLength)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// A safetensors file (huggingface/safetensors): an 8-byte little-endian header length, a JSON
/// header, then the tensor bytes. The header is validated as strictly as the reference
/// implementation does: known dtypes, byte ranges that match shape × dtype, and ranges that tile
/// the data section exactly (no gaps, no overlaps, nothing past the end).
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    /// <summary>The reference implementation's MAX_HEADER_SIZE; anything larger is taken as a lying length.</summary>
    const long MaxHeaderBytes = 100_000_000;

    readonly MappedFile _file;

    SafetensorsFile(MappedFile file, ImmutableArray<SafetensorsTensorInfo> tensors, ImmutableDictionary<string, string> metadata)
    {
        _file = file;
        Tensors = tensors;
        Metadata = metadata;
        TensorsByName = tensors.ToImmutableDictionary(t => t.Name, StringComparer.Ordinal);
    }

    public string Path => _file.Path;

    /// <summary>Tensors in data order.</summary>
    public ImmutableArray<SafetensorsTensorInfo> Tensors { get; }

    public ImmutableDictionary<string, SafetensorsTensorInfo> TensorsByName { get; }

    /// <summary>The header's <c>__metadata__</c> strings.</summary>
    public ImmutableDictionary<string, string> Metadata { get; }

    internal MappedFile File => _file;

    /// <summary>Bytes per element of each safetensors dtype (sub-byte float formats are not listed and so rejected).</summary>
    public static int? ElementSize(string dtype) => dtype switch
    {
        "BOOL" or "U8" or "I8" or "F8_E5M2" or "F8_E4M3" or "F8_E8M0" => 1,
        "I16" or "U16" or "F16" or "BF16" => 2,
        "I32" or "U32" or "F32" => 4,
        "I64" or "U64" or "F64" => 8,
        _ => null,
    };

    public static SafetensorsFile Open(string path)
    {
        var file = MappedFile.Open(path);
        try
        {
            return new SafetensorsFile(file, ParseHeader(file, out var metadata), metadata);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    public void Dispose() => _file.Dispose();

    static ImmutableArray<SafetensorsTensorInfo> ParseHeader(MappedFile file, out ImmutableDictionary<string, string> metadata)
    {
        string path = file.Path;
        if (file.Length < 8)
            throw new ModelFormatException(path, $"header length: the file has {file.Length} bytes, fewer than the 8-byte header length");
        ulong headerLength = *(ulong*)file.PointerAt(0);
        if (headerLength > MaxHeaderBytes)
            throw new ModelFormatException(path, $"header length: {headerLength} bytes exceeds the {MaxHeaderBytes}-byte limit of safetensors");
        if (headerLength > (ulong)(file.Length - 8))
            throw new ModelFormatException(path,
                $"header length: {headerLength} bytes claimed but only {file.Length - 8} bytes follow (truncated)");
        var headerBytes = file.Span(8, (int)headerLength, "header").ToArray();
        long dataStart = 8 + (long)headerLength;
        long dataLength = file.Length - dataStart;

        if (Utf8Text.Problem(headerBytes, baseOffset: 8) is string invalid)
            throw new ModelFormatException(path, $"the JSON header is not UTF-8: {invalid}");
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(headerBytes, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, $"header: not valid JSON ({e.Message})", e);
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException(path, $"header: expected a JSON object, found {document.RootElement.ValueKind}");
            var meta = ImmutableDictionary.CreateBuilder<string, string>(StringComparer.Ordinal);
            var tensors = new List<SafetensorsTensorInfo>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (!seen.Add(property.Name))
                    throw new ModelFormatException(path, $"header: tensor '{property.Name}' appears twice");
                if (property.Name == "__metadata__")
                {
                    if (property.Value.ValueKind != JsonValueKind.Object)
                        throw new ModelFormatException(path, "header: '__metadata__' must be an object of strings");
                    foreach (var m in property.Value.EnumerateObject())
                        meta[m.Name] = m.Value.ValueKind == JsonValueKind.String
                            ? m.Value.GetString()!
                            : throw new ModelFormatException(path, $"header: '__metadata__' entry '{m.Name}' must be a string, found {m.Value.ValueKind}");
                    continue;
                }
                tensors.Add(ParseTensor(path, property, dataStart));
            }
            metadata = meta.ToImmutable();

            // The tensors must tile the data section: sorted by offset, each starts where the
            // previous ended, the last ends at the end of the file.
            tensors.Sort((a, b) => a.FileOffset.CompareTo(b.FileOffset) is var c && c != 0 ? c : a.ByteLength.CompareTo(b.ByteLength));
            long expected = dataStart;
            foreach (var t in tensors)
            {
                if (t.FileOffset != expected)
                    throw new ModelFormatException(path, t.FileOffset < expected
                        ? $"tensor '{t.Name}': data_offsets start at {t.FileOffset - dataStart}, overlapping the previous tensor (which ends at {expected - dataStart})"
                        : $"tensor '{t.Name}': data_offsets start at {t.FileOffset - dataStart}, leaving a gap after byte {expected - dataStart}");
                if (t.ByteLength > file.Length - expected)
                    throw new ModelFormatException(path,
                        $"tensor '{t.Name}': data_offsets end at {t.FileOffset - dataStart + t.ByteLength}, beyond the {dataLength} data bytes in the file (truncated)");
                expected += t.ByteLength;
            }
            if (expected != file.Length)
                throw new ModelFormatException(path, tensors.Count == 0
                    ? $"header lists no tensors but {dataLength} data bytes follow it"
                    : $"tensor '{tensors[^1].Name}': data ends at {expected - dataStart}, but the file holds {dataLength} data bytes (trailing bytes)");
            return [.. tensors];
        }
    }

    static SafetensorsTensorInfo ParseTensor(string path, JsonProperty property, long dataStart)
    {
        string name = property.Name;
        ModelFormatException Bad(string message) => new(path, $"tensor '{name}': {message}");
        var value = property.Value;
        if (value.ValueKind != JsonValueKind.Object)
            throw Bad($"expected an object with dtype, shape and data_offsets, found {value.ValueKind}");

        if (!value.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw Bad("'dtype' is missing or not a string");
        string dtype = dtypeElement.GetString()!;
        int elementSize = ElementSize(dtype) ?? throw Bad($"unknown dtype '{dtype}'");

        if (!value.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw Bad("'shape' is missing or not an array");
        var shape = ImmutableArray.CreateBuilder<long>();
        long elements = 1;
        foreach (var dim in shapeElement.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out long d) || d < 0)
                throw Bad($"shape entry {dim.GetRawText()} is not a non-negative integer");
            shape.Add(d);
            try { elements = checked(elements * d); }
            catch (OverflowException) { throw Bad($"shape [{string.Join(", ", shape)}…] overflows a 64-bit element count"); }
        }

        if (!value.TryGetProperty("data_offsets", out var offsetsElement) || offsetsElement.ValueKind != JsonValueKind.Array
            || offsetsElement.GetArrayLength() != 2)
            throw Bad("'data_offsets' is missing or not a [begin, end] pair");
        var begin = offsetsElement[0];
        var end = offsetsElement[1];
        long first = 0, last = 0;
        if (begin.ValueKind != JsonValueKind.Number || end.ValueKind != JsonValueKind.Number
            || !begin.TryGetInt64(out first) || !end.TryGetInt64(out last) || first < 0 || last < first)
            throw Bad($"data_offsets {offsetsElement.GetRawText()} are not 0 <= begin <= end");
        long bytes;
        try { bytes = checked(elements * elementSize); }
        catch (OverflowException) { throw Bad($"{elements} elements of {dtype} overflow a 64-bit byte count"); }
        if (last - first != bytes)
            throw Bad($"data_offsets {offsetsElement.GetRawText()} span {last - first} bytes, but shape [{string.Join(", ", shape)}] of {dtype} needs {bytes}");
        if (first > long.MaxValue - dataStart)
            throw Bad($"data_offsets {offsetsElement.GetRawText()} are beyond any file");
        return new SafetensorsTensorInfo(name, dtype, shape.ToImmutable(), dataStart + first, bytes);
    }
}
