using System.Buffers.Binary;
using static IlgpuLlm.Kernels.ExactMath;

namespace IlgpuLlm.Kernels;

/// <summary>
/// The scalar reference of the block formats (<see cref="BlockFormat"/>): one block dequantized
/// with ggml's own loop structure (<c>dequantize_row_*</c> in ggml-quants.c). Every product is
/// exact, so the single rounding of each weight is the final ⊕ of docs/NUMERICS.md's table. A
/// linear or an embedding on block-format weights has no reference of its own: it is
/// <see cref="Linear.Reference"/> / <see cref="Embedding.Reference"/> reading these weights.
/// </summary>
public static class QuantizedBlocks
{
    static float Half(ReadOnlySpan<byte> bytes, int at) => HalfBits.F16ToF32(BinaryPrimitives.ReadUInt16LittleEndian(bytes[at..]));

    /// <summary>Dequantizes whole blocks of <paramref name="format"/>: destination receives BlockElements weights per block.</summary>
    public static void Dequantize(BlockFormat format, ReadOnlySpan<byte> blocks, Span<float> destination) =>
        format.Widen(blocks, destination);

    public static void Q4_0(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = Half(x, 0);
        var qs = x[2..];
        for (int j = 0; j < 16; j++)
        {
            y[j] = Mul((qs[j] & 0x0F) - 8, d);
            y[j + 16] = Mul((qs[j] >> 4) - 8, d);
        }
    }

    public static void Q4_1(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = Half(x, 0), m = Half(x, 2);
        var qs = x[4..];
        for (int j = 0; j < 16; j++)
        {
            y[j] = Add(Mul(qs[j] & 0x0F, d), m);
            y[j + 16] = Add(Mul(qs[j] >> 4, d), m);
        }
    }

    public static void Q5_0(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = Half(x, 0);
        uint qh = BinaryPrimitives.ReadUInt32LittleEndian(x[2..]);
        var qs = x[6..];
        for (int j = 0; j < 16; j++)
        {
            int xh0 = (int)((qh >> j) << 4) & 0x10;
            int xh1 = (int)(qh >> (j + 12)) & 0x10;
            y[j] = Mul(((qs[j] & 0x0F) | xh0) - 16, d);
            y[j + 16] = Mul(((qs[j] >> 4) | xh1) - 16, d);
        }
    }

    public static void Q5_1(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = Half(x, 0), m = Half(x, 2);
        uint qh = BinaryPrimitives.ReadUInt32LittleEndian(x[4..]);
        var qs = x[8..];
        for (int j = 0; j < 16; j++)
        {
            int xh0 = (int)((qh >> j) << 4) & 0x10;
            int xh1 = (int)(qh >> (j + 12)) & 0x10;
            y[j] = Add(Mul((qs[j] & 0x0F) | xh0, d), m);
            y[j + 16] = Add(Mul((qs[j] >> 4) | xh1, d), m);
        }
    }

    public static void Q8_0(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = Half(x, 0);
        for (int j = 0; j < 32; j++)
            y[j] = Mul((sbyte)x[2 + j], d);
    }

