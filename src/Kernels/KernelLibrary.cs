using System.Collections.Concurrent;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace IlgpuLlm.Kernels;

/// <summary>
/// The ILGPU context every kernel is compiled in: exact arithmetic registered for PTX, no fast
/// math, and a CPU device shaped like a GPU (32-thread warps) so that the warp-level canonical
/// tree runs unchanged on ILGPU's CPU accelerator.
/// </summary>
public static class KernelContext
{
    /// <summary>Threads of one warp on every device the kernels run on (docs/NUMERICS.md).</summary>
    public const int WarpSize = 32;

    /// <summary>Largest group a kernel launches: four warps.</summary>
    public const int MaxGroupSize = 4 * WarpSize;

    public static Context Create(int cpuThreads = 0)
    {
        if (cpuThreads <= 0)
            cpuThreads = Environment.ProcessorCount;
        return Context.Create(builder =>
        {
            builder.CPU(new CPUDevice(WarpSize, MaxGroupSize / WarpSize, cpuThreads));
            builder.Cuda();
            builder.Optimize(OptimizationLevel.O1);
            builder.Math(MathMode.Default);
            ExactMath.RegisterPtx(builder);
        });
    }

    /// <summary>The first CUDA device of a context, or null where there is none.</summary>
    public static Device? FindCuda(Context context) =>
        context.Devices.FirstOrDefault(d => d.AcceleratorType == AcceleratorType.Cuda);
}

/// <summary>
/// How launchers shape their grids (groups per output tile, warps per row). The shape changes the
/// speed, never the bits (docs/NUMERICS.md §4), so any accelerator may run either profile: ILGPU's
/// CPU accelerator runs the CUDA shapes in tests, which is how they are checked without a GPU.
/// </summary>
public enum LaunchProfile
{
    /// <summary>For ILGPU's CPU accelerator: few, large groups, since every group costs barriers across 32 OS threads.</summary>
    Cpu,

    /// <summary>For a GPU: enough groups to keep every multiprocessor busy.</summary>
    Cuda,
}

/// <summary>
/// Kernels loaded for one accelerator, each compiled once on first use. Every kernel takes one
/// argument struct (its views and sizes), so one loader serves them all, and every launch goes
/// through it and is counted in <see cref="Counters"/>.
/// </summary>
public sealed class KernelLibrary : IDisposable
{
    readonly ConcurrentDictionary<System.Reflection.MethodInfo, Delegate> loaded = new();

    /// <param name="accelerator">Where the kernels run.</param>
    /// <param name="profile">The launch shapes; by default the accelerator's own (CPU for ILGPU's CPU accelerator, else CUDA).</param>
    /// <param name="counters">Where launches are counted; a fresh set by default.</param>
    public KernelLibrary(Accelerator accelerator, LaunchProfile? profile = null, DeviceCounters? counters = null)
    {
        Counters = counters ?? new DeviceCounters();
        if (accelerator.WarpSize != KernelContext.WarpSize)
            throw new NotSupportedException(
                $"{accelerator.Name} has {accelerator.WarpSize}-thread warps; the canonical reduction order needs {KernelContext.WarpSize}");
        Accelerator = accelerator;
        Profile = profile ?? (accelerator.AcceleratorType == AcceleratorType.CPU ? LaunchProfile.Cpu : LaunchProfile.Cuda);
    }

    public Accelerator Accelerator { get; }

    /// <summary>The launch shapes every launcher of this library uses.</summary>
    public LaunchProfile Profile { get; }

    /// <summary>Launches of this library's kernels are counted here.</summary>
    public DeviceCounters Counters { get; }

    /// <summary>The loaded form of <paramref name="kernel"/>, compiled on first request.</summary>
    public Action<KernelConfig, TArgs> Get<TArgs>(Action<TArgs> kernel) where TArgs : struct =>
        (Action<KernelConfig, TArgs>)loaded.GetOrAdd(kernel.Method, _ =>
        {
            var launch = Accelerator.LoadStreamKernel(kernel);
            var counters = Counters;
            return (Action<KernelConfig, TArgs>)((config, arguments) =>
            {
                counters.Launch();
                launch(config, arguments);
            });
        });

    /// <summary>The loaded form of an implicitly grouped (one thread per element) kernel.</summary>
    public Action<Index1D, TArgs> GetElementwise<TArgs>(Action<Index1D, TArgs> kernel) where TArgs : struct =>
        (Action<Index1D, TArgs>)loaded.GetOrAdd(kernel.Method, _ =>
        {
            var launch = Accelerator.LoadAutoGroupedStreamKernel(kernel);
            var counters = Counters;
            return (Action<Index1D, TArgs>)((extent, arguments) =>
            {
                counters.Launch();
                launch(extent, arguments);
            });
        });

    public void Dispose() => loaded.Clear();
}
