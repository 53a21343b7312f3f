using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace IlgpuLlm.Kernels;

/// <summary>
/// The SIMD CPU twin of <see cref="Softmax"/>: per row, x / T and the canonical lane maxima in one
/// pass, e = exp(x′ − m) and the canonical lane sums in a second, e / Z in a third, with the 32
/// lanes held in two Vector512 or four Vector256. The tail of a row (width not a multiple of 32)
/// is folded into the stored lanes in scalar code, one term per lane as in every other evaluation.
/// Threads split the rows.
/// </summary>
public static unsafe class SoftmaxSimd
{
    public sealed class Job : IRangeJob
    {
        internal float* Logits, Probabilities;
        internal int Width;
        internal float Temperature;
        internal SimdLevel Level;

        public void Run(int start, int end)
        {
            for (int r = start; r < end; r++)
                Row(Logits + (long)r * Width, Probabilities + (long)r * Width, Width, Temperature, Level);
        }
    }

    public static void Run(CpuWorkers workers, SimdLevel level, Job job, float* logits, float* probabilities,
        SoftmaxShape shape, float temperature)
    {
        job.Logits = logits;
        job.Probabilities = probabilities;
        job.Width = shape.Width;
        job.Temperature = temperature;
        job.Level = SimdLevels.AtMost(level);
        workers.For(shape.Rows, 1, job);
    }

