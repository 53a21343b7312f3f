using System.Runtime.Intrinsics;
using IlgpuLlm.Kernels;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Kernels;

/// <summary>
/// The vector functions of <see cref="CanonicalMathSimd"/> give, lane by lane, the bits of the
/// scalar <see cref="CanonicalMath"/> functions every other backend evaluates: strided sweeps over
/// all 2^32 bit patterns, dense sweeps of every binade, the neighbourhoods of every branch
/// boundary and clamp, special values and random bit patterns.
/// </summary>
public class CanonicalMathSimdTests
{
    static readonly Lazy<float[]> Inputs = new(BuildInputs);

    /// <summary>About six million inputs shared by the single-argument functions.</summary>
    static float[] BuildInputs()
    {
        var values = new List<float>(6_500_000);
        // Every bit pattern with a stride prime to 2: each binade gets about 8000 mantissas.
        for (ulong bits = 0; bits <= uint.MaxValue; bits += 1021)
            values.Add(BitConverter.UInt32BitsToSingle((uint)bits));
        // Each binade of each sign, densely: evenly spaced mantissas with random low bits.
        var random = new Random(20240601);
        for (uint sign = 0; sign < 2; sign++)
            for (uint exponent = 0; exponent < 256; exponent++)
                for (uint step = 0; step < 2048; step++)
                {
                    uint mantissa = (step << 12) | (uint)random.Next(1 << 12);
                    values.Add(BitConverter.UInt32BitsToSingle((sign << 31) | (exponent << 23) | mantissa));
                }
        // Branch boundaries and clamps, and the inputs where results overflow, turn subnormal or
        // round to zero: thousands of neighbouring bit patterns on either side of each.
        float[] boundaries =
        [
            0f, -0f, 0.55f, -0.55f, 89f, -89f, 104f, -104f, 88.7228394f, -88.7228394f, -87.3365479f, 87.3365479f,
            -103.972084f, 103.972084f, -103.278931f, 44.3614197f, -44.3614197f, 0.275f, -0.275f, 1f, -1f,
            GeluInputAt(0.55f), GeluInputAt(-0.55f), 9.01f, -9.01f, 10.0f, -10.0f, 16.6355324f, float.MaxValue, -float.MaxValue,
            float.Epsilon, -float.Epsilon, 1.17549435e-38f, -1.17549435e-38f,
        ];
        foreach (float boundary in boundaries)
            foreach (float v in Neighbours(boundary, 4096))
                values.Add(v);
        values.AddRange(Specials);
        for (int i = 0; i < 1_000_000; i++)
            values.Add(BitConverter.UInt32BitsToSingle((uint)random.NextInt64(1L << 32)));
        while (values.Count % 16 != 0)
            values.Add(float.NaN);
        return values.ToArray();
    }

    static readonly float[] Specials =
    [
        0f, -0f, float.PositiveInfinity, float.NegativeInfinity, float.NaN, -float.NaN,
        BitConverter.UInt32BitsToSingle(0x7F800001), BitConverter.UInt32BitsToSingle(0xFFC00001),
        BitConverter.UInt32BitsToSingle(0x7FBFFFFF), float.MaxValue, -float.MaxValue, float.Epsilon, -float.Epsilon,
        1e-40f, -1e-40f, 1e-45f, 1.17549421e-38f, 65504f, 65520f, -65520f, 1e30f, -1e30f,
    ];

    /// <summary>The x where GELU's tanh argument √(2/π)·x·(1 + 0.044715·x²) reaches y (by bisection in double).</summary>
    static float GeluInputAt(float y)
    {
        double lo = -10, hi = 10;
        for (int i = 0; i < 200; i++)
        {
            double mid = (lo + hi) / 2;
            double inner = 0.7978845608028654 * mid * (1 + 0.044715 * mid * mid);
            if (inner < y) lo = mid; else hi = mid;
        }
        return (float)lo;
    }

    /// <summary>The <paramref name="count"/> floats on either side of <paramref name="center"/> in bit order.</summary>
    static IEnumerable<float> Neighbours(float center, int count)
    {
        for (int d = -count; d <= count; d++)
            yield return Offset(center, d);
    }

