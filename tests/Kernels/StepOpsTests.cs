using IlgpuLlm.Kernels;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Kernels;

/// <summary>
/// The ops a step runs on device data only: the non-finite flags of logits rows, the sampler's
/// skipped rows and drawable limit, and flags raised to the largest mark whatever the order. Every
/// backend against the reference.
/// </summary>
[Collection(BackendCollection.Name)]
public class StepOpsTests
{
    public static IEnumerable<object[]> Backends() => TestBackends.All;

    [Theory]
    [MemberData(nameof(Backends))]
    public void Non_finite_rows_are_flagged_with_the_largest_mark(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        foreach (int width in new[] { 1, 17, 33, 1000 })
        {
            const int rows = 5;
            var values = TestValues.Random(rows * width, seed: width);
            values[1 * width + width / 2] = float.NaN;
            values[3 * width] = float.PositiveInfinity;
            values[3 * width + width - 1] = float.NegativeInfinity;
            int[] before = [0, 2, 7, 0, 0];
            var expected = (int[])before.Clone();
            FiniteCheck.RowsReference(values, rows, width, expected, 4);
            Assert.Equal([0, 4, 7, 4, 0], expected);

            var x = backend.Upload(values, "logits");
            var flags = backend.UploadInts(before, "flags");
            backend.FlagNonFinite(x, rows, width, new ProblemFlags(flags, 4));
            Assert.Equal(expected, backend.DownloadInts(flags));
            backend.Free(x);
            backend.Free(flags);
        }
    }

    /// <summary>
    /// A drawable limit d draws what −inf logits from d up would: greedy, temperature, top-k (below
    /// and above d), top-p, min-p and penalties on ids past d, with ties and masked entries below d.
    /// </summary>
    [Theory]
    [MemberData(nameof(Backends))]
    public void A_drawable_limit_draws_as_minus_infinity_past_it_would(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        foreach (int vocabulary in new[] { 40, 300 })
        {
            int drawable = vocabulary * 2 / 3 + 1;
            var penalized = new[] { 1, 5, drawable - 1, drawable, vocabulary - 1 };
            SamplingRow[] rows =
            [
                SamplingRow.Greedy(0, 0),
                new(1f, 0, 1f, 0f, 1f, 7, 1, 3, 0, 0),
                new(0.7f, 3, 1f, 0f, 1f, 8, 2, 4, 0, 0),
                new(1f, drawable + 5, 1f, 0f, 1f, 9, 3, 5, 0, 0),
                new(1.2f, 0, 0.6f, 0f, 1f, 10, 4, 6, 0, 0),
                new(1f, 0, 1f, 0.1f, 1f, 11, 5, 7, 0, 0),
                new(0.9f, 4, 0.8f, 0.02f, 1.4f, 12, 6, 8, 0, penalized.Length),
                new(0f, 0, 1f, 0f, 1.4f, 13, 7, 9, 0, penalized.Length),
            ];
            var logits = TestValues.Random(rows.Length * vocabulary, seed: vocabulary, scale: 4f);
            for (int i = 0; i < logits.Length; i += 7)
                logits[i] = i % 3 == 0 ? float.NegativeInfinity : MathF.Round(logits[i]);
            var masked = (float[])logits.Clone();
            for (int r = 0; r < rows.Length; r++)
                masked.AsSpan(r * vocabulary + drawable, vocabulary - drawable).Fill(float.NegativeInfinity);

            var limited = rows.Select(r => r with { DrawableTokens = drawable }).ToArray();
            var expected = new int[rows.Length];
            Sampling.Reference(masked, vocabulary, rows, penalized, expected);
            var reference = new int[rows.Length];
            Sampling.Reference(logits, vocabulary, limited, penalized, reference);
            Assert.Equal(expected, reference);
            Assert.All(reference, token => Assert.InRange(token, 0, drawable - 1));

            var tensor = backend.Upload(logits, "logits");
            var actual = new int[rows.Length];
            backend.Sample(tensor, vocabulary, limited, penalized, actual);
            Assert.Equal(expected, actual);
            backend.Free(tensor);
        }
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void Skipped_rows_are_not_drawn_and_the_others_draw_as_alone(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        const int vocabulary = 33;
        SamplingRow[] rows = [new(1f, 0, 0.9f, 0f, 1f, 5, 0, 1, 0, 0), SamplingRow.Greedy(1, 0), new(0.5f, 2, 1f, 0f, 1f, 6, 2, 3, 0, 0)];
        var logits = TestValues.Random(rows.Length * vocabulary, seed: 3, scale: 3f);
        logits[vocabulary + 4] = float.NaN;
        var expected = new int[rows.Length];
        Sampling.Reference(logits, vocabulary, rows, [], expected);

        var packed = new int[rows.Length * Sampling.ParameterInts];
        Sampling.PackParameters(rows, packed);
        var tensor = backend.Upload(logits, "logits");
        var parameters = backend.UploadInts(packed, "parameters");
        var penalized = backend.UploadInts([], "penalized");
        var tokens = backend.Allocate(TensorType.I32, rows.Length, "tokens");
        var skip = backend.Allocate(TensorType.I32, rows.Length, "non-finite rows");
        backend.FlagNonFinite(tensor, rows.Length, vocabulary, new ProblemFlags(skip, 1));
        backend.Sample(tensor, parameters, penalized, tokens, new SamplingShape(rows.Length, vocabulary), skip);
        Assert.Equal([0, 1, 0], backend.DownloadInts(skip));
        Assert.Equal([expected[0], -1, expected[2]], backend.DownloadInts(tokens));
        foreach (var t in new[] { tensor, parameters, penalized, tokens, skip })
            backend.Free(t);
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void Scatter_and_attention_flags_keep_the_largest_mark(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        // Two f16 stores of the same rows: an overflow marked 2, then one marked 5, then a finite one marked 9.
        var shape = new ScatterShape(2, 4, 3);
        var cache = backend.Allocate(TensorType.F16, 12, "cache");
        var indices = backend.UploadInts([2, 0], "row indices");
        var flags = backend.Allocate(TensorType.I32, 2, "overflow flags");
        var overflowing = backend.Upload([1f, 2f, 3f, 4f, 1e6f, 0f, 0f, 0f], "source");
        var finite = backend.Upload([1f, 2f, 3f, 4f, 5f, 6f, 7f, 8f], "source");
        backend.ScatterRows(overflowing, cache, indices, shape, new ProblemFlags(flags, 2));
        backend.ScatterRows(overflowing, cache, indices, shape, new ProblemFlags(flags, 5));
        backend.ScatterRows(finite, cache, indices, shape, new ProblemFlags(flags, 9));
        Assert.Equal([0, 5], backend.DownloadInts(flags));

        // Attention: a row with no keys is fully masked in every head.
        var attention = new AttentionShape(2, 2, 1, 4, 1, 3, 0.5f, 0f);
        var keys = backend.Allocate(TensorType.F32, 12, "keys");
        var q = backend.Upload(TestValues.Random(16, seed: 1), "q");
        var output = backend.Allocate(TensorType.F32, 16, "output");
        var ranges = backend.UploadInts([0, 0, 2, 0, 1, 1], "key ranges");
        var masked = backend.UploadInts([3, 0, 3, 0], "fully masked");
        backend.Attention(q, keys, keys, output, ranges, attention with { MaxKeys = 2 }, null, new ProblemFlags(masked, 2));
        Assert.Equal([3, 0, 3, 2], backend.DownloadInts(masked));
        foreach (var t in new[] { cache, indices, flags, overflowing, finite, keys, q, output, ranges, masked })
            backend.Free(t);
    }
}
