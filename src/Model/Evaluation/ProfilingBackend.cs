using System.Diagnostics;
using System.Runtime.InteropServices;
using IlgpuLlm.Kernels;
using IlgpuLlm.Runtime.Backends;

namespace IlgpuLlm.Model.Evaluation;

/// <summary>
/// One op of a profiled step: what it was, in which layer (−1: outside the blocks), its wall time,
/// the CPU time of the calling thread during it (<see cref="CpuClock"/>; NaN where unknown) and the
/// bytes it moved.
/// </summary>
public readonly record struct OpTiming(string Op, int Layer, double Seconds, double CpuSeconds, long Bytes);

/// <summary>
/// A backend that runs every op on another, waits for it (a no-op on the SIMD backend, whose ops
/// return finished) and records its wall time and the bytes it reads and writes: weights,
/// activations and the KV cache. Ops are named after the weight or cache they touch
/// (<see cref="OpNames"/>). The forward pass runs unchanged on it; only a profile uses it, so
/// the ordinary path pays nothing.
/// </summary>
public sealed class ProfilingBackend(IBackend inner) : IBackend
{
    readonly List<OpTiming> timings = [];
    int layer = -1;
    long started;
    double startedCpu;

    /// <summary>The ops recorded since the last <see cref="Clear"/>, in order.</summary>
    public IReadOnlyList<OpTiming> Timings => timings;

    public void Clear()
    {
        timings.Clear();
        layer = -1;
    }

    public string Name => inner.Name;
    public string Kind => inner.Kind;
    public DeviceCounters Counters => inner.Counters;
    public Tensor Allocate(TensorType type, long length, string name) => inner.Allocate(type, length, name);
    public unsafe Tensor Weights(TensorType type, long length, byte* data, string name) => inner.Weights(type, length, data, name);
    public void Upload(Tensor destination, ReadOnlySpan<byte> values) => inner.Upload(destination, values);
    public void Download(Tensor source, Span<byte> values) => inner.Download(source, values);
    public void Free(Tensor tensor) => inner.Free(tensor);
    public void Synchronize() => inner.Synchronize();
    public long Convert(Tensor source, Tensor destination) => inner.Convert(source, destination);
    public long FirstNonFinite(Tensor x, long count) => inner.FirstNonFinite(x, count);

    void Start()
    {
        startedCpu = CpuClock.ThreadSeconds();
        started = Stopwatch.GetTimestamp();
    }

    void Stop(string op, long bytes)
    {
        inner.Synchronize();
        double seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        timings.Add(new OpTiming(op, layer, seconds, CpuClock.ThreadSeconds() - startedCpu, bytes));
    }

    /// <summary>
    /// The op's name from the weight or cache it touches — "linear attn_q" in its block's layer,
    /// "linear output" outside — and that layer; parsed once per name, so timing stays cheap.
    /// </summary>
    string Named(string kind, Tensor touched)
    {
        if (!names.TryGetValue((kind, touched.Name), out var named))
        {
            string name = touched.Name;
            if (OpNames.TryBlockWeight(name, out int blockLayer, out string? role))
                named = ($"{kind} {role}", blockLayer);
            else if (OpNames.TryCacheLayer(name, out int cacheLayer))
                named = (kind, cacheLayer);
            else if (kind == "linear" && name == Formats.TensorNames.TokenEmbedding)
                named = ("linear output", -1);  // the classifier of tied embeddings
            else
                named = (OpNames.TopLevel(name) is string top ? $"{kind} {top}" : kind, -1);
            names[(kind, name)] = named;
        }
        layer = named.Layer;
        return named.Op;
    }

    readonly Dictionary<(string Kind, string Name), (string Op, int Layer)> names = [];

    public void Embedding(Tensor table, Tensor ids, Tensor output, EmbeddingShape shape, float scale)
    {
        Start();
        inner.Embedding(table, ids, output, shape, scale);
        layer = -1;
        long rowBytes = table.Type.ByteLength(shape.Width);
        Stop(table.Name == Formats.TensorNames.TokenEmbedding ? "embedding" : "gather logits rows",
            shape.Rows * (rowBytes + sizeof(float) * (long)shape.Width + sizeof(int)));
    }

    public void Linear(Tensor x, Tensor weight, Tensor? bias, Tensor y, LinearShape shape)
    {
        Start();
        inner.Linear(x, weight, bias, y, shape);
        Stop(Named("linear", weight), weight.ByteLength + x.ByteLength + y.ByteLength + (bias?.ByteLength ?? 0));
    }

    /// <summary>Projections fused into one call are one op, named after all its weights: "linear attn_q+attn_k+attn_v".</summary>
    public void Linears(Tensor x, ReadOnlySpan<LinearTarget> targets, int rows, int inFeatures)
    {
        Start();
        inner.Linears(x, targets, rows, inFeatures);
        long bytes = x.ByteLength;
        foreach (var target in targets)
            bytes += target.Weight.ByteLength + target.Y.ByteLength + (target.Bias?.ByteLength ?? 0);
        Stop(FusedName(targets), bytes);
    }

