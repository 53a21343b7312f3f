using IlgpuLlm.Kernels;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Kernels;

/// <summary>
/// The scalar references against docs/NUMERICS.md written out again, in plain C# float arithmetic:
/// every other test compares a backend with a reference, so a change to code every evaluation
/// shares (the canonical order, RMSNorm's inverse, softmax's steps) would move them all together
/// and pass. Here the order and the roundings come from the contract's text alone.
/// </summary>
public class ContractTests
{
    /// <summary>§4: 32 lanes, lane j folding terms j, j+32, … (untouched when it gets none), then lane j ⊕= lane j+h for h = 16, 8, 4, 2, 1.</summary>
    static float Spec(int n, float start, Func<float, int, float> fold, Func<float, float, float> combine)
    {
        var lanes = new float[32];
        for (int j = 0; j < 32; j++)
        {
            lanes[j] = start;
            for (int i = j; i < n; i += 32)
                lanes[j] = fold(lanes[j], i);
        }
        for (int width = 32; width > 1; width /= 2)
        {
            var next = new float[width / 2];
            for (int j = 0; j < width / 2; j++)
                next[j] = combine(lanes[j], lanes[j + width / 2]);
            lanes = next;
        }
        return lanes[0];
    }

    static float SpecSum(float[] t) => Spec(t.Length, 0f, (lane, i) => lane + t[i], (a, b) => a + b);

    static float SpecDot(float[] a, float[] b) => Spec(a.Length, 0f, (lane, i) => MathF.FusedMultiplyAdd(a[i], b[i], lane), (x, y) => x + y);

    /// <summary>§3: a if a &gt; b or a is NaN, else b.</summary>
    static float SpecMax(float a, float b) => a > b || float.IsNaN(a) ? a : b;

    static readonly int[] Lengths = [0, 1, 2, 17, 31, 32, 33, 64, 65, 100, 512, 1000, 4099];

    [Fact]
    public void The_canonical_sums_dots_and_maxima_follow_the_lanes_and_the_tree()
    {
        foreach (int n in Lengths)
        {
            var a = TestValues.Ordinary(n, seed: n);
            var b = TestValues.Ordinary(n, seed: n + 1);
            Bits.Equal([SpecSum(a)], [Canonical.Sum(a)], $"sum of {n}");
            Bits.Equal([SpecDot(a, b)], [Canonical.Dot(a, b)], $"dot of {n}");
            Bits.Equal([SpecDot(a, a)], [Canonical.SumOfSquares(a)], $"sum of squares of {n}");
            // −0 in some lanes only: a lane fed a zero term, or a tree of another shape, shows in the sign.
            var zeros = Enumerable.Range(0, n).Select(i => i % 3 == 0 ? -0f : 0f).ToArray();
            Bits.Equal([SpecSum(zeros)], [Canonical.Sum(zeros)], $"sum of {n} signed zeros");
            Bits.Equal([Spec(n, float.NegativeInfinity, (lane, i) => SpecMax(lane, a[i]), SpecMax)], [Canonical.Max(a)], $"max of {n}");
            var withNaN = a.Select((v, i) => i % 7 == 3 ? float.NaN : v).ToArray();
            Bits.Equal([Spec(n, float.NegativeInfinity, (lane, i) => SpecMax(lane, withNaN[i]), SpecMax)], [Canonical.Max(withNaN)], $"max of {n} with NaN");
        }
    }

    [Fact]
    public void RmsNorm_is_the_canonical_sum_of_squares_then_one_rounding_per_step()
    {
        foreach (int width in new[] { 1, 17, 32, 33, 64, 1000 })
            foreach (bool addOne in new[] { false, true })
            {
                var x = TestValues.Ordinary(2 * width, seed: width);
                var w = TestValues.Ordinary(width, seed: width + 5, spread: 2);
                const float epsilon = 1e-6f;
                var expected = new float[x.Length];
                for (int r = 0; r < 2; r++)
                {
                    var row = x.AsSpan(r * width, width).ToArray();
                    float mean = SpecDot(row, row) / width;
                    float inverse = 1f / MathF.Sqrt(mean + epsilon);
                    for (int i = 0; i < width; i++)
                        expected[r * width + i] = row[i] * inverse * (addOne ? 1f + w[i] : w[i]);
                }
                var actual = new float[x.Length];
                RmsNorm.Reference(x, HostStorage.Of(w), actual, new RmsNormShape(2, width, epsilon, addOne));
                Bits.Equal(expected, actual, $"width {width}, add one {addOne}");
            }
    }

