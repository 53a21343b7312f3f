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
    readonly DeviceCounters counters = new();

    IlgpuBackend(Context context, Accelerator accelerator, string kind, LaunchProfile? profile = null)
    {
        this.context = context;
        this.accelerator = accelerator;
        kernels = new KernelLibrary(accelerator, profile, counters);
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
    public DeviceCounters Counters => counters;

    // The one place for each kind of device work, so that every one is counted.

    MemoryBuffer1D<T, Stride1D.Dense> NewBuffer<T>(long length) where T : unmanaged
    {
        counters.Allocation();
        return accelerator.Allocate1D<T>(Math.Max(1, length));
    }

    void Release(MemoryBuffer buffer)
    {
        counters.Free();
        buffer.Dispose();
    }

    void Zero<T>(MemoryBuffer1D<T, Stride1D.Dense> buffer) where T : unmanaged
    {
        counters.Launch();
        buffer.MemSetToZero();
    }

    void Wait()
    {
        counters.Wait();
        accelerator.Synchronize();
    }

    void CopyIn<T>(ArrayView<T> destination, ReadOnlySpan<T> values) where T : unmanaged
    {
        counters.Upload();
        destination.CopyFromCPU(values);
    }

    void CopyOut<T>(ArrayView<T> source, Span<T> values) where T : unmanaged
    {
        counters.Download();
        source.CopyToCPU(values);
    }

    public Tensor Allocate(TensorType type, long length, string name)
    {
        if (length < 0)
            throw new ArgumentOutOfRangeException(nameof(length), $"{name}: cannot allocate {length} values");
        var buffer = NewBuffer<byte>(type.ByteLength(length));
        // Device memory comes back holding whatever was freed there last; a KV cache's unused
        // positions must be zeros (as on the SIMD backend), or converting it to f16 counts their
        // stale bits as overflows.
        Zero(buffer);
        return new Tensor(this, buffer, type, 0, length, name);
    }

    public unsafe Tensor Weights(TensorType type, long length, byte* data, string name)
    {
        var tensor = Allocate(type, length, name);
        long bytes = tensor.ByteLength;
        for (long done = 0; done < bytes; done += int.MaxValue / 2)
        {
            int chunk = (int)Math.Min(int.MaxValue / 2, bytes - done);
            CopyIn(Own(tensor).View.AsContiguous().SubView(done, chunk), new ReadOnlySpan<byte>(data + done, chunk));
        }
        return tensor;
    }

    public void Free(Tensor tensor) => Release(Own(tensor));

    public void Upload(Tensor destination, ReadOnlySpan<byte> values)
    {
        Shapes.Expect($"upload to {destination.Name}", values.Length, destination.ByteLength, "bytes of the tensor");
        if (values.Length > 0)
            CopyIn(Bytes(destination), values);
    }

    public void Download(Tensor source, Span<byte> values)
    {
        Shapes.Expect($"download from {source.Name}", values.Length, source.ByteLength, "bytes of the tensor");
        Wait();
        if (values.Length > 0)
            CopyOut(Bytes(source), values);
    }

    public void Synchronize() => Wait();

    MemoryBuffer1D<byte, Stride1D.Dense> Own(Tensor tensor)
    {
        if (!ReferenceEquals(tensor.Owner, this) || tensor.Buffer is not MemoryBuffer1D<byte, Stride1D.Dense> buffer)
            throw new ArgumentException($"{tensor.Name} belongs to {tensor.Owner.Name}, not to {Name}");
        return buffer;
    }

    ArrayView<byte> Bytes(Tensor tensor)
    {
        return Own(tensor).View.SubView(tensor.ByteOffset, tensor.ByteLength);
    }

    ArrayView<float> F32(Tensor tensor)
    {
        Expect(tensor, TensorType.F32);
        return Bytes(tensor).Cast<float>();
    }

    ArrayView<int> I32(Tensor tensor)
    {
        Expect(tensor, TensorType.I32);
        return Bytes(tensor).Cast<int>();
    }

    static void Expect(Tensor tensor, TensorType type)
    {
        if (tensor.Type != type)
            throw new ArgumentException($"{tensor.Name} holds {tensor.Type.Name()} values; this op needs {type.Name()}");
    }

    /// <summary>
    /// Work space an op keeps between calls (attention scores, sampling weights when the caller
    /// gives none), grown only when a call needs more.
    /// </summary>
    ArrayView<float> Workspace(ref MemoryBuffer1D<float, Stride1D.Dense>? buffer, long floats)
    {
        if (buffer == null || buffer.Length < floats)
        {
            if (buffer != null)
                Release(buffer);
            buffer = NewBuffer<float>(floats);
        }
        return buffer.View.AsContiguous().SubView(0, Math.Max(1, floats));
    }

    MemoryBuffer1D<float, Stride1D.Dense>? attentionScores, samplingWeights;
    MemoryBuffer1D<long, Stride1D.Dense>? finiteResult, convertOverflows;

    public void Embedding(Tensor table, Tensor ids, Tensor output, EmbeddingShape shape, float scale)
    {
        shape.Validate(table.Length, ids.Length, output.Length);
        Kernels.Embedding.Run(kernels, Bytes(table), table.Type.Storage, I32(ids), F32(output), shape, scale);
    }

    public void Linear(Tensor x, Tensor weight, Tensor? bias, Tensor y, LinearShape shape) =>
        Kernels.Linear.Run(kernels, F32(x), Bytes(weight), weight.Type.Storage, bias is null ? null : F32(bias), F32(y), shape);

    public void RmsNorm(Tensor x, Tensor weight, Tensor y, RmsNormShape shape) =>
        Kernels.RmsNorm.Run(kernels, F32(x), Bytes(weight), weight.Type.Storage, F32(y), shape);

    public void Rotary(Tensor x, Tensor angles, RotaryShape shape) =>
        Kernels.Rotary.Run(kernels, F32(x), F32(angles), shape);

    public void ScatterRows(Tensor source, Tensor destination, Tensor rowIndices, ScatterShape shape, ProblemFlags? overflowed)
    {
        overflowed?.Validate("scatter: overflow flags", shape.Rows);
        Scatter.Run(kernels, F32(source), Bytes(destination), destination.Type.Storage, I32(rowIndices), shape,
            overflowed is { } flags ? I32(flags.Flags) : default, overflowed?.Mark ?? 0);
    }

    public long Convert(Tensor source, Tensor destination)
    {
        var sourceType = source.Type.Storage;
        var type = destination.Type.Storage;
        Shapes.Expect($"convert: destination {destination.Name}", destination.Length, source.Length, $"the length of {source.Name}");
        var counter = convertOverflows ??= NewBuffer<long>(1);
        Zero(counter);
        Scatter.RunConvert(kernels, Bytes(source), sourceType, Bytes(destination), type, counter.View.AsContiguous());
        Span<long> count = stackalloc long[1];
        Wait();
        CopyOut(counter.View.AsContiguous(), count);
        return count[0];
    }

    public void Attention(Tensor q, Tensor keys, Tensor values, Tensor output, Tensor ranges, AttentionShape shape, AttentionBias? bias,
        ProblemFlags? fullyMasked, Tensor? workspace = null)
    {
        if (keys.Type != values.Type)
            throw new ArgumentException($"attention: the key cache {keys.Name} holds {keys.Type.Name()} values and the value cache {values.Name} {values.Type.Name()}; both must share one storage type");
        Shapes.Expect("attention: key ranges", ranges.Length, 3L * shape.Rows, $"three per row (slot, begin, end), rows {shape.Rows}");
        long groups = (long)shape.Rows * shape.Heads;
        fullyMasked?.Validate("attention: fully-masked flags", groups);
        long floats = groups * shape.KeysPerGroup;
        var scores = workspace is { } given && given.Length >= floats ? F32(given).SubView(0, Math.Max(1, floats))
            : Workspace(ref attentionScores, floats);
        Kernels.Attention.Run(kernels, F32(q), Bytes(keys), Bytes(values), keys.Type.Storage, F32(output),
            I32(ranges), shape, bias is { } b ? F32(b.Values) : null, bias?.Layout, scores,
            fullyMasked is { } flags ? I32(flags.Flags) : default, fullyMasked?.Mark ?? 0);
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

    public void Sample(Tensor logits, Tensor parameters, Tensor penalized, Tensor tokens, SamplingShape shape, Tensor? skip,
        Tensor? workspace = null)
    {
        shape.Validate(logits.Length, parameters.Length, tokens.Length, skip?.Length);
        long floats = (long)shape.Rows * shape.Vocabulary;
        var weights = workspace is { } given && given.Length >= floats ? F32(given).SubView(0, floats)
            : Workspace(ref samplingWeights, floats);
        Kernels.Sampling.Run(kernels, F32(logits), weights, I32(parameters), penalized.Length > 0 ? I32(penalized) : I32(parameters),
            I32(tokens), shape.Vocabulary, shape.Rows, skip: skip is null ? default : I32(skip));
    }

    public void FlagNonFinite(Tensor x, int rows, int width, ProblemFlags flags)
    {
        flags.Validate("finite check: flags", rows);
        FiniteCheck.RunRows(kernels, F32(x), rows, width, I32(flags.Flags), flags.Mark);
    }

    public long FirstNonFinite(Tensor x, long count)
    {
        FiniteCheck.ValidateCount(x.Length, count);
        if (count == 0)
            return -1;
        var result = finiteResult ??= NewBuffer<long>(1);
        Span<long> lowest = [FiniteCheck.NotFound];
        CopyIn(result.View.AsContiguous(), lowest);
        FiniteCheck.Run(kernels, F32(x).SubView(0, count), result.View.AsContiguous());
        Wait();
        CopyOut(result.View.AsContiguous(), lowest);
        return lowest[0] == FiniteCheck.NotFound ? -1 : lowest[0];
    }

    public void Dispose()
    {
        foreach (var buffer in new MemoryBuffer?[] { attentionScores, samplingWeights, finiteResult, convertOverflows })
            buffer?.Dispose();
        kernels.Dispose();
        accelerator.Dispose();
        context.Dispose();
    }
}
