using System.Buffers.Binary;
using ILGPU;
using ILGPU.Runtime;
using IlgpuLlm.Kernels;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Kernels;

/// <summary>
/// The block formats (docs/NUMERICS.md, "Quantized weights"): the scalar reference against an
/// independent dequantizer and hand-made blocks, and the ILGPU kernels and the SIMD twin (every
/// level, 1 and 2 threads) against the reference bit for bit, at rows 1, 3 and 17 (the decode
/// groups, the single rows and the tiled prefill) and widths of 1, 2 and 5 blocks and a real one.
/// </summary>
[Collection(BackendCollection.Name)]
public unsafe class QuantizedTests
{
    static readonly QuantFormat[] Formats = Enum.GetValues<QuantFormat>();

    public static IEnumerable<object[]> EveryFormat() => Formats.Select(f => new object[] { f });

    [Theory]
    [MemberData(nameof(EveryFormat))]
    public void Reference_matches_an_independent_dequantizer(QuantFormat format)
    {
        var blocks = QuantizedTestBlocks.Blocks(format, 64, seed: (int)format + 1);
        var expected = QuantizedTestBlocks.Dequantize(format, blocks);
        var actual = new float[expected.Length];
        QuantizedBlocks.Dequantize(format, blocks, actual);
        Bits.Equal(expected, actual, format.Name());
        Assert.All(actual, v => Assert.True(float.IsFinite(v)));
    }

    [Fact]
    public void Hand_made_blocks_dequantize_to_known_weights()
    {
        // Q8_0: d = 0.5 (f16 0x3800), codes −128, −3, 0, 127.
        var q8 = new byte[34];
        BinaryPrimitives.WriteUInt16LittleEndian(q8, 0x3800);
        q8[2] = 0x80; q8[3] = unchecked((byte)-3); q8[4] = 0; q8[5] = 127;
        Assert.Equal([-64f, -1.5f, 0f, 63.5f], Dequantized(QuantFormat.Q8_0, q8)[..4]);

        // Q4_0: d = −2; byte 0 = 0xF0 → weight 0 has code 0 (−8 · −2 = 16), weight 16 has code 15 (7 · −2 = −14).
        var q4 = new byte[18];
        BinaryPrimitives.WriteUInt16LittleEndian(q4, 0xC000);
        q4[2] = 0xF0;
        q4[3] = 0x88; // weights 1 and 17: code 8 → −0 (0 · −2)
        var w4 = Dequantized(QuantFormat.Q4_0, q4);
        Assert.Equal(16f, w4[0]);
        Assert.Equal(-14f, w4[16]);
        Assert.Equal(BitConverter.SingleToInt32Bits(-0f), BitConverter.SingleToInt32Bits(w4[1]));

        // Q5_1: d = 1, m = −3; weight 31 has nibble 15 (high nibble of byte 15) and fifth bit 31 set: 31 − 3 = 28.
        var q51 = new byte[24];
        BinaryPrimitives.WriteUInt16LittleEndian(q51, 0x3C00);
        BinaryPrimitives.WriteUInt16LittleEndian(q51.AsSpan(2), 0xC200);
        BinaryPrimitives.WriteUInt32LittleEndian(q51.AsSpan(4), 0x8000_0000);
        q51[8 + 15] = 0xF0;
        var w51 = Dequantized(QuantFormat.Q5_1, q51);
        Assert.Equal(28f, w51[31]);
        Assert.Equal(-3f, w51[0]);

        // Q4_K: d = 1, dmin = 0.5; group 0 scale 2, min 4; group 5 (j ≥ 4: low nibbles of byte 9,
        // high bits from bytes 1 and 5) scale 0x21 = 33, min 0x11 = 17. Weight 0 code 3: 2·3 − 2 = 4.
        // Weight 160 (group 5, byte 16 + 2·32 + 0, high nibble) code 15: 33·15 − 8.5 = 486.5.
        var q4k = new byte[144];
        BinaryPrimitives.WriteUInt16LittleEndian(q4k, 0x3C00);
        BinaryPrimitives.WriteUInt16LittleEndian(q4k.AsSpan(2), 0x3800);
        q4k[4 + 0] = 2; q4k[4 + 4] = 4;
        q4k[4 + 9] = 0x11; // low nibble: scale bits 0–3 = 1; high nibble: min bits 0–3 = 1
        q4k[4 + 1] |= 2 << 6; // scale bits 4–5 of group 5 = 2 → 0x21
        q4k[4 + 5] |= 1 << 6; // min bits 4–5 of group 5 = 1 → 0x11
        q4k[16] = 0x03;
        q4k[16 + 64] = 0xF0;
        var w4k = Dequantized(QuantFormat.Q4_K, q4k);
        Assert.Equal(2f * 3 - 0.5f * 4, w4k[0]);
        Assert.Equal(33f * 15 - 0.5f * 17, w4k[160]);

        // Q6_K: d = 0.25, scale of group 3 (weights 48–63) = −2; weight 50: low nibble of ql[50]
        // (quarter 1 reads ql[32 + l], l = 18) and 2 high bits of qh[18] at shift 2: code 63 → 31.
        var q6 = new byte[210];
        BinaryPrimitives.WriteUInt16LittleEndian(q6.AsSpan(208), 0x3400);
        q6[192 + 3] = unchecked((byte)-2);
        q6[32 + 18] = 0x0F;
        q6[128 + 18] = 3 << 2;
        var w6 = Dequantized(QuantFormat.Q6_K, q6);
        Assert.Equal(0.25f * -2 * 31, w6[50]);
        Assert.Equal(0.25f * -2 * -32, w6[48]);
    }

