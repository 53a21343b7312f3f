using IlgpuLlm.Kernels;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Kernels;

[Collection(BackendCollection.Name)]
public class RotaryTests
{
    public static IEnumerable<object[]> Cases()
    {
        // head_dim/2 pairs: 1, 3, 17, 33, 127, 8, 64, 128, 9 — around the 16- and 8-pair vector
        // steps of rotate_half and the 8- and 4-pair steps of interleaved pairs.
        (int rows, int heads, int headDim)[] shapes =
            [(1, 1, 2), (3, 2, 6), (2, 3, 34), (1, 2, 66), (2, 1, 254), (3, 4, 16), (1, 3, 128), (2, 2, 256), (3, 1, 18)];
        foreach (var backend in TestBackends.All)
            foreach (var layout in Enum.GetValues<RotaryLayout>())
                foreach (var (rows, heads, headDim) in shapes)
                    yield return [backend[0], layout, rows, heads, headDim];
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Matches_the_reference_bit_for_bit(string backendName, RotaryLayout layout, int rows, int heads, int headDim)
    {
        var backend = TestBackends.Get(backendName);
        var shape = new RotaryShape(rows, heads, headDim, layout);
        var x = TestValues.WithEdges(rows * heads * headDim, seed: rows * 1000 + heads * 10 + headDim, nonFinite: true);
        int[] positions = [.. new[] { 0, 1, 131071, 5, 4097, 77 }.Take(rows)];
        var angles = new float[rows * headDim];
        new RotaryTable(headDim, 10000.0).Fill(positions, angles);
        // A few table entries at edge values, so products round into subnormals and signed zeros.
        for (int i = 2; i < angles.Length; i += 11)
            angles[i] = (i % 3) switch { 0 => -0f, 1 => 1e-40f, _ => -1f };

        var expected = x.ToArray();
        Rotary.Reference(expected, angles, shape);
        var xs = backend.Upload(x, "x");
        var table = backend.Upload(angles, "angles");
        backend.Rotary(xs, table, shape);
        Bits.Equal(expected, backend.DownloadFloats(xs), $"{backend.Name} {shape}");
        backend.Free(xs);
        backend.Free(table);
    }

    [Fact]
    public void Reference_rotates_the_pairs_each_layout_names()
    {
        // One head of 4: pairs (0, 2), (1, 3) for rotate_half; (0, 1), (2, 3) interleaved.
        // Angle π/2 for pair 0 (cos 0, sin 1) and 0 for pair 1.
        float[] angles = [0f, 1f, 1f, 0f];
        float[] half = [1f, 2f, 3f, 4f];
        Rotary.Reference(half, angles, new RotaryShape(1, 1, 4, RotaryLayout.HalfSplit));
        Assert.Equal([-3f, 2f, 1f, 4f], half);
        float[] interleaved = [1f, 2f, 3f, 4f];
        Rotary.Reference(interleaved, angles, new RotaryShape(1, 1, 4, RotaryLayout.Interleaved));
        Assert.Equal([-2f, 1f, 3f, 4f], interleaved);
    }

    [Theory]
    [MemberData(nameof(TestBackends.All), MemberType = typeof(TestBackends))]
    public void Rejects_odd_head_dim_and_mismatched_lengths(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        var x = backend.Upload(new float[2 * 3 * 6], "x");
        var angles = backend.Upload(new float[2 * 6], "angles");
        var error = Assert.Throws<ArgumentException>(() => backend.Rotary(x, angles, new RotaryShape(2, 6, 3, RotaryLayout.HalfSplit)));
        Assert.Contains("rotary: head_dim 3 must be even", error.Message);
        error = Assert.Throws<ArgumentException>(() => backend.Rotary(x, angles, new RotaryShape(2, 2, 6, RotaryLayout.HalfSplit)));
        Assert.Contains("rotary: x holds 36 values; expected 24", error.Message);
        error = Assert.Throws<ArgumentException>(() => backend.Rotary(x, angles, new RotaryShape(3, 2, 6, RotaryLayout.Interleaved)));
        Assert.Contains("rotary: angles holds 12 values; expected 18", error.Message);
        backend.Free(x);
        backend.Free(angles);
    }
}

/// <summary>The host-side angle tables: frequencies, scaling schemes and per-position (cos, sin).</summary>
public class RotaryTableTests
{
    static double Plain(double theta, int headDim, int pair) => 1.0 / Math.Pow(theta, 2.0 * pair / headDim);

    static void CloseRelative(double expected, double actual, double tolerance, string context) =>
        Assert.True(Math.Abs(actual - expected) <= tolerance * Math.Abs(expected), $"{context}: {actual:R}, expected {expected:R}");

    [Theory]
    [InlineData(128, 500000.0)]
    [InlineData(64, 10000.0)]
    [InlineData(256, 1000000.0)]
    [InlineData(2, 10000.0)]
    public void Plain_frequencies_are_theta_to_the_minus_two_i_over_d(int headDim, double theta)
    {
        var table = new RotaryTable(headDim, theta);
        Assert.Equal(headDim / 2, table.InverseFrequencies.Length);
        for (int i = 0; i < headDim / 2; i++)
            CloseRelative(Plain(theta, headDim, i), table.InverseFrequencies[i], 1e-15, $"pair {i}");
        Assert.Equal(1.0, table.InverseFrequencies[0]);
    }

