using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace IlgpuLlm.Kernels;

/// <summary>
/// The SIMD CPU twin of <see cref="Activations.SoftCapReference"/>: x = tanh(x / cap)·cap in
/// place, element-wise, so any split over threads and any vector width give the reference's bits.
/// Threads take blocks of <see cref="BlockSize"/> values.
/// </summary>
public static unsafe class SoftCapSimd
{
    const int BlockSize = 1 << 14;

    public sealed class Job : IRangeJob
    {
        internal float* X;
        internal long Count;
        internal float Cap;
        internal SimdLevel Level;

        public void Run(int start, int end)
        {
            long from = (long)start * BlockSize;
            long to = Math.Min(Count, (long)end * BlockSize);
            Range(X + from, (int)(to - from), Cap, Level);
        }
    }

    public static void Run(CpuWorkers workers, SimdLevel level, Job job, float* x, long count, float cap)
    {
        Activations.ValidateCap(cap);
        job.X = x;
        job.Count = count;
        job.Cap = cap;
        job.Level = SimdLevels.AtMost(level);
        int blocks = checked((int)((count + BlockSize - 1) / BlockSize));
        workers.For(blocks, 1, job);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Range(float* x, int n, float cap, SimdLevel level)
    {
        int i = 0;
        if (level == SimdLevel.Avx512)
        {
            var c = Vector512.Create(cap);
            for (; i + 16 <= n; i += 16)
                CanonicalMathSimd.SoftCap(Vector512.Load(x + i), c).Store(x + i);
        }
        else if (level == SimdLevel.Avx2)
        {
            var c = Vector256.Create(cap);
            for (; i + 8 <= n; i += 8)
                CanonicalMathSimd.SoftCap(Vector256.Load(x + i), c).Store(x + i);
        }
        for (; i < n; i++)
            x[i] = CanonicalMath.SoftCap(x[i], cap);
    }
}
