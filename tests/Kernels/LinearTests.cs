using IlgpuLlm.Kernels;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Kernels;

[Collection(BackendCollection.Name)]
public class LinearTests
{
    public static IEnumerable<object[]> Cases()
    {
        // One row goes through the SIMD backend's 8-output dots and single dots (1, 70, 100).
        // From 16 rows the SIMD backend takes its tiled path: row groups of 16 (17 and 33 leave
        // one row over), tiles of 6 outputs (7, 13, 50 leave a partial tile), k under one step
        // (17), whole steps (64, 96) and a partial last step (1100), several blocks (130).
        // k of 31, 32 and 512 (one term per lane, one whole block, whole blocks only) in decode
        // and prefill.
        (int rows, int outFeatures, int inFeatures)[] shapes =
            [(1, 1, 1), (1, 3, 33), (3, 17, 17), (5, 3, 127), (1, 33, 3), (6, 5, 64), (2, 4, 1000), (9, 50, 1100),
             (1, 70, 100), (4, 9, 264), (17, 50, 1100), (16, 7, 17), (33, 13, 64), (20, 130, 96), (1, 9, 32), (4, 10, 31),
             (1, 17, 512), (18, 9, 512), (16, 6, 32)];
        foreach (var backend in TestBackends.All)
            foreach (var type in TestValues.ElementTypes)
                foreach (var (m, n, k) in shapes)
                    yield return [backend[0], type, m, n, k];
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Matches_the_reference_bit_for_bit(string backendName, StorageType type, int rows, int outFeatures, int inFeatures)
    {
        var backend = TestBackends.Get(backendName);
        var shape = new LinearShape(rows, outFeatures, inFeatures);
        // Most rows of x and W are ordinary values spread over binades, where every product and
        // sum rounds, so a multiply then an add instead of a fused multiply-add, or any other order,
        // changes bits. Edge values (±0, subnormals, ±1e30) fill one row of x and every eighth row
        // of W; NaN and ±inf only the last row of x and of W: one of them in a dot makes the whole
        // output non-finite, and outputs that are all NaN would hide any error.
        var x = TestValues.Ordinary(rows * inFeatures, seed: rows * 31 + inFeatures);
        if (rows > 2)
            TestValues.WithEdges(inFeatures, seed: rows + 1, nonFinite: false).CopyTo(x, inFeatures);
        if (rows > 1 || inFeatures < 32)
            TestValues.WithEdges(inFeatures, seed: rows, nonFinite: true).CopyTo(x, (rows - 1) * inFeatures);
        var weights = TestValues.Ordinary(outFeatures * inFeatures, seed: outFeatures, spread: 4);
        for (int n = 1; n < outFeatures - 1; n += 8)
            TestValues.WithEdges(inFeatures, seed: outFeatures + n, nonFinite: false).CopyTo(weights, n * inFeatures);
        if (type != StorageType.F16)
            TestValues.WithEdges(inFeatures, seed: outFeatures + 1, nonFinite: true).CopyTo(weights, (outFeatures - 1) * inFeatures);
        weights = TestValues.FiniteForStorage(weights, type);
        var stored = TestValues.Stored(weights, type);
        var bias = TestValues.Random(outFeatures, seed: 7);

        foreach (bool hasBias in new[] { false, true })
        {
            var expected = new float[rows * outFeatures];
            Linear.Reference(x, new HostStorage(stored, type), bias, hasBias, expected, shape);

            var xs = backend.Upload(x, "x");
            var w = backend.Allocate(type, weights.Length, "w");
            backend.Upload(w, stored);
            var b = hasBias ? backend.Upload(bias, "bias") : null;
            var y = backend.Allocate(TensorType.F32, rows * outFeatures, "y");
            backend.Linear(xs, w, b, y, shape);
            Bits.Equal(expected, backend.DownloadFloats(y), $"{backend.Name} {type.Name()} {shape} bias={hasBias}");
            foreach (var t in new[] { xs, w, y })
                backend.Free(t);
            if (b != null)
                backend.Free(b);
        }
    }

    public static IEnumerable<object[]> DecodeCases() =>
        from backend in TestBackends.All
        from largest in new[] { 65535.99f, 65536f, float.NaN }
        select new object[] { backend[0], largest };

    /// <summary>
    /// One-row f16 decode multiplies x by 2^112 instead of every weight when that is exact (|x|
    /// below 2^16, no NaN) and falls back otherwise; both must give the reference's bits, for
    /// subnormal, signed-zero and near-limit x and for subnormal and largest f16 weights.
    /// </summary>
    [Theory]
    [MemberData(nameof(DecodeCases))]
    public void F16_decode_matches_the_reference_on_both_sides_of_the_scaled_path(string backendName, float largest)
    {
        var backend = TestBackends.Get(backendName);
        var shape = new LinearShape(1, 70, 300);
        float[] xEdges = [1e-40f, -3e-42f, 0f, -0f, 1e-30f, -65504f, 65000f, largest];
        var x = TestValues.Random(shape.InFeatures, seed: 3, scale: 3f);
        for (int i = 0; i < xEdges.Length; i++)
            x[i * 37] = xEdges[i];
        float[] weightEdges = [6e-8f, -3e-5f, 65504f, -65504f, 0f, -0f, 6.1e-5f];
        var weights = TestValues.Random(shape.OutFeatures * shape.InFeatures, seed: 4, scale: 2f);
        for (int i = 0; i < weights.Length; i += 11)
            weights[i] = weightEdges[i % weightEdges.Length];
        var stored = TestValues.Stored(weights, StorageType.F16);

        var expected = new float[shape.OutFeatures];
        Linear.Reference(x, new HostStorage(stored, StorageType.F16), [], false, expected, shape);
        var xs = backend.Upload(x, "x");
        var w = backend.Allocate(TensorType.F16, weights.Length, "w");
        backend.Upload(w, stored);
        var y = backend.Allocate(TensorType.F32, shape.OutFeatures, "y");
        backend.Linear(xs, w, null, y, shape);
        Bits.Equal(expected, backend.DownloadFloats(y), $"{backend.Name} largest |x| {largest}");
        if (!float.IsNaN(largest))
            Assert.All(expected, value => Assert.True(float.IsFinite(value)));
        foreach (var t in new[] { xs, w, y })
            backend.Free(t);
    }

    public static IEnumerable<object[]> FusedCases() =>
        from backend in TestBackends.All
        from types in new[] { "f32", "f16", "bf16", "f16,bf16,f32" }
        from rows in new[] { 1, 3, 17 }
        select new object[] { backend[0], types, rows };

    /// <summary>
    /// Projections of one x fused into one call (a block's q, k, v: the first with a bias; gate
    /// and up) give each part the reference's bits, whichever chunk of the joined range an output
    /// falls in: part sizes that are not multiples of the 8-row dots (17, 3, 70) put the joins
    /// inside chunks; rows 1 and 3 stream, 17 tiles. Four parts are more than the SIMD backend
    /// fuses and run one by one.
    /// </summary>
    [Theory]
    [MemberData(nameof(FusedCases))]
    public void Fused_projections_match_the_reference_bit_for_bit(string backendName, string types, int rows)
    {
        var backend = TestBackends.Get(backendName);
        var typeList = types.Split(',').Select(StorageTypes.Parse).ToArray();
        foreach (int[] outs in new[] { new[] { 17, 3, 70 }, new[] { 24, 8 }, new[] { 5, 9, 2, 11 } })
        {
            const int inFeatures = 100;
            var x = TestValues.WithEdges(rows * inFeatures, seed: rows + outs.Length, nonFinite: false);
            var xs = backend.Upload(x, "x");
            var targets = new LinearTarget[outs.Length];
            var expected = new float[outs.Length][];
            var made = new List<Tensor> { xs };
            for (int p = 0; p < outs.Length; p++)
            {
                var type = typeList[p % typeList.Length];
                var shape = new LinearShape(rows, outs[p], inFeatures);
                var weights = TestValues.FiniteForStorage(TestValues.WithEdges(outs[p] * inFeatures, seed: 40 + p, nonFinite: false), type);
                var stored = TestValues.Stored(weights, type);
                var bias = TestValues.Random(outs[p], seed: 50 + p);
                bool hasBias = p == 0;
                expected[p] = new float[rows * outs[p]];
                Linear.Reference(x, new HostStorage(stored, type), bias, hasBias, expected[p], shape);
                var w = backend.Allocate(type, weights.Length, $"w{p}");
                backend.Upload(w, stored);
                var b = hasBias ? backend.Upload(bias, $"bias{p}") : null;
                var y = backend.Allocate(TensorType.F32, rows * outs[p], $"y{p}");
                targets[p] = new LinearTarget(w, b, y, outs[p]);
                made.AddRange(b is null ? [w, y] : [w, b, y]);
            }
            backend.Linears(xs, targets, rows, inFeatures);
            for (int p = 0; p < outs.Length; p++)
                Bits.Equal(expected[p], backend.DownloadFloats(targets[p].Y), $"{backend.Name} {types} rows {rows} parts {string.Join(",", outs)}: part {p}");
            foreach (var t in made)
                backend.Free(t);
        }
    }

    /// <summary>On the SIMD backend streaming projections fuse into one parallel call; tiled ones (prefill) run one by one.</summary>
    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 1)]
    [InlineData(16, 3)]
    public void The_simd_backend_streams_fused_projections_in_one_parallel_call(int rows, int expectedLaunches)
    {
        using var backend = new SimdBackend(2, SimdLevel.Avx512);
        const int inFeatures = 64;
        var x = backend.Upload(TestValues.Random(rows * inFeatures, seed: 1), "x");
        var targets = new[] { 64, 16, 16 }.Select((outs, p) => new LinearTarget(
            backend.Upload(TestValues.Random(outs * inFeatures, seed: 2 + p), $"w{p}"), null,
            backend.Allocate(TensorType.F32, rows * outs, $"y{p}"), outs)).ToArray();
        var before = backend.Counters.Snapshot();
        backend.Linears(x, targets, rows, inFeatures);
        long launches = (backend.Counters.Snapshot() - before).Launches;
        // Below AVX-512 nothing tiles, so 16 rows stream too.
        Assert.Equal(SimdLevels.Best == SimdLevel.Avx512 ? expectedLaunches : 1, launches);
    }

    [Fact]
    public void Fused_projections_reject_a_mismatched_output_naming_it()
    {
        var backend = TestBackends.Get("simd-scalar-t2");
        var x = backend.Upload(new float[6], "x");
        var w = backend.Upload(new float[6], "w");
        var y = backend.Allocate(TensorType.F32, 4, "y");
        var y2 = backend.Allocate(TensorType.F32, 5, "y2");
        var error = Assert.Throws<ArgumentException>(() => backend.Linears(x, [new(w, null, y, 2), new(w, null, y2, 2)], 2, 3));
        Assert.Contains("linear: y holds 5 values; expected 4 (rows 2 × out features 2)", error.Message);
        Assert.Contains("fused projection 1: weight w, y y2", error.Message);
        foreach (var t in new[] { x, w, y, y2 })
            backend.Free(t);
    }

    [Fact]
    public void Rejects_mismatched_shapes_with_a_message_naming_the_tensor()
    {
        var backend = TestBackends.Get("ilgpu-cpu");
        var x = backend.Upload(new float[6], "x");
        var w = backend.Upload(new float[6], "w");
        var y = backend.Allocate(TensorType.F32, 5, "y");
        var error = Assert.Throws<ArgumentException>(() => backend.Linear(x, w, null, y, new LinearShape(2, 2, 3)));
        Assert.Contains("linear: y holds 5 values; expected 4 (rows 2 × out features 2)", error.Message);
        error = Assert.Throws<ArgumentException>(() => backend.Linear(x, w, null, y, new LinearShape(2, 3, 3)));
        Assert.Contains("linear: weight holds 6 values; expected 9", error.Message);
    }
}