    /// <summary>transformers' _compute_llama3_parameters, in double precision, written out independently.</summary>
    static double[] TransformersLlama3(int headDim, double theta, double factor, double lowFrequencyFactor,
        double highFrequencyFactor, double originalContext)
    {
        double lowFrequencyWavelength = originalContext / lowFrequencyFactor;
        double highFrequencyWavelength = originalContext / highFrequencyFactor;
        var result = new double[headDim / 2];
        for (int i = 0; i < result.Length; i++)
        {
            double inverse = Plain(theta, headDim, i);
            double wavelength = 2 * Math.PI / inverse;
            // inv_freq_llama = where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
            double llama = wavelength > lowFrequencyWavelength ? inverse / factor : inverse;
            double smooth = (originalContext / wavelength - lowFrequencyFactor) / (highFrequencyFactor - lowFrequencyFactor);
            double smoothed = (1 - smooth) * llama / factor + smooth * llama;
            bool medium = !(wavelength < highFrequencyWavelength) && !(wavelength > lowFrequencyWavelength);
            result[i] = medium ? smoothed : llama;
        }
        return result;
    }

    [Fact]
    public void Llama3_scaling_matches_transformers_for_the_test_model()
    {
        // ../shared/models/families/main/llama3/hf/config.json: head_dim 16, rope_theta 500000,
        // rope_scaling llama3, factor 8, low 1, high 4, original_max_position_embeddings 64 — which
        // puts pair 0 above the high-frequency cut, pair 1 in the smooth blend, pairs 2–7 below the
        // low-frequency cut.
        var table = new RotaryTable(16, 500000.0, new RotaryScaling.Llama3(8.0, 1.0, 4.0, 64));
        var expected = TransformersLlama3(16, 500000.0, 8.0, 1.0, 4.0, 64);
        for (int i = 0; i < 8; i++)
            CloseRelative(expected[i], table.InverseFrequencies[i], 1e-15, $"pair {i}");
        Assert.Equal(Plain(500000.0, 16, 0), table.InverseFrequencies[0]);
        for (int i = 2; i < 8; i++)
            CloseRelative(Plain(500000.0, 16, i) / 8, table.InverseFrequencies[i], 1e-15, $"pair {i}");
        double blend = table.InverseFrequencies[1] / Plain(500000.0, 16, 1);
        Assert.InRange(blend, 1.0 / 8, 1.0);
        Assert.NotEqual(1.0, blend);
    }

    [Fact]
    public void Llama3_scaling_matches_transformers_for_llama_3_1()
    {
        // Llama 3.1 8B: head_dim 128, θ 500000, factor 8, low 1, high 4, original context 8192.
        var table = new RotaryTable(128, 500000.0, new RotaryScaling.Llama3(8.0, 1.0, 4.0, 8192));
        var expected = TransformersLlama3(128, 500000.0, 8.0, 1.0, 4.0, 8192);
        for (int i = 0; i < 64; i++)
            CloseRelative(expected[i], table.InverseFrequencies[i], 1e-15, $"pair {i}");
    }

    [Fact]
    public void Llama_cpp_rope_freqs_divide_the_frequencies_like_the_llama3_scaling()
    {
        // llama.cpp rotates by θ_i / freq_factor[i] (ggml rope: rope_yarn(theta_base / freq_factor, …)),
        // with rope_freqs.weight = 1 / ((1 − smooth)/factor + smooth) per pair. These are the f32
        // factors stored in ../shared/models/families/main/llama3/model.gguf.
        float[] ropeFreqs = [1f, 2.4422593116760254f, 8f, 8f, 8f, 8f, 8f, 8f];
        var fromFactors = new RotaryTable(16, 500000.0, new RotaryScaling.PerPairDivisors([.. ropeFreqs.Select(f => (double)f)]));
        var llama3 = new RotaryTable(16, 500000.0, new RotaryScaling.Llama3(8.0, 1.0, 4.0, 64));
        for (int i = 0; i < 8; i++)
            CloseRelative(llama3.InverseFrequencies[i], fromFactors.InverseFrequencies[i], 1e-6, $"pair {i}");
    }

