using System.Buffers.Binary;
using IlgpuLlm.Kernels;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Kernels;

/// <summary>
/// The block formats (docs/NUMERICS.md, "Quantized weights"): the scalar reference against an
/// independent dequantizer and hand-made blocks, and the linear and embedding of every backend
/// (ILGPU's CPU accelerator, the SIMD backend at every level with 1 and 2 threads, CUDA where
/// present) against the reference bit for bit, at rows 1, 3 and 17 (the decode groups, the single
/// rows and the tiled prefill) and widths of 1, 2 and 5 blocks and a real one.
/// </summary>
[Collection(BackendCollection.Name)]
public unsafe class QuantizedTests
{
    static readonly StorageType[] Formats = QuantizedTestBlocks.Formats;

    static BlockFormat Of(StorageType type) => QuantizedTestBlocks.Of(type);

    public static IEnumerable<object[]> EveryFormat() => Formats.Select(f => new object[] { f });

    [Theory]
    [MemberData(nameof(EveryFormat))]
    public void Reference_matches_an_independent_dequantizer(StorageType format)
    {
        var blocks = QuantizedTestBlocks.Blocks(format, 64, seed: (int)format + 1);
        var expected = QuantizedTestBlocks.Dequantize(format, blocks);
        var actual = new float[expected.Length];
        QuantizedBlocks.Dequantize(Of(format), blocks, actual);
        Bits.Equal(expected, actual, format.Name());
        Assert.All(actual, v => Assert.True(float.IsFinite(v)));
        // Element by element (what HostStorage and the generic SIMD loads read) gives the same weights.
        for (int i = 0; i < actual.Length; i += 37)
            Bits.Equal([actual[i]], [Of(format).Widen(blocks, i)], $"{format.Name()} weight {i}");
    }

    [Fact]
    public void Hand_made_blocks_dequantize_to_known_weights()
    {
        // Q8_0: d = 0.5 (f16 0x3800), codes −128, −3, 0, 127.
        var q8 = new byte[34];
        BinaryPrimitives.WriteUInt16LittleEndian(q8, 0x3800);
        q8[2] = 0x80; q8[3] = unchecked((byte)-3); q8[4] = 0; q8[5] = 127;
        Assert.Equal([-64f, -1.5f, 0f, 63.5f], Dequantized(StorageType.Q8_0, q8)[..4]);

        // Q4_0: d = −2; byte 0 = 0xF0 → weight 0 has code 0 (−8 · −2 = 16), weight 16 has code 15 (7 · −2 = −14).
        var q4 = new byte[18];
        BinaryPrimitives.WriteUInt16LittleEndian(q4, 0xC000);
        q4[2] = 0xF0;
        q4[3] = 0x88; // weights 1 and 17: code 8 → −0 (0 · −2)
        var w4 = Dequantized(StorageType.Q4_0, q4);
        Assert.Equal(16f, w4[0]);
        Assert.Equal(-14f, w4[16]);
        Assert.Equal(BitConverter.SingleToInt32Bits(-0f), BitConverter.SingleToInt32Bits(w4[1]));

        // Q5_1: d = 1, m = −3; weight 31 has nibble 15 (high nibble of byte 15) and fifth bit 31 set: 31 − 3 = 28.
        var q51 = new byte[24];
        BinaryPrimitives.WriteUInt16LittleEndian(q51, 0x3C00);
        BinaryPrimitives.WriteUInt16LittleEndian(q51.AsSpan(2), 0xC200);
        BinaryPrimitives.WriteUInt32LittleEndian(q51.AsSpan(4), 0x8000_0000);
        q51[8 + 15] = 0xF0;
        var w51 = Dequantized(StorageType.Q5_1, q51);
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
        var w4k = Dequantized(StorageType.Q4_K, q4k);
        Assert.Equal(2f * 3 - 0.5f * 4, w4k[0]);
        Assert.Equal(33f * 15 - 0.5f * 17, w4k[160]);

        // Q6_K: d = 0.25, scale of group 3 (weights 48–63) = −2; weight 50: low nibble of ql[50]
        // (quarter 1 reads ql[32 + l], l = 18) and 2 high bits of qh[18] at shift 2: code 63 → 31.
        var q6 = new byte[210];
        BinaryPrimitives.WriteUInt16LittleEndian(q6.AsSpan(208), 0x3400);
        q6[192 + 3] = unchecked((byte)-2);
        q6[32 + 18] = 0x0F;
        q6[128 + 18] = 3 << 2;
        var w6 = Dequantized(StorageType.Q6_K, q6);
        Assert.Equal(0.25f * -2 * 31, w6[50]);
        Assert.Equal(0.25f * -2 * -32, w6[48]);
    }

