using System.Buffers.Binary;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using ILGPU;

namespace IlgpuLlm.Kernels;

/// <summary>
/// IEEE binary16 (half): widening is exact; narrowing rounds to nearest even, a finite value
/// beyond ±65504 becomes ±inf and is reported as an overflow (docs/NUMERICS.md, "Storage").
/// </summary>
public sealed class F16Format : StorageFormat
{
    public static F16Format Instance { get; } = new();

    F16Format()
    {
    }

    public override StorageType Type => StorageType.F16;
    public override string Name => "f16";
    public override IReadOnlyList<string> Aliases { get; } = ["f16", "float16", "half"];
    public override int BlockElements => 1;
    public override int BlockBytes => 2;
    public override uint GgmlTypeId => 1;
    public override string? SafetensorsName => "F16";
    public override string? TorchName => "float16";

    public override float Widen(ReadOnlySpan<byte> data, long index) =>
        HalfBits.F16ToF32(BinaryPrimitives.ReadUInt16LittleEndian(data.Slice(checked((int)(index * 2)), 2)));

    /// <summary>Exact for every half: each one is a binary32 value.</summary>
    public override void Widen(ReadOnlySpan<byte> source, Span<float> destination) =>
        TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, System.Half>(source), destination);

    public override bool Narrows => true;

    public override void Narrow(ReadOnlySpan<float> source, Span<byte> destination)
    {
        var bits = MemoryMarshal.Cast<byte, ushort>(destination[..(source.Length * 2)]);
        // .NET's float → Half is IEEE round-to-nearest-even, as HalfBits.F32ToF16 is; only the
        // payload a NaN keeps may differ, so any NaN sends the span down the scalar path.
        if (source.Length > 0 && !float.IsNaN(TensorPrimitives.Max(source)))
        {
            TensorPrimitives.ConvertToHalf(source, MemoryMarshal.Cast<ushort, System.Half>(bits));
            return;
        }
        for (int i = 0; i < source.Length; i++)
            bits[i] = HalfBits.F32ToF16(source[i]);
    }

    public override bool Overflows(float value) => HalfBits.OverflowsF16(value);

    public override unsafe long IndexOfNonFinite(byte* data, long count) => ExponentScan.IndexOfAllOnes((ushort*)data, count, (ushort)0x7C00);

    /// <summary>Weights are finite (validated at load), so the SIMD twins widen them with the shorter finite-only sequence.</summary>
    public override void Dispatch<TAction>(ref TAction action) => action.Run<F16Storage, F16Vectors, F16CacheVectors>();

    public override void DispatchNarrowing<TAction>(ref TAction action) => action.Run<F16Storage, F16Narrowing>();
}

