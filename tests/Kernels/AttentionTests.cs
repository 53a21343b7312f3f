using IlgpuLlm.Kernels;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Kernels;

[Collection(BackendCollection.Name)]
public class AttentionTests
{
    /// <summary>How a case fills q and the cache.</summary>
    public enum Magnitudes
    {
        /// <summary>Random values of order 1.</summary>
        Ordinary,

        /// <summary>Random values salted with ±0, subnormals and huge finite values.</summary>
        Edges,

        /// <summary>q huge (scores overflow to ±inf) in some heads, subnormal in others.</summary>
        Extreme,

        /// <summary>Ordinary, with NaN in one query row's head.</summary>
        NaNInQuery,
    }

    /// <summary>Where a case's bias lies; null for none.</summary>
    public sealed record BiasSpec(long Offset, long RowStride, long HeadStride, int Slack, bool FullyMaskOneHead);

    /// <summary>One attention call: its shape, its ragged key ranges and what its inputs hold.</summary>
    public sealed record Case(string Name, StorageType Type, int Heads, int KvHeads, int HeadDim, int Slots, int Capacity,
        KeyRange[] Ranges, float Scale, float SoftCap, BiasSpec? Bias, Magnitudes Values)
    {
        public AttentionShape Shape => new(Ranges.Length, Heads, KvHeads, HeadDim, Slots, Capacity, Scale, SoftCap);

        public override string ToString() => Name;
    }

    static float ScaleOf(int headDim) => 1f / MathF.Sqrt(headDim);

