using System.Buffers.Binary;
using ILGPU;
using static IlgpuLlm.Kernels.ExactMath;

namespace IlgpuLlm.Kernels;

/// <summary>
/// llama.cpp's block formats for weights (ggml-common.h), by the layout of one block. Every
/// weight dequantizes to one f32 value by the table in docs/NUMERICS.md, "Quantized weights".
/// </summary>
public enum QuantFormat
{
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
}

public static class QuantFormats
{
    /// <summary>Weights per K-quant super-block (ggml's QK_K).</summary>
    public const int SuperBlock = 256;

    /// <summary>Weights per block: 32, or 256 for the K-quants.</summary>
    public static int BlockSize(this QuantFormat format) => format >= QuantFormat.Q2_K ? SuperBlock : 32;

    /// <summary>Bytes per block, as ggml's type traits define them.</summary>
    public static int BlockBytes(this QuantFormat format) => format switch
    {
        QuantFormat.Q4_0 => 2 + 16,
        QuantFormat.Q4_1 => 2 + 2 + 16,
        QuantFormat.Q5_0 => 2 + 4 + 16,
        QuantFormat.Q5_1 => 2 + 2 + 4 + 16,
        QuantFormat.Q8_0 => 2 + 32,
        QuantFormat.Q2_K => 16 + 64 + 2 + 2,
        QuantFormat.Q3_K => 32 + 64 + 12 + 2,
        QuantFormat.Q4_K => 2 + 2 + 12 + 128,
        QuantFormat.Q5_K => 2 + 2 + 12 + 32 + 128,
        QuantFormat.Q6_K => 128 + 64 + 16 + 2,
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "unknown quantized format"),
    };

    /// <summary>ggml's name: Q4_K, Q8_0, …</summary>
    public static string Name(this QuantFormat format) => format.ToString();

    public static QuantFormat Parse(string name) =>
        Enum.TryParse<QuantFormat>(name, ignoreCase: true, out var format) && Enum.IsDefined(format)
            ? format
            : throw new ArgumentException($"unknown quantized format '{name}': expected one of {string.Join(", ", Enum.GetNames<QuantFormat>())}");

    /// <summary>Bytes of one row of <paramref name="width"/> weights; the width must be whole blocks.</summary>
    public static long RowBytes(this QuantFormat format, long width)
    {
        if (width < 0 || width % format.BlockSize() != 0)
            throw new ArgumentException($"a {format.Name()} row of {width} weights is not a whole number of {format.BlockSize()}-weight blocks");
        return width / format.BlockSize() * format.BlockBytes();
    }

    /// <summary>Checks a linear layer's buffers when its weight is [out, in] in <paramref name="format"/>.</summary>
    public static void Validate(this LinearShape shape, QuantFormat format, long xLength, long weightBytes, long? biasLength, long yLength)
    {
        if (shape.InFeatures % format.BlockSize() != 0)
            throw new ArgumentException(
                $"linear: in features {shape.InFeatures} is not a multiple of the {format.Name()} block size {format.BlockSize()}");
        long rowBytes = format.RowBytes(shape.InFeatures);
        Shapes.Expect($"linear: {format.Name()} weight bytes", weightBytes, shape.OutFeatures * rowBytes,
            $"out features {shape.OutFeatures} × {rowBytes} bytes per row");
        shape.Validate(xLength, (long)shape.OutFeatures * shape.InFeatures, biasLength, yLength);
    }

    /// <summary>Checks an embedding gather's buffers when its table is [vocabulary, width] in <paramref name="format"/>.</summary>
    public static void Validate(this EmbeddingShape shape, QuantFormat format, long tableBytes, long idsLength, long outputLength)
    {
        if (shape.Width % format.BlockSize() != 0)
            throw new ArgumentException(
                $"embedding: width {shape.Width} is not a multiple of the {format.Name()} block size {format.BlockSize()}");
        long rowBytes = format.RowBytes(shape.Width);
        Shapes.Expect($"embedding: {format.Name()} table bytes", tableBytes, shape.Vocabulary * rowBytes,
            $"vocabulary {shape.Vocabulary} × {rowBytes} bytes per row");
        shape.Validate((long)shape.Vocabulary * shape.Width, idsLength, outputLength);
    }
}

/// <summary>A block field that makes a quantized tensor unusable: a NaN or infinite f16 scale.</summary>
public readonly record struct BadScale(long Block, string Field, float Value)
{
    public override string ToString() => $"block {Block} has {Field} = {Value}";
}

/// <summary>
/// The scalar reference of the block formats: dequantization with ggml's own loop structure
/// (<c>dequantize_row_*</c> in ggml-quants.c) and the load-time check of the scales. Every product
/// is exact, so the single rounding of each weight is the final ⊕ of docs/NUMERICS.md's table.
/// </summary>
public static class QuantizedBlocks
{
    static float Half(ReadOnlySpan<byte> bytes, int at) => HalfBits.F16ToF32(BinaryPrimitives.ReadUInt16LittleEndian(bytes[at..]));

