using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace IlgpuLlm.Kernels;

/// <summary>
/// One of llama.cpp's block formats of weights (ggml-common.h): Q8_0 stores 32 weights in 34
/// bytes, Q4_K 256 in 144. Every weight dequantizes to one f32 value by the table in
/// docs/NUMERICS.md, "Quantized weights", so a kernel reading a block format computes exactly
/// what it computes on the dequantized f32 weights. Weights only: a block cannot be written value
/// by value, so the KV cache and conversions refuse these formats (<see cref="StorageFormat.Narrows"/>
/// is false), and a tensor, slice or weight row in one is whole blocks.
/// </summary>
/// <remarks>
/// What is shared by the generic kernels: the ILGPU load struct dequantizes any one weight from
/// its block, so Linear's and Embedding's kernels read block formats unchanged; the SIMD loads
/// (<see cref="BlockVectors{TBlocks}"/>) are exact but slow, for the kernels that seldom meet a
/// block format; the SIMD linear and embedding route block formats to
/// <see cref="QuantizedSimd"/> instead, which dequantizes whole blocks (<see cref="DispatchBlocks{TAction}"/>).
/// </remarks>
public abstract unsafe class BlockFormat : StorageFormat
{
    /// <summary>Weights per K-quant super-block (ggml's QK_K), the largest block of any format.</summary>
    public const int SuperBlock = 256;

    public sealed override string? SafetensorsName => null;
    public sealed override string? TorchName => null;
    public sealed override bool Narrows => false;
    public sealed override void Narrow(ReadOnlySpan<float> source, Span<byte> destination) => throw NotNarrowing();
    public sealed override bool Overflows(float value) => false;
    public sealed override void DispatchNarrowing<TAction>(ref TAction action) => throw NotNarrowing();

    /// <summary>The scalar reference: one block dequantized with ggml's own loop (<c>dequantize_row_*</c>).</summary>
    public abstract void DequantizeBlock(ReadOnlySpan<byte> block, Span<float> weights);

    /// <summary>Whole blocks dequantized at a SIMD level: the reference's bits, faster.</summary>
    public abstract void Dequantize(SimdLevel level, byte* blocks, float* destination, long count);

    /// <summary>Byte offsets and names of the f16 fields every weight of a block is computed from.</summary>
    public abstract IReadOnlyList<(int Offset, string Name)> ScaleFields { get; }

    /// <summary>Whether <see cref="BlockQuantizer"/> writes this format (Q2_K and Q3_K are read only).</summary>
    public abstract bool Quantizes { get; }

    /// <summary>One block quantized as ggml's reference quantizer does; see <see cref="BlockQuantizer"/>.</summary>
    internal abstract void QuantizeBlock(ReadOnlySpan<float> values, Span<byte> block, BlockQuantizer.Scratch scratch);

    /// <summary>Runs generic code specialised with this format's whole-block SIMD struct.</summary>
    public abstract void DispatchBlocks<TAction>(ref TAction action) where TAction : struct, IBlockAction;

    /// <summary>Value <paramref name="index"/>: its block dequantized by the reference.</summary>
    public override float Widen(ReadOnlySpan<byte> data, long index)
    {
        long block = index / BlockElements;
        Span<float> weights = stackalloc float[BlockElements];
        DequantizeBlock(data.Slice(checked((int)(block * BlockBytes)), BlockBytes), weights);
        return weights[(int)(index - block * BlockElements)];
    }

    /// <summary>Whole blocks dequantized by the reference.</summary>
    public override void Widen(ReadOnlySpan<byte> source, Span<float> destination)
    {
        long count = ElementCount(source.Length) / BlockElements;
        Shapes.Expect($"{Name} dequantization: destination", destination.Length, count * BlockElements, $"{count} blocks × {BlockElements}");
        for (int b = 0; b < count; b++)
            DequantizeBlock(source.Slice(b * BlockBytes, BlockBytes), destination.Slice(b * BlockElements, BlockElements));
    }

    /// <summary>
    /// The first weight of the first block with a NaN or infinite scale field, or −1: any such
    /// field makes every weight of its block NaN or ±inf (each weight multiplies every field of its
    /// block by a finite factor, zero included, or adds it), and finite fields make every weight
    /// finite.
    /// </summary>
    public override long IndexOfNonFinite(byte* data, long count)
    {
        long blocks = ElementCount(ByteLength(count)) / BlockElements;
        return FindBadScale(data, blocks) is { } bad ? bad.Block * BlockElements : -1;
    }