    string FusedName(ReadOnlySpan<LinearTarget> targets)
    {
        string op = Named("linear", targets[0].Weight);
        int firstLayer = layer;
        if (!fusedNames.TryGetValue(targets[0].Weight.Name, out var fused))
        {
            fused = op;
            for (int i = 1; i < targets.Length; i++)
                fused += "+" + Named("linear", targets[i].Weight)["linear ".Length..];
            fusedNames[targets[0].Weight.Name] = fused;
        }
        layer = firstLayer;
        return fused;
    }

    readonly Dictionary<string, string> fusedNames = [];

    public void RmsNorm(Tensor x, Tensor weight, Tensor y, RmsNormShape shape)
    {
        Start();
        inner.RmsNorm(x, weight, y, shape);
        Stop(Named("rmsnorm", weight), x.ByteLength + weight.ByteLength + y.ByteLength);
    }

    public void Rotary(Tensor x, Tensor angles, RotaryShape shape)
    {
        Start();
        inner.Rotary(x, angles, shape);
        Stop("rotary", 2 * x.ByteLength + angles.ByteLength);
    }

    public void ScatterRows(Tensor source, Tensor destination, Tensor rowIndices, ScatterShape shape, ProblemFlags? overflowed)
    {
        Start();
        inner.ScatterRows(source, destination, rowIndices, shape, overflowed);
        Stop(Named("kv store", destination), source.ByteLength + shape.Rows * destination.Type.ByteLength(shape.Width));
    }

    public void Attention(Tensor q, Tensor keys, Tensor values, Tensor output, Tensor ranges, AttentionShape shape, AttentionBias? bias,
        ProblemFlags? fullyMasked, Tensor? workspace = null)
    {
        Start();
        inner.Attention(q, keys, values, output, ranges, shape, bias, fullyMasked, workspace);
        inner.Synchronize();
        double seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        double cpuSeconds = CpuClock.ThreadSeconds() - startedCpu;
        string op = Named("attention", keys);
        // Cache bytes: each slot's positions read at least once (its rows' key ranges overlap).
        var triples = new int[ranges.Length];
        inner.Download(ranges, MemoryMarshal.AsBytes(triples.AsSpan()));
        var spans = new Dictionary<int, (int Begin, int End)>();
        for (int r = 0; r + 2 < triples.Length; r += 3)
        {
            var range = new KeyRange(triples[r], triples[r + 1], triples[r + 2]);
            if (range.Length <= 0)
                continue;
            spans[range.Slot] = spans.TryGetValue(range.Slot, out var s)
                ? (Math.Min(s.Begin, range.Begin), Math.Max(s.End, range.End))
                : (range.Begin, range.End);
        }
        long positions = spans.Values.Sum(s => (long)(s.End - s.Begin));
        long cacheBytes = 2 * positions * keys.Type.ByteLength((long)shape.KvHeads * shape.HeadDim);
        timings.Add(new OpTiming(op, layer, seconds, cpuSeconds, q.ByteLength + output.ByteLength + cacheBytes));
    }

    public void GatedActivation(Tensor gate, Tensor up, Tensor output, long count, Activation activation)
    {
        Start();
        inner.GatedActivation(gate, up, output, count, activation);
        Stop("gated activation", 3 * count * sizeof(float));
    }

    public void Add(Tensor a, Tensor b, Tensor output, long count)
    {
        Start();
        inner.Add(a, b, output, count);
        Stop("add", 3 * count * sizeof(float));
    }

    public void SoftCap(Tensor x, long count, float cap)
    {
        Start();
        inner.SoftCap(x, count, cap);
        Stop("soft-cap", 2 * count * sizeof(float));
    }

    public void Softmax(Tensor logits, Tensor probabilities, SoftmaxShape shape, float temperature)
    {
        Start();
        inner.Softmax(logits, probabilities, shape, temperature);
        layer = -1;
        Stop("softmax", logits.ByteLength + probabilities.ByteLength);
    }

    public void Sample(Tensor logits, Tensor parameters, Tensor penalized, Tensor tokens, SamplingShape shape, Tensor? skip,
        Tensor? workspace = null)
    {
        Start();
        inner.Sample(logits, parameters, penalized, tokens, shape, skip, workspace);
        layer = -1;
        Stop("sample", (long)shape.Rows * shape.Vocabulary * sizeof(float));
    }

    public void FlagNonFinite(Tensor x, int rows, int width, ProblemFlags flags)
    {
        Start();
        inner.FlagNonFinite(x, rows, width, flags);
        layer = -1;
        Stop("non-finite check", (long)rows * width * sizeof(float));
    }

    /// <summary>The inner backend is the caller's.</summary>
    public void Dispose()
    {
    }
}