    /// <summary>Dequantizes whole blocks: destination receives BlockSize weights per block.</summary>
    public static void Dequantize(QuantFormat format, ReadOnlySpan<byte> blocks, Span<float> destination)
    {
        int size = format.BlockSize(), bytes = format.BlockBytes();
        if (blocks.Length % bytes != 0)
            throw new ArgumentException($"{blocks.Length} bytes is not a whole number of {bytes}-byte {format.Name()} blocks");
        long count = blocks.Length / bytes;
        Shapes.Expect($"{format.Name()} dequantization: destination", destination.Length, count * size, $"{count} blocks × {size}");
        for (int b = 0; b < count; b++)
        {
            var block = blocks.Slice(b * bytes, bytes);
            var y = destination.Slice(b * size, size);
            switch (format)
            {
                case QuantFormat.Q4_0: Q4_0(block, y); break;
                case QuantFormat.Q4_1: Q4_1(block, y); break;
                case QuantFormat.Q5_0: Q5_0(block, y); break;
                case QuantFormat.Q5_1: Q5_1(block, y); break;
                case QuantFormat.Q8_0: Q8_0(block, y); break;
                case QuantFormat.Q2_K: Q2_K(block, y); break;
                case QuantFormat.Q3_K: Q3_K(block, y); break;
                case QuantFormat.Q4_K: Q4_K(block, y); break;
                case QuantFormat.Q5_K: Q5_K(block, y); break;
                default: Q6_K(block, y); break;
            }
        }
    }

    static void Q4_0(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = Half(x, 0);
        var qs = x[2..];
        for (int j = 0; j < 16; j++)
        {
            y[j] = Mul((qs[j] & 0x0F) - 8, d);
            y[j + 16] = Mul((qs[j] >> 4) - 8, d);
        }
    }

    static void Q4_1(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = Half(x, 0), m = Half(x, 2);
        var qs = x[4..];
        for (int j = 0; j < 16; j++)
        {
            y[j] = Add(Mul(qs[j] & 0x0F, d), m);
            y[j + 16] = Add(Mul(qs[j] >> 4, d), m);
        }
    }

    static void Q5_0(ReadOnlySpan<byte> x, Span<float> y)
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

    static void Q5_1(ReadOnlySpan<byte> x, Span<float> y)
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

    static void Q8_0(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = Half(x, 0);
        for (int j = 0; j < 32; j++)
            y[j] = Mul((sbyte)x[2 + j], d);
    }

    static void Q2_K(ReadOnlySpan<byte> x, Span<float> y)
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

    static void Q3_K(ReadOnlySpan<byte> x, Span<float> y)
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

    static void Q4_K(ReadOnlySpan<byte> x, Span<float> y)
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

    static void Q5_K(ReadOnlySpan<byte> x, Span<float> y)
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

    static void Q6_K(ReadOnlySpan<byte> x, Span<float> y)
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

    /// <summary>
    /// The first block whose scale fields (d, and dmin or m where the format has one) are NaN or
    /// infinite, or null. Finite fields make every weight finite (docs/NUMERICS.md).
    /// </summary>
    public static BadScale? FindBadScale(QuantFormat format, ReadOnlySpan<byte> blocks)
    {
        int bytes = format.BlockBytes();
        (int Offset, string Name)[] fields = format switch
        {
            QuantFormat.Q4_0 or QuantFormat.Q5_0 or QuantFormat.Q8_0 => [(0, "d")],
            QuantFormat.Q4_1 or QuantFormat.Q5_1 => [(0, "d"), (2, "m")],
            QuantFormat.Q2_K => [(80, "d"), (82, "dmin")],
            QuantFormat.Q3_K => [(108, "d")],
            QuantFormat.Q4_K or QuantFormat.Q5_K => [(0, "d"), (2, "dmin")],
            _ => [(208, "d")],
        };
        long count = blocks.Length / bytes;
        for (long b = 0; b < count; b++)
            foreach (var (offset, name) in fields)
            {
                ushort bits = BinaryPrimitives.ReadUInt16LittleEndian(blocks[(int)(b * bytes + offset)..]);
                if ((bits & 0x7C00) == 0x7C00)
                    return new BadScale(b, name, HalfBits.F16ToF32(bits));
            }
        return null;
    }
}

/// <summary>
/// y = x·Wᵀ (+ b) with W [out, in] in a block format: the canonical dot of x with each dequantized
/// weight row (docs/NUMERICS.md, "Quantized weights") — the bits of <see cref="Linear"/> on the
/// dequantized weights.
/// </summary>
public static class QuantizedLinear
{
    public static void Reference(ReadOnlySpan<float> x, QuantFormat format, ReadOnlySpan<byte> w, ReadOnlySpan<float> bias, bool hasBias,
        Span<float> y, LinearShape shape)
    {
        shape.Validate(format, x.Length, w.Length, hasBias ? bias.Length : null, y.Length);
        int rowBytes = (int)format.RowBytes(shape.InFeatures);
        var weightRow = new float[shape.InFeatures];
        for (int n = 0; n < shape.OutFeatures; n++)
        {
            QuantizedBlocks.Dequantize(format, w.Slice(n * rowBytes, rowBytes), weightRow);
            for (int m = 0; m < shape.Rows; m++)
            {
                float dot = Canonical.Dot(x.Slice(m * shape.InFeatures, shape.InFeatures), weightRow);
                y[m * shape.OutFeatures + n] = hasBias ? Add(dot, bias[n]) : dot;
            }
        }
    }

