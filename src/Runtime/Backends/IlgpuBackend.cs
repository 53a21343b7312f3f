using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using IlgpuLlm.Kernels;

namespace IlgpuLlm.Runtime.Backends;

/// <summary>
/// The kernel library on an ILGPU accelerator: CUDA in production, ILGPU's CPU accelerator as the
/// bit-exact oracle (slow: it runs every GPU thread and barrier in software).
/// </summary>
public sealed class IlgpuBackend : IBackend
{
    readonly Context context;
    readonly Accelerator accelerator;
    readonly KernelLibrary kernels;

    IlgpuBackend(Context context, Accelerator accelerator, string kind)
    {
        this.context = context;
        this.accelerator = accelerator;
        kernels = new KernelLibrary(accelerator);
        Kind = kind;
        Name = kind == "cuda" ? $"cuda ({accelerator.Name})" : $"ilgpu-cpu ({accelerator.NumMultiprocessors} threads)";
    }

    /// <summary>ILGPU's CPU accelerator with <paramref name="threads"/> worker threads.</summary>
    public static IlgpuBackend CreateCpu(int threads = 0)
    {
        var context = KernelContext.Create(threads);
        try
        {
            return new IlgpuBackend(context, context.CreateCPUAccelerator(0, CPUAcceleratorMode.Parallel), "ilgpu-cpu");
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    /// <summary>The first CUDA device, or null where none is present.</summary>
    public static IlgpuBackend? TryCreateCuda()
    {
        var context = KernelContext.Create();
        try
        {
            if (KernelContext.FindCuda(context) is not CudaDevice device)
            {
                context.Dispose();
                return null;
            }
            return new IlgpuBackend(context, device.CreateCudaAccelerator(context), "cuda");
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    public string Name { get; }
    public string Kind { get; }

    public Tensor Allocate(TensorType type, long length, string name)
    {
        if (length < 0)
            throw new ArgumentOutOfRangeException(nameof(length), $"{name}: cannot allocate {length} values");
        var buffer = accelerator.Allocate1D<byte>(Math.Max(1, checked(length * type.SizeOf())));
        return new Tensor(this, buffer, type, 0, length, name);
    }

    public void Free(Tensor tensor) => Own(tensor).Dispose();

    public void Upload(Tensor destination, ReadOnlySpan<byte> values)
    {
        Shapes.Expect($"upload to {destination.Name}", values.Length, destination.ByteLength, "bytes of the tensor");
        if (values.Length > 0)
            Bytes(destination).CopyFromCPU(values);
    }

    public void Download(Tensor source, Span<byte> values)
    {
        Shapes.Expect($"download from {source.Name}", values.Length, source.ByteLength, "bytes of the tensor");
        accelerator.Synchronize();
        if (values.Length > 0)
            Bytes(source).CopyToCPU(values);
    }

    public void Synchronize() => accelerator.Synchronize();

    MemoryBuffer1D<byte, Stride1D.Dense> Own(Tensor tensor)
    {
        if (!ReferenceEquals(tensor.Owner, this) || tensor.Buffer is not MemoryBuffer1D<byte, Stride1D.Dense> buffer)
            throw new ArgumentException($"{tensor.Name} belongs to {tensor.Owner.Name}, not to {Name}");
        return buffer;
    }

    ArrayView<byte> Bytes(Tensor tensor)
    {
        int size = tensor.Type.SizeOf();
        return Own(tensor).View.SubView(tensor.Offset * size, tensor.Length * size);
    }

    ArrayView<float> F32(Tensor tensor)
    {
        Expect(tensor, TensorType.F32);
        return Bytes(tensor).Cast<float>();
    }

    /// <summary>
    /// Copies small per-call host data (ids, positions, key ranges) to the device for one op.
    /// Dispose it only after the op has finished (<see cref="Synchronize"/>).
    /// </summary>
    MemoryBuffer1D<T, Stride1D.Dense> Stage<T>(ReadOnlySpan<T> values) where T : unmanaged
    {
        var buffer = accelerator.Allocate1D<T>(Math.Max(1, values.Length));
        if (values.Length > 0)
            buffer.View.AsContiguous().SubView(0, values.Length).CopyFromCPU(values);
        return buffer;
    }

    /// <summary>A device buffer of <paramref name="length"/> zeroed values for an op's per-call results.</summary>
    MemoryBuffer1D<T, Stride1D.Dense> Scratch<T>(long length) where T : unmanaged
    {
        var buffer = accelerator.Allocate1D<T>(Math.Max(1, length));
        buffer.MemSetToZero();
        return buffer;
    }

    static void Expect(Tensor tensor, TensorType type)
    {
        if (tensor.Type != type)
            throw new ArgumentException($"{tensor.Name} holds {tensor.Type.Name()} values; this op needs {type.Name()}");
    }

    public void Embedding(Tensor table, ReadOnlySpan<int> ids, Tensor output, EmbeddingShape shape, float scale)
    {
        shape.Validate(table.Length, ids.Length, output.Length);
        shape.ValidateIds(ids);
        using var staged = Stage(ids);
        Kernels.Embedding.Run(kernels, Bytes(table), table.Type.AsStorage(), staged.View, F32(output), shape, scale);
        accelerator.Synchronize();
    }

    public void Linear(Tensor x, Tensor weight, Tensor? bias, Tensor y, LinearShape shape) =>
        Kernels.Linear.Run(kernels, F32(x), Bytes(weight), weight.Type.AsStorage(), bias is null ? null : F32(bias), F32(y), shape);

    public void RmsNorm(Tensor x, Tensor weight, Tensor y, RmsNormShape shape) =>
        Kernels.RmsNorm.Run(kernels, F32(x), Bytes(weight), weight.Type.AsStorage(), F32(y), shape);

    public void Rotary(Tensor x, Tensor angles, RotaryShape shape) =>
        Kernels.Rotary.Run(kernels, F32(x), F32(angles), shape);

    public int ScatterRows(Tensor source, Tensor destination, ReadOnlySpan<long> rowIndices, ScatterShape shape,
        Span<bool> rowOverflowed) => throw new NotImplementedException();

    public long Convert(Tensor source, Tensor destination) => throw new NotImplementedException();

    public void Attention(Tensor q, Tensor keys, Tensor values, Tensor output, ReadOnlySpan<KeyRange> ranges,
        AttentionShape shape, AttentionBias? bias, Span<bool> fullyMasked) => throw new NotImplementedException();

    public void GatedActivation(Tensor gate, Tensor up, Tensor output, long count, Activation activation) =>
        Activations.RunGated(kernels, F32(gate), F32(up), F32(output), count, activation);

    public void Add(Tensor a, Tensor b, Tensor output, long count) =>
        Activations.RunAdd(kernels, F32(a), F32(b), F32(output), count);

    public void SoftCap(Tensor x, long count, float cap) => throw new NotImplementedException();

    public void Softmax(Tensor logits, Tensor probabilities, SoftmaxShape shape, float temperature) =>
        throw new NotImplementedException();

    public void Sample(Tensor logits, int vocabulary, ReadOnlySpan<SamplingRow> rows, ReadOnlySpan<int> penalizedTokens,
        Span<int> tokens) => throw new NotImplementedException();

    public long FirstNonFinite(Tensor x, long count) => throw new NotImplementedException();

    public void Dispose()
    {
        kernels.Dispose();
        accelerator.Dispose();
        context.Dispose();
    }
}