    [Fact]
    public void Linear_scaling_divides_every_frequency_by_the_factor()
    {
        // Gemma 3: global layers θ = 1 000 000 with linear factor 8; local layers θ = 10 000 unscaled.
        var global = new RotaryTable(256, 1000000.0, new RotaryScaling.Linear(8.0));
        var local = new RotaryTable(256, 10000.0);
        for (int i = 0; i < 128; i++)
        {
            CloseRelative(Plain(1000000.0, 256, i) / 8, global.InverseFrequencies[i], 1e-15, $"global pair {i}");
            CloseRelative(Plain(10000.0, 256, i), local.InverseFrequencies[i], 1e-15, $"local pair {i}");
        }
        var globalAngles = new float[256];
        var localAngles = new float[256];
        global.Fill([1000], globalAngles);
        local.Fill([1000], localAngles);
        Assert.NotEqual(globalAngles, localAngles);
        // Position p with factor 8 is position p / 8 unscaled.
        var unscaled = new RotaryTable(256, 1000000.0);
        var eighth = new float[256];
        unscaled.Fill([125], eighth);
        for (int i = 0; i < 256; i++)
            Assert.True(Math.Abs(globalAngles[i] - eighth[i]) <= 1e-6f, $"element {i}: {globalAngles[i]} vs {eighth[i]}");
    }

    /// <summary>θ^(−2i/d) as exp(−(2i/d)·ln θ): another double-precision route to the same frequency.</summary>
    static double ClosedForm(double theta, int headDim, int pair) => Math.Exp(-(2.0 * pair / headDim) * Math.Log(theta));

    /// <summary>Whether <paramref name="actual"/> is the binary32 value nearest to <paramref name="exact"/> (rounded once).</summary>
    static bool NearestFloat(double exact, float actual) =>
        Math.Abs(actual - exact) <= Math.Abs(MathF.BitIncrement(actual) - exact) &&
        Math.Abs(actual - exact) <= Math.Abs(MathF.BitDecrement(actual) - exact);

    public static IEnumerable<object[]> Tables() =>
    [
        ["plain θ 10000, head_dim 64", 64, 10000.0, "none"],
        ["Llama 3.1 scaling, θ 500000, head_dim 128", 128, 500000.0, "llama3"],
        ["Gemma 3 global: linear factor 8, θ 1e6, head_dim 256", 256, 1000000.0, "linear"],
        ["Qwen2: θ 1e6, head_dim 16", 16, 1000000.0, "none"],
    ];

    /// <summary>
    /// The table holds cos and sin of the exact angle position × frequency, each rounded once to
    /// binary32, computed here by another route (the frequencies through exp and log, transformers'
    /// Llama 3 rule written out independently): an angle multiplied in f32, a frequency rounded
    /// to f32 first, or cos and sin taken in f32 miss the nearest float at the long positions.
    /// </summary>
    [Theory]
    [MemberData(nameof(Tables))]
    public void Fill_writes_cos_and_sin_of_the_exact_angle_rounded_once(string name, int headDim, double theta, string scaling)
    {
        var table = new RotaryTable(headDim, theta, scaling switch
        {
            "llama3" => new RotaryScaling.Llama3(8.0, 1.0, 4.0, 8192),
            "linear" => new RotaryScaling.Linear(8.0),
            _ => null,
        });
        var llama3 = TransformersLlama3(headDim, theta, 8.0, 1.0, 4.0, 8192);
        int[] positions = [0, 1, 2, 7, 100, 4095, 8191, 32767, 131071];
        int pairs = headDim / 2;
        var angles = new float[positions.Length * headDim];
        table.Fill(positions, angles);
        for (int r = 0; r < positions.Length; r++)
            for (int i = 0; i < pairs; i++)
            {
                double frequency = scaling switch
                {
                    "llama3" => llama3[i],
                    "linear" => ClosedForm(theta, headDim, i) / 8.0,
                    _ => ClosedForm(theta, headDim, i),
                };
                double angle = positions[r] * frequency;
                float cos = angles[(r * pairs + i) * 2], sin = angles[(r * pairs + i) * 2 + 1];
                Assert.True(NearestFloat(Math.Cos(angle), cos), $"{name}, position {positions[r]}, pair {i}: cos {cos:R}, exact {Math.Cos(angle):R}");
                Assert.True(NearestFloat(Math.Sin(angle), sin), $"{name}, position {positions[r]}, pair {i}: sin {sin:R}, exact {Math.Sin(angle):R}");
            }
        // Position 0 is the identity rotation.
        for (int i = 0; i < pairs; i++)
        {
            Assert.Equal(1f, angles[2 * i]);
            Assert.Equal(0f, angles[2 * i + 1]);
        }
    }

    [Fact]
    public void Rejects_odd_head_dim_bad_theta_negative_positions_and_wrong_lengths()
    {
        Assert.Contains("head_dim 7 must be even", Assert.Throws<ArgumentException>(() => new RotaryTable(7, 10000.0)).Message);
        Assert.Contains("base θ 0", Assert.Throws<ArgumentException>(() => new RotaryTable(8, 0.0)).Message);
        Assert.Contains("base θ NaN", Assert.Throws<ArgumentException>(() => new RotaryTable(8, double.NaN)).Message);
        var table = new RotaryTable(8, 10000.0);
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => table.Fill([0, 3, -2], new float[24]));
        Assert.Contains("position -2 at row 2 is negative", error.Message);
        var lengths = Assert.Throws<ArgumentException>(() => table.Fill([0, 1], new float[8]));
        Assert.Contains("rotary table: angles holds 8 values; expected 16", lengths.Message);
    }
}