public readonly struct F16Storage(ArrayView<ushort> bits) : IStorageView<F16Storage>, IStorageStore<F16Storage>
{
    readonly ArrayView<ushort> bits = bits;

    public static F16Storage Over(ArrayView<byte> bytes) => new(bytes.Cast<ushort>());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Load(long index) => HalfBits.F16ToF32(bits[index]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store(long index, float value) => bits[index] = HalfBits.F32ToF16(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Overflows(float value) => HalfBits.OverflowsF16(value);
}

public unsafe struct F16Vectors : IStoredVectors
{
    public static StorageType Type => StorageType.F16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ByteOffset(long index) => index * 2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16(byte* data, long at)
    {
        var bits = Avx512F.ConvertToVector512Int32(Vector256.Load((short*)data + at));
        var magnitude = Avx512F.ShiftLeftLogical(bits, 13) & Vector512.Create(unchecked((int)0x8FFFE000));
        return magnitude.AsSingle() * Vector512.Create(5.192296858534828e33f);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(byte* data, long at)
    {
        var bits = Avx2.ConvertToVector256Int32(Vector128.Load((short*)data + at));
        var magnitude = Avx2.ShiftLeftLogical(bits, 13) & Vector256.Create(unchecked((int)0x8FFFE000));
        return magnitude.AsSingle() * Vector256.Create(5.192296858534828e33f);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(byte* data, long at) => HalfBits.F16ToF32(((ushort*)data)[at]);
}


/// <summary>
/// Finite f16 values widened all but the last step: <see cref="F16Vectors"/> without its
/// multiplication by 2^112, for a dot whose other operand was multiplied by 2^112 instead
/// (<see cref="LinearSimd"/>'s decode when that scaling is exact). fma(x·2^112, m, acc) rounds
/// the same exact product x·(m·2^112) as fma(x, m·2^112, acc), so the bits are the same, and the
/// loop saves one instruction per 16 weights.
/// </summary>
public unsafe struct F16UnscaledVectors : IStoredVectors
{
    public static StorageType Type => StorageType.F16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ByteOffset(long index) => index * 2;

    /// <summary>The factor the other operand carries: 2^112.</summary>
    public const float Scale = 5.192296858534828e33f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16(byte* data, long at)
    {
        var bits = Avx512F.ConvertToVector512Int32(Vector256.Load((short*)data + at));
        return (Avx512F.ShiftLeftLogical(bits, 13) & Vector512.Create(unchecked((int)0x8FFFE000))).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(byte* data, long at)
    {
        var bits = Avx2.ConvertToVector256Int32(Vector128.Load((short*)data + at));
        return (Avx2.ShiftLeftLogical(bits, 13) & Vector256.Create(unchecked((int)0x8FFFE000))).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(byte* data, long at) =>
        BitConverter.Int32BitsToSingle((((short*)data)[at] << 13) & unchecked((int)0x8FFFE000));
}


/// <summary>
/// f16 values widened exactly for every half, ±inf and NaN included: the KV cache and converted
/// tensors, where an f16 overflow may have stored ±inf (<see cref="F16Vectors"/> is exact for
/// finite halves only). The finite path is <see cref="F16Vectors"/>' rebias by 2^112; exponent
/// 0x1F lanes take the shifted pattern with an all-ones binary32 exponent, as
/// <see cref="HalfBits.F16ToF32"/> does.
/// </summary>
public unsafe struct F16CacheVectors : IStoredVectors
{
    public static StorageType Type => StorageType.F16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ByteOffset(long index) => index * 2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16(byte* data, long at)
    {
        var bits = Avx512F.ConvertToVector512Int32(Vector256.Load((short*)data + at));
        var signedMagnitude = Avx512F.ShiftLeftLogical(bits, 13) & Vector512.Create(unchecked((int)0x8FFFE000));
        var finite = signedMagnitude.AsSingle() * Vector512.Create(5.192296858534828e33f);
        var special = (signedMagnitude | Vector512.Create(0x7F800000)).AsSingle();
        var isSpecial = Vector512.Equals(bits & Vector512.Create(0x7C00), Vector512.Create(0x7C00)).AsSingle();
        return Vector512.ConditionalSelect(isSpecial, special, finite);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(byte* data, long at)
    {
        var bits = Avx2.ConvertToVector256Int32(Vector128.Load((short*)data + at));
        var signedMagnitude = Avx2.ShiftLeftLogical(bits, 13) & Vector256.Create(unchecked((int)0x8FFFE000));
        var finite = signedMagnitude.AsSingle() * Vector256.Create(5.192296858534828e33f);
        var special = (signedMagnitude | Vector256.Create(0x7F800000)).AsSingle();
        var isSpecial = Vector256.Equals(bits & Vector256.Create(0x7C00), Vector256.Create(0x7C00)).AsSingle();
        return Vector256.ConditionalSelect(isSpecial, special, finite);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(byte* data, long at) => HalfBits.F16ToF32(((ushort*)data)[at]);
}

/// <summary>
/// <see cref="HalfBits.F32ToF16"/> and <see cref="HalfBits.OverflowsF16"/> lane-wise on binary32
/// bit patterns, in the same integer arithmetic: round to nearest even, overflow to ±inf, NaN to a
/// quiet NaN with the same sign and top payload bits. Each case is computed for every lane and the
/// right one selected, in the order HalfBits tests them.
/// </summary>
public unsafe struct F16Narrowing : IVectorNarrowing
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Store16(Vector512<uint> bits, byte* destination, long at)
    {
        Avx512F.ConvertToVector256UInt16(Narrow(bits)).Store((ushort*)destination + at);
        return BitOperations.PopCount(OverflowLanes(bits).ExtractMostSignificantBits());
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Store16(Vector256<uint> low, Vector256<uint> high, byte* destination, long at)
    {
        // The 16-bit patterns fit their lanes, so the narrowing pack loses nothing.
        Vector256.Narrow(Narrow(low), Narrow(high)).Store((ushort*)destination + at);
        return BitOperations.PopCount(OverflowLanes(low).ExtractMostSignificantBits())
            + BitOperations.PopCount(OverflowLanes(high).ExtractMostSignificantBits());
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Store1(float value, byte* destination, long at)
    {
        ((ushort*)destination)[at] = HalfBits.F32ToF16(value);
        return HalfBits.OverflowsF16(value);
    }

    // Round half to even by adding (half − 1) plus the kept part's lowest bit, then truncating:
    // the sum carries into the kept bits exactly when the dropped part is above half, or is half
    // and the kept part is odd.

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<uint> Narrow(Vector512<uint> bits)
    {
        var sign = Vector512.ShiftRightLogical(bits, 16) & Vector512.Create(0x8000u);
        var magnitude = bits & Vector512.Create(0x7FFFFFFFu);
        var nan = Vector512.Create(0x7E00u) | (Vector512.ShiftRightLogical(magnitude, 13) & Vector512.Create(0x1FFu));
        var rebiased = magnitude - Vector512.Create(0x38000000u);
        var normal = Vector512.ShiftRightLogical(
            rebiased + Vector512.Create(0xFFFu) + (Vector512.ShiftRightLogical(rebiased, 13) & Vector512<uint>.One), 13);
        // Subnormal halves: the 24-bit significand shifted right by 126 − exponent (14..24 where
        // selected; other lanes compute garbage that is never selected).
        var shift = Vector512.Create(126u) - Vector512.ShiftRightLogical(magnitude, 23);
        var significand = (magnitude & Vector512.Create(0x7FFFFFu)) | Vector512.Create(0x800000u);
        var halfMinusOne = Avx512F.ShiftLeftLogicalVariable(Vector512<uint>.One, shift - Vector512<uint>.One) - Vector512<uint>.One;
        var kept = Avx512F.ShiftRightLogicalVariable(significand, shift);
        var subnormal = Avx512F.ShiftRightLogicalVariable(significand + halfMinusOne + (kept & Vector512<uint>.One), shift);
        var result = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(0x33000000u)), subnormal, Vector512<uint>.Zero);
        result = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(0x38800000u)), normal, result);
        result = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(0x477FF000u)), Vector512.Create(0x7C00u), result);
        result = Vector512.ConditionalSelect(Vector512.GreaterThan(magnitude, Vector512.Create(0x7F800000u)), nan, result);
        return result | sign;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<uint> Narrow(Vector256<uint> bits)
    {
        var sign = Vector256.ShiftRightLogical(bits, 16) & Vector256.Create(0x8000u);
        var magnitude = bits & Vector256.Create(0x7FFFFFFFu);
        var nan = Vector256.Create(0x7E00u) | (Vector256.ShiftRightLogical(magnitude, 13) & Vector256.Create(0x1FFu));
        var rebiased = magnitude - Vector256.Create(0x38000000u);
        var normal = Vector256.ShiftRightLogical(
            rebiased + Vector256.Create(0xFFFu) + (Vector256.ShiftRightLogical(rebiased, 13) & Vector256<uint>.One), 13);
        var shift = Vector256.Create(126u) - Vector256.ShiftRightLogical(magnitude, 23);
        var significand = (magnitude & Vector256.Create(0x7FFFFFu)) | Vector256.Create(0x800000u);
        var halfMinusOne = Avx2.ShiftLeftLogicalVariable(Vector256<uint>.One, shift - Vector256<uint>.One) - Vector256<uint>.One;
        var kept = Avx2.ShiftRightLogicalVariable(significand, shift);
        var subnormal = Avx2.ShiftRightLogicalVariable(significand + halfMinusOne + (kept & Vector256<uint>.One), shift);
        var result = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x33000000u)), subnormal, Vector256<uint>.Zero);
        result = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x38800000u)), normal, result);
        result = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x477FF000u)), Vector256.Create(0x7C00u), result);
        result = Vector256.ConditionalSelect(Vector256.GreaterThan(magnitude, Vector256.Create(0x7F800000u)), nan, result);
        return result | sign;
    }

    /// <summary>All-ones in lanes whose finite value rounds past the largest half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<uint> OverflowLanes(Vector512<uint> bits)
    {
        var magnitude = bits & Vector512.Create(0x7FFFFFFFu);
        return Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(0x477FF000u)) & Vector512.LessThan(magnitude, Vector512.Create(0x7F800000u));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<uint> OverflowLanes(Vector256<uint> bits)
    {
        var magnitude = bits & Vector256.Create(0x7FFFFFFFu);
        return Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x477FF000u)) & Vector256.LessThan(magnitude, Vector256.Create(0x7F800000u));
    }

}
