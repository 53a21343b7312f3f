using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using IlgpuLlm.Kernels;

namespace IlgpuLlm.Tests.Support;

/// <summary>
/// Kernels loaded on ILGPU's CPU accelerator, for tests that launch a kernel directly with a shape
/// the backend would only choose on CUDA (four warps per row, few threads striding a long buffer).
/// Created once per test run.
/// </summary>
public static class IlgpuCpuLibrary
{
    static readonly Lazy<KernelLibrary> Instance = new(() =>
    {
        var context = KernelContext.Create(2);
        return new KernelLibrary(context.CreateCPUAccelerator(0, CPUAcceleratorMode.Parallel));
    });

    public static KernelLibrary Library => Instance.Value;

    public static Accelerator Accelerator => Instance.Value.Accelerator;
}