    /// <summary>A float d positions away in the ordering of all floats (crossing zero correctly).</summary>
    static float Offset(float center, int d)
    {
        // Map bits to a monotone integer line: negative floats below −0 = −1, +0 = 0.
        int bits = BitConverter.SingleToInt32Bits(center);
        long ordinal = bits >= 0 ? bits : -(long)(bits & 0x7FFFFFFF) - 1;
        long moved = Math.Clamp(ordinal + d, -0x7F800001L, 0x7F800000L);
        int result = moved >= 0 ? (int)moved : (int)((-(moved + 1)) | 0x80000000L);
        return BitConverter.Int32BitsToSingle(result);
    }

    delegate Vector512<float> Unary512(Vector512<float> x);
    delegate Vector256<float> Unary256(Vector256<float> x);

    static void Check(string name, ReadOnlySpan<float> inputs, Func<float, float> scalar, Unary512 wide, Unary256 narrow)
    {
        var expected = new float[inputs.Length];
        for (int i = 0; i < inputs.Length; i++)
            expected[i] = scalar(inputs[i]);
        var actual = new float[inputs.Length];
        for (int i = 0; i < inputs.Length; i += 16)
            wide(Vector512.Create(inputs.Slice(i, 16))).CopyTo(actual, i);
        CompareLanes(name + " (Vector512)", inputs, expected, actual);
        for (int i = 0; i < inputs.Length; i += 8)
            narrow(Vector256.Create(inputs.Slice(i, 8))).CopyTo(actual, i);
        CompareLanes(name + " (Vector256)", inputs, expected, actual);
    }

    static void CompareLanes(string name, ReadOnlySpan<float> inputs, float[] expected, float[] actual)
    {
        for (int i = 0; i < inputs.Length; i++)
        {
            if (float.IsNaN(expected[i]) && float.IsNaN(actual[i]))
                continue;
            if (BitConverter.SingleToUInt32Bits(expected[i]) != BitConverter.SingleToUInt32Bits(actual[i]))
                Assert.Fail($"{name}({inputs[i]:R} = 0x{BitConverter.SingleToUInt32Bits(inputs[i]):X8}) is {actual[i]:R} " +
                    $"(0x{BitConverter.SingleToUInt32Bits(actual[i]):X8}); the scalar function gives {expected[i]:R} " +
                    $"(0x{BitConverter.SingleToUInt32Bits(expected[i]):X8})");
        }
    }

    [Fact]
    public void Exp_matches_the_scalar_function_in_every_lane() =>
        Check("exp", Inputs.Value, CanonicalMath.Exp, CanonicalMathSimd.Exp, CanonicalMathSimd.Exp);

    [Fact]
    public void Tanh_matches_the_scalar_function_in_every_lane() =>
        Check("tanh", Inputs.Value, CanonicalMath.Tanh, CanonicalMathSimd.Tanh, CanonicalMathSimd.Tanh);

    [Fact]
    public void Tanh_matches_when_lanes_mix_the_series_and_the_exp_form()
    {
        // Neighbouring inputs alternate between the branches, so every vector needs both.
        var inputs = new float[1 << 16];
        var random = new Random(55);
        for (int i = 0; i < inputs.Length; i++)
            inputs[i] = (i % 3) switch
            {
                0 => (float)(random.NextDouble() * 1.1 - 0.55),
                1 => (float)(random.NextDouble() * 40 - 20),
                _ => Offset(i % 2 == 0 ? 0.55f : -0.55f, random.Next(-3, 4)),
            };
        Check("tanh", inputs, CanonicalMath.Tanh, CanonicalMathSimd.Tanh, CanonicalMathSimd.Tanh);
    }

    [Fact]
    public void Silu_matches_the_scalar_function_in_every_lane() =>
        Check("silu", Inputs.Value, CanonicalMath.Silu, CanonicalMathSimd.Silu, CanonicalMathSimd.Silu);

    [Fact]
    public void GeluTanh_matches_the_scalar_function_in_every_lane() =>
        Check("gelu-tanh", Inputs.Value, CanonicalMath.GeluTanh, CanonicalMathSimd.GeluTanh, CanonicalMathSimd.GeluTanh);