    static float[] Dequantized(QuantFormat format, byte[] block)
    {
        var values = new float[format.BlockSize()];
        QuantizedBlocks.Dequantize(format, block, values);
        Bits.Equal(QuantizedTestBlocks.Dequantize(format, block), values, $"{format.Name()} hand-made block");
        return values;
    }

    public static IEnumerable<object[]> FormatsAndLevels() =>
        from format in Formats from level in SimdLevels.Available select new object[] { format, level };

    [Theory]
    [MemberData(nameof(FormatsAndLevels))]
    public void Simd_dequantization_matches_the_reference(QuantFormat format, SimdLevel level)
    {
        int count = 37;
        var blocks = QuantizedTestBlocks.Blocks(format, count, seed: 100 + (int)format);
        var expected = new float[count * format.BlockSize()];
        QuantizedBlocks.Dequantize(format, blocks, expected);
        var actual = new float[expected.Length];
        fixed (byte* b = blocks)
        fixed (float* y = actual)
            QuantizedSimd.Dequantize(level, format, b, y, count);
        Bits.Equal(expected, actual, $"{format.Name()} {level.Name()}");
    }

    /// <summary>
    /// Rows 1, 3, 17; widths of 1, 2, 5 blocks; out features 13 (an eight-row group, five singles,
    /// partial tiles). Then out features past one group of the CPU launch profile's 32: 45 (a
    /// partial second group, odd) and 64 (two whole groups), at 4 rows (one whole row tile of the
    /// ILGPU kernel) and 33 (the SIMD prefill's two row groups of 16 and one row over).
    /// </summary>
    static IEnumerable<(int Rows, int Out, int Blocks)> Shapes()
    {
        foreach (int rows in new[] { 1, 3, 17 })
            foreach (int blocks in new[] { 1, 2, 5 })
                yield return (rows, 13, blocks);
        yield return (4, 64, 1);
        yield return (33, 45, 2);
        yield return (1, 45, 3);
    }

    /// <summary>Plus two rows of a real width (4096).</summary>
    static IEnumerable<(int Rows, int Out, int Blocks)> ShapesFor(QuantFormat format) =>
        Shapes().Append((2, 9, 4096 / format.BlockSize()));

    /// <summary>
    /// Every shape on every kernel library (the CPU accelerator with its own launch shapes and with
    /// CUDA's, and CUDA where a device exists); and, for CUDA's launch shapes only, 2049 outputs of
    /// one row, where a group walks two weight rows and the last group one (the profile gives one
    /// output per group below 2048, so smaller shapes never reach that loop).
    /// </summary>
    public static IEnumerable<object[]> LinearCases() =>
        (from library in KernelLibraries.Names
         from format in Formats
         from shape in ShapesFor(format)
         select new object[] { library, format, shape.Rows, shape.Out, shape.Blocks })
        .Concat(
         from library in KernelLibraries.Names.Where(name => name != "ilgpu-cpu")
         from format in new[] { QuantFormat.Q8_0, QuantFormat.Q4_K }
         select new object[] { library, format, 1, 2049, 1 });

