using IlgpuLlm.Kernels;

namespace IlgpuLlm.Runtime.Backends;

/// <summary>
/// What a tensor holds: values of a storage format (<see cref="StorageType"/>, which converts
/// implicitly), or 32-bit integers (ids, positions, flags), which are no storage format.
/// </summary>
public readonly struct TensorType : IEquatable<TensorType>
{
    readonly StorageType storage;
    readonly bool integer;

    TensorType(StorageType storage, bool integer)
    {
        this.storage = storage;
        this.integer = integer;
    }

    public static TensorType F32 => StorageType.F32;
    public static TensorType F16 => StorageType.F16;
    public static TensorType BF16 => StorageType.BF16;
    public static TensorType I32 { get; } = new(default, true);

    public static implicit operator TensorType(StorageType storage) => new(storage, false);

    /// <summary>True for 32-bit integers.</summary>
    public bool IsInteger => integer;

    /// <summary>The storage format of the values; integer tensors have none.</summary>
    public StorageType Storage => integer
        ? throw new ArgumentException("i32 tensors hold integers, not stored floating-point values")
        : storage;

    /// <summary>Bytes of <paramref name="elements"/> values (for a block format, a whole number of blocks).</summary>
    public long ByteLength(long elements) => integer ? checked(elements * sizeof(int)) : storage.ByteLength(elements);

    public string Name() => integer ? "i32" : storage.Name();

    public bool Equals(TensorType other) => integer == other.integer && (integer || storage == other.storage);
    public override bool Equals(object? obj) => obj is TensorType other && Equals(other);
    public override int GetHashCode() => integer ? -1 : (int)storage;
    public static bool operator ==(TensorType a, TensorType b) => a.Equals(b);
    public static bool operator !=(TensorType a, TensorType b) => !a.Equals(b);
    public override string ToString() => Name();
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

    public long ByteLength => Type.ByteLength(Length);

    /// <summary>Where this tensor starts in <see cref="Buffer"/>, in bytes.</summary>
    internal long ByteOffset => Type.ByteLength(Offset);

    /// <summary>Values [start, start + length) of this tensor, sharing its memory.</summary>
    public Tensor Slice(long start, long length)
    {
        if (start < 0 || length < 0 || start + length > Length)
            throw new ArgumentOutOfRangeException(nameof(start),
                $"{Name}: slice [{start}, {start + length}) lies outside its {Length} values");
        // A block format is sliced on block boundaries only.
        Type.ByteLength(start);
        Type.ByteLength(length);
        return new Tensor(Owner, Buffer, Type, Offset + start, length, Name);
    }

    /// <summary>
    /// <paramref name="length"/> values of another element type starting <paramref name="byteOffset"/>
    /// bytes into this tensor: the sections of one upload (<see cref="Generation.StepBatch"/>).
    /// </summary>
    internal Tensor View(TensorType type, long byteOffset, long length, string name)
    {
        long start = ByteOffset + byteOffset;
        long elementBytes = type.ByteLength(1);
        if (byteOffset < 0 || length < 0 || byteOffset + type.ByteLength(length) > ByteLength || start % elementBytes != 0)
            throw new ArgumentOutOfRangeException(nameof(byteOffset),
                $"{Name}: {length} {type.Name()} values at byte {byteOffset} do not lie within its {ByteLength} bytes, aligned");
        return new Tensor(Owner, Buffer, type, start / elementBytes, length, name);
    }

    public override string ToString() => $"{Name} ({Type.Name()} × {Length})";
}
