using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using IlgpuLlm.Kernels;
using IlgpuLlm.Runtime.Backends;

namespace IlgpuLlm.Bench;

/// <summary>Random inputs for the kernel benchmarks, narrowed exactly to a storage type.</summary>
static class BenchData
{
    public static float[] Random(long count, int seed, float scale = 1f)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (long i = 0; i < count; i++)
            values[i] = (float)(random.NextDouble() * 2 - 1) * scale;
        return values;
    }

    public static Tensor Upload(IBackend backend, float[] values, StorageType type, string name)
    {
        var tensor = backend.Allocate(type, values.LongLength, name);
        var bytes = new byte[type.ByteLength(values.LongLength)];
        type.Format().Narrow(values, bytes);
        backend.Upload(tensor, bytes);
        return tensor;
    }
}

/// <summary>
/// One decode step's attention in Llama-3.2-1B's shape (32 query heads sharing 8 kv heads,
/// head_dim 64) over a cache of <see cref="Context"/> positions. Decode attention streams the
/// keys and values once, so its figure is cache bytes per second against the memory baseline.
/// </summary>
[Config(typeof(BenchConfig))]
public class AttentionDecode : IWorkload
{
    const int Heads = 32, KvHeads = 8, HeadDim = 64;
    SimdBackend backend = null!;
    Tensor q = null!, keys = null!, values = null!, output = null!;
    readonly KeyRange[] ranges = new KeyRange[1];
    readonly bool[] fullyMasked = new bool[Heads];
    AttentionShape shape;

    [Params(128, 1024, 4096)]
    public int Context { get; set; }

    [Params(StorageType.F32, StorageType.F16, StorageType.BF16)]
    public StorageType Cache { get; set; }

    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        backend = new SimdBackend(Threads);
        long cache = (long)Context * KvHeads * HeadDim;
        q = backend.Upload(BenchData.Random(Heads * HeadDim, 1), "q");
        keys = BenchData.Upload(backend, BenchData.Random(cache, 2), Cache, "keys");
        values = BenchData.Upload(backend, BenchData.Random(cache, 3), Cache, "values");
        output = backend.Allocate(TensorType.F32, Heads * HeadDim, "output");
        ranges[0] = new KeyRange(0, 0, Context);
        shape = new AttentionShape(1, Heads, KvHeads, HeadDim, 1, Context, 0.125f, 0f);
    }

    [GlobalCleanup]
    public void Cleanup() => backend.Dispose();

    [Benchmark]
    public void Attention() => backend.Attention(q, keys, values, output, ranges, shape, null, fullyMasked);

    public double? Bytes => 2.0 * Context * KvHeads * HeadDim * Cache.ByteLength(1);
    public bool StreamsFromMemory => true;

    /// <summary>q·k and the weighted sum of v: two multiply-adds per head, position and dimension.</summary>
    public double? Flops => 4.0 * Heads * HeadDim * Context;
}

/// <summary>
/// Causal attention of a 512-token prompt (the same Llama-3.2-1B head shape): compute-bound,
/// reported in GFLOP/s of the q·k and weighted-value multiply-adds.
/// </summary>
[Config(typeof(BenchConfig))]
public class AttentionPrefill : IWorkload
{
    const int Heads = 32, KvHeads = 8, HeadDim = 64, Rows = 512;
    SimdBackend backend = null!;
    Tensor q = null!, keys = null!, values = null!, output = null!;
    readonly KeyRange[] ranges = new KeyRange[Rows];
    readonly bool[] fullyMasked = new bool[Rows * Heads];
    AttentionShape shape;

    [Params(StorageType.F32, StorageType.F16)]
    public StorageType Cache { get; set; }

    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        backend = new SimdBackend(Threads);
        long cache = (long)Rows * KvHeads * HeadDim;
        q = backend.Upload(BenchData.Random((long)Rows * Heads * HeadDim, 1), "q");
        keys = BenchData.Upload(backend, BenchData.Random(cache, 2), Cache, "keys");
        values = BenchData.Upload(backend, BenchData.Random(cache, 3), Cache, "values");
        output = backend.Allocate(TensorType.F32, (long)Rows * Heads * HeadDim, "output");
        for (int r = 0; r < Rows; r++)
            ranges[r] = new KeyRange(0, 0, r + 1);
        shape = new AttentionShape(Rows, Heads, KvHeads, HeadDim, 1, Rows, 0.125f, 0f);
    }

    [GlobalCleanup]
    public void Cleanup() => backend.Dispose();

    [Benchmark]
    public void Attention() => backend.Attention(q, keys, values, output, ranges, shape, null, fullyMasked);

    public double? Flops => 4.0 * Heads * HeadDim * (Rows * (Rows + 1L) / 2);
}