    public static void Row(float* x, float* p, int n, float temperature, SimdLevel level)
    {
        if (level == SimdLevel.Scalar)
        {
            Softmax.Row(new ReadOnlySpan<float>(x, n), new Span<float>(p, n), temperature);
            return;
        }
        float max = level == SimdLevel.Avx512 ? ScaleAndMax512(x, p, n, temperature) : ScaleAndMax256(x, p, n, temperature);
        if (max == float.NegativeInfinity)
        {
            new Span<float>(p, n).Clear();
            return;
        }
        float total = level == SimdLevel.Avx512 ? ExpAndSum512(p, n, max) : ExpAndSum256(p, n, max);
        Divide(p, n, total, level);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float ScaleAndMax512(float* x, float* p, int n, float temperature)
    {
        var t = Vector512.Create(temperature);
        var m0 = Vector512.Create(float.NegativeInfinity);
        var m1 = m0;
        int full = n & ~31;
        for (int i = 0; i < full; i += 32)
        {
            var a = Vector512.Load(x + i) / t;
            var b = Vector512.Load(x + i + 16) / t;
            a.Store(p + i);
            b.Store(p + i + 16);
            m0 = CanonicalMathSimd.Max(m0, a);
            m1 = CanonicalMathSimd.Max(m1, b);
        }
        if (full == n)
            return SimdTree.Max(m0, m1);
        var lanes = stackalloc float[Canonical.Lanes];
        m0.Store(lanes);
        m1.Store(lanes + 16);
        return ScaleAndMaxTail(x, p, full, n, temperature, lanes);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float ScaleAndMax256(float* x, float* p, int n, float temperature)
    {
        var t = Vector256.Create(temperature);
        var m0 = Vector256.Create(float.NegativeInfinity);
        var m1 = m0;
        var m2 = m0;
        var m3 = m0;
        int full = n & ~31;
        for (int i = 0; i < full; i += 32)
        {
            var a = Vector256.Load(x + i) / t;
            var b = Vector256.Load(x + i + 8) / t;
            var c = Vector256.Load(x + i + 16) / t;
            var d = Vector256.Load(x + i + 24) / t;
            a.Store(p + i);
            b.Store(p + i + 8);
            c.Store(p + i + 16);
            d.Store(p + i + 24);
            m0 = CanonicalMathSimd.Max(m0, a);
            m1 = CanonicalMathSimd.Max(m1, b);
            m2 = CanonicalMathSimd.Max(m2, c);
            m3 = CanonicalMathSimd.Max(m3, d);
        }
        if (full == n)
            return SimdTree.Max(m0, m1, m2, m3);
        var lanes = stackalloc float[Canonical.Lanes];
        m0.Store(lanes);
        m1.Store(lanes + 8);
        m2.Store(lanes + 16);
        m3.Store(lanes + 24);
        return ScaleAndMaxTail(x, p, full, n, temperature, lanes);
    }

    static float ScaleAndMaxTail(float* x, float* p, int full, int n, float temperature, float* lanes)
    {
        for (int i = full; i < n; i++)
        {
            float scaled = x[i] / temperature;
            p[i] = scaled;
            lanes[i - full] = CanonicalMath.Max(lanes[i - full], scaled);
        }
        return Canonical.MaxTree(new Span<float>(lanes, Canonical.Lanes));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float ExpAndSum512(float* p, int n, float max)
    {
        var m = Vector512.Create(max);
        var s0 = Vector512<float>.Zero;
        var s1 = s0;
        int full = n & ~31;
        for (int i = 0; i < full; i += 32)
        {
            var a = ExpOrZero(Vector512.Load(p + i) - m);
            var b = ExpOrZero(Vector512.Load(p + i + 16) - m);
            a.Store(p + i);
            b.Store(p + i + 16);
            s0 += a;
            s1 += b;
        }
        if (full == n)
            return SimdTree.Sum(s0, s1);
        var lanes = stackalloc float[Canonical.Lanes];
        s0.Store(lanes);
        s1.Store(lanes + 16);
        return ExpAndSumTail(p, full, n, max, lanes);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float ExpAndSum256(float* p, int n, float max)
    {
        var m = Vector256.Create(max);
        var s0 = Vector256<float>.Zero;
        var s1 = s0;
        var s2 = s0;
        var s3 = s0;
        int full = n & ~31;
        for (int i = 0; i < full; i += 32)
        {
            var a = ExpOrZero(Vector256.Load(p + i) - m);
            var b = ExpOrZero(Vector256.Load(p + i + 8) - m);
            var c = ExpOrZero(Vector256.Load(p + i + 16) - m);
            var d = ExpOrZero(Vector256.Load(p + i + 24) - m);
            a.Store(p + i);
            b.Store(p + i + 8);
            c.Store(p + i + 16);
            d.Store(p + i + 24);
            s0 += a;
            s1 += b;
            s2 += c;
            s3 += d;
        }
        if (full == n)
            return SimdTree.Sum(s0, s1, s2, s3);
        var lanes = stackalloc float[Canonical.Lanes];
        s0.Store(lanes);
        s1.Store(lanes + 8);
        s2.Store(lanes + 16);
        s3.Store(lanes + 24);
        return ExpAndSumTail(p, full, n, max, lanes);
    }

    static float ExpAndSumTail(float* p, int full, int n, float max, float* lanes)
    {
        for (int i = full; i < n; i++)
        {
            float e = CanonicalMath.Exp(p[i] - max);
            p[i] = e;
            lanes[i - full] += e;
        }
        return Canonical.SumTree(new Span<float>(lanes, Canonical.Lanes));
    }

    // exp clamps its argument at −104 and exp(−104) is +0, so a vector of arguments at or below the
    // clamp (masked or filtered logits: −inf) is +0 without evaluating it. Evaluating it costs far
    // more than a normal exp on x86: the final scaling produces subnormal or zero results, which
    // take microcode assists.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> ExpOrZero(Vector512<float> x) =>
        Vector512.LessThanOrEqualAll(x, Vector512.Create(CanonicalMath.ExpLowerClamp)) ? Vector512<float>.Zero : CanonicalMathSimd.Exp(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> ExpOrZero(Vector256<float> x) =>
        Vector256.LessThanOrEqualAll(x, Vector256.Create(CanonicalMath.ExpLowerClamp)) ? Vector256<float>.Zero : CanonicalMathSimd.Exp(x);

    /// <summary>p = p / total: one IEEE division per element, so the vector width does not matter.</summary>
    static void Divide(float* p, int n, float total, SimdLevel level)
    {
        int i = 0;
        if (level == SimdLevel.Avx512)
        {
            var z = Vector512.Create(total);
            for (; i + 16 <= n; i += 16)
                (Vector512.Load(p + i) / z).Store(p + i);
        }
        else
        {
            var z = Vector256.Create(total);
            for (; i + 8 <= n; i += 8)
                (Vector256.Load(p + i) / z).Store(p + i);
        }
        for (; i < n; i++)
            p[i] /= total;
    }
}