    [Theory]
    [MemberData(nameof(LinearCases))]
    public void Ilgpu_linear_matches_the_reference(string libraryName, QuantFormat format, int rows, int outFeatures, int blocksPerRow)
    {
        var (x, w, bias, shape) = LinearInputs(format, rows, outFeatures, blocksPerRow);
        var library = KernelLibraries.Get(libraryName);
        var accelerator = library.Accelerator;
        foreach (bool hasBias in new[] { false, true })
        {
            var expected = Reference(x, format, w, bias, hasBias, shape);
            using var xs = accelerator.Allocate1D(x);
            using var ws = accelerator.Allocate1D(w);
            using var bs = accelerator.Allocate1D(bias);
            using var ys = accelerator.Allocate1D<float>(rows * outFeatures);
            QuantizedLinear.Run(library, xs.View, ws.View, format, hasBias ? bs.View : null, ys.View, shape);
            accelerator.Synchronize();
            Bits.Equal(expected, ys.GetAsArray1D(), $"{libraryName} {format.Name()} {shape} bias={hasBias}");
        }
    }

    public static IEnumerable<object[]> SimdLinearCases() =>
        from format in Formats
        from level in SimdLevels.Available
        from threads in new[] { 1, 2 }
        // One row of 35 blocks: the AVX-512 decode prepares scales 16 blocks at a time (16 + 16 + 3).
        from shape in ShapesFor(format).Append((Rows: 1, Out: 6, Blocks: 35))
        select new object[] { format, level, threads, shape.Rows, shape.Out, shape.Blocks };

    [Theory]
    [MemberData(nameof(SimdLinearCases))]
    public void Simd_linear_matches_the_reference(QuantFormat format, SimdLevel level, int threads, int rows, int outFeatures, int blocksPerRow)
    {
        var (x, w, bias, shape) = LinearInputs(format, rows, outFeatures, blocksPerRow);
        using var workers = new CpuWorkers(threads);
        var job = new QuantizedSimd.LinearJob();
        foreach (bool hasBias in new[] { false, true })
        {
            var expected = Reference(x, format, w, bias, hasBias, shape);
            var y = new float[rows * outFeatures];
            fixed (float* xp = x, bp = bias, yp = y)
            fixed (byte* wp = w)
                QuantizedSimd.Linear(workers, level, job, xp, wp, format, hasBias ? bp : null, yp, shape);
            Bits.Equal(expected, y, $"simd-{level.Name()}-t{threads} {format.Name()} {shape} bias={hasBias}");
        }
    }

    static float[] Reference(float[] x, QuantFormat format, byte[] w, float[] bias, bool hasBias, LinearShape shape)
    {
        var expected = new float[shape.Rows * shape.OutFeatures];
        QuantizedLinear.Reference(x, format, w, bias, hasBias, expected, shape);
        // The contract: the f32 linear on the dequantized weights, bit for bit.
        var dequantized = new float[shape.OutFeatures * shape.InFeatures];
        QuantizedBlocks.Dequantize(format, w, dequantized);
        var f32 = new float[expected.Length];
        Linear.Reference(x, HostStorage.Of(dequantized), bias, hasBias, f32, shape);
        Bits.Equal(f32, expected, $"{format.Name()} reference against f32 on the dequantized weights");
        return expected;
    }

    /// <summary>x with signed zeros and subnormals among ordinary values; the last row carries larger magnitudes.</summary>
    static (float[] X, byte[] W, float[] Bias, LinearShape Shape) LinearInputs(QuantFormat format, int rows, int outFeatures, int blocksPerRow)
    {
        int k = blocksPerRow * format.BlockSize();
        var shape = new LinearShape(rows, outFeatures, k);
        var x = TestValues.Random(rows * k, seed: rows * 31 + k);
        float[] edges = [0f, -0f, 1e-40f, -3e-42f, 1e-30f, 300f];
        for (int i = 0; i < x.Length; i += 7)
            x[i] = edges[i % edges.Length];
        var w = QuantizedTestBlocks.Blocks(format, outFeatures * blocksPerRow, seed: outFeatures * 7 + k + (int)format);
        return (x, w, TestValues.Random(outFeatures, seed: 7), shape);
    }