    /// <summary>
    /// Every cache type, GQA ratio (1:1, 4:2, 4:1, 8:2, 6:1, 2:1), head_dim 1, 3, 17, 31, 32, 33, 64, 128, key
    /// counts 0, 1, 3, 16, 17, 32, 33, 48, 64, 127, ragged ranges (other slots, Begin &gt; 0, ranges that wrap the ring), soft-cap,
    /// scales from head_dim and from a query_pre_attn_scalar, biases with odd offsets and strides,
    /// −inf entries and a fully masked head, NaN in q, huge and tiny magnitudes. Few rows per case:
    /// ILGPU's CPU accelerator runs every warp in software.
    /// </summary>
    public static readonly Case[] All =
    [
        new("f32 1:1 hd1 counts 1,3,0,3", StorageType.F32, 1, 1, 1, 3, 8,
            [new(0, 0, 1), new(1, 0, 3), new(2, 2, 2), new(0, 5, 8)], ScaleOf(1), 0f, null, Magnitudes.Edges),
        new("f16 4:2 hd3 counts 17 (wraps),17,1", StorageType.F16, 4, 2, 3, 2, 20,
            [new(1, 10, 27), new(0, 0, 17), new(0, 3, 4)], ScaleOf(3), 0f, null, Magnitudes.Ordinary),
        new("bf16 4:1 hd17 counts 33,33 (wraps),3", StorageType.BF16, 4, 1, 17, 2, 40,
            [new(0, 0, 33), new(1, 30, 63), new(0, 7, 10)], ScaleOf(17), 0f, null, Magnitudes.Edges),
        new("f32 4:2 hd32 counts 127,127 (wraps at 100)", StorageType.F32, 4, 2, 32, 2, 127,
            [new(0, 0, 127), new(1, 100, 227)], ScaleOf(32), 0f, null, Magnitudes.Ordinary),
        new("f16 4:1 hd33 sliding windows 33,17,3", StorageType.F16, 4, 1, 33, 2, 64,
            [new(0, 0, 33), new(0, 40, 57), new(1, 60, 63)], ScaleOf(33), 0f, null, Magnitudes.Edges),
        new("bf16 4:2 hd17 soft-cap 50, query_pre_attn_scalar 256", StorageType.BF16, 4, 2, 17, 2, 48,
            [new(1, 5, 38), new(0, 0, 1), new(1, 40, 57)], 1f / MathF.Sqrt(256f), 50f, null, Magnitudes.Ordinary),
        new("f32 4:2 hd3 bias odd offset and strides, −inf, a fully masked head", StorageType.F32, 4, 2, 3, 2, 40,
            [new(0, 0, 17), new(1, 20, 53), new(0, 2, 5)], ScaleOf(3), 0f, new(5, 131, 37, 3, true), Magnitudes.Ordinary),
        new("f16 1:1 hd1 bias broadcast over heads, soft-cap", StorageType.F16, 2, 2, 1, 1, 130,
            [new(0, 0, 127), new(0, 126, 127)], ScaleOf(1), 20f, new(1, 127, 0, 0, false), Magnitudes.Ordinary),
        new("bf16 4:1 hd3 NaN in q", StorageType.BF16, 4, 1, 3, 1, 20,
            [new(0, 0, 17), new(0, 4, 7)], ScaleOf(3), 0f, null, Magnitudes.NaNInQuery),
        new("f32 4:2 hd17 huge and tiny q", StorageType.F32, 4, 2, 17, 1, 36,
            [new(0, 0, 33), new(0, 30, 33)], ScaleOf(17), 0f, null, Magnitudes.Extreme),
        new("f16 4:2 hd17 huge and tiny q, soft-cap", StorageType.F16, 4, 2, 17, 1, 36,
            [new(0, 1, 18), new(0, 0, 3)], ScaleOf(17), 30f, null, Magnitudes.Extreme),
        new("f16 2:1 hd400 (tiles of 16 keys on the GPU) 33 keys wrapping, 1", StorageType.F16, 2, 1, 400, 1, 40,
            [new(0, 20, 53), new(0, 39, 40)], ScaleOf(400), 0f, null, Magnitudes.Edges),
        new("bf16 1:1 hd32 no keys at all", StorageType.BF16, 1, 1, 32, 2, 4,
            [new(0, 0, 0), new(1, 3, 3)], ScaleOf(32), 0f, null, Magnitudes.Ordinary),
        // head_dim a multiple of 64: the SIMD backend's lane-major value sums, in tiles of 4 heads × 64 dims.
        new("f32 8:2 hd64 counts 70 (wraps), 5, 0", StorageType.F32, 8, 2, 64, 2, 80,
            [new(0, 50, 120), new(1, 0, 5), new(1, 7, 7)], ScaleOf(64), 0f, null, Magnitudes.Edges),
        new("bf16 6:1 hd128 counts 40, 33 with a fully masked head", StorageType.BF16, 6, 1, 128, 1, 48,
            [new(0, 0, 40), new(0, 5, 38)], ScaleOf(128), 0f, new(3, 300, 60, 2, true), Magnitudes.Ordinary),
        // Key counts that are whole blocks of 16 (the SIMD scores' sixteen-key trees) and of 32
        // (canonical lanes with no tail), head_dim 31 and 32 (one term per lane, with and without a tail).
        new("f32 4:2 hd32 counts 32, 64 (wraps), 16", StorageType.F32, 4, 2, 32, 2, 70,
            [new(0, 0, 32), new(1, 40, 104), new(0, 16, 32)], ScaleOf(32), 0f, null, Magnitudes.Ordinary),
        new("f16 2:1 hd31 counts 64, 32, 17", StorageType.F16, 2, 1, 31, 1, 64,
            [new(0, 0, 64), new(0, 32, 64), new(0, 47, 64)], ScaleOf(31), 0f, null, Magnitudes.Ordinary),
        new("bf16 8:2 hd64 counts 16, 48, soft-cap 50", StorageType.BF16, 8, 2, 64, 1, 48,
            [new(0, 0, 16), new(0, 0, 48)], ScaleOf(64), 50f, null, Magnitudes.Ordinary),
    ];

    public static IEnumerable<object[]> Cases() =>
        from backend in TestBackends.All from index in Enumerable.Range(0, All.Length) select new object[] { backend[0], index };

    /// <summary>The inputs of a case, made deterministically from its index.</summary>
    sealed class Inputs
    {
        public required float[] Q;
        public required byte[] Keys, Values;
        public required float[]? Bias;
        public required AttentionBiasLayout? Layout;
    }

