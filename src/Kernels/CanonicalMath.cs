using System.Runtime.CompilerServices;
using ILGPU;
using static IlgpuLlm.Kernels.ExactMath;

namespace IlgpuLlm.Kernels;

/// <summary>
/// The transcendental functions every backend shares (docs/NUMERICS.md, "Own functions").
/// Built only from <see cref="ExactMath"/> operations, integer bit manipulation and comparisons,
/// so the same input gives the same bits on the CPU, the ILGPU CPU accelerator and CUDA. Hardware
/// approximations (<c>ex2.approx</c>, which <c>MathF.Exp</c> and <c>XMath.Exp</c> become in PTX)
/// are never used. The SIMD twins in <see cref="CanonicalMathSimd"/> evaluate the same sequence of
/// operations lane-wise.
/// </summary>
public static class CanonicalMath
{
    // exp: x = k·ln2 + r with |r| ≤ ln2/2, exp(x) = 2^k · P(r).
    internal const float Log2E = 1.44269504088896341f;
    internal const float RoundingShift = 12582912f;          // 1.5·2^23: adding it rounds to an integer
    internal const uint RoundingShiftBits = 0x4B400000;
    internal const float Ln2Hi = 0.693147182464599609375f;    // ln2 rounded to binary32
    internal const float Ln2Lo = -1.904654323148236e-09f;     // ln2 − Ln2Hi
    internal const float ExpUpperClamp = 89f;                 // exp(89) overflows binary32
    internal const float ExpLowerClamp = -104f;               // exp(−104) rounds to +0
    // Taylor coefficients 1/n!, n = 7..2; the remainder r^8/8! < 6e-9 relative on |r| ≤ ln2/2.
    internal const float ExpC7 = 1.98412698412698413e-4f;
    internal const float ExpC6 = 1.38888888888888889e-3f;
    internal const float ExpC5 = 8.33333333333333333e-3f;
    internal const float ExpC4 = 4.16666666666666667e-2f;
    internal const float ExpC3 = 1.66666666666666667e-1f;
    internal const float ExpC2 = 0.5f;

    /// <summary>
    /// e^x with at most about one ulp of error, +inf above 88.72, +0 below −103.97, subnormal
    /// results rounded once, NaN passed through.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Exp(float x)
    {
        if (float.IsNaN(x))
            return x;
        x = x > ExpUpperClamp ? ExpUpperClamp : x;
        x = x < ExpLowerClamp ? ExpLowerClamp : x;
        float shifted = Fma(x, Log2E, RoundingShift);
        float kf = Sub(shifted, RoundingShift);
        int k = (int)(Interop.FloatAsInt(shifted) - RoundingShiftBits);
        float r = Fma(kf, -Ln2Hi, x);
        r = Fma(kf, -Ln2Lo, r);
        float p = Fma(ExpC7, r, ExpC6);
        p = Fma(p, r, ExpC5);
        p = Fma(p, r, ExpC4);
        p = Fma(p, r, ExpC3);
        p = Fma(p, r, ExpC2);
        p = Fma(p, r, 1f);
        p = Fma(p, r, 1f);
        // 2^k in two exact steps: k spans [−150, 128], beyond one binary32 exponent field, and the
        // second multiplication is the only rounding (into the subnormal range or to infinity).
        int kHigh = k >> 1;
        int kLow = k - kHigh;
        return Mul(Mul(p, PowerOfTwo(kHigh)), PowerOfTwo(kLow));
    }

    /// <summary>2^k for k in the normal exponent range [−126, 127].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float PowerOfTwo(int k) => Interop.IntAsFloat((uint)(k + 127) << 23);

    // tanh: odd Taylor series below 0.55 (where 1 − 2/(e^{2x}+1) would lose relative accuracy),
    // the exp form above. Coefficients are the series of tanh: 1, −1/3, 2/15, −17/315, …
    internal const float TanhSeriesLimit = 0.55f;
    internal const float TanhT1 = -0.333333333333333333f;
    internal const float TanhT2 = 0.133333333333333333f;
    internal const float TanhT3 = -0.0539682539682539683f;
    internal const float TanhT4 = 0.0218694885361552028f;
    internal const float TanhT5 = -0.00886323552990219657f;
    internal const float TanhT6 = 0.00359212803657248102f;
    internal const float TanhT7 = -0.00145583438705131827f;
    internal const float TanhT8 = 0.000590027440945585981f;

    /// <summary>tanh(x) within about two ulps; ±1 for large |x|, NaN passed through, −0 kept.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Tanh(float x)
    {
        float a = x < 0f ? -x : x;
        if (a < TanhSeriesLimit)
        {
            float x2 = Mul(x, x);
            float p = Fma(TanhT8, x2, TanhT7);
            p = Fma(p, x2, TanhT6);
            p = Fma(p, x2, TanhT5);
            p = Fma(p, x2, TanhT4);
            p = Fma(p, x2, TanhT3);
            p = Fma(p, x2, TanhT2);
            p = Fma(p, x2, TanhT1);
            // x + x·(x²·p) rounds −0 + (+0) to +0; tanh(−0) is −0.
            return x == 0f ? x : Fma(Mul(p, x2), x, x);
        }
        float e = Exp(Add(a, a));
        float t = Sub(1f, Div(2f, Add(e, 1f)));
        return x < 0f ? -t : t;
    }

    /// <summary>SiLU(x) = x / (1 + e^−x), the form llama.cpp and PyTorch's CPU kernel evaluate.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Silu(float x) => Div(x, Add(1f, Exp(-x)));

    internal const float SqrtTwoOverPi = 0.797884560802865356f;
    internal const float GeluCubic = 0.044715f;

    /// <summary>
    /// GELU with the tanh approximation (Gemma's <c>gelu_pytorch_tanh</c>):
    /// ½·x·(1 + tanh(√(2/π)·x·(1 + 0.044715·x²))), grouped as llama.cpp's ggml_gelu_f32 groups it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float GeluTanh(float x)
    {
        float inner = Mul(Mul(SqrtTwoOverPi, x), Fma(Mul(GeluCubic, x), x, 1f));
        return Mul(Mul(0.5f, x), Add(1f, Tanh(inner)));
    }

    /// <summary>
    /// The maximum used by every canonical max-reduction: NaN wins (so a NaN score is never hidden),
    /// otherwise the larger; of two equal values (±0) the second. Deterministic for a fixed order,
    /// which the canonical tree fixes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Max(float a, float b) => a > b || float.IsNaN(a) ? a : b;

    /// <summary>Logit soft-capping, cap·tanh(x/cap) (Gemma 2), in the order transformers applies it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SoftCap(float x, float cap) => Mul(Tanh(Div(x, cap)), cap);
}
