using System.Runtime.InteropServices;
using IlgpuLlm.Kernels;

namespace IlgpuLlm.Runtime.Backends;

/// <summary>
/// The SIMD CPU backend: the SIMD twins of the kernel library on native memory, split over a fixed
/// set of threads. Same bits as the ILGPU kernels for every thread count and every SIMD level.
/// Not thread-safe: one caller at a time (the generation loop).
/// </summary>
public sealed unsafe class SimdBackend : IBackend
{
    readonly CpuWorkers workers;
    readonly SimdLevel level;
    readonly LinearSimd.Job linearJob = new();
    readonly AttentionSimd.Job attentionJob = new();
    readonly ScatterSimd.Job scatterJob = new();
    readonly ScatterSimd.ConvertJob convertJob = new();

    public SimdBackend(int threads = 0, SimdLevel maxLevel = SimdLevel.Avx512)
    {
        if (threads <= 0)
            threads = Environment.ProcessorCount;
        workers = new CpuWorkers(threads);
        level = SimdLevels.AtMost(maxLevel);
        Name = $"simd-cpu ({level.Name()}, {threads} thread{(threads == 1 ? "" : "s")})";
    }

    public string Name { get; }
    public string Kind => "simd-cpu";
    public DeviceCounters Counters => workers.Counters;
    public SimdLevel Level => level;
    public int Threads => workers.Threads;

    /// <summary>A block of native memory: 64-byte aligned when this backend allocated it, else borrowed.</summary>
    sealed class NativeBlock(byte* pointer, long length, bool owned) : IDisposable
    {
        public byte* Pointer { get; private set; } = pointer;
        public long Length { get; } = length;
        public bool Owned => owned;

        public void Dispose()
        {
            if (Pointer != null && owned)
                NativeMemory.AlignedFree(Pointer);
            Pointer = null;
        }
    }

