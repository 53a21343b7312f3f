using IlgpuLlm.Kernels;

namespace IlgpuLlm.Runtime.Backends;

/// <summary>Creates the backend a user asks for by name.</summary>
public static class Devices
{
    public static readonly string[] Names = ["auto", "cpu", "ilgpu-cpu", "cuda"];

    /// <summary>
    /// auto: CUDA when a device is present, else the SIMD CPU backend. cpu: the SIMD CPU backend.
    /// ilgpu-cpu: ILGPU's CPU accelerator (slow; for verifying bits). cuda: the first CUDA device.
    /// </summary>
    public static IBackend Create(string device, int threads = 0, SimdLevel simd = SimdLevel.Avx512,
        WeightMemory weightMemory = SimdBackend.DefaultWeightMemory)
    {
        switch (device)
        {
            case "auto":
                return (IBackend?)IlgpuBackend.TryCreateCuda() ?? new SimdBackend(threads, simd, weightMemory);
            case "cpu":
                return new SimdBackend(threads, simd, weightMemory);
            case "ilgpu-cpu":
                return IlgpuBackend.CreateCpu(threads);
            case "cuda":
                return IlgpuBackend.TryCreateCuda()
                    ?? throw new InvalidOperationException("no CUDA device was found; use --device cpu (the SIMD CPU backend)");
            default:
                throw new ArgumentException($"unknown device '{device}': expected {string.Join(", ", Names)}");
        }
    }
}
