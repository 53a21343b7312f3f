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
    public SimdLevel Level => level;
    public int Threads => workers.Threads;

    /// <summary>A block of native memory, 64-byte aligned when this backend allocated it.</summary>
    sealed class NativeBlock(byte* pointer, long length) : IDisposable
    {
        public byte* Pointer { get; private set; } = pointer;
        public long Length { get; } = length;

        public void Dispose()
        {
            if (Pointer != null)
                NativeMemory.AlignedFree(Pointer);
            Pointer = null;
        }
    }

    public Tensor Allocate(TensorType type, long length, string name)
    {
        if (length < 0)
            throw new ArgumentOutOfRangeException(nameof(length), $"{name}: cannot allocate {length} values");
        long bytes = checked(length * type.SizeOf());
        var pointer = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(64, bytes), 64);
        NativeMemory.Clear(pointer, (nuint)Math.Max(64, bytes));
        return new Tensor(this, new NativeBlock(pointer, bytes), type, 0, length, name);
    }

    public void Free(Tensor tensor) => Block(tensor).Dispose();

    public void Upload(Tensor destination, ReadOnlySpan<byte> values)
    {
        Shapes.Expect($"upload to {destination.Name}", values.Length, destination.ByteLength, "bytes of the tensor");
        values.CopyTo(new Span<byte>(Pointer(destination), values.Length));
    }

    public void Download(Tensor source, Span<byte> values)
    {
        Shapes.Expect($"download from {source.Name}", values.Length, source.ByteLength, "bytes of the tensor");
        new ReadOnlySpan<byte>(Pointer(source), values.Length).CopyTo(values);
    }

    public void Synchronize()
    {
    }

    NativeBlock Block(Tensor tensor)
    {
        if (!ReferenceEquals(tensor.Owner, this) || tensor.Buffer is not NativeBlock block)
            throw new ArgumentException($"{tensor.Name} belongs to {tensor.Owner.Name}, not to {Name}");
        if (block.Pointer == null)
            throw new ObjectDisposedException(tensor.Name, $"{tensor.Name} was freed");
        return block;
    }

    byte* Pointer(Tensor tensor) => Block(tensor).Pointer + tensor.Offset * tensor.Type.SizeOf();

    float* F32(Tensor tensor)
    {
        if (tensor.Type != TensorType.F32)
            throw new ArgumentException($"{tensor.Name} holds {tensor.Type.Name()} values; this op needs f32");
        return (float*)Pointer(tensor);
    }

    readonly EmbeddingSimd.Job embeddingJob = new();

    public void Embedding(Tensor table, ReadOnlySpan<int> ids, Tensor output, EmbeddingShape shape, float scale)
    {
        shape.Validate(table.Length, ids.Length, output.Length);
        shape.ValidateIds(ids);
        fixed (int* idPointer = ids)
            EmbeddingSimd.Run(workers, level, embeddingJob, Pointer(table), table.Type.AsStorage(), idPointer, F32(output), shape, scale);
    }

    public void Linear(Tensor x, Tensor weight, Tensor? bias, Tensor y, LinearShape shape)
    {
        shape.Validate(x.Length, weight.Length, bias?.Length, y.Length);
        LinearSimd.Run(workers, level, linearJob, F32(x), Pointer(weight), weight.Type.AsStorage(),
            bias is null ? null : F32(bias), F32(y), shape);
    }

    readonly RmsNormSimd.Job rmsNormJob = new();

    public void RmsNorm(Tensor x, Tensor weight, Tensor y, RmsNormShape shape)
    {
        shape.Validate(x.Length, weight.Length, y.Length);
        RmsNormSimd.Run(workers, level, rmsNormJob, F32(x), Pointer(weight), weight.Type.AsStorage(), F32(y), shape);
    }

    readonly RotarySimd.Job rotaryJob = new();

    public void Rotary(Tensor x, Tensor angles, RotaryShape shape)
    {
        shape.Validate(x.Length, angles.Length);
        RotarySimd.Run(workers, level, rotaryJob, F32(x), F32(angles), shape);
    }

    public int ScatterRows(Tensor source, Tensor destination, ReadOnlySpan<long> rowIndices, ScatterShape shape,
        Span<bool> rowOverflowed) => throw new NotImplementedException();

    public long Convert(Tensor source, Tensor destination) => throw new NotImplementedException();

    public void Attention(Tensor q, Tensor keys, Tensor values, Tensor output, ReadOnlySpan<KeyRange> ranges,
        AttentionShape shape, AttentionBias? bias, Span<bool> fullyMasked) => throw new NotImplementedException();

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

    public void SoftCap(Tensor x, long count, float cap) => throw new NotImplementedException();

    public void Softmax(Tensor logits, Tensor probabilities, SoftmaxShape shape, float temperature) =>
        throw new NotImplementedException();

    public void Sample(Tensor logits, int vocabulary, ReadOnlySpan<SamplingRow> rows, ReadOnlySpan<int> penalizedTokens,
        Span<int> tokens) => throw new NotImplementedException();

    public long FirstNonFinite(Tensor x, long count) => throw new NotImplementedException();

    public void Dispose() => workers.Dispose();
}
