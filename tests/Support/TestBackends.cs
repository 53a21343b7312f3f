using IlgpuLlm.Kernels;
using IlgpuLlm.Runtime.Backends;

namespace IlgpuLlm.Tests.Support;

/// <summary>
/// Every backend present on this machine, by name, created once per test run: the ILGPU CPU
/// accelerator in its own launch shapes and in CUDA's, CUDA where a device exists, and the SIMD CPU
/// backend with 1 and 2 threads at every SIMD level the machine runs. A test that takes a backend name runs once per entry, so a new
/// backend only has to add itself here.
/// </summary>
public static class TestBackends
{
    static readonly Lazy<bool> CudaPresent = new(() =>
    {
        using var context = KernelContext.Create(1);
        return KernelContext.FindCuda(context) != null;
    });

    static readonly Dictionary<string, Lazy<IBackend>> Registry = Build();

    static Dictionary<string, Lazy<IBackend>> Build()
    {
        var backends = new Dictionary<string, Lazy<IBackend>>
        {
            ["ilgpu-cpu"] = new(() => IlgpuBackend.CreateCpu(2)),
            // The kernels and launch shapes CUDA gets, proven on the CPU accelerator.
            [GpuShapesOnCpu] = new(() => IlgpuBackend.CreateCpu(2, LaunchProfile.Gpu)),
        };
        var cuda = new Lazy<IBackend?>(IlgpuBackend.TryCreateCuda);
        if (CudaPresent.Value)
            backends["cuda"] = new(() => cuda.Value!);
        foreach (var level in SimdLevels.Available)
            foreach (int threads in new[] { 1, 2 })
                backends[$"simd-{level.Name()}-t{threads}"] = new(() => new SimdBackend(threads, level));
        return backends;
    }

    /// <summary>ILGPU's CPU accelerator launching every kernel in CUDA's launch shapes.</summary>
    public const string GpuShapesOnCpu = "ilgpu-cpu-gpu-shapes";

    /// <summary>Whether CUDA is among the backends.</summary>
    public static bool HasCuda => CudaPresent.Value;

    /// <summary>Backend names for [MemberData].</summary>
    public static IEnumerable<object[]> All => Registry.Keys.Select(name => new object[] { name });

    public static IBackend Get(string name) => Registry[name].Value;

    /// <summary>True for ILGPU's CPU accelerator (either launch shapes): it runs every GPU thread in software, so sweeps there are sparser.</summary>
    public static bool IsCpuAccelerator(string name) => name.StartsWith("ilgpu-cpu", StringComparison.Ordinal);
}
