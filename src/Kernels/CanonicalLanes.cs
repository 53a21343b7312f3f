using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace IlgpuLlm.Kernels;

/// <summary>
/// Lane-wise <see cref="CanonicalMath"/> for the softmax, soft-cap and sampling SIMD twins, until
/// the vectorised functions of the elementwise work (CanonicalMathSimd, same signatures) are
/// merged: then these calls switch to it and this class goes. Exp and SoftCap here evaluate the
/// scalar function lane by lane, which is bit-identical by construction; Max is already vector code.
/// </summary>
internal static unsafe class CanonicalLanes
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x)
    {
        var lanes = stackalloc float[16];
        x.Store(lanes);
        for (int j = 0; j < 16; j++)
            lanes[j] = CanonicalMath.Exp(lanes[j]);
        return Vector512.Load(lanes);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        var lanes = stackalloc float[8];
        x.Store(lanes);
        for (int j = 0; j < 8; j++)
            lanes[j] = CanonicalMath.Exp(lanes[j]);
        return Vector256.Load(lanes);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> SoftCap(Vector512<float> x, Vector512<float> cap)
    {
        var lanes = stackalloc float[16];
        x.Store(lanes);
        float c = cap.ToScalar();
        for (int j = 0; j < 16; j++)
            lanes[j] = CanonicalMath.SoftCap(lanes[j], c);
        return Vector512.Load(lanes);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> SoftCap(Vector256<float> x, Vector256<float> cap)
    {
        var lanes = stackalloc float[8];
        x.Store(lanes);
        float c = cap.ToScalar();
        for (int j = 0; j < 8; j++)
            lanes[j] = CanonicalMath.SoftCap(lanes[j], c);
        return Vector256.Load(lanes);
    }

    /// <summary><see cref="CanonicalMath.Max"/> lane-wise: a where a &gt; b or a is NaN, else b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Max(Vector512<float> a, Vector512<float> b) =>
        Vector512.ConditionalSelect(Vector512.GreaterThan(a, b) | ~Vector512.Equals(a, a), a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Max(Vector256<float> a, Vector256<float> b) =>
        Vector256.ConditionalSelect(Vector256.GreaterThan(a, b) | ~Vector256.Equals(a, a), a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Max(Vector128<float> a, Vector128<float> b) =>
        Vector128.ConditionalSelect(Vector128.GreaterThan(a, b) | ~Vector128.Equals(a, a), a, b);

    /// <summary>The canonical max tree over lanes 0–15 and 16–31.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxTree(Vector512<float> lanes0, Vector512<float> lanes16)
    {
        var h16 = Max(lanes0, lanes16);
        return MaxTree8(Max(h16.GetLower(), h16.GetUpper()));
    }

    /// <summary>The canonical max tree over lanes 0–7, 8–15, 16–23, 24–31.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxTree(Vector256<float> lanes0, Vector256<float> lanes8, Vector256<float> lanes16, Vector256<float> lanes24) =>
        MaxTree8(Max(Max(lanes0, lanes16), Max(lanes8, lanes24)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float MaxTree8(Vector256<float> lanes)
    {
        var h4 = Max(lanes.GetLower(), lanes.GetUpper());
        float l0 = CanonicalMath.Max(h4.GetElement(0), h4.GetElement(2));
        float l1 = CanonicalMath.Max(h4.GetElement(1), h4.GetElement(3));
        return CanonicalMath.Max(l0, l1);
    }
}