    static float[] Dequantized(StorageType format, byte[] block)
    {
        var values = new float[Of(format).BlockElements];
        QuantizedBlocks.Dequantize(Of(format), block, values);
        Bits.Equal(QuantizedTestBlocks.Dequantize(format, block), values, $"{format.Name()} hand-made block");
        return values;
    }

    public static IEnumerable<object[]> FormatsAndLevels() =>
        from format in Formats from level in SimdLevels.Available select new object[] { format, level };

    [Theory]
    [MemberData(nameof(FormatsAndLevels))]
    public unsafe void Simd_dequantization_matches_the_reference(StorageType format, SimdLevel level)
    {
        int count = 37;
        var blocks = QuantizedTestBlocks.Blocks(format, count, seed: 100 + (int)format);
        var expected = new float[count * Of(format).BlockElements];
        QuantizedBlocks.Dequantize(Of(format), blocks, expected);
        var actual = new float[expected.Length];
        fixed (byte* b = blocks)
        fixed (float* y = actual)
            Of(format).Dequantize(level, b, y, count);
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

    /// <summary>
    /// Plus two rows of a real width (4096), and on the SIMD backend one row of 35 blocks (the
    /// AVX-512 decode prepares scales 16 blocks at a time: 16 + 16 + 3).
    /// </summary>
    static IEnumerable<(int Rows, int Out, int Blocks)> ShapesFor(StorageType format, string backend)
    {
        var shapes = Shapes().Append((2, 9, 4096 / Of(format).BlockElements));
        return backend.StartsWith("simd", StringComparison.Ordinal) ? shapes.Append((1, 6, 35)) : shapes;
    }

    /// <summary>
    /// Every shape on every backend (the CPU accelerator with its own launch shapes and with CUDA's,
    /// CUDA where a device exists, every SIMD level and thread count); and, in CUDA's launch shapes
    /// only, 2049 outputs of one row: more outputs than the groups the profile makes, so the last
    /// group's partial share is reached.
    /// </summary>
    public static IEnumerable<object[]> LinearCases() =>
        (from backend in TestBackends.All.Select(b => (string)b[0])
         from format in Formats
         from shape in ShapesFor(format, backend)
         select new object[] { backend, format, shape.Rows, shape.Out, shape.Blocks })
        .Concat(
         from backend in new[] { TestBackends.GpuShapesOnCpu, "cuda" }.Where(name => name != "cuda" || TestBackends.HasCuda)
         from format in new[] { StorageType.Q8_0, StorageType.Q4_K }
         select new object[] { backend, format, 1, 2049, 1 });

    /// <summary>Through <see cref="IBackend.Linear"/>, so each backend's routing of block formats is what is tested.</summary>
    [Theory]
    [MemberData(nameof(LinearCases))]
    public void Linear_matches_the_reference_on_every_backend(string backendName, StorageType format, int rows, int outFeatures, int blocksPerRow)
    {
        var backend = TestBackends.Get(backendName);
        var (x, w, bias, shape) = LinearInputs(format, rows, outFeatures, blocksPerRow);
        var xs = backend.Upload(x, "x");
        var ws = backend.Allocate(format, (long)outFeatures * shape.InFeatures, "w");
        backend.Upload(ws, w);
        var bs = backend.Upload(bias, "bias");
        var ys = backend.Allocate(TensorType.F32, rows * outFeatures, "y");
        foreach (bool hasBias in new[] { false, true })
        {
            var expected = Reference(x, format, w, bias, hasBias, shape);
            backend.Linear(xs, ws, hasBias ? bs : null, ys, shape);
            Bits.Equal(expected, backend.DownloadFloats(ys), $"{backend.Name} {format.Name()} {shape} bias={hasBias}");
        }
        foreach (var t in new[] { xs, ws, bs, ys })
            backend.Free(t);
    }

    /// <summary>The reference linear reading the blocks, checked against the f32 linear on their dequantization (the contract).</summary>
    static float[] Reference(float[] x, StorageType format, byte[] w, float[] bias, bool hasBias, LinearShape shape)
    {
        var expected = new float[shape.Rows * shape.OutFeatures];
        Linear.Reference(x, new HostStorage(w, format), bias, hasBias, expected, shape);
        var dequantized = new float[shape.OutFeatures * shape.InFeatures];
        QuantizedBlocks.Dequantize(Of(format), w, dequantized);
        var f32 = new float[expected.Length];
        Linear.Reference(x, HostStorage.Of(dequantized), bias, hasBias, f32, shape);
        Bits.Equal(f32, expected, $"{format.Name()} reference against f32 on the dequantized weights");
        return expected;
    }

    /// <summary>x with signed zeros and subnormals among ordinary values; the last row carries larger magnitudes.</summary>
    static (float[] X, byte[] W, float[] Bias, LinearShape Shape) LinearInputs(StorageType format, int rows, int outFeatures, int blocksPerRow)
    {
        int k = blocksPerRow * Of(format).BlockElements;
        var shape = new LinearShape(rows, outFeatures, k);
        var x = TestValues.Random(rows * k, seed: rows * 31 + k);
        float[] edges = [0f, -0f, 1e-40f, -3e-42f, 1e-30f, 300f];
        for (int i = 0; i < x.Length; i += 7)
            x[i] = edges[i % edges.Length];
        var w = QuantizedTestBlocks.Blocks(format, outFeatures * blocksPerRow, seed: outFeatures * 7 + k + (int)format);
        return (x, w, TestValues.Random(outFeatures, seed: 7), shape);
    }

    public static IEnumerable<object[]> EmbeddingCases() =>
        from backend in TestBackends.All.Select(b => (string)b[0])
        from format in Formats
        select new object[] { backend, format };

    [Theory]
    [MemberData(nameof(EmbeddingCases))]
    public void Embedding_gathers_dequantized_rows_on_every_backend(string backendName, StorageType format)
    {
        var backend = TestBackends.Get(backendName);
        int width = 2 * BlockFormat.SuperBlock, vocabulary = 11;
        var shape = new EmbeddingShape(5, vocabulary, width);
        var table = QuantizedTestBlocks.Blocks(format, vocabulary * width / Of(format).BlockElements, seed: 9 + (int)format);
        int[] ids = [3, 0, 10, 3, 7];
        var tensor = backend.Allocate(format, (long)vocabulary * width, "table");
        backend.Upload(tensor, table);
        var output = backend.Allocate(TensorType.F32, shape.Rows * width, "output");
        foreach (float scale in new[] { 1f, 16f, 45.254833f })
        {
            var expected = new float[shape.Rows * width];
            Embedding.Reference(new HostStorage(table, format), ids, expected, shape, scale);
            backend.Embedding(tensor, ids, output, shape, scale);
            Bits.Equal(expected, backend.DownloadFloats(output), $"{backend.Name} {format.Name()} scale {scale}");
        }
        backend.Free(tensor);
        backend.Free(output);
    }

    public static IEnumerable<object[]> GenericCases() =>
        from backend in TestBackends.All.Select(b => (string)b[0])
        from format in new[] { StorageType.Q8_0, StorageType.Q4_K, StorageType.Q5_1 }
        select new object[] { backend, format };

    /// <summary>
    /// The ops without a block path of their own read block formats through the generic loads
    /// (<see cref="BlockVectors{TBlocks}"/> on the SIMD backend), as their dequantization: a norm
    /// weight, and a conversion to f32.
    /// </summary>
    [Theory]
    [MemberData(nameof(GenericCases))]
    public void Other_ops_read_block_formats_as_their_dequantization(string backendName, StorageType format)
    {
        var backend = TestBackends.Get(backendName);
        int width = 2 * BlockFormat.SuperBlock;
        var blocks = QuantizedTestBlocks.Blocks(format, width / Of(format).BlockElements, seed: 4, edges: false, typicalScale: 0.1f);
        var weights = new float[width];
        QuantizedBlocks.Dequantize(Of(format), blocks, weights);
        var stored = backend.Allocate(format, width, "norm weight");
        backend.Upload(stored, blocks);

        var converted = backend.Allocate(TensorType.F32, width, "converted");
        Assert.Equal(0, backend.Convert(stored, converted));
        Bits.Equal(weights, backend.DownloadFloats(converted), $"{backend.Name} {format.Name()} convert");

        var shape = new RmsNormShape(3, width, 1e-5f, AddOneToWeight: false);
        var x = TestValues.Random(3 * width, seed: 8);
        var expected = new float[x.Length];
        RmsNorm.Reference(x, HostStorage.Of(weights), expected, shape);
        var xs = backend.Upload(x, "x");
        var ys = backend.Allocate(TensorType.F32, x.Length, "y");
        backend.RmsNorm(xs, stored, ys, shape);
        Bits.Equal(expected, backend.DownloadFloats(ys), $"{backend.Name} {format.Name()} rmsnorm");
        foreach (var t in new[] { stored, converted, xs, ys })
            backend.Free(t);
    }

    [Theory]
    [MemberData(nameof(EveryFormat))]
    public unsafe void Non_finite_scales_are_found_naming_the_block_and_field(StorageType format)
    {
        var blocks = QuantizedTestBlocks.Blocks(format, 6, seed: 3, edges: true);
        var blockFormat = Of(format);
        Assert.Null(blockFormat.FindBadScale(blocks));
        fixed (byte* data = blocks)
            Assert.Equal(-1, blockFormat.IndexOfNonFinite(data, 6L * blockFormat.BlockElements));
        foreach (int field in QuantizedTestBlocks.ScaleFields(format))
            foreach (ushort bad in new ushort[] { 0x7C00, 0xFC00, 0x7E00, 0xFD01 })
            {
                var copy = (byte[])blocks.Clone();
                BinaryPrimitives.WriteUInt16LittleEndian(copy.AsSpan(4 * blockFormat.BlockBytes + field), bad);
                var found = blockFormat.FindBadScale(copy);
                Assert.NotNull(found);
                Assert.Equal(4, found.Value.Block);
                Assert.False(float.IsFinite(found.Value.Value));
                Assert.Contains(field == QuantizedTestBlocks.ScaleFields(format)[0] ? "d" : "m", found.Value.Field);
                // The finiteness scan of the format points at the block's first weight, which is
                // not finite, as every weight of such a block is.
                var weights = new float[6 * blockFormat.BlockElements];
                QuantizedBlocks.Dequantize(blockFormat, copy, weights);
                fixed (byte* data = copy)
                    Assert.Equal(4L * blockFormat.BlockElements, blockFormat.IndexOfNonFinite(data, weights.Length));
                Assert.All(weights.AsSpan(4 * blockFormat.BlockElements, blockFormat.BlockElements).ToArray(), w => Assert.False(float.IsFinite(w)));
                Assert.All(weights.AsSpan(0, 4 * blockFormat.BlockElements).ToArray(), w => Assert.True(float.IsFinite(w)));
            }
    }

    public static IEnumerable<object[]> Backends() => TestBackends.All;

    [Theory]
    [MemberData(nameof(Backends))]
    public void Shapes_that_are_not_whole_blocks_are_refused_naming_the_format(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        // 2 rows of 48 weights hold three whole Q4_0 blocks, but the rows do not start on a block.
        var x = backend.Allocate(TensorType.F32, 48, "x");
        var w = backend.Allocate(StorageType.Q4_0, 96, "w");
        var y = backend.Allocate(TensorType.F32, 2, "y");
        var error = Assert.Throws<ArgumentException>(() => backend.Linear(x, w, null, y, new LinearShape(1, 2, 48)));
        Assert.Contains("in features 48 is not a multiple of the q4_0 block size 32", error.Message);
        var table = backend.Allocate(StorageType.Q8_0, 3 * 96, "table");
        var output = backend.Allocate(TensorType.F32, 48, "output");
        error = Assert.Throws<ArgumentException>(() => backend.Embedding(table, [0], output, new EmbeddingShape(1, 6, 48), 1f));
        Assert.Contains("width 48 is not a multiple of the q8_0 block size 32", error.Message);
        foreach (var t in new[] { x, w, y, table, output })
            backend.Free(t);
        // A block format holds weights only: no KV cache, no attention over it, no conversion into it.
        var cache = backend.Allocate(StorageType.Q8_0, 64, "cache");
        var source = backend.Allocate(TensorType.F32, 64, "source");
        error = Assert.Throws<ArgumentException>(() => backend.Convert(source, cache));
        Assert.Contains("q8_0 values cannot be stored one by one", error.Message);
        Assert.Contains("q8_0 values cannot be stored one by one",
            Assert.Throws<ArgumentException>(() => backend.ScatterRows(source, cache, [0L], new ScatterShape(1, 64, 1), new bool[1])).Message);
        backend.Free(cache);
        backend.Free(source);
    }

    [Fact]
    public void Partial_blocks_are_refused_naming_the_format()
    {
        var error = Assert.Throws<ArgumentException>(() =>
            Linear.Reference(new float[256], new HostStorage(new byte[288], StorageType.Q4_K), [], false, new float[3], new LinearShape(1, 3, 256)));
        Assert.Contains("linear: weight holds 512 values; expected 768 (out features 3 × in features 256)", error.Message);
        error = Assert.Throws<ArgumentException>(() => new HostStorage(new byte[287], StorageType.Q4_K));
        Assert.Contains("287 bytes are not a whole number of 144-byte q4_k blocks", error.Message);
        error = Assert.Throws<ArgumentException>(() => QuantizedBlocks.Dequantize(Q8_0Format.Instance, new byte[68], new float[32]));
        Assert.Contains("q8_0 dequantization: destination holds 32 values; expected 64", error.Message);
        Assert.Contains("kv cache: q4_k values cannot be stored one by one",
            Assert.Throws<ArgumentException>(() => StorageType.Q4_K.Format().EnsureNarrows("kv cache")).Message);
    }
}
