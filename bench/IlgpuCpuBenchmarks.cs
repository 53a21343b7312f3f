using BenchmarkDotNet.Attributes;
using IlgpuLlm.Kernels;
using IlgpuLlm.Runtime.Backends;

namespace IlgpuLlm.Bench;

/// <summary>
/// The linear kernel on ILGPU's CPU accelerator — the bit-exact oracle, not a production path —
/// so its cost per call is known when choosing test shapes. Small shapes: it runs every GPU
/// thread and barrier in software.
/// </summary>
[Config(typeof(BenchConfig))]
public class LinearIlgpuCpu : IWorkload
{
    IBackend backend = null!;
    Tensor x = null!, w = null!, y = null!;
    LinearShape shape;

    [Params(1, 16)]
    public int Rows { get; set; }

    public void PrepareShape() => shape = new LinearShape(Rows, 256, 256);

    [GlobalSetup]
    public void Setup()
    {
        backend = IlgpuBackend.CreateCpu(2);
        PrepareShape();
        x = backend.Upload(Enumerable.Range(0, Rows * 256).Select(i => (float)Math.Sin(i)).ToArray(), "x");
        w = backend.Upload(Enumerable.Range(0, 256 * 256).Select(i => (float)Math.Cos(i) * 0.05f).ToArray(), "w");
        y = backend.Allocate(TensorType.F32, Rows * 256L, "y");
        backend.Linear(x, w, null, y, shape); // compile the kernel outside the measurement
        backend.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup() => backend.Dispose();

    [Benchmark]
    public void Linear()
    {
        backend.Linear(x, w, null, y, shape);
        backend.Synchronize();
    }

    public double? Flops => 2.0 * shape.Rows * shape.OutFeatures * shape.InFeatures;
}
