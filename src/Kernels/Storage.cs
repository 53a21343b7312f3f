using System.Runtime.CompilerServices;
using ILGPU;

namespace IlgpuLlm.Kernels;

/// <summary>How weights and the KV cache are stored. Compute is always binary32.</summary>
public enum StorageType
{
    F32,
    F16,
    BF16,
}

/// <summary>The enum side of <see cref="StorageFormat"/>: its one switch, and shortcuts to the format's members.</summary>
public static class StorageTypes
{
    /// <summary>
    /// The format type of <paramref name="type"/>. The one switch over storage types: exhaustive
    /// with no default, so a new <see cref="StorageType"/> without its format does not compile
    /// (CS8509 under warnings-as-errors; CS8524, about unnamed values, is off).
    /// </summary>
    public static StorageFormat Format(this StorageType type) => type switch
    {
        StorageType.F32 => F32Format.Instance,
        StorageType.F16 => F16Format.Instance,
        StorageType.BF16 => Bf16Format.Instance,
    };

    public static string Name(this StorageType type) => type.Format().Name;

    /// <summary>Bytes of <paramref name="elements"/> values (a whole number of blocks).</summary>
    public static long ByteLength(this StorageType type, long elements) => type.Format().ByteLength(elements);

    /// <summary>Values held by <paramref name="bytes"/> bytes (a whole number of blocks).</summary>
    public static long ElementCount(this StorageType type, long bytes) => type.Format().ElementCount(bytes);

    public static StorageType Parse(string name)
    {
        string key = name.ToLowerInvariant();
        return StorageFormat.All.FirstOrDefault(f => f.Aliases.Contains(key))?.Type
            ?? throw new ArgumentException(
                $"unknown storage type '{name}': expected {string.Join(", ", StorageFormat.All.Select(f => f.Name))}");
    }
}

/// <summary>
/// Exact conversions between binary32 and the 16-bit storage formats, in integer arithmetic so
/// every backend agrees (docs/NUMERICS.md, "Storage"). Widening is exact for every value.
/// Narrowing rounds to nearest, ties to even; overflow becomes ±inf; NaN becomes a quiet NaN of
/// the same sign.
/// </summary>
public static class HalfBits
{
    /// <summary>binary16 bits → binary32, exact, including subnormals, ±inf and NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float F16ToF32(ushort bits)
    {
        uint sign = (uint)(bits & 0x8000) << 16;
        uint magnitude = (uint)(bits & 0x7FFF) << 13;
        float value;
        if ((bits & 0x7C00) == 0x7C00)
            value = Interop.IntAsFloat(magnitude | 0x7F800000);
        else
            // Rebias by multiplying with 2^112: exact for normal and subnormal halves alike.
            value = ExactMath.Mul(Interop.IntAsFloat(magnitude), 5.192296858534828e33f);
        return Interop.IntAsFloat(Interop.FloatAsInt(value) | sign);
    }

    /// <summary>bfloat16 bits → binary32: the upper half of the binary32 pattern, exact.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Bf16ToF32(ushort bits) => Interop.IntAsFloat((uint)bits << 16);

    /// <summary>binary32 → binary16 bits, round to nearest even.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort F32ToF16(float value)
    {
        uint bits = Interop.FloatAsInt(value);
        uint sign = (bits >> 16) & 0x8000;
        uint magnitude = bits & 0x7FFFFFFF;
        if (magnitude > 0x7F800000)
            return (ushort)(sign | 0x7E00 | ((magnitude >> 13) & 0x1FF));
        if (magnitude >= 0x477FF000) // ≥ 65520 rounds past the largest half, 65504
            return (ushort)(sign | 0x7C00);
        if (magnitude >= 0x38800000) // normal half: drop 13 mantissa bits with rounding
        {
            uint rebiased = magnitude - 0x38000000; // exponent −112
            uint half = rebiased >> 13;
            uint rest = rebiased & 0x1FFF;
            if (rest > 0x1000 || (rest == 0x1000 && (half & 1) != 0))
                half++;
            return (ushort)(sign | half);
        }
        if (magnitude < 0x33000000) // below 2^−25: rounds to zero (2^−25 itself ties to 0)
            return (ushort)sign;
        // Subnormal half: value / 2^−24 rounded to an integer.
        int exponent = (int)(magnitude >> 23);
        uint mantissa = (magnitude & 0x7FFFFF) | 0x800000;
        int shift = 126 - exponent; // 14..24 for exponents 102..112
        uint result = mantissa >> shift;
        uint remainder = mantissa & ((1u << shift) - 1);
        uint halfway = 1u << (shift - 1);
        if (remainder > halfway || (remainder == halfway && (result & 1) != 0))
            result++;
        return (ushort)(sign | result);
    }

    /// <summary>binary32 → bfloat16 bits, round to nearest even.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort F32ToBf16(float value)
    {
        uint bits = Interop.FloatAsInt(value);
        if ((bits & 0x7FFFFFFF) > 0x7F800000)
            return (ushort)((bits >> 16) | 0x40);
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }

    /// <summary>True when narrowing this finite value to f16 gives ±inf.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool OverflowsF16(float value)
    {
        uint magnitude = Interop.FloatAsInt(value) & 0x7FFFFFFF;
        return magnitude >= 0x477FF000 && magnitude < 0x7F800000;
    }
}

/// <summary>Read access to stored values inside kernels, widened exactly to binary32.</summary>
public interface IStorage
{
    float Load(long index);
}

/// <summary>Stored values on the host (raw little-endian bytes and their format), widened exactly.</summary>
public readonly ref struct HostStorage
{
    readonly StorageFormat format;

    public HostStorage(ReadOnlySpan<byte> bytes, StorageType type)
    {
        format = type.Format();
        Length = format.ElementCount(bytes.Length);
        Bytes = bytes;
        Type = type;
    }

    public ReadOnlySpan<byte> Bytes { get; }
    public StorageType Type { get; }
    public long Length { get; }

    public float this[long index] => format.Widen(Bytes, index);

    public static HostStorage Of(ReadOnlySpan<float> values) =>
        new(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values), StorageType.F32);
}
