using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace IlgpuLlm.Kernels;

/// <summary>
/// The canonical dot product (<see cref="Canonical.Dot"/>) of binary32 values with stored values,
/// at every SIMD level: the 32 lanes as two Vector512 or four Vector256 accumulators, stored
/// values widened inside the loop by <typeparamref name="T"/> of each method. Shared by every twin
/// that needs it (linear's x·W, attention's q·k) so the order lives in one place.
/// </summary>
public static unsafe class SimdDot
{
    /// <summary>Canonical dot of x[0..k) with stored w[at..at+k) at the given SIMD level.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Dot<T>(SimdLevel level, float* x, byte* w, long at, int k) where T : struct, IStoredVectors =>
        level switch
        {
            SimdLevel.Avx512 => Dot512<T>(x, w, at, k),
            SimdLevel.Avx2 => Dot256<T>(x, w, at, k),
            _ => DotScalar<T>(x, w, at, k),
        };

    /// <summary>Canonical dot of x[0..k) with stored w[at..at+k), lanes as two Vector512.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Dot512<T>(float* x, byte* w, long at, int k) where T : struct, IStoredVectors =>
        SimdTree.Fold16(DotLanes512<T>(x, w, at, k));

    /// <summary>
    /// <see cref="Dot512{T}"/> up to the tree's first step: lane j + lane j+16 for j &lt; 16, for
    /// callers that finish many trees at once (<see cref="SimdTree.Fold16x16"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> DotLanes512<T>(float* x, byte* w, long at, int k) where T : struct, IStoredVectors
    {
        var acc0 = Vector512<float>.Zero;
        var acc1 = Vector512<float>.Zero;
        int full = k & ~31;
        for (int i = 0; i < full; i += 32)
        {
            acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i), T.Load16(w, at + i), acc0);
            acc1 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i + 16), T.Load16(w, at + i + 16), acc1);
        }
        return full < k ? TailLanes512<T>(x, w, at, full, k - full, acc0, acc1) : acc0 + acc1;
    }

    /// <summary>
    /// The masked last step of <see cref="DotLanes512{T}"/>, apart so that the loop inlines: lanes
    /// past the end get no term at all (not a zero term: fma(0, 0, −0) is +0).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    static Vector512<float> TailLanes512<T>(float* x, byte* w, long at, int full, int active, Vector512<float> acc0, Vector512<float> acc1)
        where T : struct, IStoredVectors
    {
        var xs = stackalloc float[32];
        var ws = stackalloc float[32];
        for (int j = 0; j < 32; j++)
        {
            xs[j] = j < active ? x[full + j] : 0f;
            ws[j] = j < active ? T.Load1(w, at + full + j) : 0f;
        }
        acc0 = Vector512.ConditionalSelect(SimdTree.Active16(0, active),
            Vector512.FusedMultiplyAdd(Vector512.Load(xs), Vector512.Load(ws), acc0), acc0);
        acc1 = Vector512.ConditionalSelect(SimdTree.Active16(16, active),
            Vector512.FusedMultiplyAdd(Vector512.Load(xs + 16), Vector512.Load(ws + 16), acc1), acc1);
        return acc0 + acc1;
    }

    /// <summary>
    /// Eight canonical dots of x[0..k) with eight stored rows w[at + r·stride ..), r = 0..7, each
    /// exactly as <see cref="Dot512{T}"/> computes it. Decode streams weights once: sharing each x
    /// load between eight rows and keeping sixteen independent accumulator chains keeps more
    /// loads in flight per core than one dot's two chains (or four rows') do.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Dot512x8<T>(float* x, byte* w, long at, long stride, int k, float* results) where T : struct, IStoredVectors
    {
        long at1 = at + stride, at2 = at + 2 * stride, at3 = at + 3 * stride, at4 = at + 4 * stride, at5 = at + 5 * stride,
            at6 = at + 6 * stride, at7 = at + 7 * stride;
        var a0 = Vector512<float>.Zero; var b0 = Vector512<float>.Zero;
        var a1 = Vector512<float>.Zero; var b1 = Vector512<float>.Zero;
        var a2 = Vector512<float>.Zero; var b2 = Vector512<float>.Zero;
        var a3 = Vector512<float>.Zero; var b3 = Vector512<float>.Zero;
        var a4 = Vector512<float>.Zero; var b4 = Vector512<float>.Zero;
        var a5 = Vector512<float>.Zero; var b5 = Vector512<float>.Zero;
        var a6 = Vector512<float>.Zero; var b6 = Vector512<float>.Zero;
        var a7 = Vector512<float>.Zero; var b7 = Vector512<float>.Zero;
        int full = k & ~31;
        for (int i = 0; i < full; i += 32)
        {
            var xl = Vector512.Load(x + i);
            var xh = Vector512.Load(x + i + 16);
            a0 = Vector512.FusedMultiplyAdd(xl, T.Load16(w, at + i), a0);
            b0 = Vector512.FusedMultiplyAdd(xh, T.Load16(w, at + i + 16), b0);
            a1 = Vector512.FusedMultiplyAdd(xl, T.Load16(w, at1 + i), a1);
            b1 = Vector512.FusedMultiplyAdd(xh, T.Load16(w, at1 + i + 16), b1);
            a2 = Vector512.FusedMultiplyAdd(xl, T.Load16(w, at2 + i), a2);
            b2 = Vector512.FusedMultiplyAdd(xh, T.Load16(w, at2 + i + 16), b2);
            a3 = Vector512.FusedMultiplyAdd(xl, T.Load16(w, at3 + i), a3);
            b3 = Vector512.FusedMultiplyAdd(xh, T.Load16(w, at3 + i + 16), b3);
            a4 = Vector512.FusedMultiplyAdd(xl, T.Load16(w, at4 + i), a4);
            b4 = Vector512.FusedMultiplyAdd(xh, T.Load16(w, at4 + i + 16), b4);
            a5 = Vector512.FusedMultiplyAdd(xl, T.Load16(w, at5 + i), a5);
            b5 = Vector512.FusedMultiplyAdd(xh, T.Load16(w, at5 + i + 16), b5);
            a6 = Vector512.FusedMultiplyAdd(xl, T.Load16(w, at6 + i), a6);
            b6 = Vector512.FusedMultiplyAdd(xh, T.Load16(w, at6 + i + 16), b6);
            a7 = Vector512.FusedMultiplyAdd(xl, T.Load16(w, at7 + i), a7);
            b7 = Vector512.FusedMultiplyAdd(xh, T.Load16(w, at7 + i + 16), b7);
        }
        if (full < k)
        {
            int active = k - full;
            results[0] = SimdTree.Fold16(TailLanes512<T>(x, w, at, full, active, a0, b0));
            results[1] = SimdTree.Fold16(TailLanes512<T>(x, w, at1, full, active, a1, b1));
            results[2] = SimdTree.Fold16(TailLanes512<T>(x, w, at2, full, active, a2, b2));
            results[3] = SimdTree.Fold16(TailLanes512<T>(x, w, at3, full, active, a3, b3));
            results[4] = SimdTree.Fold16(TailLanes512<T>(x, w, at4, full, active, a4, b4));
            results[5] = SimdTree.Fold16(TailLanes512<T>(x, w, at5, full, active, a5, b5));
            results[6] = SimdTree.Fold16(TailLanes512<T>(x, w, at6, full, active, a6, b6));
            results[7] = SimdTree.Fold16(TailLanes512<T>(x, w, at7, full, active, a7, b7));
            return;
        }
        results[0] = SimdTree.Sum(a0, b0);
        results[1] = SimdTree.Sum(a1, b1);
        results[2] = SimdTree.Sum(a2, b2);
        results[3] = SimdTree.Sum(a3, b3);
        results[4] = SimdTree.Sum(a4, b4);
        results[5] = SimdTree.Sum(a5, b5);
        results[6] = SimdTree.Sum(a6, b6);
        results[7] = SimdTree.Sum(a7, b7);
    }

    /// <summary>Canonical dot of x[0..k) with stored w[at..at+k), lanes as four Vector256.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Dot256<T>(float* x, byte* w, long at, int k) where T : struct, IStoredVectors
    {
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        var acc2 = Vector256<float>.Zero;
        var acc3 = Vector256<float>.Zero;
        int full = k & ~31;
        for (int i = 0; i < full; i += 32)
        {
            acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i), T.Load8(w, at + i), acc0);
            acc1 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i + 8), T.Load8(w, at + i + 8), acc1);
            acc2 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i + 16), T.Load8(w, at + i + 16), acc2);
            acc3 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i + 24), T.Load8(w, at + i + 24), acc3);
        }
        if (full < k)
        {
            int active = k - full;
            var xs = stackalloc float[32];
            var ws = stackalloc float[32];
            for (int j = 0; j < 32; j++)
            {
                xs[j] = j < active ? x[full + j] : 0f;
                ws[j] = j < active ? T.Load1(w, at + full + j) : 0f;
            }
            acc0 = Vector256.ConditionalSelect(SimdTree.Active8(0, active), Vector256.FusedMultiplyAdd(Vector256.Load(xs), Vector256.Load(ws), acc0), acc0);
            acc1 = Vector256.ConditionalSelect(SimdTree.Active8(8, active), Vector256.FusedMultiplyAdd(Vector256.Load(xs + 8), Vector256.Load(ws + 8), acc1), acc1);
            acc2 = Vector256.ConditionalSelect(SimdTree.Active8(16, active), Vector256.FusedMultiplyAdd(Vector256.Load(xs + 16), Vector256.Load(ws + 16), acc2), acc2);
            acc3 = Vector256.ConditionalSelect(SimdTree.Active8(24, active), Vector256.FusedMultiplyAdd(Vector256.Load(xs + 24), Vector256.Load(ws + 24), acc3), acc3);
        }
        return SimdTree.Sum(acc0, acc1, acc2, acc3);
    }

    /// <summary>Canonical dot in plain scalar code, for machines without AVX2.</summary>
    public static float DotScalar<T>(float* x, byte* w, long at, int k) where T : struct, IStoredVectors
    {
        Span<float> lanes = stackalloc float[Canonical.Lanes];
        for (int i = 0; i < k; i++)
            lanes[i & 31] = MathF.FusedMultiplyAdd(x[i], T.Load1(w, at + i), lanes[i & 31]);
        return Canonical.SumTree(lanes);
    }
}
