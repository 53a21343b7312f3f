using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace IlgpuLlm.Kernels;

/// <summary>
/// The SIMD CPU twin of <see cref="RmsNorm"/>: each row's sum of squares in the canonical order
/// (the 32 lanes as two Vector512 or four Vector256 accumulators, then the fixed tree), the same
/// scalar inverse, and the same two products per element. Threads split the rows. An f16 weight
/// must be finite (validated at load; <see cref="F16Vectors"/> widens only finite halves exactly).
/// </summary>
public static unsafe class RmsNormSimd
{
    /// <summary>The reusable job object a backend keeps for its RMSNorm calls.</summary>
    public sealed class Job : IRangeJob
    {
        internal float* X, Y;
        internal byte* Weight;
        internal RmsNormShape Shape;
        internal delegate*<Job, int, int, void> Body;
        internal SimdLevel Level;

        public void Run(int start, int end) => Body(this, start, end);
    }

    /// <summary>Picks the loop for the weight format.</summary>
    struct SelectBody : IStorageAction
    {
        public Job Job;

        public readonly void Run<TStorage, TWeights, TExact>()
            where TStorage : struct, IStorageView<TStorage> where TWeights : struct, IStoredVectors where TExact : struct, IStoredVectors =>
            Job.Body = &Rows<TWeights>;
    }

    public static void Run(CpuWorkers workers, SimdLevel level, Job job, float* x, byte* weight, StorageType type,
        float* y, RmsNormShape shape)
    {
        job.X = x;
        job.Weight = weight;
        var select = new SelectBody { Job = job };
        type.Format().Dispatch(ref select);
        job.Y = y;
        job.Shape = shape;
        job.Level = SimdLevels.AtMost(level);
        workers.For(shape.Rows, workers.ChunkFor(shape.Rows), job);
    }

    static void Rows<T>(Job job, int start, int end) where T : struct, IStoredVectors
    {
        var shape = job.Shape;
        int width = shape.Width;
        for (int r = start; r < end; r++)
        {
            float* x = job.X + (long)r * width;
            float* y = job.Y + (long)r * width;
            float sumOfSquares = job.Level switch
            {
                SimdLevel.Avx512 => SumOfSquares512(x, width),
                SimdLevel.Avx2 => SumOfSquares256(x, width),
                _ => Canonical.SumOfSquares(new ReadOnlySpan<float>(x, width)),
            };
            float inverse = RmsNorm.InverseRms(sumOfSquares, width, shape.Epsilon);
            switch (job.Level)
            {
                case SimdLevel.Avx512: Scale512<T>(x, job.Weight, y, width, inverse, shape.AddOneToWeight); break;
                case SimdLevel.Avx2: Scale256<T>(x, job.Weight, y, width, inverse, shape.AddOneToWeight); break;
                default: ScaleScalar<T>(x, job.Weight, y, 0, width, inverse, shape.AddOneToWeight); break;
            }
        }
    }

    /// <summary>Canonical Σ x[i]² of x[0..n), lanes 0–15 and 16–31 as two Vector512.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float SumOfSquares512(float* x, int n)
    {
        var acc0 = Vector512<float>.Zero;
        var acc1 = Vector512<float>.Zero;
        int full = n & ~31;
        for (int i = 0; i < full; i += 32)
        {
            var v0 = Vector512.Load(x + i);
            var v1 = Vector512.Load(x + i + 16);
            acc0 = Vector512.FusedMultiplyAdd(v0, v0, acc0);
            acc1 = Vector512.FusedMultiplyAdd(v1, v1, acc1);
        }
        if (full < n)
        {
            // Lanes past the end get no term (not a zero term: fma(0, 0, −0) is +0).
            int active = n - full;
            var tail = stackalloc float[32];
            for (int j = 0; j < 32; j++)
                tail[j] = j < active ? x[full + j] : 0f;
            var t0 = Vector512.Load(tail);
            var t1 = Vector512.Load(tail + 16);
            acc0 = Vector512.ConditionalSelect(SimdTree.Active16(0, active), Vector512.FusedMultiplyAdd(t0, t0, acc0), acc0);
            acc1 = Vector512.ConditionalSelect(SimdTree.Active16(16, active), Vector512.FusedMultiplyAdd(t1, t1, acc1), acc1);
        }
        return SimdTree.Sum(acc0, acc1);
    }

