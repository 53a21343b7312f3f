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
/// bfloat16, the upper half of a binary32 pattern: widening is a shift; narrowing rounds to nearest
/// even (NaN made quiet with its sign and high payload). Its range is binary32's, so nothing
/// is reported as an overflow.
/// </summary>
public sealed class Bf16Format : StorageFormat
{
    public static Bf16Format Instance { get; } = new();

    Bf16Format()
    {
    }

    public override StorageType Type => StorageType.BF16;
    public override string Name => "bf16";
    public override IReadOnlyList<string> Aliases { get; } = ["bf16", "bfloat16"];
    public override int BlockElements => 1;
    public override int BlockBytes => 2;
    public override uint GgmlTypeId => 30;
    public override string? SafetensorsName => "BF16";
    public override string? TorchName => "bfloat16";

    public override float Widen(ReadOnlySpan<byte> data, long index) =>
        HalfBits.Bf16ToF32(BinaryPrimitives.ReadUInt16LittleEndian(data.Slice(checked((int)(index * 2)), 2)));

    public override void Widen(ReadOnlySpan<byte> source, Span<float> destination)
    {
        var bits = MemoryMarshal.Cast<byte, ushort>(source);
        for (int i = 0; i < bits.Length; i++)
            destination[i] = BitConverter.Int32BitsToSingle(bits[i] << 16);
    }

    public override bool Narrows => true;

    public override void Narrow(ReadOnlySpan<float> source, Span<byte> destination)
    {
        var halves = MemoryMarshal.Cast<byte, ushort>(destination[..(source.Length * 2)]);
        var bits = MemoryMarshal.Cast<float, uint>(source);
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            int width = Vector<uint>.Count;
            for (; i + 2 * width <= bits.Length; i += 2 * width)
                Vector.Narrow(RoundToBf16(new Vector<uint>(bits[i..])), RoundToBf16(new Vector<uint>(bits[(i + width)..])))
                    .CopyTo(halves[i..]);
        }
        for (; i < bits.Length; i++)
            halves[i] = HalfBits.F32ToBf16(source[i]);
    }

    /// <summary>HalfBits.F32ToBf16 lane by lane: ties to even, NaN made quiet with its sign and high payload.</summary>
    static Vector<uint> RoundToBf16(Vector<uint> bits)
    {
        var rounded = (bits + new Vector<uint>(0x7FFF) + ((bits >> 16) & Vector<uint>.One)) >> 16;
        var nan = Vector.GreaterThan(bits & new Vector<uint>(0x7FFFFFFF), new Vector<uint>(0x7F800000));
        return Vector.ConditionalSelect(nan, (bits >> 16) | new Vector<uint>(0x40), rounded);
    }

    public override bool Overflows(float value) => false;

    public override unsafe long IndexOfNonFinite(byte* data, long count) => ExponentScan.IndexOfAllOnes((ushort*)data, count, (ushort)0x7F80);

    public override void Dispatch<TAction>(ref TAction action) => action.Run<Bf16Storage, Bf16Vectors, Bf16Vectors>();

    public override void DispatchNarrowing<TAction>(ref TAction action) => action.Run<Bf16Storage, Bf16Narrowing>();
}

public readonly struct Bf16Storage(ArrayView<ushort> bits) : IStorageView<Bf16Storage>, IStorageStore<Bf16Storage>
{
    readonly ArrayView<ushort> bits = bits;

    public static Bf16Storage Over(ArrayView<byte> bytes) => new(bytes.Cast<ushort>());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Load(long index) => HalfBits.Bf16ToF32(bits[index]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store(long index, float value) => bits[index] = HalfBits.F32ToBf16(value);

    public bool Overflows(float value) => false;
}

public unsafe struct Bf16Vectors : IStoredVectors
{
    public static StorageType Type => StorageType.BF16;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ByteOffset(long index) => index * 2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16(byte* data, long at) =>
        Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(Vector256.Load((ushort*)data + at)), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(byte* data, long at) =>
        Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(Vector128.Load((ushort*)data + at)), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(byte* data, long at) => HalfBits.Bf16ToF32(((ushort*)data)[at]);
}

/// <summary><see cref="HalfBits.F32ToBf16"/> lane-wise on binary32 bit patterns, in the same integer arithmetic.</summary>
public unsafe struct Bf16Narrowing : IVectorNarrowing
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Store16(Vector512<uint> bits, byte* destination, long at)
    {
        Avx512F.ConvertToVector256UInt16(Narrow(bits)).Store((ushort*)destination + at);
        return 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Store16(Vector256<uint> low, Vector256<uint> high, byte* destination, long at)
    {
        Vector256.Narrow(Narrow(low), Narrow(high)).Store((ushort*)destination + at);
        return 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Store1(float value, byte* destination, long at)
    {
        ((ushort*)destination)[at] = HalfBits.F32ToBf16(value);
        return false;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<uint> Narrow(Vector512<uint> bits)
    {
        var high = Vector512.ShiftRightLogical(bits, 16);
        var rounded = Vector512.ShiftRightLogical(bits + Vector512.Create(0x7FFFu) + (high & Vector512<uint>.One), 16);
        var isNaN = Vector512.GreaterThan(bits & Vector512.Create(0x7FFFFFFFu), Vector512.Create(0x7F800000u));
        return Vector512.ConditionalSelect(isNaN, high | Vector512.Create(0x40u), rounded);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<uint> Narrow(Vector256<uint> bits)
    {
        var high = Vector256.ShiftRightLogical(bits, 16);
        var rounded = Vector256.ShiftRightLogical(bits + Vector256.Create(0x7FFFu) + (high & Vector256<uint>.One), 16);
        var isNaN = Vector256.GreaterThan(bits & Vector256.Create(0x7FFFFFFFu), Vector256.Create(0x7F800000u));
        return Vector256.ConditionalSelect(isNaN, high | Vector256.Create(0x40u), rounded);
    }
}