    /// <summary>The first of <paramref name="blocks"/> blocks whose scale fields are NaN or infinite, or null.</summary>
    public BadScale? FindBadScale(byte* data, long blocks)
    {
        var fields = ScaleFields;
        for (long b = 0; b < blocks; b++)
            foreach (var (offset, name) in fields)
            {
                ushort bits = Unsafe.ReadUnaligned<ushort>(data + b * BlockBytes + offset);
                if ((bits & 0x7C00) == 0x7C00)
                    return new BadScale(b, name, HalfBits.F16ToF32(bits));
            }
        return null;
    }

    /// <summary>The first block of <paramref name="blocks"/> (whole blocks) whose scale fields are NaN or infinite, or null.</summary>
    public BadScale? FindBadScale(ReadOnlySpan<byte> blocks)
    {
        long count = ElementCount(blocks.Length) / BlockElements;
        fixed (byte* data = blocks)
            return FindBadScale(data, count);
    }
}

/// <summary>A block field that makes a quantized tensor unusable: a NaN or infinite f16 scale.</summary>
public readonly record struct BadScale(long Block, string Field, float Value)
{
    public override string ToString() => $"block {Block} has {Field} = {Value}";
}

/// <summary>Generic SIMD code run for one block format (see <see cref="BlockFormat.DispatchBlocks{TAction}"/>).</summary>
public interface IBlockAction
{
    void Run<TBlocks>() where TBlocks : struct, IQuantizedBlocks;
}

/// <summary>
/// The members every block format takes from its two kernel structs: the SIMD whole-block struct
/// <typeparamref name="TBlocks"/> (type, block layout, dequantization) and the ILGPU load
/// <typeparamref name="TStorage"/>. What remains per format is its names, ids, scale fields,
/// reference dequantizer and quantizer.
/// </summary>
public abstract unsafe class BlockFormat<TBlocks, TStorage> : BlockFormat
    where TBlocks : struct, IQuantizedBlocks where TStorage : struct, IStorageView<TStorage>
{
    public sealed override StorageType Type => TBlocks.Type;
    public sealed override int BlockElements => TBlocks.BlockElements;
    public sealed override int BlockBytes => TBlocks.BlockBytes;

    public sealed override void Dequantize(SimdLevel level, byte* blocks, float* destination, long count) =>
        TBlocks.Dequantize(SimdLevels.AtMost(level), blocks, destination, count);

    public sealed override void Dispatch<TAction>(ref TAction action) =>
        action.Run<TStorage, BlockVectors<TBlocks>, BlockVectors<TBlocks>>();

    public sealed override void DispatchBlocks<TAction>(ref TAction action) => action.Run<TBlocks>();

    public override string ToString() => Name;
}

/// <summary>
/// Element loads from blocks for the generic SIMD kernels (a norm weight or a conversion source in
/// a block format): each value is its block's reference dequantization, so the bits are right,
/// but every load dequantizes a whole block. The linear and the embedding never use these (see
/// <see cref="BlockFormat"/>).
/// </summary>
public unsafe struct BlockVectors<TBlocks> : IStoredVectors where TBlocks : struct, IQuantizedBlocks
{
    public static StorageType Type => TBlocks.Type;