    [Theory]
    [InlineData(30f)]
    [InlineData(50f)]
    [InlineData(1f)]
    [InlineData(0.37f)]
    public void SoftCap_matches_the_scalar_function_in_every_lane(float cap)
    {
        // Every input at this cap, plus the neighbourhoods of the tanh branch at x / cap = ±0.55.
        var inputs = new List<float>(Inputs.Value.AsSpan(0, 2_000_000).ToArray());
        foreach (float boundary in new[] { 0.55f * cap, -0.55f * cap })
            inputs.AddRange(Neighbours(boundary, 4096));
        while (inputs.Count % 16 != 0)
            inputs.Add(cap);
        Check($"soft-cap {cap}", inputs.ToArray(), x => CanonicalMath.SoftCap(x, cap),
            x => CanonicalMathSimd.SoftCap(x, Vector512.Create(cap)), x => CanonicalMathSimd.SoftCap(x, Vector256.Create(cap)));
    }

    [Fact]
    public void Max_matches_the_scalar_function_in_every_lane_including_nan_and_signed_zeros()
    {
        var random = new Random(7);
        float[] pool = [.. Specials, 1f, -1f, 2f, 0.5f];
        var a = new float[1 << 18];
        var b = new float[a.Length];
        for (int i = 0; i < a.Length; i++)
        {
            a[i] = i % 2 == 0 ? pool[random.Next(pool.Length)] : BitConverter.UInt32BitsToSingle((uint)random.NextInt64(1L << 32));
            b[i] = i % 3 == 0 ? a[i] : i % 3 == 1 ? pool[random.Next(pool.Length)] : BitConverter.UInt32BitsToSingle((uint)random.NextInt64(1L << 32));
        }
        // Every ordered pair of specials, so each NaN/±0/±inf combination meets in both operand orders.
        var pairsA = new List<float>();
        var pairsB = new List<float>();
        foreach (float p in pool)
            foreach (float q in pool)
            {
                pairsA.Add(p);
                pairsB.Add(q);
            }
        a = [.. a, .. pairsA];
        b = [.. b, .. pairsB];
        int padded = (a.Length + 15) / 16 * 16;
        Array.Resize(ref a, padded);
        Array.Resize(ref b, padded);

        var expected = new float[a.Length];
        for (int i = 0; i < a.Length; i++)
            expected[i] = CanonicalMath.Max(a[i], b[i]);
        var actual = new float[a.Length];
        for (int i = 0; i < a.Length; i += 16)
            CanonicalMathSimd.Max(Vector512.Create(a.AsSpan(i, 16)), Vector512.Create(b.AsSpan(i, 16))).CopyTo(actual, i);
        Bits.Equal(expected, actual, "max (Vector512)");
        for (int i = 0; i < a.Length; i += 8)
            CanonicalMathSimd.Max(Vector256.Create(a.AsSpan(i, 8)), Vector256.Create(b.AsSpan(i, 8))).CopyTo(actual, i);
        Bits.Equal(expected, actual, "max (Vector256)");
        // NaN must win from either side (Bits.Equal treats all NaNs alike, so check NaN-ness directly).
        Assert.True(float.IsNaN(CanonicalMathSimd.Max(Vector256.Create(float.NaN), Vector256.Create(1f)).GetElement(3)));
        Assert.True(float.IsNaN(CanonicalMathSimd.Max(Vector512.Create(1f), Vector512.Create(float.NaN)).GetElement(9)));
    }

    [Fact]
    public void Nan_passes_through_every_function()
    {
        var nan512 = Vector512.Create(float.NaN);
        var nan256 = Vector256.Create(float.NaN);
        foreach (var v in new[] { CanonicalMathSimd.Exp(nan512), CanonicalMathSimd.Tanh(nan512), CanonicalMathSimd.Silu(nan512),
                     CanonicalMathSimd.GeluTanh(nan512), CanonicalMathSimd.SoftCap(nan512, Vector512.Create(30f)) })
            Assert.True(float.IsNaN(v.GetElement(5)));
        foreach (var v in new[] { CanonicalMathSimd.Exp(nan256), CanonicalMathSimd.Tanh(nan256), CanonicalMathSimd.Silu(nan256),
                     CanonicalMathSimd.GeluTanh(nan256), CanonicalMathSimd.SoftCap(nan256, Vector256.Create(30f)) })
            Assert.True(float.IsNaN(v.GetElement(5)));
    }
}
