using IlgpuLlm.Kernels;

namespace IlgpuLlm.Runtime.Backends;

/// <summary>What a tensor holds: one of the storage types, or 32-bit integers (ids, flags).</summary>
public enum TensorType
{
    F32,
    F16,
    BF16,
    I32,
}

public static class TensorTypes
{
    public static int SizeOf(this TensorType type) => type == TensorType.I32 ? 4 : type.AsStorage().SizeOf();

    public static StorageType AsStorage(this TensorType type) => type switch
    {
        TensorType.F32 => StorageType.F32,
        TensorType.F16 => StorageType.F16,
        TensorType.BF16 => StorageType.BF16,
        _ => throw new ArgumentException("i32 tensors hold integers, not stored floating-point values"),
    };

    public static TensorType AsTensorType(this StorageType type) => type switch
    {
        StorageType.F32 => TensorType.F32,
        StorageType.F16 => TensorType.F16,
        _ => TensorType.BF16,
    };

    public static string Name(this TensorType type) => type == TensorType.I32 ? "i32" : type.AsStorage().Name();
}

/// <summary>
/// A range of values in one backend's memory: a whole allocation or a slice of one. Shapes live in
/// the ops' shape records; a tensor only knows its element type, length and name (for messages).
/// </summary>
public sealed class Tensor
{
    internal Tensor(IBackend owner, object buffer, TensorType type, long offset, long length, string name)
    {
        Owner = owner;
        Buffer = buffer;
        Type = type;
        Offset = offset;
        Length = length;
        Name = name;
    }

    public IBackend Owner { get; }
    public TensorType Type { get; }
    public long Length { get; }
    public string Name { get; }

    /// <summary>The backend's own allocation this tensor lies in.</summary>
    internal object Buffer { get; }

    /// <summary>Index of this tensor's first element within <see cref="Buffer"/>.</summary>
    internal long Offset { get; }

    public long ByteLength => Length * Type.SizeOf();

    /// <summary>Values [start, start + length) of this tensor, sharing its memory.</summary>
    public Tensor Slice(long start, long length)
    {
        if (start < 0 || length < 0 || start + length > Length)
            throw new ArgumentOutOfRangeException(nameof(start),
                $"{Name}: slice [{start}, {start + length}) lies outside its {Length} values");
        return new Tensor(Owner, Buffer, Type, Offset + start, length, Name);
    }

    public override string ToString() => $"{Name} ({Type.Name()} × {Length})";
}