    /// <summary>
    /// Launches <see cref="Linear"/>'s kernel with the weights read through the format's
    /// <see cref="IStorage"/> (one weight dequantized per load), so the order is the f32 kernel's.
    /// </summary>
    public static void Run(KernelLibrary library, ArrayView<float> x, ArrayView<byte> w, QuantFormat format,
        ArrayView<float>? bias, ArrayView<float> y, LinearShape shape)
    {
        shape.Validate(format, x.Length, w.Length, bias?.Length, y.Length);
        switch (format)
        {
            case QuantFormat.Q4_0: Linear.LaunchOn(library, x, new Q4_0Storage(w), bias, y, shape); break;
            case QuantFormat.Q4_1: Linear.LaunchOn(library, x, new Q4_1Storage(w), bias, y, shape); break;
            case QuantFormat.Q5_0: Linear.LaunchOn(library, x, new Q5_0Storage(w), bias, y, shape); break;
            case QuantFormat.Q5_1: Linear.LaunchOn(library, x, new Q5_1Storage(w), bias, y, shape); break;
            case QuantFormat.Q8_0: Linear.LaunchOn(library, x, new Q8_0Storage(w), bias, y, shape); break;
            case QuantFormat.Q2_K: Linear.LaunchOn(library, x, new Q2_KStorage(w), bias, y, shape); break;
            case QuantFormat.Q3_K: Linear.LaunchOn(library, x, new Q3_KStorage(w), bias, y, shape); break;
            case QuantFormat.Q4_K: Linear.LaunchOn(library, x, new Q4_KStorage(w), bias, y, shape); break;
            case QuantFormat.Q5_K: Linear.LaunchOn(library, x, new Q5_KStorage(w), bias, y, shape); break;
            default: Linear.LaunchOn(library, x, new Q6_KStorage(w), bias, y, shape); break;
        }
    }
}

/// <summary>Token-embedding rows of a table in a block format, dequantized on gather and scaled (one rounding).</summary>
public static class QuantizedEmbedding
{
    public static void Reference(QuantFormat format, ReadOnlySpan<byte> table, ReadOnlySpan<int> ids, Span<float> output,
        EmbeddingShape shape, float scale)
    {
        shape.Validate(format, table.Length, ids.Length, output.Length);
        shape.ValidateIds(ids);
        int rowBytes = (int)format.RowBytes(shape.Width);
        var row = new float[shape.Width];
        for (int r = 0; r < shape.Rows; r++)
        {
            QuantizedBlocks.Dequantize(format, table.Slice(ids[r] * rowBytes, rowBytes), row);
            for (int i = 0; i < shape.Width; i++)
                output[r * shape.Width + i] = Mul(row[i], scale);
        }
    }

    /// <summary>
    /// Launches <see cref="Embedding"/>'s kernel with the table read through the format's
    /// <see cref="IStorage"/>. The ids are on the device and were validated on the host.
    /// </summary>
    public static void Run(KernelLibrary library, ArrayView<byte> table, QuantFormat format, ArrayView<int> ids,
        ArrayView<float> output, EmbeddingShape shape, float scale)
    {
        shape.Validate(format, table.Length, ids.Length, output.Length);
        switch (format)
        {
            case QuantFormat.Q4_0: Embedding.LaunchOn(library, new Q4_0Storage(table), ids, output, shape, scale); break;
            case QuantFormat.Q4_1: Embedding.LaunchOn(library, new Q4_1Storage(table), ids, output, shape, scale); break;
            case QuantFormat.Q5_0: Embedding.LaunchOn(library, new Q5_0Storage(table), ids, output, shape, scale); break;
            case QuantFormat.Q5_1: Embedding.LaunchOn(library, new Q5_1Storage(table), ids, output, shape, scale); break;
            case QuantFormat.Q8_0: Embedding.LaunchOn(library, new Q8_0Storage(table), ids, output, shape, scale); break;
            case QuantFormat.Q2_K: Embedding.LaunchOn(library, new Q2_KStorage(table), ids, output, shape, scale); break;
            case QuantFormat.Q3_K: Embedding.LaunchOn(library, new Q3_KStorage(table), ids, output, shape, scale); break;
            case QuantFormat.Q4_K: Embedding.LaunchOn(library, new Q4_KStorage(table), ids, output, shape, scale); break;
            case QuantFormat.Q5_K: Embedding.LaunchOn(library, new Q5_KStorage(table), ids, output, shape, scale); break;
            default: Embedding.LaunchOn(library, new Q6_KStorage(table), ids, output, shape, scale); break;
        }
    }
}
