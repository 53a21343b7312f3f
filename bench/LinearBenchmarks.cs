using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using IlgpuLlm.Kernels;
using IlgpuLlm.Runtime.Backends;

namespace IlgpuLlm.Bench;

/// <summary>
/// Linear layers of Llama-3.2-1B's shapes on the SIMD CPU backend. Decode (one row) streams the
/// weights once, so its figure of merit is weight bytes per second against the memory baseline;
/// prefill (many rows) is compute-bound and reported in GFLOP/s.
/// </summary>
public abstract class LinearBenchmark : IWorkload
{
    protected SimdBackend Backend = null!;
    Tensor x = null!, w = null!, y = null!;
    LinearShape shape;

    [Params(StorageType.F32, StorageType.F16, StorageType.BF16)]
    public StorageType Type { get; set; }

    [Params(1, 2)]
    public int Threads { get; set; }

    /// <summary>"in→out", one of the Llama-3.2-1B projections.</summary>
    public abstract string Shape { get; set; }

    protected abstract int Rows { get; }

    /// <summary>Parses <see cref="Shape"/>; enough to report the work without allocating anything.</summary>
    public void PrepareShape()
    {
        var parts = Shape.Split('→');
        shape = new LinearShape(Rows, int.Parse(parts[1]), int.Parse(parts[0]));
    }

    [GlobalSetup]
    public void Setup()
    {
        PrepareShape();
        int inFeatures = shape.InFeatures, outFeatures = shape.OutFeatures;
        Backend = new SimdBackend(Threads);
        w = BenchData.Upload(Backend, BenchData.Random((long)outFeatures * inFeatures, 1, scale: 0.05f), Type, "w");
        x = Backend.Upload(Enumerable.Range(0, Rows * inFeatures).Select(i => (float)Math.Sin(i)).ToArray(), "x");
        y = Backend.Allocate(TensorType.F32, (long)Rows * outFeatures, "y");
    }

    [GlobalCleanup]
    public void Cleanup() => Backend.Dispose();

    [Benchmark]
    public void Linear() => Backend.Linear(x, w, null, y, shape);

    public long WeightBytes => Type.ByteLength((long)shape.OutFeatures * shape.InFeatures);

    /// <summary>Reported for decode, where streaming the weights once bounds the time.</summary>
    public double? Bytes => Rows == 1 ? WeightBytes : null;
    public bool StreamsFromMemory => Rows == 1;

    /// <summary>Reported for prefill, where the multiply-adds rather than the weight stream bound the time.</summary>
    public double? Flops => Rows > 1 ? 2.0 * shape.Rows * shape.OutFeatures * shape.InFeatures : null;
}

[Config(typeof(BenchConfig))]
public class LinearDecode : LinearBenchmark
{
    [Params("2048→2048", "2048→8192", "8192→2048", "2048→128256")]
    public override string Shape { get; set; } = "";

    protected override int Rows => 1;
}

[Config(typeof(BenchConfig))]
public class LinearPrefill : LinearBenchmark
{
    [Params("2048→2048", "2048→8192", "8192→2048")]
    public override string Shape { get; set; } = "";

    [Params(16, 128, 512)]
    public int M { get; set; }

    protected override int Rows => M;
}

/// <summary>
/// Linear layers of Llama-3.2-1B's shapes with quantized weights on the SIMD kernels directly
/// (<see cref="QuantizedSimd"/>; the backends route to them later). Decode reports the quantized
/// weight bytes streamed per second; prefill GFLOP/s, as for the stored types.
/// </summary>
public abstract unsafe class QuantizedLinearBenchmark : IWorkload
{
    CpuWorkers workers = null!;
    readonly QuantizedSimd.LinearJob job = new();
    float* x, y;
    byte* w;
    LinearShape shape;

    [Params(QuantFormat.Q4_K, QuantFormat.Q6_K, QuantFormat.Q8_0)]
    public QuantFormat Format { get; set; }

    [Params(1, 2)]
    public int Threads { get; set; }

    /// <summary>"in→out", one of the Llama-3.2-1B projections.</summary>
    public abstract string Shape { get; set; }

    protected abstract int Rows { get; }

    public void PrepareShape()
    {
        var parts = Shape.Split('→');
        shape = new LinearShape(Rows, int.Parse(parts[1]), int.Parse(parts[0]));
    }

    [GlobalSetup]
    public void Setup()
    {
        PrepareShape();
        workers = new CpuWorkers(Threads);
        // Random codes with ordinary scales: the kernels' speed does not depend on the values.
        var blocks = IlgpuLlm.Tests.Support.QuantizedTestBlocks.Blocks(Format, (int)(WeightBytes / Format.BlockBytes()), seed: 1, edges: false);
        w = (byte*)NativeMemory.AlignedAlloc((nuint)blocks.Length, 64);
        blocks.CopyTo(new Span<byte>(w, blocks.Length));
        x = (float*)NativeMemory.AlignedAlloc((nuint)((long)Rows * shape.InFeatures * 4), 64);
        for (long i = 0; i < (long)Rows * shape.InFeatures; i++)
            x[i] = MathF.Sin(i);
        y = (float*)NativeMemory.AlignedAlloc((nuint)((long)Rows * shape.OutFeatures * 4), 64);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        workers.Dispose();
        NativeMemory.AlignedFree(w);
        NativeMemory.AlignedFree(x);
        NativeMemory.AlignedFree(y);
    }

    [Benchmark]
    public void Linear() => QuantizedSimd.Linear(workers, SimdLevels.Best, job, x, w, Format, null, y, shape);

    public long WeightBytes => shape.OutFeatures * Format.RowBytes(shape.InFeatures);

    public double? Bytes => Rows == 1 ? WeightBytes : null;
    public bool StreamsFromMemory => Rows == 1;
    public double? Flops => Rows > 1 ? 2.0 * shape.Rows * shape.OutFeatures * shape.InFeatures : null;
}

[Config(typeof(BenchConfig))]
public class QuantizedLinearDecode : QuantizedLinearBenchmark
{
    [Params("2048→2048", "2048→8192", "8192→2048", "2048→128256")]
    public override string Shape { get; set; } = "";

    protected override int Rows => 1;
}

[Config(typeof(BenchConfig))]
public class QuantizedLinearPrefill : QuantizedLinearBenchmark
{
    [Params("2048→2048", "2048→8192", "8192→2048")]
    public override string Shape { get; set; } = "";

    [Params(16, 128)]
    public int M { get; set; }

    protected override int Rows => M;
}