    public static void Q2_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        var scales = x[..16];
        var q = x.Slice(16, 64);
        float d = Half(x, 80), min = Half(x, 82);
        int at = 0, scale = 0;
        for (int n = 0; n < SuperBlockHalves; n++, q = q[32..])
            for (int shift = 0; shift < 8; shift += 2)
                for (int half = 0; half < 2; half++)
                {
                    byte sc = scales[scale++];
                    float dl = Mul(d, sc & 0x0F), ml = Mul(min, sc >> 4);
                    for (int l = 0; l < 16; l++)
                        y[at++] = Sub(Mul(dl, (q[16 * half + l] >> shift) & 3), ml);
                }
    }

    public static void Q3_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        var hmask = x[..32];
        var q = x.Slice(32, 64);
        var packed = x.Slice(96, 12);
        float d = Half(x, 108);
        int at = 0, scale = 0, m = 1;
        for (int n = 0; n < SuperBlockHalves; n++, q = q[32..])
            for (int shift = 0; shift < 8; shift += 2, m <<= 1)
                for (int half = 0; half < 2; half++)
                {
                    float dl = Mul(d, Q3Scale(packed, scale++) - 32);
                    for (int l = 0; l < 16; l++)
                        y[at++] = Mul(dl, ((q[16 * half + l] >> shift) & 3) - ((hmask[16 * half + l] & m) != 0 ? 0 : 4));
                }
    }

    /// <summary>
    /// Scale <paramref name="index"/> (0–15) of a Q3_K block, 6 bits: the four low bits in the
    /// nibbles of bytes 0–7, the two high bits in bytes 8–11 (ggml's kmask1 / kmask2 shuffle).
    /// </summary>
    public static int Q3Scale(ReadOnlySpan<byte> packed, int index)
    {
        int b = index & 3, k = index >> 2;
        int low = (packed[(k & 1) * 4 + b] >> ((k >> 1) * 4)) & 0x0F;
        int high = (packed[8 + b] >> (2 * k)) & 3;
        return low | (high << 4);
    }

    public static void Q4_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = Half(x, 0), min = Half(x, 2);
        var scales = x.Slice(4, 12);
        var q = x[16..];
        int at = 0;
        for (int group = 0; group < 8; group += 2, q = q[32..])
        {
            var (sc1, m1) = ScaleMinK4(scales, group);
            var (sc2, m2) = ScaleMinK4(scales, group + 1);
            float d1 = Mul(d, sc1), dm1 = Mul(min, m1), d2 = Mul(d, sc2), dm2 = Mul(min, m2);
            for (int l = 0; l < 32; l++)
                y[at++] = Sub(Mul(d1, q[l] & 0x0F), dm1);
            for (int l = 0; l < 32; l++)
                y[at++] = Sub(Mul(d2, q[l] >> 4), dm2);
        }
    }

    public static void Q5_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = Half(x, 0), min = Half(x, 2);
        var scales = x.Slice(4, 12);
        var qh = x.Slice(16, 32);
        var ql = x[48..];
        int at = 0, u1 = 1, u2 = 2;
        for (int group = 0; group < 8; group += 2, ql = ql[32..], u1 <<= 2, u2 <<= 2)
        {
            var (sc1, m1) = ScaleMinK4(scales, group);
            var (sc2, m2) = ScaleMinK4(scales, group + 1);
            float d1 = Mul(d, sc1), dm1 = Mul(min, m1), d2 = Mul(d, sc2), dm2 = Mul(min, m2);
            for (int l = 0; l < 32; l++)
                y[at++] = Sub(Mul(d1, (ql[l] & 0x0F) + ((qh[l] & u1) != 0 ? 16 : 0)), dm1);
            for (int l = 0; l < 32; l++)
                y[at++] = Sub(Mul(d2, (ql[l] >> 4) + ((qh[l] & u2) != 0 ? 16 : 0)), dm2);
        }
    }

    /// <summary>ggml's get_scale_min_k4: the 6-bit scale and min of group j (0–7) of a Q4_K / Q5_K block.</summary>
    public static (int Scale, int Min) ScaleMinK4(ReadOnlySpan<byte> q, int j) => j < 4
        ? (q[j] & 63, q[j + 4] & 63)
        : ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4));

    public static void Q6_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        var ql = x[..128];
        var qh = x.Slice(128, 64);
        var sc = x.Slice(192, 16);
        float d = Half(x, 208);
        for (int n = 0; n < SuperBlockHalves; n++, ql = ql[64..], qh = qh[32..], sc = sc[8..])
            for (int l = 0; l < 32; l++)
            {
                int s = l / 16;
                int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[128 * n + l] = Mul(Mul(d, (sbyte)sc[s]), q1);
                y[128 * n + l + 32] = Mul(Mul(d, (sbyte)sc[s + 2]), q2);
                y[128 * n + l + 64] = Mul(Mul(d, (sbyte)sc[s + 4]), q3);
                y[128 * n + l + 96] = Mul(Mul(d, (sbyte)sc[s + 6]), q4);
            }
    }

    const int SuperBlockHalves = 2;
}