/// <summary>RMSNorm over Llama-3.2-1B's hidden width for one decode token and a 128-token prompt chunk.</summary>
[Config(typeof(BenchConfig))]
public class RmsNormBench : IWorkload
{
    const int Width = 2048;
    SimdBackend backend = null!;
    Tensor x = null!, weight = null!, y = null!;

    [Params(1, 128)]
    public int Rows { get; set; }

    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        backend = new SimdBackend(Threads);
        x = backend.Upload(BenchData.Random((long)Rows * Width, 1), "x");
        weight = backend.Upload(BenchData.Random(Width, 2), "weight");
        y = backend.Allocate(TensorType.F32, (long)Rows * Width, "y");
    }

    [GlobalCleanup]
    public void Cleanup() => backend.Dispose();

    [Benchmark]
    public void RmsNorm() => backend.RmsNorm(x, weight, y, new RmsNormShape(Rows, Width, 1e-5f, false));

    /// <summary>x read, y written, the weight read once.</summary>
    public double? Bytes => (2.0 * Rows * Width + Width) * 4;
}

/// <summary>Rotary embedding of Llama-3.2-1B's queries (32 heads of 64) in place, one token and 128.</summary>
[Config(typeof(BenchConfig))]
public class RotaryBench : IWorkload
{
    const int Heads = 32, HeadDim = 64;
    SimdBackend backend = null!;
    Tensor x = null!, angles = null!;

    [Params(1, 128)]
    public int Rows { get; set; }

    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        backend = new SimdBackend(Threads);
        x = backend.Upload(BenchData.Random((long)Rows * Heads * HeadDim, 1), "x");
        var table = new RotaryTable(HeadDim, 500_000);
        var host = new float[Rows * HeadDim];
        table.Fill(Enumerable.Range(100, Rows).ToArray(), host);
        angles = backend.Upload(host, "angles");
    }

    [GlobalCleanup]
    public void Cleanup() => backend.Dispose();

    [Benchmark]
    public void Rotary() => backend.Rotary(x, angles, new RotaryShape(Rows, Heads, HeadDim, RotaryLayout.HalfSplit));

    /// <summary>x read and written, the (cos, sin) table read.</summary>
    public double? Bytes => (2.0 * Rows * Heads * HeadDim + (double)Rows * HeadDim) * 4;
}

/// <summary>
/// One draw over Llama 3's 128256 logits: greedy, and temperature 0.8 with top-p 0.9 (no top-k, so
/// the nucleus search runs over the whole vocabulary). tokens/s is draws per second: the ceiling
/// sampling alone puts on decode.
/// </summary>
[Config(typeof(BenchConfig))]
public class SamplingBench : IWorkload
{
    const int Vocabulary = 128256;
    SimdBackend backend = null!;
    Tensor logits = null!;
    readonly SamplingRow[] rows = new SamplingRow[1];
    readonly int[] tokens = new int[1];
    int step;

    [Params("greedy", "top-p 0.9")]
    public string Mode { get; set; } = "";

    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        backend = new SimdBackend(Threads);
        // Logits of a trained model's spread: most tokens far below a few likely ones.
        var values = BenchData.Random(Vocabulary, 1, 4f);
        for (int i = 0; i < 50; i++)
            values[i * 997 % Vocabulary] += 12f;
        logits = backend.Upload(values, "logits");
    }

    [GlobalCleanup]
    public void Cleanup() => backend.Dispose();

    [Benchmark]
    public int Sample()
    {
        rows[0] = Mode == "greedy"
            ? SamplingRow.Greedy(0, step)
            : new SamplingRow(0.8f, 0, 0.9f, 0f, 1f, 42, 0, step, 0, 0);
        step = (step + 1) & 0xFFFF;
        backend.Sample(logits, Vocabulary, rows, [], tokens);
        return tokens[0];
    }

    public double? Bytes => Vocabulary * 4.0;
    public double? Tokens => 1;
}
