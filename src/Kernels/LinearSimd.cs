using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace IlgpuLlm.Kernels;

/// <summary>
/// The SIMD CPU twin of <see cref="Linear"/>: the same canonical dot product per output, with the
/// 32 lanes held in two Vector512 or four Vector256 accumulators and weights widened inside the
/// loop. Threads split the output features.
/// </summary>
public static unsafe partial class LinearSimd
{
    /// <summary>The reusable job object a backend keeps for its linear calls.</summary>
    public sealed class Job : IRangeJob
    {
        internal float* X, Bias, Y;
        internal byte* W;
        internal LinearShape Shape;
        internal StorageType Type;
        internal SimdLevel Level;
        internal bool Tiled;
        internal float* Packed;
        internal long PackedCapacity;
        internal int PackedStride;

        public void Run(int start, int end)
        {
            switch (Type, Tiled)
            {
                case (StorageType.F32, false): Rows<F32Vectors>(this, start, end); break;
                case (StorageType.F16, false): Rows<F16Vectors>(this, start, end); break;
                case (_, false): Rows<Bf16Vectors>(this, start, end); break;
                case (StorageType.F32, true): TiledBlocks<F32Vectors>(this, start, end); break;
                case (StorageType.F16, true): TiledBlocks<F16Vectors>(this, start, end); break;
                default: TiledBlocks<Bf16Vectors>(this, start, end); break;
            }
        }
    }

    public static void Run(CpuWorkers workers, SimdLevel level, Job job, float* x, byte* w, StorageType type,
        float* bias, float* y, LinearShape shape)
    {
        job.X = x;
        job.W = w;
        job.Type = type;
        job.Bias = bias;
        job.Y = y;
        job.Shape = shape;
        job.Level = SimdLevels.AtMost(level);
        job.Tiled = job.Level == SimdLevel.Avx512 && shape.Rows >= TiledFromRows;
        if (job.Tiled)
        {
            PackRows(job);
            int blocks = (shape.OutFeatures + BlockOutputs - 1) / BlockOutputs;
            workers.For(blocks, 1, job);
        }
        else
            workers.For(shape.OutFeatures, workers.ChunkFor(shape.OutFeatures), job);
    }

    static void Rows<T>(Job job, int start, int end) where T : struct, IStoredVectors
    {
        var shape = job.Shape;
        int k = shape.InFeatures;
        for (int n = start; n < end; n++)
        {
            long weightRow = (long)n * k;
            for (int m = 0; m < shape.Rows; m++)
            {
                float* x = job.X + (long)m * k;
                float dot = job.Level switch
                {
                    SimdLevel.Avx512 => Dot512<T>(x, job.W, weightRow, k),
                    SimdLevel.Avx2 => Dot256<T>(x, job.W, weightRow, k),
                    _ => DotScalar<T>(x, job.W, weightRow, k),
                };
                job.Y[(long)m * shape.OutFeatures + n] = job.Bias != null ? dot + job.Bias[n] : dot;
            }
        }
    }

    /// <summary>Canonical dot of x[0..k) with stored w[at..at+k), lanes as two Vector512.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Dot512<T>(float* x, byte* w, long at, int k) where T : struct, IStoredVectors
    {
        var acc0 = Vector512<float>.Zero;
        var acc1 = Vector512<float>.Zero;
        int full = k & ~31;
        for (int i = 0; i < full; i += 32)
        {
            acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i), T.Load16(w, at + i), acc0);
            acc1 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i + 16), T.Load16(w, at + i + 16), acc1);
        }
        if (full < k)
        {
            // Lanes past the end get no term at all (not a zero term: fma(0, 0, −0) is +0).
            int active = k - full;
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
        }
        return SimdTree.Sum(acc0, acc1);
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
