using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using static IlgpuLlm.Kernels.CanonicalMath;

namespace IlgpuLlm.Kernels;

/// <summary>
/// <see cref="CanonicalMath"/> on vector registers, for the SIMD twins: every function evaluates
/// exactly the scalar operation sequence in each lane, so a lane's bits equal the scalar result
/// (docs/NUMERICS.md, "Own functions"). The scalar branches become selects: NaN pass-through and
/// the clamps of exp, and tanh's choice between its series and its exp form, which are both
/// evaluated (skipped only when no lane needs one). Vector +, −, ×, ÷ and FusedMultiplyAdd are
/// single IEEE operations and .NET never contracts a multiply and an add, so no rounding is added
/// or lost. Tests compare every function with the scalar one on millions of inputs.
/// </summary>
public static class CanonicalMathSimd
{
    // ---------------------------------------------------------------- 512-bit

    /// <summary><see cref="CanonicalMath.Exp"/> in each of 16 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x)
    {
        var isNumber = Vector512.Equals(x, x);
        var clamped = Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512.Create(ExpUpperClamp)), Vector512.Create(ExpUpperClamp), x);
        clamped = Vector512.ConditionalSelect(Vector512.LessThan(clamped, Vector512.Create(ExpLowerClamp)), Vector512.Create(ExpLowerClamp), clamped);
        var shifted = Vector512.FusedMultiplyAdd(clamped, Vector512.Create(Log2E), Vector512.Create(RoundingShift));
        var kf = shifted - Vector512.Create(RoundingShift);
        var k = shifted.AsInt32() - Vector512.Create((int)RoundingShiftBits);
        var r = Vector512.FusedMultiplyAdd(kf, Vector512.Create(-Ln2Hi), clamped);
        r = Vector512.FusedMultiplyAdd(kf, Vector512.Create(-Ln2Lo), r);
        var p = Vector512.FusedMultiplyAdd(Vector512.Create(ExpC7), r, Vector512.Create(ExpC6));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpC5));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpC4));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpC3));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpC2));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512<float>.One);
        p = Vector512.FusedMultiplyAdd(p, r, Vector512<float>.One);
        var kHigh = k >> 1;
        var kLow = k - kHigh;
        var result = p * PowerOfTwo(kHigh) * PowerOfTwo(kLow);
        return Vector512.ConditionalSelect(isNumber, result, x);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> PowerOfTwo(Vector512<int> k) =>
        ((k + Vector512.Create(127)) << 23).AsSingle();

    /// <summary><see cref="CanonicalMath.Tanh"/> in each of 16 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Tanh(Vector512<float> x)
    {
        // |x| by clearing the sign bit; the scalar x < 0 ? −x : x differs only for −0 (both take
        // the series, which reads x) and NaN (both take the exp form, which passes NaN through).
        var a = Vector512.Abs(x);
        var useSeries = Vector512.LessThan(a, Vector512.Create(TanhSeriesLimit));
        ulong seriesLanes = useSeries.AsUInt32().ExtractMostSignificantBits();
        if (seriesLanes == 0xFFFF)
            return TanhSeries(x);
        var t = TanhExpForm(x, a);
        return seriesLanes == 0 ? t : Vector512.ConditionalSelect(useSeries, TanhSeries(x), t);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> TanhSeries(Vector512<float> x)
    {
        var x2 = x * x;
        var p = Vector512.FusedMultiplyAdd(Vector512.Create(TanhT8), x2, Vector512.Create(TanhT7));
        p = Vector512.FusedMultiplyAdd(p, x2, Vector512.Create(TanhT6));
        p = Vector512.FusedMultiplyAdd(p, x2, Vector512.Create(TanhT5));
        p = Vector512.FusedMultiplyAdd(p, x2, Vector512.Create(TanhT4));
        p = Vector512.FusedMultiplyAdd(p, x2, Vector512.Create(TanhT3));
        p = Vector512.FusedMultiplyAdd(p, x2, Vector512.Create(TanhT2));
        p = Vector512.FusedMultiplyAdd(p, x2, Vector512.Create(TanhT1));
        return Vector512.ConditionalSelect(Vector512.Equals(x, Vector512<float>.Zero), x, Vector512.FusedMultiplyAdd(p * x2, x, x));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> TanhExpForm(Vector512<float> x, Vector512<float> a)
    {
        var e = Exp(a + a);
        var t = Vector512<float>.One - Vector512.Create(2f) / (e + Vector512<float>.One);
        return Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512<float>.Zero), -t, t);
    }

    /// <summary><see cref="CanonicalMath.Silu"/> in each of 16 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Silu(Vector512<float> x) => x / (Vector512<float>.One + Exp(-x));

    /// <summary><see cref="CanonicalMath.GeluTanh"/> in each of 16 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> GeluTanh(Vector512<float> x)
    {
        var inner = Vector512.Create(SqrtTwoOverPi) * x
            * Vector512.FusedMultiplyAdd(Vector512.Create(GeluCubic) * x, x, Vector512<float>.One);
        return Vector512.Create(0.5f) * x * (Vector512<float>.One + Tanh(inner));
    }

    /// <summary><see cref="CanonicalMath.SoftCap"/> in each of 16 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> SoftCap(Vector512<float> x, Vector512<float> cap) => Tanh(x / cap) * cap;

    /// <summary><see cref="CanonicalMath.Max"/> in each of 16 lanes: a if a &gt; b or a is NaN, else b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Max(Vector512<float> a, Vector512<float> b) =>
        Vector512.ConditionalSelect(Vector512.GreaterThan(a, b) | ~Vector512.Equals(a, a), a, b);

    // ---------------------------------------------------------------- 256-bit

    /// <summary><see cref="CanonicalMath.Exp"/> in each of 8 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        var isNumber = Vector256.Equals(x, x);
        var clamped = Vector256.ConditionalSelect(Vector256.GreaterThan(x, Vector256.Create(ExpUpperClamp)), Vector256.Create(ExpUpperClamp), x);
        clamped = Vector256.ConditionalSelect(Vector256.LessThan(clamped, Vector256.Create(ExpLowerClamp)), Vector256.Create(ExpLowerClamp), clamped);
        var shifted = Vector256.FusedMultiplyAdd(clamped, Vector256.Create(Log2E), Vector256.Create(RoundingShift));
        var kf = shifted - Vector256.Create(RoundingShift);
        var k = shifted.AsInt32() - Vector256.Create((int)RoundingShiftBits);
        var r = Vector256.FusedMultiplyAdd(kf, Vector256.Create(-Ln2Hi), clamped);
        r = Vector256.FusedMultiplyAdd(kf, Vector256.Create(-Ln2Lo), r);
        var p = Vector256.FusedMultiplyAdd(Vector256.Create(ExpC7), r, Vector256.Create(ExpC6));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(ExpC5));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(ExpC4));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(ExpC3));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(ExpC2));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256<float>.One);
        p = Vector256.FusedMultiplyAdd(p, r, Vector256<float>.One);
        var kHigh = k >> 1;
        var kLow = k - kHigh;
        var result = p * PowerOfTwo(kHigh) * PowerOfTwo(kLow);
        return Vector256.ConditionalSelect(isNumber, result, x);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> PowerOfTwo(Vector256<int> k) =>
        ((k + Vector256.Create(127)) << 23).AsSingle();

    /// <summary><see cref="CanonicalMath.Tanh"/> in each of 8 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Tanh(Vector256<float> x)
    {
        var a = Vector256.Abs(x);
        var useSeries = Vector256.LessThan(a, Vector256.Create(TanhSeriesLimit));
        uint seriesLanes = useSeries.AsUInt32().ExtractMostSignificantBits();
        if (seriesLanes == 0xFF)
            return TanhSeries(x);
        var t = TanhExpForm(x, a);
        return seriesLanes == 0 ? t : Vector256.ConditionalSelect(useSeries, TanhSeries(x), t);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> TanhSeries(Vector256<float> x)
    {
        var x2 = x * x;
        var p = Vector256.FusedMultiplyAdd(Vector256.Create(TanhT8), x2, Vector256.Create(TanhT7));
        p = Vector256.FusedMultiplyAdd(p, x2, Vector256.Create(TanhT6));
        p = Vector256.FusedMultiplyAdd(p, x2, Vector256.Create(TanhT5));
        p = Vector256.FusedMultiplyAdd(p, x2, Vector256.Create(TanhT4));
        p = Vector256.FusedMultiplyAdd(p, x2, Vector256.Create(TanhT3));
        p = Vector256.FusedMultiplyAdd(p, x2, Vector256.Create(TanhT2));
        p = Vector256.FusedMultiplyAdd(p, x2, Vector256.Create(TanhT1));
        return Vector256.ConditionalSelect(Vector256.Equals(x, Vector256<float>.Zero), x, Vector256.FusedMultiplyAdd(p * x2, x, x));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> TanhExpForm(Vector256<float> x, Vector256<float> a)
    {
        var e = Exp(a + a);
        var t = Vector256<float>.One - Vector256.Create(2f) / (e + Vector256<float>.One);
        return Vector256.ConditionalSelect(Vector256.LessThan(x, Vector256<float>.Zero), -t, t);
    }

    /// <summary><see cref="CanonicalMath.Silu"/> in each of 8 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Silu(Vector256<float> x) => x / (Vector256<float>.One + Exp(-x));

    /// <summary><see cref="CanonicalMath.GeluTanh"/> in each of 8 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> GeluTanh(Vector256<float> x)
    {
        var inner = Vector256.Create(SqrtTwoOverPi) * x
            * Vector256.FusedMultiplyAdd(Vector256.Create(GeluCubic) * x, x, Vector256<float>.One);
        return Vector256.Create(0.5f) * x * (Vector256<float>.One + Tanh(inner));
    }

    /// <summary><see cref="CanonicalMath.SoftCap"/> in each of 8 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> SoftCap(Vector256<float> x, Vector256<float> cap) => Tanh(x / cap) * cap;

    /// <summary><see cref="CanonicalMath.Max"/> in each of 8 lanes: a if a &gt; b or a is NaN, else b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Max(Vector256<float> a, Vector256<float> b) =>
        Vector256.ConditionalSelect(Vector256.GreaterThan(a, b) | ~Vector256.Equals(a, a), a, b);
}
