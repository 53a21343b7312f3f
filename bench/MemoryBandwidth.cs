using BenchmarkDotNet.Attributes;
using IlgpuLlm.Kernels;

namespace IlgpuLlm.Bench;

/// <summary>
/// The memory-bandwidth baseline every weight-streaming benchmark is compared with, measured in the
/// same run: <see cref="MemoryBandwidthProbe"/>'s vectorised sum over 1 GiB (far beyond the caches),
/// split over the same threads the kernels use — the same measurement the <c>bench</c> command makes.
/// </summary>
[Config(typeof(BenchConfig))]
public class MemoryBandwidth
{
    public const long Bytes = MemoryBandwidthProbe.DefaultBytes;
    MemoryBandwidthProbe probe = null!;
    CpuWorkers workers = null!;

    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        probe = new MemoryBandwidthProbe(Bytes);
        workers = new CpuWorkers(Threads);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        workers.Dispose();
        probe.Dispose();
    }

    [Benchmark(Description = "read 1 GiB")]
    public float Read() => probe.Read(workers);
}
