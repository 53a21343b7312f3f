using IlgpuLlm.Kernels;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Kernels;

[Collection(BackendCollection.Name)]
public class SoftmaxTests
{
    /// <summary>
    /// Widths around the 32 canonical lanes (one term per lane, whole blocks with no tail, a tail)
    /// and the vector widths, several blocks, and a real vocabulary (Llama 3's 128256, a whole
    /// number of blocks) where each lane sums thousands of terms; every row kind of
    /// <see cref="Logits"/> in each (the real vocabulary: the ordinary kinds).
    /// </summary>
    static readonly (int Width, int Rows)[] Shapes =
        [(1, 1), (3, 9), (17, 9), (31, 9), (32, 9), (33, 9), (64, 9), (127, 9), (512, 9), (1000, 9), (128256, 3)];

    public static IEnumerable<object[]> Cases() =>
        from backend in TestBackends.All
        from shape in Shapes
        select new[] { backend[0], shape.Width, shape.Rows };

    /// <summary>
    /// Row r is of kind r. The first three are ordinary logits whose weights exp(x − m) spread over
    /// many binades, so the sum Z rounds differently in any other order: finite values with some
    /// −inf, values of a typical logit range, and a wide range with whole vectors far below the
    /// maximum (weights that underflow to zero). Then a row of only −inf, edge values (NaN, ±inf,
    /// ±huge, subnormals), huge magnitudes that overflow when divided by a small temperature, tiny
    /// ones, values tied in blocks, and −inf everywhere but one NaN (the maximum is NaN, so every
    /// probability is; a maximum that dropped NaN would take the row for fully masked and give zeros).
    /// </summary>
    static float[] Logits(int rows, int width)
    {
        var values = new float[rows * width];
        for (int r = 0; r < rows; r++)
        {
            var row = values.AsSpan(r * width, width);
            var random = TestValues.Random(width, seed: r * 131 + width, scale: 8f);
            switch (r)
            {
                case 0:
                    for (int i = 0; i < width; i++)
                        row[i] = i % 5 == 2 ? float.NegativeInfinity : random[i];
                    break;
                case 1:
                    TestValues.Ordinary(width, seed: width + 1, spread: 3).CopyTo(row);
                    break;
                case 2:
                    for (int i = 0; i < width; i++)
                        row[i] = i / 16 % 3 == 1 ? random[i] - 200f : random[i] * 6f;
                    break;
                case 3:
                    row.Fill(float.NegativeInfinity);
                    break;
                case 4:
                    TestValues.WithEdges(width, seed: width, nonFinite: true).CopyTo(row);
                    break;
                case 5:
                    for (int i = 0; i < width; i++)
                        row[i] = random[i] * 4e37f;
                    break;
                case 6:
                    for (int i = 0; i < width; i++)
                        row[i] = random[i] * 1e-39f;
                    break;
                case 7:
                    for (int i = 0; i < width; i++)
                        row[i] = MathF.Round(random[i] / 4f);
                    break;
                default:
                    row.Fill(float.NegativeInfinity);
                    row[width / 2] = float.NaN;
                    break;
            }
        }
        return values;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Matches_the_reference_bit_for_bit(string backendName, int width, int rows)
    {
        var backend = TestBackends.Get(backendName);
        var shape = new SoftmaxShape(rows, width);
        var logits = Logits(rows, width);
        var input = backend.Upload(logits, "logits");
        var output = backend.Allocate(TensorType.F32, logits.Length, "probabilities");
        foreach (float temperature in new[] { 0.1f, 1f, 2.5f })
        {
            var expected = new float[logits.Length];
            Softmax.Reference(logits, expected, shape, temperature);
            backend.Softmax(input, output, shape, temperature);
            Bits.Equal(expected, backend.DownloadFloats(output), $"{backend.Name} {shape} T={temperature}");
        }
        Bits.Equal(logits, backend.DownloadFloats(input), $"{backend.Name} {shape}: the logits are left alone");
        backend.Free(input);
        backend.Free(output);
    }

    [Fact]
    public void Exp_at_its_lower_clamp_is_positive_zero()
    {
        // The SIMD twins skip exp for arguments at or below the clamp (−inf after top-k) and write +0.
        Assert.Equal(0u, BitConverter.SingleToUInt32Bits(CanonicalMath.Exp(-104f)));
        Assert.Equal(0u, BitConverter.SingleToUInt32Bits(CanonicalMath.Exp(float.NegativeInfinity)));
        Assert.True(CanonicalMath.Exp(-103f) > 0f);
    }

    [Fact]
    public void A_row_of_only_minus_infinity_gives_zeros_and_finite_rows_sum_to_about_one()
    {
        var probabilities = new float[6];
        Softmax.Reference([float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity, 1f, 2f, float.NegativeInfinity],
            probabilities, new SoftmaxShape(2, 3), 1f);
        Assert.Equal([0f, 0f, 0f], probabilities[..3]);
        Assert.Equal(1f, probabilities[3] + probabilities[4], 6);
        Assert.Equal(0f, probabilities[5]);
        Assert.True(probabilities[4] > probabilities[3]);
    }

    [Theory]
    [MemberData(nameof(TestBackends.All), MemberType = typeof(TestBackends))]
    public void Rejects_bad_temperatures_and_shapes(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        var logits = backend.Upload(new float[6], "logits");
        var output = backend.Allocate(TensorType.F32, 6, "probabilities");
        foreach (float temperature in new[] { 0f, -1f, float.NaN, float.PositiveInfinity })
        {
            var error = Assert.Throws<ArgumentException>(() => backend.Softmax(logits, output, new SoftmaxShape(2, 3), temperature));
            Assert.Contains($"softmax: temperature {temperature}", error.Message);
        }
        var shapeError = Assert.Throws<ArgumentException>(() => backend.Softmax(logits, output, new SoftmaxShape(2, 4), 1f));
        Assert.Contains("softmax: logits holds 6 values; expected 8 (rows 2 × width 4)", shapeError.Message);
        shapeError = Assert.Throws<ArgumentException>(() => backend.Softmax(logits, output, new SoftmaxShape(0, 4), 1f));
        Assert.Contains("softmax: rows is 0", shapeError.Message);
        backend.Free(logits);
        backend.Free(output);
    }
}
