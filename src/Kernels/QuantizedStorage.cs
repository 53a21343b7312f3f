using System.Runtime.CompilerServices;
using ILGPU;
using static IlgpuLlm.Kernels.ExactMath;

namespace IlgpuLlm.Kernels;

// The GPU reading of the block formats: any single weight from the block bytes, by its index in
// the tensor (rows are whole blocks, so the index alone locates the block). Each struct is an
// IStorage, so Linear's and Embedding's kernels read quantized weights unchanged and keep their
// order; only the loads dequantize (docs/NUMERICS.md, "Quantized weights").

static class BlockBytes
{
    /// <summary>The f16 field at <paramref name="at"/>, little-endian, widened exactly (any byte alignment).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Half(ArrayView<byte> bytes, long at) => HalfBits.F16ToF32((ushort)(bytes[at] | (bytes[at + 1] << 8)));
}

public readonly struct Q4_0Storage(ArrayView<byte> blocks) : IStorage
{
    readonly ArrayView<byte> blocks = blocks;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Load(long index)
    {
        long at = (index >> 5) * 18;
        int e = (int)(index & 31);
        int q = blocks[at + 2 + (e & 15)];
        int code = e < 16 ? q & 0x0F : q >> 4;
        return Mul(code - 8, BlockBytes.Half(blocks, at));
    }
}

public readonly struct Q4_1Storage(ArrayView<byte> blocks) : IStorage
{
    readonly ArrayView<byte> blocks = blocks;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Load(long index)
    {
        long at = (index >> 5) * 20;
        int e = (int)(index & 31);
        int q = blocks[at + 4 + (e & 15)];
        int code = e < 16 ? q & 0x0F : q >> 4;
        return Add(Mul(code, BlockBytes.Half(blocks, at)), BlockBytes.Half(blocks, at + 2));
    }
}

public readonly struct Q5_0Storage(ArrayView<byte> blocks) : IStorage
{
    readonly ArrayView<byte> blocks = blocks;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Load(long index)
    {
        long at = (index >> 5) * 22;
        int e = (int)(index & 31);
        int q = blocks[at + 6 + (e & 15)];
        int high = (blocks[at + 2 + (e >> 3)] >> (e & 7)) & 1;
        int code = (e < 16 ? q & 0x0F : q >> 4) | (high << 4);
        return Mul(code - 16, BlockBytes.Half(blocks, at));
    }
}

public readonly struct Q5_1Storage(ArrayView<byte> blocks) : IStorage
{
    readonly ArrayView<byte> blocks = blocks;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Load(long index)
    {
        long at = (index >> 5) * 24;
        int e = (int)(index & 31);
        int q = blocks[at + 8 + (e & 15)];
        int high = (blocks[at + 4 + (e >> 3)] >> (e & 7)) & 1;
        int code = (e < 16 ? q & 0x0F : q >> 4) | (high << 4);
        return Add(Mul(code, BlockBytes.Half(blocks, at)), BlockBytes.Half(blocks, at + 2));
    }
}

public readonly struct Q8_0Storage(ArrayView<byte> blocks) : IStorage
{
    readonly ArrayView<byte> blocks = blocks;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Load(long index)
    {
        long at = (index >> 5) * 34;
        return Mul((sbyte)blocks[at + 2 + (index & 31)], BlockBytes.Half(blocks, at));
    }
}

public readonly struct Q2_KStorage(ArrayView<byte> blocks) : IStorage
{
    readonly ArrayView<byte> blocks = blocks;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Load(long index)
    {
        long at = (index >> 8) * 84;
        int e = (int)(index & 255);
        // 128-weight halves; in each, shift j (0–3) selects 32 weights, 16 from each 16-byte row of qs.
        int n = e >> 7, j = (e >> 5) & 3, l = e & 31;
        int q = (blocks[at + 16 + n * 32 + l] >> (2 * j)) & 3;
        int scale = blocks[at + (e >> 4)];
        float d = BlockBytes.Half(blocks, at + 80), min = BlockBytes.Half(blocks, at + 82);
        return Sub(Mul(Mul(d, scale & 0x0F), q), Mul(min, scale >> 4));
    }
}