    public static IEnumerable<object[]> EmbeddingCases() =>
        from format in Formats from scale in new[] { 1f, 16f, 45.254833f } select new object[] { format, scale };

    [Theory]
    [MemberData(nameof(EmbeddingCases))]
    public void Embedding_gathers_dequantized_rows_on_every_backend(QuantFormat format, float scale)
    {
        int width = 2 * QuantFormats.SuperBlock, vocabulary = 11;
        var shape = new EmbeddingShape(5, vocabulary, width);
        var table = QuantizedTestBlocks.Blocks(format, vocabulary * width / format.BlockSize(), seed: 9 + (int)format);
        int[] ids = [3, 0, 10, 3, 7];
        var expected = new float[shape.Rows * width];
        QuantizedEmbedding.Reference(format, table, ids, expected, shape, scale);

        foreach (var libraryName in KernelLibraries.Names)
        {
            var library = KernelLibraries.Get(libraryName);
            var accelerator = library.Accelerator;
            using var ts = accelerator.Allocate1D(table);
            using var idView = accelerator.Allocate1D(ids);
            using var output = accelerator.Allocate1D<float>(expected.Length);
            QuantizedEmbedding.Run(library, ts.View, format, idView.View, output.View, shape, scale);
            accelerator.Synchronize();
            Bits.Equal(expected, output.GetAsArray1D(), $"{libraryName} {format.Name()} scale {scale}");
        }
        foreach (var level in SimdLevels.Available)
            foreach (int threads in new[] { 1, 2 })
            {
                using var workers = new CpuWorkers(threads);
                var actual = new float[expected.Length];
                fixed (byte* tp = table)
                fixed (int* ip = ids)
                fixed (float* op = actual)
                    QuantizedSimd.Embedding(workers, level, new QuantizedSimd.EmbeddingJob(), tp, format, ip, op, shape, scale);
                Bits.Equal(expected, actual, $"simd-{level.Name()}-t{threads} {format.Name()} scale {scale}");
            }
    }

    [Theory]
    [MemberData(nameof(EveryFormat))]
    public void Non_finite_scales_are_found_naming_the_block_and_field(QuantFormat format)
    {
        var blocks = QuantizedTestBlocks.Blocks(format, 6, seed: 3, edges: true);
        Assert.Null(QuantizedBlocks.FindBadScale(format, blocks));
        foreach (int field in QuantizedTestBlocks.ScaleFields(format))
            foreach (ushort bad in new ushort[] { 0x7C00, 0xFC00, 0x7E00, 0xFD01 })
            {
                var copy = (byte[])blocks.Clone();
                BinaryPrimitives.WriteUInt16LittleEndian(copy.AsSpan(4 * format.BlockBytes() + field), bad);
                var found = QuantizedBlocks.FindBadScale(format, copy);
                Assert.NotNull(found);
                Assert.Equal(4, found.Value.Block);
                Assert.False(float.IsFinite(found.Value.Value));
                Assert.Contains(field == QuantizedTestBlocks.ScaleFields(format)[0] ? "d" : "m", found.Value.Field);
            }
    }

    [Fact]
    public void Shapes_that_are_not_whole_blocks_are_refused_naming_the_format()
    {
        var x = new float[48];
        var y = new float[2];
        var error = Assert.Throws<ArgumentException>(() =>
            QuantizedLinear.Reference(x, QuantFormat.Q4_0, new byte[36], [], false, y, new LinearShape(1, 2, 48)));
        Assert.Contains("in features 48 is not a multiple of the Q4_0 block size 32", error.Message);
        error = Assert.Throws<ArgumentException>(() =>
            QuantizedLinear.Reference(new float[256], QuantFormat.Q4_K, new byte[287], [], false, y, new LinearShape(1, 2, 256)));
        Assert.Contains("linear: Q4_K weight bytes holds 287 values; expected 288 (out features 2 × 144 bytes per row)", error.Message);
        error = Assert.Throws<ArgumentException>(() => QuantizedBlocks.Dequantize(QuantFormat.Q8_0, new byte[35], new float[32]));
        Assert.Contains("35 bytes is not a whole number of 34-byte Q8_0 blocks", error.Message);
    }
}