    public static long ByteOffset(long index) => index / TBlocks.BlockElements * TBlocks.BlockBytes;

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static Vector512<float> Load16(byte* data, long at)
    {
        var values = stackalloc float[16];
        Values(data, at, 16, values);
        return Vector512.Load(values);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static Vector256<float> Load8(byte* data, long at)
    {
        var values = stackalloc float[8];
        Values(data, at, 8, values);
        return Vector256.Load(values);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static float Load1(byte* data, long at)
    {
        float value;
        Values(data, at, 1, &value);
        return value;
    }

    static void Values(byte* data, long at, int count, float* destination)
    {
        var block = stackalloc float[BlockFormat.SuperBlock];
        long loaded = -1;
        for (int i = 0; i < count; i++)
        {
            long b = (at + i) / TBlocks.BlockElements;
            if (b != loaded)
            {
                TBlocks.Dequantize(SimdLevel.Scalar, data + b * TBlocks.BlockBytes, block, 1);
                loaded = b;
            }
            destination[i] = block[at + i - b * TBlocks.BlockElements];
        }
    }
}

// The formats. Each names its struct pair and says what only it knows.

public sealed class Q4_0Format : BlockFormat<Q4_0Blocks, Q4_0Storage>
{
    public static Q4_0Format Instance { get; } = new();
    Q4_0Format() { }
    public override string Name => "q4_0";
    public override IReadOnlyList<string> Aliases { get; } = ["q4_0"];
    public override uint GgmlTypeId => 2;
    public override IReadOnlyList<(int Offset, string Name)> ScaleFields { get; } = [(0, "d")];
    public override void DequantizeBlock(ReadOnlySpan<byte> block, Span<float> weights) => QuantizedBlocks.Q4_0(block, weights);
    public override bool Quantizes => true;
    internal override void QuantizeBlock(ReadOnlySpan<float> values, Span<byte> block, BlockQuantizer.Scratch scratch) =>
        BlockQuantizer.Q4_0(values, block);
}

public sealed class Q4_1Format : BlockFormat<Q4_1Blocks, Q4_1Storage>
{
    public static Q4_1Format Instance { get; } = new();
    Q4_1Format() { }
    public override string Name => "q4_1";
    public override IReadOnlyList<string> Aliases { get; } = ["q4_1"];
    public override uint GgmlTypeId => 3;
    public override IReadOnlyList<(int Offset, string Name)> ScaleFields { get; } = [(0, "d"), (2, "m")];
    public override void DequantizeBlock(ReadOnlySpan<byte> block, Span<float> weights) => QuantizedBlocks.Q4_1(block, weights);
    public override bool Quantizes => true;
    internal override void QuantizeBlock(ReadOnlySpan<float> values, Span<byte> block, BlockQuantizer.Scratch scratch) =>
        BlockQuantizer.Q4_1(values, block);
}

public sealed class Q5_0Format : BlockFormat<Q5_0Blocks, Q5_0Storage>
{
    public static Q5_0Format Instance { get; } = new();
    Q5_0Format() { }
    public override string Name => "q5_0";
    public override IReadOnlyList<string> Aliases { get; } = ["q5_0"];
    public override uint GgmlTypeId => 6;
    public override IReadOnlyList<(int Offset, string Name)> ScaleFields { get; } = [(0, "d")];
    public override void DequantizeBlock(ReadOnlySpan<byte> block, Span<float> weights) => QuantizedBlocks.Q5_0(block, weights);
    public override bool Quantizes => true;
    internal override void QuantizeBlock(ReadOnlySpan<float> values, Span<byte> block, BlockQuantizer.Scratch scratch) =>
        BlockQuantizer.Q5_0(values, block);
}

public sealed class Q5_1Format : BlockFormat<Q5_1Blocks, Q5_1Storage>
{
    public static Q5_1Format Instance { get; } = new();
    Q5_1Format() { }
    public override string Name => "q5_1";
    public override IReadOnlyList<string> Aliases { get; } = ["q5_1"];
    public override uint GgmlTypeId => 7;
    public override IReadOnlyList<(int Offset, string Name)> ScaleFields { get; } = [(0, "d"), (2, "m")];
    public override void DequantizeBlock(ReadOnlySpan<byte> block, Span<float> weights) => QuantizedBlocks.Q5_1(block, weights);
    public override bool Quantizes => true;
    internal override void QuantizeBlock(ReadOnlySpan<float> values, Span<byte> block, BlockQuantizer.Scratch scratch) =>
        BlockQuantizer.Q5_1(values, block);
}

public sealed class Q8_0Format : BlockFormat<Q8_0Blocks, Q8_0Storage>
{
    public static Q8_0Format Instance { get; } = new();
    Q8_0Format() { }
    public override string Name => "q8_0";
    public override IReadOnlyList<string> Aliases { get; } = ["q8_0"];
    public override uint GgmlTypeId => 8;
    public override IReadOnlyList<(int Offset, string Name)> ScaleFields { get; } = [(0, "d")];
    public override void DequantizeBlock(ReadOnlySpan<byte> block, Span<float> weights) => QuantizedBlocks.Q8_0(block, weights);
    public override bool Quantizes => true;
    internal override void QuantizeBlock(ReadOnlySpan<float> values, Span<byte> block, BlockQuantizer.Scratch scratch) =>
        BlockQuantizer.Q8_0(values, block);
}

public sealed class Q2_KFormat : BlockFormat<Q2_KBlocks, Q2_KStorage>
{
    public static Q2_KFormat Instance { get; } = new();
    Q2_KFormat() { }
    public override string Name => "q2_k";
    public override IReadOnlyList<string> Aliases { get; } = ["q2_k"];
    public override uint GgmlTypeId => 10;
    public override IReadOnlyList<(int Offset, string Name)> ScaleFields { get; } = [(80, "d"), (82, "dmin")];
    public override void DequantizeBlock(ReadOnlySpan<byte> block, Span<float> weights) => QuantizedBlocks.Q2_K(block, weights);
    public override bool Quantizes => false;
    internal override void QuantizeBlock(ReadOnlySpan<float> values, Span<byte> block, BlockQuantizer.Scratch scratch) =>
        throw BlockQuantizer.ReadOnly(this);
}

public sealed class Q3_KFormat : BlockFormat<Q3_KBlocks, Q3_KStorage>
{
    public static Q3_KFormat Instance { get; } = new();
    Q3_KFormat() { }
    public override string Name => "q3_k";
    public override IReadOnlyList<string> Aliases { get; } = ["q3_k"];
    public override uint GgmlTypeId => 11;
    public override IReadOnlyList<(int Offset, string Name)> ScaleFields { get; } = [(108, "d")];
    public override void DequantizeBlock(ReadOnlySpan<byte> block, Span<float> weights) => QuantizedBlocks.Q3_K(block, weights);
    public override bool Quantizes => false;
    internal override void QuantizeBlock(ReadOnlySpan<float> values, Span<byte> block, BlockQuantizer.Scratch scratch) =>
        throw BlockQuantizer.ReadOnly(this);
}

public sealed class Q4_KFormat : BlockFormat<Q4_KBlocks, Q4_KStorage>
{
    public static Q4_KFormat Instance { get; } = new();
    Q4_KFormat() { }
    public override string Name => "q4_k";
    public override IReadOnlyList<string> Aliases { get; } = ["q4_k"];
    public override uint GgmlTypeId => 12;
    public override IReadOnlyList<(int Offset, string Name)> ScaleFields { get; } = [(0, "d"), (2, "dmin")];
    public override void DequantizeBlock(ReadOnlySpan<byte> block, Span<float> weights) => QuantizedBlocks.Q4_K(block, weights);
    public override bool Quantizes => true;
    internal override void QuantizeBlock(ReadOnlySpan<float> values, Span<byte> block, BlockQuantizer.Scratch scratch) =>
        BlockQuantizer.QK(values, block, scratch, fifthBit: false);
}

public sealed class Q5_KFormat : BlockFormat<Q5_KBlocks, Q5_KStorage>
{
    public static Q5_KFormat Instance { get; } = new();
    Q5_KFormat() { }
    public override string Name => "q5_k";
    public override IReadOnlyList<string> Aliases { get; } = ["q5_k"];
    public override uint GgmlTypeId => 13;
    public override IReadOnlyList<(int Offset, string Name)> ScaleFields { get; } = [(0, "d"), (2, "dmin")];
    public override void DequantizeBlock(ReadOnlySpan<byte> block, Span<float> weights) => QuantizedBlocks.Q5_K(block, weights);
    public override bool Quantizes => true;
    internal override void QuantizeBlock(ReadOnlySpan<float> values, Span<byte> block, BlockQuantizer.Scratch scratch) =>
        BlockQuantizer.QK(values, block, scratch, fifthBit: true);
}

public sealed class Q6_KFormat : BlockFormat<Q6_KBlocks, Q6_KStorage>
{
    public static Q6_KFormat Instance { get; } = new();
    Q6_KFormat() { }
    public override string Name => "q6_k";
    public override IReadOnlyList<string> Aliases { get; } = ["q6_k"];
    public override uint GgmlTypeId => 14;
    public override IReadOnlyList<(int Offset, string Name)> ScaleFields { get; } = [(208, "d")];
    public override void DequantizeBlock(ReadOnlySpan<byte> block, Span<float> weights) => QuantizedBlocks.Q6_K(block, weights);
    public override bool Quantizes => true;
    internal override void QuantizeBlock(ReadOnlySpan<float> values, Span<byte> block, BlockQuantizer.Scratch scratch) =>
        BlockQuantizer.Q6_K(values, block, scratch);
}