    /// <summary>Canonical Σ x[i]² of x[0..n), lanes as four Vector256.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float SumOfSquares256(float* x, int n)
    {
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        var acc2 = Vector256<float>.Zero;
        var acc3 = Vector256<float>.Zero;
        int full = n & ~31;
        for (int i = 0; i < full; i += 32)
        {
            var v0 = Vector256.Load(x + i);
            var v1 = Vector256.Load(x + i + 8);
            var v2 = Vector256.Load(x + i + 16);
            var v3 = Vector256.Load(x + i + 24);
            acc0 = Vector256.FusedMultiplyAdd(v0, v0, acc0);
            acc1 = Vector256.FusedMultiplyAdd(v1, v1, acc1);
            acc2 = Vector256.FusedMultiplyAdd(v2, v2, acc2);
            acc3 = Vector256.FusedMultiplyAdd(v3, v3, acc3);
        }
        if (full < n)
        {
            int active = n - full;
            var tail = stackalloc float[32];
            for (int j = 0; j < 32; j++)
                tail[j] = j < active ? x[full + j] : 0f;
            var t0 = Vector256.Load(tail);
            var t1 = Vector256.Load(tail + 8);
            var t2 = Vector256.Load(tail + 16);
            var t3 = Vector256.Load(tail + 24);
            acc0 = Vector256.ConditionalSelect(SimdTree.Active8(0, active), Vector256.FusedMultiplyAdd(t0, t0, acc0), acc0);
            acc1 = Vector256.ConditionalSelect(SimdTree.Active8(8, active), Vector256.FusedMultiplyAdd(t1, t1, acc1), acc1);
            acc2 = Vector256.ConditionalSelect(SimdTree.Active8(16, active), Vector256.FusedMultiplyAdd(t2, t2, acc2), acc2);
            acc3 = Vector256.ConditionalSelect(SimdTree.Active8(24, active), Vector256.FusedMultiplyAdd(t3, t3, acc3), acc3);
        }
        return SimdTree.Sum(acc0, acc1, acc2, acc3);
    }

    /// <summary>y[i] = (x[i] · inverse) · w′[i], 16 lanes at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Scale512<T>(float* x, byte* weight, float* y, int n, float inverse, bool addOne) where T : struct, IStoredVectors
    {
        var inv = Vector512.Create(inverse);
        int i = 0;
        if (addOne)
            for (; i + 16 <= n; i += 16)
                (Vector512.Load(x + i) * inv * (Vector512<float>.One + T.Load16(weight, i))).Store(y + i);
        else
            for (; i + 16 <= n; i += 16)
                (Vector512.Load(x + i) * inv * T.Load16(weight, i)).Store(y + i);
        ScaleScalar<T>(x, weight, y, i, n, inverse, addOne);
    }

    /// <summary>y[i] = (x[i] · inverse) · w′[i], 8 lanes at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Scale256<T>(float* x, byte* weight, float* y, int n, float inverse, bool addOne) where T : struct, IStoredVectors
    {
        var inv = Vector256.Create(inverse);
        int i = 0;
        if (addOne)
            for (; i + 8 <= n; i += 8)
                (Vector256.Load(x + i) * inv * (Vector256<float>.One + T.Load8(weight, i))).Store(y + i);
        else
            for (; i + 8 <= n; i += 8)
                (Vector256.Load(x + i) * inv * T.Load8(weight, i)).Store(y + i);
        ScaleScalar<T>(x, weight, y, i, n, inverse, addOne);
    }

    static void ScaleScalar<T>(float* x, byte* weight, float* y, int begin, int n, float inverse, bool addOne) where T : struct, IStoredVectors
    {
        for (int i = begin; i < n; i++)
            y[i] = x[i] * inverse * RmsNorm.EffectiveWeight(T.Load1(weight, i), addOne);
    }
}
