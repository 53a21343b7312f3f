using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using BenchmarkDotNet.Attributes;
using IlgpuLlm.Kernels;

namespace IlgpuLlm.Bench;

/// <summary>
/// The memory-bandwidth baseline every weight-streaming benchmark is compared with, measured in the
/// same run: a vectorised sum over 1 GiB (far beyond the caches), split over the same threads the
/// kernels use.
/// </summary>
[Config(typeof(BenchConfig))]
public unsafe class MemoryBandwidth
{
    public const long Bytes = 1L << 30;
    byte* data;
    CpuWorkers workers = null!;
    readonly SumJob job = new();

    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        data = (byte*)NativeMemory.AlignedAlloc((nuint)Bytes, 64);
        new Span<float>(data, (int)(Bytes / 4)).Fill(1f);
        workers = new CpuWorkers(Threads);
        job.Data = (float*)data;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        workers.Dispose();
        NativeMemory.AlignedFree(data);
    }

    [Benchmark(Description = "read 1 GiB")]
    public float Read()
    {
        const int Chunk = 1 << 20; // floats per work item (4 MiB)
        workers.For((int)(Bytes / 4 / Chunk), 1, job);
        return job.Total;
    }

    sealed class SumJob : IRangeJob
    {
        public float* Data;
        public float Total;

        public void Run(int start, int end)
        {
            var acc0 = Vector512<float>.Zero;
            var acc1 = Vector512<float>.Zero;
            var acc2 = Vector512<float>.Zero;
            var acc3 = Vector512<float>.Zero;
            for (long i = (long)start << 20; i < (long)end << 20; i += 64)
            {
                acc0 += Vector512.Load(Data + i);
                acc1 += Vector512.Load(Data + i + 16);
                acc2 += Vector512.Load(Data + i + 32);
                acc3 += Vector512.Load(Data + i + 48);
            }
            Total = Vector512.Sum(acc0 + acc1 + acc2 + acc3);
        }
    }
}
