using System.Collections.Immutable;

namespace IlgpuLlm.Model.Formats;

/// <summary>One tensor as a GGUF file describes it, already checked against the file's size.</summary>
public sealed class GgufTensorInfo
{
    internal GgufTensorInfo(string name, GgmlType type, ImmutableArray<long> dimensions, long elementCount,
        long byteLength, long relativeOffset, long fileOffset)
    {
        Name = name;
        Type = type;
        Dimensions = dimensions;
        Shape = [.. dimensions.Reverse()];
        ElementCount = elementCount;
        ByteLength = byteLength;
        RelativeOffset = relativeOffset;
        FileOffset = fileOffset;
    }

    public string Name { get; }

    public GgmlType Type { get; }

    /// <summary>ggml's <c>ne</c>: innermost (contiguous) dimension first, as the file lists them.</summary>
    public ImmutableArray<long> Dimensions { get; }

    /// <summary>Row-major shape, outermost first ([out_features, in_features] for a matrix), as transformers reports it.</summary>
    public ImmutableArray<long> Shape { get; }

    public long ElementCount { get; }

    public long ByteLength { get; }

    /// <summary>Offset from the start of the tensor data section, as stored in the file.</summary>
    public long RelativeOffset { get; }

    /// <summary>Absolute offset of the first byte in the file.</summary>
    public long FileOffset { get; }

    public override string ToString() => $"{Name} {GgmlTypeLayout.Name(Type)} [{string.Join(", ", Shape)}]";
}
