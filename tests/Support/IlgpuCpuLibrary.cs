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

    static readonly Lazy<KernelLibrary> GpuShaped = new(() => new KernelLibrary(Instance.Value.Accelerator, profile: LaunchProfile.Gpu));

    public static KernelLibrary Library => Instance.Value;

    /// <summary>The same accelerator with CUDA's launch shapes (<see cref="LaunchProfile.Gpu"/>).</summary>
    public static KernelLibrary GpuShapes => GpuShaped.Value;

    /// <summary>The library of one launch profile.</summary>
    public static KernelLibrary For(LaunchProfile profile) => profile == LaunchProfile.Gpu ? GpuShapes : Library;

    public static Accelerator Accelerator => Instance.Value.Accelerator;
}
