using System.Buffers.Binary;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using ILGPU;

namespace IlgpuLlm.Kernels;

/// <summary>IEEE binary32: values as they are computed; narrowing keeps every bit, NaN payloads included.</summary>
public sealed class F32Format : StorageFormat
{
    public static F32Format Instance { get; } = new();

    F32Format()
    {
    }

    public override StorageType Type => StorageType.F32;
    public override string Name => "f32";
    public override IReadOnlyList<string> Aliases { get; } = ["f32", "float32"];
    public override int BlockElements => 1;
    public override int BlockBytes => 4;
    public override uint GgmlTypeId => 0;
    public override string? SafetensorsName => "F32";
    public override string? TorchName => "float32";

    public override float Widen(ReadOnlySpan<byte> data, long index) =>
        BinaryPrimitives.ReadSingleLittleEndian(data.Slice(checked((int)(index * 4)), 4));

    public override void Widen(ReadOnlySpan<byte> source, Span<float> destination) =>
        MemoryMarshal.Cast<byte, float>(source).CopyTo(destination);

    public override bool Narrows => true;

    public override void Narrow(ReadOnlySpan<float> source, Span<byte> destination) =>
        MemoryMarshal.AsBytes(source).CopyTo(destination[..(source.Length * 4)]);

    public override bool Overflows(float value) => false;

    public override unsafe long IndexOfNonFinite(byte* data, long count) => ExponentScan.IndexOfAllOnes((uint*)data, count, 0x7F80_0000u);

    public override void Dispatch<TAction>(ref TAction action) => action.Run<F32Storage, F32Vectors, F32Vectors>();

    public override void DispatchNarrowing<TAction>(ref TAction action) => action.Run<F32Storage, F32Narrowing>();
}

public readonly struct F32Storage(ArrayView<float> values) : IStorageView<F32Storage>, IStorageStore<F32Storage>
{
    readonly ArrayView<float> values = values;

    public static F32Storage Over(ArrayView<byte> bytes) => new(bytes.Cast<float>());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Load(long index) => values[index];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store(long index, float value) => values[index] = value;

    public bool Overflows(float value) => false;
}

public unsafe struct F32Vectors : IStoredVectors
{
    public static StorageType Type => StorageType.F32;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ByteOffset(long index) => index * 4;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16(byte* data, long at) => Vector512.Load((float*)data + at);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(byte* data, long at) => Vector256.Load((float*)data + at);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(byte* data, long at) => ((float*)data)[at];
}

public unsafe struct F32Narrowing : IVectorNarrowing
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Store16(Vector512<uint> bits, byte* destination, long at)
    {
        bits.Store((uint*)destination + at);
        return 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Store16(Vector256<uint> low, Vector256<uint> high, byte* destination, long at)
    {
        low.Store((uint*)destination + at);
        high.Store((uint*)destination + at + 8);
        return 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Store1(float value, byte* destination, long at)
    {
        ((float*)destination)[at] = value;
        return false;
    }
}