    [Fact]
    public void Softmax_divides_by_the_temperature_subtracts_the_canonical_max_and_divides_by_the_canonical_sum()
    {
        foreach (int width in new[] { 1, 17, 32, 33, 64, 1000 })
            foreach (float temperature in new[] { 1f, 0.7f })
            {
                var logits = TestValues.Ordinary(width, seed: width, spread: 3);
                var scaled = logits.Select(v => v / temperature).ToArray();
                float max = Spec(width, float.NegativeInfinity, (lane, i) => SpecMax(lane, scaled[i]), SpecMax);
                var e = scaled.Select(v => CanonicalMath.Exp(v - max)).ToArray();
                float total = SpecSum(e);
                var actual = new float[width];
                Softmax.Reference(logits, actual, new SoftmaxShape(1, width), temperature);
                Bits.Equal(e.Select(v => v / total).ToArray(), actual, $"width {width}, T {temperature}");
            }
    }

    [Fact]
    public void Linear_is_the_canonical_dot_then_the_bias_added_once()
    {
        foreach (int k in new[] { 1, 31, 32, 33, 100, 512 })
        {
            const int rows = 3, outputs = 5;
            var x = TestValues.Ordinary(rows * k, seed: k);
            var w = TestValues.Ordinary(outputs * k, seed: k + 1);
            var bias = TestValues.Ordinary(outputs, seed: k + 2);
            var expected = new float[rows * outputs];
            for (int m = 0; m < rows; m++)
                for (int n = 0; n < outputs; n++)
                    expected[m * outputs + n] = SpecDot(x[(m * k)..((m + 1) * k)], w[(n * k)..((n + 1) * k)]) + bias[n];
            var actual = new float[rows * outputs];
            Linear.Reference(x, HostStorage.Of(w), bias, true, actual, new LinearShape(rows, outputs, k));
            Bits.Equal(expected, actual, $"k {k}");
        }
    }

    [Fact]
    public void Rotary_rounds_each_product_and_the_sum_once_on_the_pairs_each_layout_names()
    {
        // §5: (a, b) → (a·cos − b·sin, b·cos + a·sin); pairs (i, i + d/2) or (2i, 2i + 1). Ordinary
        // values over binades, where a fused multiply-add for either product would round differently.
        foreach (var layout in new[] { RotaryLayout.HalfSplit, RotaryLayout.Interleaved })
        {
            var shape = new RotaryShape(3, 2, 34, layout);
            var x = TestValues.Ordinary(shape.Rows * shape.Heads * shape.HeadDim, seed: 11);
            var angles = TestValues.Ordinary(shape.Rows * shape.HeadDim, seed: 12, spread: 1);
            var expected = (float[])x.Clone();
            int pairs = shape.HeadDim / 2;
            for (int r = 0; r < shape.Rows; r++)
                for (int h = 0; h < shape.Heads; h++)
                    for (int i = 0; i < pairs; i++)
                    {
                        int head = (r * shape.Heads + h) * shape.HeadDim;
                        int first = head + (layout == RotaryLayout.HalfSplit ? i : 2 * i);
                        int second = head + (layout == RotaryLayout.HalfSplit ? i + pairs : 2 * i + 1);
                        float cos = angles[(r * pairs + i) * 2], sin = angles[(r * pairs + i) * 2 + 1];
                        float a = x[first], b = x[second];
                        float ac = a * cos, bs = b * sin, bc = b * cos, sa = a * sin;
                        expected[first] = ac - bs;
                        expected[second] = bc + sa;
                    }
            Rotary.Reference(x, angles, shape);
            Bits.Equal(expected, x, layout.ToString());
        }
    }

    [Fact]
    public void Embedding_widens_exactly_and_rounds_the_scale_once()
    {
        // §5: out[r, i] = table[id_r, i] · scale, one rounding; §1: f16 and bf16 widen exactly.
        const int vocabulary = 7, width = 33;
        int[] ids = [6, 0, 3, 3];
        var shape = new EmbeddingShape(ids.Length, vocabulary, width);
        // The block formats' gather is the dequantization (QuantizedTests, against §6).
        foreach (var type in TestValues.ElementTypes)
            foreach (float scale in new[] { 1f, 45.254833f, 0.3f })
            {
                var values = TestValues.FiniteForStorage(TestValues.Ordinary(vocabulary * width, seed: 21), type);
                var stored = TestValues.Stored(values, type);
                // Widened here by .NET's own conversions, not the project's.
                var widened = Enumerable.Range(0, values.Length).Select(i => type switch
                {
                    StorageType.F16 => (float)BitConverter.UInt16BitsToHalf(BitConverter.ToUInt16(stored, 2 * i)),
                    StorageType.BF16 => BitConverter.Int32BitsToSingle(BitConverter.ToUInt16(stored, 2 * i) << 16),
                    StorageType.F32 => BitConverter.ToSingle(stored, 4 * i),
                    _ => throw new InvalidOperationException($"{type.Name()} is not an element format"),
                }).ToArray();
                var expected = new float[ids.Length * width];
                for (int r = 0; r < ids.Length; r++)
                    for (int i = 0; i < width; i++)
                        expected[r * width + i] = widened[ids[r] * width + i] * scale;
                var actual = new float[expected.Length];
                Embedding.Reference(new HostStorage(stored, type), ids, actual, shape, scale);
                Bits.Equal(expected, actual, $"{type.Name()} scale {scale}");
            }
    }