    static Inputs Make(Case c, int seed)
    {
        var shape = c.Shape;
        int qLength = shape.Rows * c.Heads * c.HeadDim;
        float[] q = c.Values switch
        {
            Magnitudes.Edges => TestValues.WithEdges(qLength, seed, nonFinite: false),
            _ => TestValues.Random(qLength, seed, 2f),
        };
        if (c.Values == Magnitudes.NaNInQuery)
            q[(1 * c.Heads + 2) * c.HeadDim + c.HeadDim / 2] = float.NaN;
        if (c.Values == Magnitudes.Extreme)
            for (int i = 0; i < qLength; i++)
                q[i] *= (i / c.HeadDim % 3) switch { 0 => 3e38f, 1 => 1e-39f, _ => 1f };
        long cacheLength = (long)c.Slots * c.Capacity * c.KvHeads * c.HeadDim;
        var keys = TestValues.Random((int)cacheLength, seed + 1);
        var values = c.Values == Magnitudes.Edges
            ? TestValues.WithEdges((int)cacheLength, seed + 2, nonFinite: false)
            : TestValues.Random((int)cacheLength, seed + 2, 3f);
        if (c.Values == Magnitudes.Edges)
            for (int i = 0; i < keys.Length; i += 7)
                keys[i] = i % 2 == 0 ? 1e-41f : -0f;

        float[]? bias = null;
        AttentionBiasLayout? layout = null;
        if (c.Bias is BiasSpec spec)
        {
            long reach = 0;
            for (int r = 0; r < c.Ranges.Length; r++)
                if (c.Ranges[r].Length > 0)
                    reach = Math.Max(reach, spec.Offset + r * spec.RowStride + (c.Heads - 1L) * spec.HeadStride + c.Ranges[r].End);
            long length = reach + spec.Slack;
            bias = TestValues.Random((int)length, seed + 3, 4f);
            for (int i = 0; i < bias.Length; i += 5)
                bias[i] = float.NegativeInfinity;
            if (spec.FullyMaskOneHead)
            {
                // Row 1, head 3: every key it attends to is masked.
                long at = spec.Offset + spec.RowStride + 3 * spec.HeadStride;
                for (int t = c.Ranges[1].Begin; t < c.Ranges[1].End; t++)
                    bias[at + t] = float.NegativeInfinity;
            }
            layout = new AttentionBiasLayout(spec.Offset, spec.RowStride, spec.HeadStride, length);
        }
        return new Inputs
        {
            Q = q, Keys = TestValues.Stored(keys, c.Type), Values = TestValues.Stored(values, c.Type), Bias = bias, Layout = layout,
        };
    }

    static (float[] Output, bool[] Masked) Expected(Case c, Inputs inputs)
    {
        var shape = c.Shape;
        var output = new float[shape.Rows * c.Heads * c.HeadDim];
        var masked = new bool[shape.Rows * c.Heads];
        Attention.Reference(inputs.Q, new HostStorage(inputs.Keys, c.Type), new HostStorage(inputs.Values, c.Type), output,
            c.Ranges, shape, inputs.Bias, inputs.Layout, masked);
        return (output, masked);
    }