    public Tensor Allocate(TensorType type, long length, string name)
    {
        if (length < 0)
            throw new ArgumentOutOfRangeException(nameof(length), $"{name}: cannot allocate {length} values");
        long bytes = type.ByteLength(length);
        workers.Counters.Allocation();
        var pointer = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(64, bytes), 64);
        NativeMemory.Clear(pointer, (nuint)Math.Max(64, bytes));
        return new Tensor(this, new NativeBlock(pointer, bytes, owned: true), type, 0, length, name);
    }

    public Tensor Weights(TensorType type, long length, byte* data, string name)
    {
        if (length < 0 || data == null)
            throw new ArgumentException($"{name}: no data for {length} values");
        return new Tensor(this, new NativeBlock(data, type.ByteLength(length), owned: false), type, 0, length, name);
    }

    public void Free(Tensor tensor)
    {
        var block = Block(tensor);
        if (block.Owned)
            workers.Counters.Free();
        block.Dispose();
    }

    public void Upload(Tensor destination, ReadOnlySpan<byte> values)
    {
        Shapes.Expect($"upload to {destination.Name}", values.Length, destination.ByteLength, "bytes of the tensor");
        workers.Counters.Upload();
        values.CopyTo(new Span<byte>(Pointer(destination), values.Length));
    }

    public void Download(Tensor source, Span<byte> values)
    {
        Shapes.Expect($"download from {source.Name}", values.Length, source.ByteLength, "bytes of the tensor");
        workers.Counters.Wait();
        workers.Counters.Download();
        new ReadOnlySpan<byte>(Pointer(source), values.Length).CopyTo(values);
    }

    /// <summary>Every call has finished when it returns; counted as a wait all the same, as on a device.</summary>
    public void Synchronize() => workers.Counters.Wait();

    NativeBlock Block(Tensor tensor)
    {
        if (!ReferenceEquals(tensor.Owner, this) || tensor.Buffer is not NativeBlock block)
            throw new ArgumentException($"{tensor.Name} belongs to {tensor.Owner.Name}, not to {Name}");
        if (block.Pointer == null)
            throw new ObjectDisposedException(tensor.Name, $"{tensor.Name} was freed");
        return block;
    }

    byte* Pointer(Tensor tensor) => Block(tensor).Pointer + tensor.ByteOffset;

    float* F32(Tensor tensor)
    {
        if (tensor.Type != TensorType.F32)
            throw new ArgumentException($"{tensor.Name} holds {tensor.Type.Name()} values; this op needs f32");
        return (float*)Pointer(tensor);
    }

    int* I32(Tensor tensor)
    {
        if (tensor.Type != TensorType.I32)
            throw new ArgumentException($"{tensor.Name} holds {tensor.Type.Name()} values; this op needs i32");
        return (int*)Pointer(tensor);
    }

    /// <summary>The values of an i32 tensor, read in place: this backend checks index values itself.</summary>
    ReadOnlySpan<int> Ints(Tensor tensor, long count)
    {
        Shapes.ExpectAtLeast(tensor.Name, tensor.Length, count, $"{count} values");
        return new ReadOnlySpan<int>(I32(tensor), checked((int)count));
    }

    int* Flags(ProblemFlags? flags, string what, long count)
    {
        if (flags is not { } f)
            return null;
        f.Validate(what, count);
        return I32(f.Flags);
    }

    readonly EmbeddingSimd.Job embeddingJob = new();

    public void Embedding(Tensor table, Tensor ids, Tensor output, EmbeddingShape shape, float scale)
    {
        shape.Validate(table.Length, ids.Length, output.Length);
        shape.ValidateIds(Ints(ids, shape.Rows));
        EmbeddingSimd.Run(workers, level, embeddingJob, Pointer(table), table.Type.Storage, I32(ids), F32(output), shape, scale);
    }

    public void Linear(Tensor x, Tensor weight, Tensor? bias, Tensor y, LinearShape shape)
    {
        shape.Validate(x.Length, weight.Length, bias?.Length, y.Length);
        LinearSimd.Run(workers, level, linearJob, F32(x), Pointer(weight), weight.Type.Storage,
            bias is null ? null : F32(bias), F32(y), shape);
    }

    readonly RmsNormSimd.Job rmsNormJob = new();

    public void RmsNorm(Tensor x, Tensor weight, Tensor y, RmsNormShape shape)
    {
        shape.Validate(x.Length, weight.Length, y.Length);
        RmsNormSimd.Run(workers, level, rmsNormJob, F32(x), Pointer(weight), weight.Type.Storage, F32(y), shape);
    }

    readonly RotarySimd.Job rotaryJob = new();

    public void Rotary(Tensor x, Tensor angles, RotaryShape shape)
    {
        shape.Validate(x.Length, angles.Length);
        RotarySimd.Run(workers, level, rotaryJob, F32(x), F32(angles), shape);
    }

    public void ScatterRows(Tensor source, Tensor destination, Tensor rowIndices, ScatterShape shape, ProblemFlags? overflowed)
    {
        var type = destination.Type.Storage;
        shape.ValidateLengths(source.Length, destination.Length, rowIndices.Length);
        shape.ValidateRange(Ints(rowIndices, shape.Rows));
        ScatterSimd.Run(workers, level, scatterJob, F32(source), Pointer(destination), type, I32(rowIndices), shape,
            Flags(overflowed, "scatter: overflow flags", shape.Rows), overflowed?.Mark ?? 0);
    }

    public long Convert(Tensor source, Tensor destination)
    {
        var sourceType = source.Type.Storage;
        var type = destination.Type.Storage;
        Shapes.Expect($"convert: destination {destination.Name}", destination.Length, source.Length, $"the length of {source.Name}");
        return ScatterSimd.Convert(workers, level, convertJob, Pointer(source), sourceType, Pointer(destination), type, source.Length);
    }

    public void Attention(Tensor q, Tensor keys, Tensor values, Tensor output, Tensor ranges, AttentionShape shape, AttentionBias? bias,
        ProblemFlags? fullyMasked, Tensor? workspace = null)
    {
        if (keys.Type != values.Type)
            throw new ArgumentException($"attention: the key cache {keys.Name} holds {keys.Type.Name()} values and the value cache {values.Name} {values.Type.Name()}; both must share one storage type");
        var cacheType = keys.Type.Storage;
        Shapes.Expect("attention: key ranges", ranges.Length, 3L * shape.Rows, $"three per row (slot, begin, end), rows {shape.Rows}");
        var rangeList = (KeyRange*)I32(ranges);
        long groups = (long)shape.Rows * shape.Heads;
        int longest = Kernels.Attention.Validate(shape, q.Length, keys.Length, values.Length, output.Length,
            new ReadOnlySpan<KeyRange>(rangeList, shape.Rows), bias?.Values.Length, bias?.Layout, groups);
        float* biasValues = bias is { } b ? F32(b.Values) : null;
        AttentionSimd.Run(workers, level, attentionJob, F32(q), Pointer(keys), Pointer(values), cacheType, F32(output),
            rangeList, shape, biasValues, bias?.Layout ?? default, Flags(fullyMasked, "attention: fully-masked flags", groups), fullyMasked?.Mark ?? 0, longest);
    }

    readonly ActivationsSimd.GatedJob gatedJob = new();
    readonly ActivationsSimd.AddJob addJob = new();

    public void GatedActivation(Tensor gate, Tensor up, Tensor output, long count, Activation activation)
    {
        Activations.ValidateCount("gated activation", count, gate.Length, up.Length, output.Length);
        Activations.ValidateActivation(activation);
        ActivationsSimd.RunGated(workers, level, gatedJob, F32(gate), F32(up), F32(output), count, activation);
    }

    public void Add(Tensor a, Tensor b, Tensor output, long count)
    {
        Activations.ValidateCount("add", count, a.Length, b.Length, output.Length);
        ActivationsSimd.RunAdd(workers, level, addJob, F32(a), F32(b), F32(output), count);
    }

    readonly SoftCapSimd.Job softCapJob = new();

    public void SoftCap(Tensor x, long count, float cap)
    {
        Activations.ValidateSoftCap(x.Length, count, cap);
        SoftCapSimd.Run(workers, level, softCapJob, F32(x), count, cap);
    }

    readonly SoftmaxSimd.Job softmaxJob = new();

    public void Softmax(Tensor logits, Tensor probabilities, SoftmaxShape shape, float temperature)
    {
        shape.Validate(logits.Length, probabilities.Length, temperature);
        SoftmaxSimd.Run(workers, level, softmaxJob, F32(logits), F32(probabilities), shape, temperature);
    }

    readonly SamplingSimd.Job samplingJob = new();

    public void Sample(Tensor logits, Tensor parameters, Tensor penalized, Tensor tokens, SamplingShape shape, Tensor? skip,
        Tensor? workspace = null)
    {
        shape.Validate(logits.Length, parameters.Length, tokens.Length, skip?.Length);
        var penalizedIds = Ints(penalized, penalized.Length);
        var packed = Ints(parameters, parameters.Length);
        for (int r = 0; r < shape.Rows; r++)
            Sampling.Unpack(packed, r).Validate(r, shape.Vocabulary, penalizedIds);
        SamplingSimd.Run(workers, level, samplingJob, F32(logits), shape.Vocabulary, I32(parameters), shape.Rows,
            penalized.Length > 0 ? I32(penalized) : null, I32(tokens), skip is null ? null : I32(skip));
    }

    readonly FiniteCheckSimd.Job finiteCheckJob = new();
    readonly FiniteCheckSimd.RowsJob finiteRowsJob = new();

    public void FlagNonFinite(Tensor x, int rows, int width, ProblemFlags flags)
    {
        FiniteCheck.ValidateRows(x.Length, rows, width, flags.Flags.Length, flags.Mark);
        FiniteCheckSimd.RunRows(workers, level, finiteRowsJob, F32(x), rows, width, Flags(flags, "finite check: flags", rows), flags.Mark);
    }

    public long FirstNonFinite(Tensor x, long count)
    {
        FiniteCheck.ValidateCount(x.Length, count);
        return FiniteCheckSimd.Run(workers, level, finiteCheckJob, F32(x), count);
    }

    public void Dispose() => workers.Dispose();
}
