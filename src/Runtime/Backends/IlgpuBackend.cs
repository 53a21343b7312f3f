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

    IlgpuBackend(Context context, Accelerator accelerator, string kind, LaunchProfile? profile = null)
    {
        this.context = context;
        this.accelerator = accelerator;
        kernels = new KernelLibrary(accelerator, profile);
        Kind = kind;
        string shapes = kind != "cuda" && kernels.Profile == LaunchProfile.Cuda ? ", CUDA launch shapes" : "";
        Name = kind == "cuda" ? $"cuda ({accelerator.Name})" : $"ilgpu-cpu ({accelerator.NumMultiprocessors} threads{shapes})";
    }

    /// <summary>
    /// ILGPU's CPU accelerator with <paramref name="threads"/> worker threads, launching with the CPU
    /// shapes or, to check the GPU's shapes without a GPU, with <see cref="LaunchProfile.Cuda"/>.
    /// </summary>
    public static IlgpuBackend CreateCpu(int threads = 0, LaunchProfile profile = LaunchProfile.Cpu)
    {
        var context = KernelContext.Create(threads);
        try
        {
            return new IlgpuBackend(context, context.CreateCPUAccelerator(0, CPUAcceleratorMode.Parallel), "ilgpu-cpu", profile);
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
        // Device memory comes back holding whatever was freed there last; a KV cache's unused
        // positions must be zeros (as on the SIMD backend), or converting it to f16 counts their
        // stale bits as overflows.
        buffer.MemSetToZero();
        return new Tensor(this, buffer, type, 0, length, name);
    }

    public unsafe Tensor Weights(TensorType type, long length, byte* data, string name)
    {
        var tensor = Allocate(type, length, name);
        long bytes = tensor.ByteLength;
        for (long done = 0; done < bytes; done += int.MaxValue / 2)
        {
            int chunk = (int)Math.Min(int.MaxValue / 2, bytes - done);
            Own(tensor).View.AsContiguous().SubView(done, chunk).CopyFromCPU(new ReadOnlySpan<byte>(data + done, chunk));
        }
        return tensor;
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
        Span<bool> rowOverflowed)
    {
        var type = destination.Type.AsStorage();
        shape.Validate(source.Length, destination.Length, rowIndices);
        Shapes.Expect("scatter: overflow flags", rowOverflowed.Length, shape.Rows, $"one per row, rows {shape.Rows}");
        using var indices = Stage(rowIndices);
        using var flags = Scratch<int>(shape.Rows);
        var flagsView = flags.View.AsContiguous().SubView(0, shape.Rows);
        Scatter.Run(kernels, F32(source), Bytes(destination), type, rowIndices, indices.View.AsContiguous().SubView(0, rowIndices.Length),
            shape, flagsView);
        Span<int> overflowed = shape.Rows <= 256 ? stackalloc int[shape.Rows] : new int[shape.Rows];
        accelerator.Synchronize();
        flagsView.CopyToCPU(overflowed);
        int count = 0;
        for (int r = 0; r < shape.Rows; r++)
        {
            rowOverflowed[r] = overflowed[r] != 0;
            count += overflowed[r] != 0 ? 1 : 0;
        }
        return count;
    }

    public long Convert(Tensor source, Tensor destination)
    {
        var sourceType = source.Type.AsStorage();
        var type = destination.Type.AsStorage();
        Shapes.Expect($"convert: destination {destination.Name}", destination.Length, source.Length, $"the length of {source.Name}");
        using var overflows = Scratch<long>(1);
        Scatter.RunConvert(kernels, Bytes(source), sourceType, Bytes(destination), type, overflows.View.AsContiguous());
        Span<long> count = stackalloc long[1];
        accelerator.Synchronize();
        overflows.View.AsContiguous().CopyToCPU(count);
        return count[0];
    }

    public void Attention(Tensor q, Tensor keys, Tensor values, Tensor output, ReadOnlySpan<KeyRange> ranges,
        AttentionShape shape, AttentionBias? bias, Span<bool> fullyMasked)
    {
        if (keys.Type != values.Type)
            throw new ArgumentException($"attention: the key cache {keys.Name} holds {keys.Type.Name()} values and the value cache {values.Name} {values.Type.Name()}; both must share one storage type");
        var cacheType = keys.Type.AsStorage();
        int longest = Kernels.Attention.Validate(shape, q.Length, keys.Length, values.Length, output.Length, ranges,
            bias?.Values.Length, bias?.Layout, fullyMasked.Length);
        int groups = shape.Rows * shape.Heads;
        using var rangesOnDevice = Stage(ranges);
        using var scores = accelerator.Allocate1D<float>(Math.Max(1, (long)groups * longest));
        using var flags = Scratch<int>(groups);
        var flagsView = flags.View.AsContiguous().SubView(0, groups);
        Kernels.Attention.Run(kernels, F32(q), Bytes(keys), Bytes(values), cacheType, F32(output), ranges,
            rangesOnDevice.View.AsContiguous().SubView(0, ranges.Length), shape, bias is { } b ? F32(b.Values) : null, bias?.Layout,
            scores.View.AsContiguous(), flagsView);
        Span<int> masked = groups <= 256 ? stackalloc int[groups] : new int[groups];
        accelerator.Synchronize();
        flagsView.CopyToCPU(masked);
        for (int i = 0; i < groups; i++)
            fullyMasked[i] = masked[i] != 0;
    }

    public void GatedActivation(Tensor gate, Tensor up, Tensor output, long count, Activation activation) =>
        Activations.RunGated(kernels, F32(gate), F32(up), F32(output), count, activation);

    public void Add(Tensor a, Tensor b, Tensor output, long count) =>
        Activations.RunAdd(kernels, F32(a), F32(b), F32(output), count);

    public void SoftCap(Tensor x, long count, float cap)
    {
        Activations.ValidateSoftCap(x.Length, count, cap);
        Activations.RunSoftCap(kernels, F32(x).SubView(0, count), cap);
    }

    public void Softmax(Tensor logits, Tensor probabilities, SoftmaxShape shape, float temperature) =>
        Kernels.Softmax.Run(kernels, F32(logits), F32(probabilities), shape, temperature);

    /// <summary>The sampler's work space (rows × vocabulary weights), kept between calls and grown when needed.</summary>
    MemoryBuffer1D<float, Stride1D.Dense>? samplingWeights;

    public void Sample(Tensor logits, int vocabulary, ReadOnlySpan<SamplingRow> rows, ReadOnlySpan<int> penalizedTokens,
        Span<int> tokens)
    {
        Sampling.Validate(logits.Length, vocabulary, rows, penalizedTokens, tokens.Length);
        var logitValues = F32(logits);
        long needed = (long)rows.Length * vocabulary;
        if (samplingWeights == null || samplingWeights.Length < needed)
        {
            samplingWeights?.Dispose();
            samplingWeights = accelerator.Allocate1D<float>(needed);
        }
        Span<int> packed = rows.Length <= 64 ? stackalloc int[rows.Length * Sampling.ParameterInts] : new int[rows.Length * Sampling.ParameterInts];
        Sampling.PackParameters(rows, packed);
        using var parameters = Stage<int>(packed);
        using var penalized = Stage(penalizedTokens);
        using var drawn = Scratch<int>(rows.Length);
        Kernels.Sampling.Run(kernels, logitValues, samplingWeights.View.AsContiguous(), parameters.View.AsContiguous(),
            penalized.View.AsContiguous(), drawn.View.AsContiguous(), vocabulary, rows.Length);
        accelerator.Synchronize();
        drawn.View.AsContiguous().SubView(0, rows.Length).CopyToCPU(tokens);
    }

    public long FirstNonFinite(Tensor x, long count)
    {
        FiniteCheck.ValidateCount(x.Length, count);
        if (count == 0)
            return -1;
        using var result = Stage<long>([FiniteCheck.NotFound]);
        FiniteCheck.Run(kernels, F32(x).SubView(0, count), result.View.AsContiguous());
        accelerator.Synchronize();
        Span<long> lowest = stackalloc long[1];
        result.View.AsContiguous().CopyToCPU(lowest);
        return lowest[0] == FiniteCheck.NotFound ? -1 : lowest[0];
    }

    public void Dispose()
    {
        kernels.Dispose();
        accelerator.Dispose();
        context.Dispose();
    }
}
