using ILGPU;
using ILGPU.Runtime.Cuda;
using IlgpuLlm.Kernels;

namespace IlgpuLlm.Tests.Support;

/// <summary>
/// Kernel libraries for tests that launch kernels directly (to read what a backend's interface
/// does not return, such as the sampler's trace): ILGPU's CPU accelerator with its own launch
/// profile and with CUDA's, and CUDA where a device exists. Created once per test run, on the
/// accelerator <see cref="IlgpuCpuLibrary"/> holds.
/// </summary>
public static class KernelLibraries
{
    static readonly Lazy<KernelLibrary?> Cuda = new(() =>
    {
        var context = KernelContext.Create(1);
        if (KernelContext.FindCuda(context) is not CudaDevice device)
        {
            context.Dispose();
            return null;
        }
        return new KernelLibrary(device.CreateCudaAccelerator(context));
    });

    /// <summary>Names as <see cref="TestBackends"/> gives them: ilgpu-cpu, ilgpu-cpu-gpu-shapes, and cuda where present.</summary>
    public static IEnumerable<string> Names =>
        TestBackends.HasCuda ? ["ilgpu-cpu", TestBackends.GpuShapesOnCpu, "cuda"] : ["ilgpu-cpu", TestBackends.GpuShapesOnCpu];

    public static KernelLibrary Get(string name) => name switch
    {
        "ilgpu-cpu" => IlgpuCpuLibrary.Library,
        TestBackends.GpuShapesOnCpu => IlgpuCpuLibrary.GpuShapes,
        "cuda" => Cuda.Value ?? throw new InvalidOperationException("no CUDA device"),
        _ => throw new ArgumentException($"no kernel library named {name}"),
    };
}
