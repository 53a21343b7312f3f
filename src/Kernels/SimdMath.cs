using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace IlgpuLlm.Kernels;

/// <summary>
/// Loading stored values into vectors of binary32, exactly as <see cref="HalfBits"/> widens them.
/// Implemented by one struct per storage type so generic SIMD loops specialise per type with no
/// call overhead. The f16 path assumes finite values (weights are validated at load): .NET has no
/// F16C API, and the exact integer widening of finite halves — sign-extend, shift left 13, keep
/// sign and the 15 magnitude bits, multiply by 2^112 — is four instructions.
/// </summary>
public unsafe interface IStoredVectors
{
    static abstract StorageType Type { get; }

    /// <summary>Where value <paramref name="index"/> (or, in a block format, its block) starts, in bytes.</summary>
    static abstract long ByteOffset(long index);

    /// <summary>16 consecutive values from <paramref name="at"/> (an element index).</summary>
    static abstract Vector512<float> Load16(byte* data, long at);

    /// <summary>8 consecutive values from <paramref name="at"/> (an element index).</summary>
    static abstract Vector256<float> Load8(byte* data, long at);

    /// <summary>One value, exactly widened (including ±inf and NaN).</summary>
    static abstract float Load1(byte* data, long at);
}

/// <summary>
/// The canonical tree (<see cref="Canonical"/>) on vector registers: lanes 0–15 and 16–31 as two
/// Vector512, or lanes 0–7, 8–15, 16–23, 24–31 as four Vector256. Each step adds lane j+h into
/// lane j, exactly as the scalar tree and the GPU warp do.
/// </summary>
public static class SimdTree
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector512<float> lanes0, Vector512<float> lanes16) => Fold16(lanes0 + lanes16);

    /// <summary>The tree's last four steps (h = 8, 4, 2, 1) over the 16 lanes left after step 16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Fold16(Vector512<float> h16) => Sum8(h16.GetLower() + h16.GetUpper());

    /// <summary>
    /// <see cref="Fold16"/> of sixteen vectors at once, result i in lane i: each step pairs the
    /// same lanes of the same vector as Fold16 does (j with j+8, then j+4, j+2, j+1) but takes
    /// them from two vectors per permute, so 15 adds do the work of 16 separate trees' 60 and the
    /// bits are Fold16's.
    /// </summary>
    public static unsafe Vector512<float> Fold16x16(Vector512<float>* h16)
    {
        // Pairs of vectors: lanes 0–7 vector 2i's h8, lanes 8–15 vector 2i+1's.
        var eightLow = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
        var eightHigh = Vector512.Create(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
        var a0 = Pair(h16[0], h16[1], eightLow, eightHigh);
        var a1 = Pair(h16[2], h16[3], eightLow, eightHigh);
        var a2 = Pair(h16[4], h16[5], eightLow, eightHigh);
        var a3 = Pair(h16[6], h16[7], eightLow, eightHigh);
        var a4 = Pair(h16[8], h16[9], eightLow, eightHigh);
        var a5 = Pair(h16[10], h16[11], eightLow, eightHigh);
        var a6 = Pair(h16[12], h16[13], eightLow, eightHigh);
        var a7 = Pair(h16[14], h16[15], eightLow, eightHigh);
        // h4 of vectors 4i, 4i+2, 4i+1, 4i+3, four lanes each.
        var fourLow = Vector512.Create(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
        var fourHigh = Vector512.Create(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
        var b0 = Pair(a0, a1, fourLow, fourHigh);
        var b1 = Pair(a2, a3, fourLow, fourHigh);
        var b2 = Pair(a4, a5, fourLow, fourHigh);
        var b3 = Pair(a6, a7, fourLow, fourHigh);
        // (h4[0] + h4[2], h4[1] + h4[3]) of vectors 0, 2, 1, 3, 4, 6, 5, 7 | 8, 10, 9, 11, 12, 14, 13, 15.
        var twoLow = Vector512.Create(0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29);
        var twoHigh = Vector512.Create(2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
        var c0 = Pair(b0, b1, twoLow, twoHigh);
        var c1 = Pair(b2, b3, twoLow, twoHigh);
        var even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        var odd = Vector512.Create(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        var d = Pair(c0, c1, even, odd);
        return Avx512F.PermuteVar16x32(d, Vector512.Create(0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15));
    }

    /// <summary>One tree step for two vectors: the lanes <paramref name="low"/> picks plus those <paramref name="high"/> picks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Pair(Vector512<float> a, Vector512<float> b, Vector512<int> low, Vector512<int> high) =>
        Avx512F.PermuteVar16x32x2(a, low, b) + Avx512F.PermuteVar16x32x2(a, high, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector256<float> lanes0, Vector256<float> lanes8, Vector256<float> lanes16, Vector256<float> lanes24)
    {
        var low = lanes0 + lanes16;
        var high = lanes8 + lanes24;
        return Sum8(low + high);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Sum8(Vector256<float> lanes)
    {
        var h4 = lanes.GetLower() + lanes.GetUpper();
        float l0 = h4.GetElement(0) + h4.GetElement(2);
        float l1 = h4.GetElement(1) + h4.GetElement(3);
        return l0 + l1;
    }

    /// <summary>The canonical max tree over lanes 0–15 and 16–31.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Max(Vector512<float> lanes0, Vector512<float> lanes16)
    {
        var h16 = CanonicalMathSimd.Max(lanes0, lanes16);
        return Max8(CanonicalMathSimd.Max(h16.GetLower(), h16.GetUpper()));
    }

    /// <summary>The canonical max tree over lanes 0–7, 8–15, 16–23, 24–31.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Max(Vector256<float> lanes0, Vector256<float> lanes8, Vector256<float> lanes16, Vector256<float> lanes24) =>
        Max8(CanonicalMathSimd.Max(CanonicalMathSimd.Max(lanes0, lanes16), CanonicalMathSimd.Max(lanes8, lanes24)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Max8(Vector256<float> lanes)
    {
        var low = lanes.GetLower();
        var high = lanes.GetUpper();
        var h4 = Vector128.ConditionalSelect(Vector128.GreaterThan(low, high) | ~Vector128.Equals(low, low), low, high);
        float l0 = CanonicalMath.Max(h4.GetElement(0), h4.GetElement(2));
        float l1 = CanonicalMath.Max(h4.GetElement(1), h4.GetElement(3));
        return CanonicalMath.Max(l0, l1);
    }

    /// <summary>Lane mask of the first <paramref name="active"/> lanes of lanes [first, first + 16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Active16(int first, int active) =>
        Vector512.LessThan(Vector512<int>.Indices + Vector512.Create(first), Vector512.Create(active)).AsSingle();

    /// <summary>Lane mask of the first <paramref name="active"/> lanes of lanes [first, first + 8).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Active8(int first, int active) =>
        Vector256.LessThan(Vector256<int>.Indices + Vector256.Create(first), Vector256.Create(active)).AsSingle();
}
