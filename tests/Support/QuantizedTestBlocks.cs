using System.Buffers.Binary;
using IlgpuLlm.Kernels;

namespace IlgpuLlm.Tests.Support;

/// <summary>
/// Blocks of every quantized format for tests: random codes, and f16 scale fields that are mostly
/// ordinary values with the edge cases the contract names mixed in (d = ±0, f16 subnormals, the
/// largest f16, extreme codes). Plus a second dequantizer written independently from gguf-py's
/// array formulation (quants.py), against which the engine's reference is checked.
/// </summary>
public static class QuantizedTestBlocks
{
    /// <summary>Offsets of the f16 fields each format's weights are computed from.</summary>
    public static int[] ScaleFields(QuantFormat format) => format switch
    {
        QuantFormat.Q4_0 or QuantFormat.Q5_0 or QuantFormat.Q8_0 => [0],
        QuantFormat.Q4_1 or QuantFormat.Q5_1 or QuantFormat.Q4_K or QuantFormat.Q5_K => [0, 2],
        QuantFormat.Q2_K => [80, 82],
        QuantFormat.Q3_K => [108],
        _ => [208],
    };

    static readonly ushort[] EdgeHalves = [0x0000, 0x8000, 0x0001, 0x03FF, 0x8001, 0x7BFF, 0xFBFF, 0x0400];

    /// <summary>
    /// <paramref name="count"/> blocks. With edges, about one block in three has an edge scale
    /// and some code bytes are 0x00, 0xFF, 0x7F or 0x80 (the extreme codes of every format).
    /// </summary>
    public static byte[] Blocks(QuantFormat format, int count, int seed, bool edges = true, float typicalScale = 0.01f)
    {
        var random = new Random(seed);
        int bytes = format.BlockBytes();
        var data = new byte[count * bytes];
        random.NextBytes(data);
        byte[] extremes = [0x00, 0xFF, 0x7F, 0x80];
        for (int b = 0; b < count; b++)
        {
            var block = data.AsSpan(b * bytes, bytes);
            if (edges && random.Next(4) == 0)
                for (int i = 0; i < bytes; i++)
                    if (random.Next(3) == 0)
                        block[i] = extremes[random.Next(extremes.Length)];
            foreach (int field in ScaleFields(format))
            {
                ushort half = edges && random.Next(3) == 0
                    ? EdgeHalves[random.Next(EdgeHalves.Length)]
                    : HalfBits.F32ToF16((float)((random.NextDouble() * 1.5 + 0.25) * typicalScale * (random.Next(2) == 0 ? 1 : -1)));
                BinaryPrimitives.WriteUInt16LittleEndian(block[field..], half);
            }
        }
        return data;
    }

    static float Half(ReadOnlySpan<byte> block, int at) => (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(block[at..]));

