using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace IlgpuLlm.Kernels;

/// <summary>
/// The SIMD CPU twin of <see cref="FiniteCheck"/>: exponent-bit tests on 64 values per step
/// (four vectors OR-ed, one branch), the exact position found only inside a step that hit.
/// Threads take blocks in increasing order and skip blocks that start past the lowest hit found
/// so far; the answer is the minimum over blocks, the lowest index whatever the thread count.
/// </summary>
public static unsafe class FiniteCheckSimd
{
    const int BlockSize = 1 << 16;

    public sealed class Job : IRangeJob
    {
        internal float* X;
        internal long Count;
        internal SimdLevel Level;
        internal long Lowest;

        public void Run(int start, int end)
        {
            for (int block = start; block < end; block++)
            {
                long from = (long)block * BlockSize;
                if (from >= Volatile.Read(ref Lowest))
                    return;
                long to = Math.Min(Count, from + BlockSize);
                int hit = FirstNonFinite(X + from, (int)(to - from), Level);
                if (hit >= 0)
                {
                    long index = from + hit;
                    long seen = Volatile.Read(ref Lowest);
                    while (index < seen)
                    {
                        long previous = Interlocked.CompareExchange(ref Lowest, index, seen);
                        if (previous == seen)
                            break;
                        seen = previous;
                    }
                    return;
                }
            }
        }
    }

    /// <summary>The lowest index of a NaN or ±inf among x[0..count), or −1.</summary>
    public static long Run(CpuWorkers workers, SimdLevel level, Job job, float* x, long count)
    {
        if (count < 0)
            throw new ArgumentOutOfRangeException(nameof(count), $"finite check: count {count} must not be negative");
        job.X = x;
        job.Count = count;
        job.Level = SimdLevels.AtMost(level);
        job.Lowest = long.MaxValue;
        int blocks = checked((int)((count + BlockSize - 1) / BlockSize));
        workers.For(blocks, 1, job);
        return job.Lowest == long.MaxValue ? -1 : job.Lowest;
    }

    public sealed class RowsJob : IRangeJob
    {
        internal float* X;
        internal int* Flags;
        internal int Width, Mark;
        internal SimdLevel Level;

        public void Run(int start, int end)
        {
            for (int r = start; r < end; r++)
                if (FirstNonFinite(X + (long)r * Width, Width, Level) >= 0)
                    Flags[r] = Math.Max(Flags[r], Mark);
        }
    }

    /// <summary>Flags the rows of x [rows, width] that hold NaN or ±inf (validated by the caller; see <see cref="FiniteCheck.RowsReference"/>).</summary>
    public static void RunRows(CpuWorkers workers, SimdLevel level, RowsJob job, float* x, int rows, int width, int* flags, int mark)
    {
        job.X = x;
        job.Flags = flags;
        job.Width = width;
        job.Mark = mark;
        job.Level = SimdLevels.AtMost(level);
        workers.For(rows, Math.Max(1, workers.ChunkFor(rows)), job);
    }

    /// <summary>The lowest index of a non-finite value in x[0..n), or −1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static int FirstNonFinite(float* x, int n, SimdLevel level)
    {
        int i = 0;
        if (level == SimdLevel.Avx512)
        {
            var mask = Vector512.Create(FiniteCheck.ExponentMask);
            for (; i + 64 <= n; i += 64)
            {
                var hits = Vector512.Equals(Vector512.Load((uint*)x + i) & mask, mask)
                    | Vector512.Equals(Vector512.Load((uint*)x + i + 16) & mask, mask)
                    | Vector512.Equals(Vector512.Load((uint*)x + i + 32) & mask, mask)
                    | Vector512.Equals(Vector512.Load((uint*)x + i + 48) & mask, mask);
                if (hits != Vector512<uint>.Zero)
                    return i + ScalarFirst(x + i, 64);
            }
        }
        else if (level == SimdLevel.Avx2)
        {
            var mask = Vector256.Create(FiniteCheck.ExponentMask);
            for (; i + 32 <= n; i += 32)
            {
                var hits = Vector256.Equals(Vector256.Load((uint*)x + i) & mask, mask)
                    | Vector256.Equals(Vector256.Load((uint*)x + i + 8) & mask, mask)
                    | Vector256.Equals(Vector256.Load((uint*)x + i + 16) & mask, mask)
                    | Vector256.Equals(Vector256.Load((uint*)x + i + 24) & mask, mask);
                if (hits != Vector256<uint>.Zero)
                    return i + ScalarFirst(x + i, 32);
            }
        }
        int tail = ScalarFirst(x + i, n - i);
        return tail < 0 ? -1 : i + tail;
    }

    static int ScalarFirst(float* x, int n)
    {
        for (int i = 0; i < n; i++)
            if ((BitConverter.SingleToUInt32Bits(x[i]) & FiniteCheck.ExponentMask) == FiniteCheck.ExponentMask)
                return i;
        return -1;
    }
}