    // ---- §3, the project's own functions, from the contract's text and constants derived here ----

    static readonly float Log2E = (float)(1 / Math.Log(2));
    static readonly float Ln2Hi = (float)Math.Log(2);
    static readonly float Ln2Lo = (float)(Math.Log(2) - Ln2Hi);
    static readonly float[] InverseFactorials = Enumerable.Range(2, 6).Select(n => (float)(1 / Enumerable.Range(1, n).Aggregate(1.0, (f, i) => f * i))).ToArray();

    /// <summary>Taylor coefficients of tanh(x)/x − 1 in x²: −1/3, 2/15, −17/315, 62/2835, …</summary>
    static readonly float[] TanhSeries =
        [(float)(-1.0 / 3), (float)(2.0 / 15), (float)(-17.0 / 315), (float)(62.0 / 2835), (float)(-1382.0 / 155925),
         (float)(21844.0 / 6081075), (float)(-929569.0 / 638512875), (float)(6404582.0 / 10854718875)];

    static float SpecExp(float x)
    {
        if (float.IsNaN(x))
            return x;
        x = Math.Clamp(x, -104f, 89f);
        const float shift = 1.5f * (1 << 23);
        float t = MathF.FusedMultiplyAdd(x, Log2E, shift);
        int k = (int)(BitConverter.SingleToUInt32Bits(t) - BitConverter.SingleToUInt32Bits(shift));
        float kf = t - shift;
        float r = MathF.FusedMultiplyAdd(kf, -Ln2Hi, x);
        r = MathF.FusedMultiplyAdd(kf, -Ln2Lo, r);
        float p = InverseFactorials[5]; // 1/7!
        for (int n = 4; n >= 0; n--)
            p = MathF.FusedMultiplyAdd(p, r, InverseFactorials[n]);
        p = MathF.FusedMultiplyAdd(p, r, 1f);
        p = MathF.FusedMultiplyAdd(p, r, 1f);
        int half = (int)Math.Floor(k / 2.0);
        return p * MathF.ScaleB(1f, half) * MathF.ScaleB(1f, k - half);
    }

    static float SpecTanh(float x)
    {
        if (MathF.Abs(x) < 0.55f)
        {
            if (x == 0f)
                return x;
            float x2 = x * x;
            float p = TanhSeries[7];
            for (int n = 6; n >= 0; n--)
                p = MathF.FusedMultiplyAdd(p, x2, TanhSeries[n]);
            return MathF.FusedMultiplyAdd(x2 * p, x, x);
        }
        float a = MathF.Abs(x);
        float t = 1f - 2f / (SpecExp(a + a) + 1f);
        return x < 0f ? -t : t;
    }

    /// <summary>Inputs: every 4099th bit pattern, and every pattern near the branch points and clamps.</summary>
    static IEnumerable<float> Inputs()
    {
        for (ulong bits = 0; bits <= uint.MaxValue; bits += 4099)
            yield return BitConverter.UInt32BitsToSingle((uint)bits);
        foreach (float around in new[] { 0.55f, -0.55f, 0.5f, 89f, -104f, 0f, 1f, -1f, 20f, -20f })
        {
            float v = around;
            for (int i = 0; i < 4096; i++, v = MathF.BitIncrement(v))
                yield return v;
        }
    }

    [Fact]
    public void Exp_tanh_and_the_functions_built_on_them_follow_their_definitions()
    {
        float sqrtTwoOverPi = (float)Math.Sqrt(2 / Math.PI);
        foreach (float x in Inputs())
        {
            Bits.Equal([SpecExp(x)], [CanonicalMath.Exp(x)], $"exp({x:R})");
            Bits.Equal([SpecTanh(x)], [CanonicalMath.Tanh(x)], $"tanh({x:R})");
            Bits.Equal([x / (1f + SpecExp(-x))], [CanonicalMath.Silu(x)], $"silu({x:R})");
            Bits.Equal([0.5f * x * (1f + SpecTanh(sqrtTwoOverPi * x * MathF.FusedMultiplyAdd(0.044715f * x, x, 1f)))], [CanonicalMath.GeluTanh(x)], $"gelu({x:R})");
            Bits.Equal([SpecTanh(x / 30f) * 30f], [CanonicalMath.SoftCap(x, 30f)], $"softcap({x:R}, 30)");
            Bits.Equal([x > 1f || float.IsNaN(x) ? x : 1f], [CanonicalMath.Max(x, 1f)], $"max({x:R}, 1)");
            Bits.Equal([1f > x ? 1f : x], [CanonicalMath.Max(1f, x)], $"max(1, {x:R})");
        }
    }
}