    /// <summary>
    /// gguf-py's dequantize_blocks, element by element: unpack every code and every group scale
    /// into arrays first (the numpy reshapes written out as index arithmetic), then one expression
    /// per weight in numpy's f32 operation order.
    /// </summary>
    public static float[] Dequantize(QuantFormat format, ReadOnlySpan<byte> data)
    {
        int bytes = format.BlockBytes(), size = format.BlockSize();
        int blocks = data.Length / bytes;
        var result = new float[blocks * size];
        for (int b = 0; b < blocks; b++)
        {
            var x = data.Slice(b * bytes, bytes);
            var y = result.AsSpan(b * size, size);
            switch (format)
            {
                case QuantFormat.Q8_0:
                    for (int i = 0; i < 32; i++)
                        y[i] = (sbyte)x[2 + i] * Half(x, 0);
                    break;
                case QuantFormat.Q4_0:
                case QuantFormat.Q4_1:
                case QuantFormat.Q5_0:
                case QuantFormat.Q5_1:
                    Legacy(format, x, y);
                    break;
                case QuantFormat.Q2_K:
                    {
                        var scales = x[..16];
                        float d = Half(x, 80), dmin = Half(x, 82);
                        var q = new int[256];
                        // qs.reshape(2, 1, 32) >> [0, 2, 4, 6]: order (chunk, shift, byte).
                        for (int c = 0; c < 2; c++)
                            for (int s = 0; s < 4; s++)
                                for (int l = 0; l < 32; l++)
                                    q[c * 128 + s * 32 + l] = (x[16 + c * 32 + l] >> (2 * s)) & 3;
                        for (int i = 0; i < 256; i++)
                        {
                            float dl = d * (scales[i / 16] & 0xF), ml = dmin * (scales[i / 16] >> 4);
                            y[i] = dl * q[i] - ml;
                        }
                        break;
                    }
                case QuantFormat.Q3_K:
                    {
                        var packed = x.Slice(96, 12);
                        float d = Half(x, 108);
                        var scale = new int[16];
                        for (int t = 0; t < 16; t++)
                        {
                            int lscale = packed[t % 8] >> (4 * (t / 8)); // lscales: (2, 8)
                            int hscale = packed[8 + t % 4] >> (2 * (t / 4)); // hscales: (4, 4)
                            scale[t] = (sbyte)((lscale & 0x0F) | ((hscale & 3) << 4)) - 32;
                        }
                        for (int i = 0; i < 256; i++)
                        {
                            int c = i / 128, s = i / 32 % 4, l = i % 32;
                            int low = (x[32 + c * 32 + l] >> (2 * s)) & 3;
                            int high = ((x[l] >> (i / 32)) & 1) ^ 1; // hmask bit i/32, inverted
                            y[i] = d * scale[i / 16] * (low - (high << 2));
                        }
                        break;
                    }
                case QuantFormat.Q4_K:
                case QuantFormat.Q5_K:
                    {
                        var s = x.Slice(4, 12);
                        float d = Half(x, 0), dmin = Half(x, 2);
                        var sc = new int[8];
                        var mn = new int[8];
                        for (int i = 0; i < 4; i++)
                        {
                            sc[i] = s[i] & 0x3F;
                            sc[4 + i] = (s[8 + i] & 0x0F) | ((s[i] >> 2) & 0x30);
                            mn[i] = s[4 + i] & 0x3F;
                            mn[4 + i] = (s[8 + i] >> 4) | ((s[4 + i] >> 2) & 0x30);
                        }
                        int qs = format == QuantFormat.Q4_K ? 16 : 48;
                        for (int i = 0; i < 256; i++)
                        {
                            int group = i / 32, l = i % 32;
                            int q = (x[qs + group / 2 * 32 + l] >> (4 * (group % 2))) & 0x0F;
                            if (format == QuantFormat.Q5_K)
                                q |= ((x[16 + l] >> group) & 1) << 4;
                            y[i] = d * sc[group] * q - dmin * mn[group];
                        }
                        break;
                    }
                default:
                    {
                        float d = Half(x, 208);
                        for (int i = 0; i < 256; i++)
                        {
                            int half = i / 128, row = i % 128 / 32, l = i % 32;
                            // ql.reshape(2, 1, 64) >> [0, 4] then rows of 32: row = 2·shift + part.
                            int low = (x[64 * half + 32 * (row % 2) + l] >> (4 * (row / 2))) & 0x0F;
                            int high = (x[128 + 32 * half + l] >> (2 * row)) & 3;
                            y[i] = d * (sbyte)x[192 + i / 16] * (sbyte)((low | (high << 4)) - 32);
                        }
                        break;
                    }
            }
        }
        return result;
    }

    static void Legacy(QuantFormat format, ReadOnlySpan<byte> x, Span<float> y)
    {
        bool hasMin = format is QuantFormat.Q4_1 or QuantFormat.Q5_1;
        bool fifthBit = format is QuantFormat.Q5_0 or QuantFormat.Q5_1;
        float d = Half(x, 0), m = hasMin ? Half(x, 2) : 0f;
        int qh = fifthBit ? BinaryPrimitives.ReadInt32LittleEndian(x[(hasMin ? 4 : 2)..]) : 0;
        var qs = x[((hasMin ? 4 : 2) + (fifthBit ? 4 : 0))..];
        for (int i = 0; i < 32; i++)
        {
            int q = (qs[i % 16] >> (4 * (i / 16))) & 0x0F;
            if (fifthBit)
                q |= ((qh >> i) & 1) << 4;
            y[i] = hasMin ? d * q + m : d * (q - (fifthBit ? 16 : 8));
        }
    }
}
