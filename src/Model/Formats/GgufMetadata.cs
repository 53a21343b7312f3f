namespace IlgpuLlm.Model.Formats;

/// <summary>GGUF metadata value types by their on-disk id (ggml docs/gguf.md <c>gguf_metadata_value_type</c>).</summary>
public enum GgufValueType : uint
{
    UInt8 = 0,
    Int8 = 1,
    UInt16 = 2,
    Int16 = 3,
    UInt32 = 4,
    Int32 = 5,
    Float32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    UInt64 = 10,
    Int64 = 11,
    Float64 = 12,
}

/// <summary>
/// A GGUF array value. <see cref="Items"/> is a typed CLR array matching
/// <see cref="ElementType"/>: byte[], sbyte[], ushort[], short[], uint[], int[], float[], bool[],
/// string[], ulong[], long[], double[], or <see cref="GgufArray"/>[] for arrays of arrays.
/// </summary>
public sealed class GgufArray
{
    internal GgufArray(GgufValueType elementType, Array items)
    {
        ElementType = elementType;
        Items = items;
    }

    public GgufValueType ElementType { get; }

    public Array Items { get; }

    public int Count => Items.Length;

    public override string ToString() => $"array of {Count} {ElementType}";
}

/// <summary>
/// One metadata key/value pair. <see cref="Value"/> is the boxed scalar (byte, sbyte, ushort,
/// short, uint, int, float, bool, ulong, long, double), a string, or a <see cref="GgufArray"/>.
/// </summary>
public sealed record GgufMetadataEntry(string Key, GgufValueType Type, object Value)
{
    public override string ToString() => $"{Key} ({Type}) = {Value}";
}