public readonly struct Q3_KStorage(ArrayView<byte> blocks) : IStorage
{
    readonly ArrayView<byte> blocks = blocks;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Load(long index)
    {
        long at = (index >> 8) * 110;
        int e = (int)(index & 255);
        int n = e >> 7, j = (e >> 5) & 3, l = e & 31;
        int low = (blocks[at + 32 + n * 32 + l] >> (2 * j)) & 3;
        int high = (blocks[at + l] >> (4 * n + j)) & 1;
        int q = low - (high != 0 ? 0 : 4);
        // Scale e / 16, six bits: a nibble of bytes 0–7, two bits of bytes 8–11.
        int s = e >> 4, b = s & 3, k = s >> 2;
        int scale = ((blocks[at + 96 + (k & 1) * 4 + b] >> ((k >> 1) * 4)) & 0x0F) | (((blocks[at + 104 + b] >> (2 * k)) & 3) << 4);
        return Mul(Mul(BlockBytes.Half(blocks, at + 108), scale - 32), q);
    }
}

public readonly struct Q4_KStorage(ArrayView<byte> blocks) : IStorage
{
    readonly ArrayView<byte> blocks = blocks;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Load(long index)
    {
        long at = (index >> 8) * 144;
        int e = (int)(index & 255);
        int group = e >> 5;
        int q = blocks[at + 16 + (e >> 6) * 32 + (e & 31)];
        int code = (group & 1) == 0 ? q & 0x0F : q >> 4;
        return KQuantWeight(blocks, at, group, code);
    }

    /// <summary>(d · sc) · q − dmin · m of group <paramref name="group"/> of a Q4_K / Q5_K block at <paramref name="at"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float KQuantWeight(ArrayView<byte> blocks, long at, int group, int code)
    {
        long scales = at + 4;
        int sc, m;
        if (group < 4)
        {
            sc = blocks[scales + group] & 63;
            m = blocks[scales + group + 4] & 63;
        }
        else
        {
            sc = (blocks[scales + group + 4] & 0x0F) | ((blocks[scales + group - 4] >> 6) << 4);
            m = (blocks[scales + group + 4] >> 4) | ((blocks[scales + group] >> 6) << 4);
        }
        float d = BlockBytes.Half(blocks, at), min = BlockBytes.Half(blocks, at + 2);
        return Sub(Mul(Mul(d, sc), code), Mul(min, m));
    }
}

public readonly struct Q5_KStorage(ArrayView<byte> blocks) : IStorage
{
    readonly ArrayView<byte> blocks = blocks;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Load(long index)
    {
        long at = (index >> 8) * 176;
        int e = (int)(index & 255);
        int group = e >> 5, l = e & 31;
        int q = blocks[at + 48 + (e >> 6) * 32 + l];
        int code = ((group & 1) == 0 ? q & 0x0F : q >> 4) + (((blocks[at + 16 + l] >> group) & 1) << 4);
        return Q4_KStorage.KQuantWeight(blocks, at, group, code);
    }
}

public readonly struct Q6_KStorage(ArrayView<byte> blocks) : IStorage
{
    readonly ArrayView<byte> blocks = blocks;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Load(long index)
    {
        long at = (index >> 8) * 210;
        int e = (int)(index & 255);
        int n = e >> 7, quarter = (e >> 5) & 3, l = e & 31;
        int low = blocks[at + n * 64 + (quarter & 1) * 32 + l];
        int high = (blocks[at + 128 + n * 32 + l] >> (2 * quarter)) & 3;
        int q = ((quarter < 2 ? low & 0x0F : low >> 4) | (high << 4)) - 32;
        int scale = (sbyte)blocks[at + 192 + (e >> 4)];
        return Mul(Mul(BlockBytes.Half(blocks, at + 208), scale), q);
    }
}