    static (float[] Output, bool[] Masked) Run(IBackend backend, Case c, Inputs inputs)
    {
        var shape = c.Shape;
        var type = c.Type;
        var q = backend.Upload(inputs.Q, "q");
        var keys = backend.Allocate(type, c.Type.ElementCount(inputs.Keys.Length), "keys");
        backend.Upload(keys, inputs.Keys);
        var values = backend.Allocate(type, c.Type.ElementCount(inputs.Values.Length), "values");
        backend.Upload(values, inputs.Values);
        var bias = inputs.Bias is null ? null : backend.Upload(inputs.Bias, "bias");
        var output = backend.Allocate(TensorType.F32, inputs.Q.Length, "output");
        // Stale values in the output must not survive: fully masked heads are written as zeros.
        backend.Upload(output, System.Runtime.InteropServices.MemoryMarshal.AsBytes(Enumerable.Repeat(7f, inputs.Q.Length).ToArray().AsSpan()));
        var masked = new bool[shape.Rows * c.Heads];
        backend.Attention(q, keys, values, output, c.Ranges, shape,
            bias is null ? null : new AttentionBias(bias, inputs.Layout!.Value), masked);
        var result = backend.DownloadFloats(output);
        foreach (var t in new[] { q, keys, values, output })
            backend.Free(t);
        if (bias != null)
            backend.Free(bias);
        return (result, masked);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Matches_the_reference_bit_for_bit(string backendName, int caseIndex)
    {
        var backend = TestBackends.Get(backendName);
        var c = All[caseIndex];
        var inputs = Make(c, seed: 100 + caseIndex);
        var (expected, expectedMasked) = Expected(c, inputs);
        var (actual, masked) = Run(backend, c, inputs);
        Bits.Equal(expected, actual, $"{backend.Name} {c.Name}");
        Assert.Equal(expectedMasked, masked);
    }

    [Fact]
    public void The_cases_cover_what_they_claim()
    {
        // Guards the case table itself: the reference must see fully masked heads, NaN and ±inf
        // outputs where the cases say so, or the bit comparisons prove less than they claim.
        foreach (var biasCase in All.Where(c => c.Bias?.FullyMaskOneHead == true))
        {
            var (biasOutput, biasMasked) = Expected(biasCase, Make(biasCase, 100 + Array.IndexOf(All, biasCase)));
            Assert.True(biasMasked[1 * biasCase.Heads + 3], biasCase.Name);
            Assert.All(biasOutput.AsSpan((1 * biasCase.Heads + 3) * biasCase.HeadDim, biasCase.HeadDim).ToArray(), v => Assert.Equal(0f, v));
            Assert.Contains(false, biasMasked);
        }

        var empty = All.Single(c => c.Ranges.All(r => r.Length == 0));
        Assert.All(Expected(empty, Make(empty, 0)).Masked, Assert.True);

        var nanCase = All.Single(c => c.Values == Magnitudes.NaNInQuery);
        var nanOutput = Expected(nanCase, Make(nanCase, 100 + Array.IndexOf(All, nanCase))).Output;
        Assert.Contains(nanOutput, float.IsNaN);

        var extreme = All.First(c => c.Values == Magnitudes.Extreme);
        var extremeOutput = Expected(extreme, Make(extreme, 100 + Array.IndexOf(All, extreme))).Output;
        Assert.Contains(extremeOutput, v => float.IsNaN(v) || float.IsInfinity(v) || v == 0f);
        Assert.Contains(extremeOutput, float.IsNormal);
    }

    [Fact]
    public void Key_tiles_fit_the_shared_memory_every_CUDA_device_grants()
    {
        Assert.Equal(32, Attention.TileKeysFor(1));
        Assert.Equal(32, Attention.TileKeysFor(256));
        Assert.Equal(32, Attention.TileKeysFor(383));
        Assert.Equal(16, Attention.TileKeysFor(400));
        Assert.Equal(1, Attention.TileKeysFor(12000));
    }

    public static IEnumerable<object[]> Backends() => TestBackends.All;

    /// <summary>
    /// Batch invariance: each query row computed alone gives exactly the bits it gets inside a
    /// bigger ragged batch (other slots, other lengths, a bias laid out for the whole batch).
    /// </summary>
    [Theory]
    [MemberData(nameof(Backends))]
    public void A_row_alone_equals_the_same_row_inside_a_ragged_batch(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        var batch = new Case("batch", StorageType.F16, 4, 2, 17, 3, 40,
            [new(0, 0, 33), new(2, 25, 58), new(1, 3, 4), new(2, 10, 27)], ScaleOf(17), 0f, new(2, 61, 13, 1, false),
            Magnitudes.Ordinary);
        var inputs = Make(batch, seed: 77);
        var (together, togetherMasked) = Run(backend, batch, inputs);
        Bits.Equal(Expected(batch, inputs).Output, together, $"{backend.Name} batch");
        int rowLength = batch.Heads * batch.HeadDim;
        foreach (int r in new[] { 1, 2 })
        {
            var alone = batch with { Ranges = [batch.Ranges[r]] };
            var layout = inputs.Layout!.Value;
            var single = new Inputs
            {
                Q = inputs.Q.AsSpan(r * rowLength, rowLength).ToArray(), Keys = inputs.Keys, Values = inputs.Values,
                Bias = inputs.Bias, Layout = layout with { Offset = layout.Offset + r * layout.RowStride },
            };
            var (output, masked) = Run(backend, alone, single);
            Bits.Equal(together.AsSpan(r * rowLength, rowLength), output, $"{backend.Name} row {r} alone vs in the batch");
            Assert.Equal(togetherMasked.AsSpan(r * batch.Heads, batch.Heads).ToArray(), masked);
        }
    }

    public static IEnumerable<object[]> ValidationBackends() =>
        TestBackends.All.Where(b => (string)b[0] is "ilgpu-cpu" or "simd-scalar-t1" || ((string)b[0]).EndsWith("-t2"));

    [Theory]
    [MemberData(nameof(ValidationBackends))]
    public void Rejects_bad_arguments_with_a_message_naming_what_is_wrong(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        var shape = new AttentionShape(2, 2, 1, 4, 2, 8, 0.5f, 0f);
        var q = backend.Allocate(TensorType.F32, 16, "q");
        var keys = backend.Allocate(TensorType.F16, 2 * 8 * 4, "keys");
        var values = backend.Allocate(TensorType.F16, 2 * 8 * 4, "values");
        var valuesBf16 = backend.Allocate(TensorType.BF16, 2 * 8 * 4, "values");
        var output = backend.Allocate(TensorType.F32, 16, "output");
        var shortOutput = backend.Allocate(TensorType.F32, 15, "output");
        var bias = backend.Allocate(TensorType.F32, 20, "bias");
        var masked = new bool[4];
        KeyRange[] good = [new(0, 0, 3), new(1, 2, 8)];

        string Fails<TException>(KeyRange[] ranges, AttentionShape s, Tensor? o = null, Tensor? v = null, AttentionBias? b = null,
            bool[]? flags = null) where TException : Exception =>
            Assert.Throws<TException>(() => backend.Attention(q, keys, v ?? values, o ?? output, ranges, s, b, flags ?? masked)).Message;

        Assert.Contains("row 1 reads cache slot 2; the cache has 2 slots", Fails<ArgumentOutOfRangeException>([new(0, 0, 3), new(2, 0, 1)], shape));
        Assert.Contains("row 0 has key range [5, 4)", Fails<ArgumentOutOfRangeException>([new(0, 5, 4), new(1, 0, 1)], shape));
        Assert.Contains("row 1 has key range [-1, 2)", Fails<ArgumentOutOfRangeException>([new(0, 0, 1), new(1, -1, 2)], shape));
        Assert.Contains("row 1 attends to 9 keys [3, 12); the cache holds 8 positions per slot",
            Fails<ArgumentOutOfRangeException>([new(0, 0, 1), new(1, 3, 12)], shape));
        Assert.Contains("key ranges holds 1 values; expected 2", Fails<ArgumentException>([new(0, 0, 1)], shape));
        Assert.Contains("output holds 15 values; expected 16", Fails<ArgumentException>(good, shape, o: shortOutput));
        Assert.Contains("key cache holds 64 values; expected 128", Fails<ArgumentException>(good, shape with { Slots = 4 }));
        Assert.Contains("fully-masked flags holds 3 values; expected 4", Fails<ArgumentException>(good, shape, flags: new bool[3]));
        Assert.Contains("both must share one storage type", Fails<ArgumentException>(good, shape, v: valuesBf16));
        Assert.Contains("4 query heads cannot share 3 kv heads", Fails<ArgumentException>(good, shape with { Heads = 4, KvHeads = 3 }));
        Assert.Contains("soft-cap -1 must be 0", Fails<ArgumentException>(good, shape with { SoftCap = -1f }));

        // Row 1, head 1 reaches offset 1 + 1·9 + 1·2 + (8 − 1) = 19 < 20: fits; one more row stride does not.
        backend.Attention(q, keys, values, output, good, shape, new AttentionBias(bias, new(1, 9, 2, 20)), masked);
        Assert.Contains("row 1 reads bias index 20 (keys up to position 7); the bias holds 20 values",
            Fails<ArgumentOutOfRangeException>(good, shape, b: new AttentionBias(bias, new(1, 10, 2, 20))));
        Assert.Contains("bias holds 20 values; expected 21", Fails<ArgumentException>(good, shape, b: new AttentionBias(bias, new(0, 0, 0, 21))));
        Assert.Contains("must not be negative", Fails<ArgumentException>(good, shape, b: new AttentionBias(bias, new(0, -1, 0, 20))));

        foreach (var t in new[] { q, keys, values, valuesBf16, output, shortOutput, bias })
            backend.Free(t);
    }
}
