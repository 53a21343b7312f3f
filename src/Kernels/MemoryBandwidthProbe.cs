using System.Diagnostics;
using System.Runtime.Intrinsics;

namespace IlgpuLlm.Kernels;

/// <summary>
/// The memory-bandwidth baseline weight-streaming work is compared with: a vectorised sum over a
/// buffer far larger than the caches (1 GiB by default), split over the same number of threads the
/// kernels use. Decode reads every weight once per token, so weight bytes per second over this
/// figure says how close a decode step comes to what the machine's memory can deliver. The buffer
/// lies in huge pages where the system has them, as the SIMD backend's weights do. Used by the
/// BenchmarkDotNet suites and by the <c>bench</c> command, so both measure the same thing.
/// </summary>
public sealed unsafe class MemoryBandwidthProbe : IDisposable
{
    public const long DefaultBytes = 1L << 30;

    /// <summary>Floats one work item sums: 4 MiB, large enough that scheduling costs nothing.</summary>
    const int ChunkFloats = 1 << 20;

    readonly SumJob job = new();
    readonly HugePages.Block block;
    float* data;

    /// <param name="bytes">Buffer size; rounded down to whole 4 MiB chunks (at least one).</param>
    public MemoryBandwidthProbe(long bytes = DefaultBytes)
    {
        long chunks = Math.Max(1, bytes / (ChunkFloats * 4L));
        if (chunks > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(bytes), $"a {bytes}-byte probe buffer is too large");
        Chunks = (int)chunks;
        Bytes = chunks * ChunkFloats * 4L;
        // In huge pages, as the weights are (WeightMemory.HugePages): 4 KiB pages would make the
        // baseline a measure of TLB misses rather than of the memory.
        block = HugePages.Allocate(Bytes);
        data = (float*)block.Pointer;
        // Touch every page now, so the first timed read does not measure page faults.
        new Span<float>(data, checked((int)(Bytes / 4))).Fill(1f);
        job.Data = data;
    }

    /// <summary>Bytes one <see cref="Read"/> streams.</summary>
    public long Bytes { get; }

    int Chunks { get; }

    /// <summary>Reads the whole buffer once, summing it on <paramref name="workers"/>; returns a sum so nothing is optimised away.</summary>
    public float Read(CpuWorkers workers)
    {
        ObjectDisposedException.ThrowIf(data == null, this);
        job.Reset();
        workers.For(Chunks, 1, job);
        return job.Total;
    }

    /// <summary>
    /// The median of <paramref name="repetitions"/> timed reads after one untimed one, in GB/s
    /// (10⁹ bytes per second). The median, because on a shared machine a neighbour's burst slows
    /// single reads, and a lucky read should not set the bar either.
    /// </summary>
    public double MeasureGigabytesPerSecond(CpuWorkers workers, int repetitions = 5)
    {
        if (repetitions < 1)
            throw new ArgumentOutOfRangeException(nameof(repetitions), $"repetitions {repetitions} must be at least 1");
        Read(workers);
        var rates = new double[repetitions];
        for (int i = 0; i < repetitions; i++)
        {
            long start = Stopwatch.GetTimestamp();
            Read(workers);
            rates[i] = Bytes / Stopwatch.GetElapsedTime(start).TotalSeconds / 1e9;
        }
        Array.Sort(rates);
        return repetitions % 2 == 1 ? rates[repetitions / 2] : (rates[repetitions / 2 - 1] + rates[repetitions / 2]) / 2;
    }

    /// <summary>Allocates a probe, measures with <paramref name="threads"/> threads and frees it again.</summary>
    public static double Measure(int threads, long bytes = DefaultBytes, int repetitions = 5)
    {
        using var probe = new MemoryBandwidthProbe(bytes);
        using var workers = new CpuWorkers(threads);
        return probe.MeasureGigabytesPerSecond(workers, repetitions);
    }

    public void Dispose()
    {
        block.Dispose();
        data = null;
    }

    sealed class SumJob : IRangeJob
    {
        public float* Data;
        float total;
        readonly Lock gate = new();

        public float Total => total;

        public void Reset() => total = 0;

        public void Run(int start, int end)
        {
            float sum = Vector512.IsHardwareAccelerated ? Sum512(start, end) : Sum256(start, end);
            lock (gate)
                total += sum;
        }

        // Four independent accumulators keep enough loads in flight to saturate memory, not the adder.
        float Sum512(int start, int end)
        {
            var acc0 = Vector512<float>.Zero;
            var acc1 = Vector512<float>.Zero;
            var acc2 = Vector512<float>.Zero;
            var acc3 = Vector512<float>.Zero;
            for (long i = (long)start * ChunkFloats; i < (long)end * ChunkFloats; i += 64)
            {
                acc0 += Vector512.Load(Data + i);
                acc1 += Vector512.Load(Data + i + 16);
                acc2 += Vector512.Load(Data + i + 32);
                acc3 += Vector512.Load(Data + i + 48);
            }
            return Vector512.Sum(acc0 + acc1 + acc2 + acc3);
        }

        float Sum256(int start, int end)
        {
            var acc0 = Vector256<float>.Zero;
            var acc1 = Vector256<float>.Zero;
            var acc2 = Vector256<float>.Zero;
            var acc3 = Vector256<float>.Zero;
            for (long i = (long)start * ChunkFloats; i < (long)end * ChunkFloats; i += 32)
            {
                acc0 += Vector256.Load(Data + i);
                acc1 += Vector256.Load(Data + i + 8);
                acc2 += Vector256.Load(Data + i + 16);
                acc3 += Vector256.Load(Data + i + 24);
            }
            return Vector256.Sum(acc0 + acc1 + acc2 + acc3);
        }
    }
}
