using IlgpuLlm.Kernels;

namespace IlgpuLlm.Runtime.Backends;

/// <summary>
/// Everything the model code asks of a device: memory, and one call per op of the kernel library.
/// Implementations (SIMD CPU, ILGPU on CUDA or on its CPU accelerator) produce the same bits for the
/// same call; the model never knows which one it runs on. Ops take tensors only: per-row data
/// (token ids, cache destinations, key ranges, sampling parameters) lives in device tensors,
/// uploaded once per step (<see cref="Generation.StepBatch"/>, which validates it on the host), and
/// problems an op finds (f16 overflow, fully masked rows, non-finite logits) are raised in device
/// flags (<see cref="ProblemFlags"/>) read once at the end of the step. Every call checks its
/// shapes and lengths before any kernel sees them; index values on the device are checked where
/// they are made (the SIMD backend, which can read them, checks them again). Calls may run
/// asynchronously; <see cref="Download"/> and the calls that return host values synchronise.
/// The host-span forms of the ops, for tests and tools, are in <see cref="BackendExtensions"/>.
/// </summary>
public interface IBackend : IDisposable
{
    /// <summary>What this backend is, for users: "simd-cpu (avx512, 2 threads)", "cuda (…)".</summary>
    string Name { get; }

    /// <summary>A short identifier: simd-cpu, ilgpu-cpu or cuda.</summary>
    string Kind { get; }

    /// <summary>Launches, host waits, allocations and copies this backend has made (see <see cref="DeviceCounters"/>).</summary>
    DeviceCounters Counters { get; }

    /// <summary>A new tensor of <paramref name="length"/> values, every byte zero.</summary>
    Tensor Allocate(TensorType type, long length, string name);

    /// <summary>
    /// A read-only tensor of weights held in host memory (a memory-mapped model file) that stays
    /// valid as long as the tensor is used. The SIMD CPU backend uses it in place; device backends
    /// copy it. <see cref="Free"/> releases only what the backend itself allocated.
    /// </summary>
    unsafe Tensor Weights(TensorType type, long length, byte* data, string name);

    /// <summary>Copies raw little-endian values into a tensor; the span holds exactly its bytes.</summary>
    void Upload(Tensor destination, ReadOnlySpan<byte> values);

    /// <summary>Copies a tensor's raw values out (waits for pending work).</summary>
    void Download(Tensor source, Span<byte> values);

    /// <summary>Releases an allocation made by <see cref="Allocate"/>.</summary>
    void Free(Tensor tensor);

    /// <summary>Waits until every call made so far has finished.</summary>
    void Synchronize();

    /// <summary>output[r] = table[ids[r]] · scale (exactly widened, one rounding); ids is an i32 tensor; see <see cref="Kernels.Embedding"/>.</summary>
    void Embedding(Tensor table, Tensor ids, Tensor output, EmbeddingShape shape, float scale);

    /// <summary>y = x·Wᵀ (+ bias); see <see cref="Kernels.Linear"/>.</summary>
    void Linear(Tensor x, Tensor weight, Tensor? bias, Tensor y, LinearShape shape);

    /// <summary>Row-wise RMSNorm with weight w or (1 + w); see <see cref="Kernels.RmsNorm"/>.</summary>
    void RmsNorm(Tensor x, Tensor weight, Tensor y, RmsNormShape shape);

    /// <summary>Rotates each head of x in place by the per-row angles; see <see cref="Kernels.Rotary"/>.</summary>
    void Rotary(Tensor x, Tensor angles, RotaryShape shape);

    /// <summary>
    /// destination[rowIndices[r]] = narrow(source[r]) row by row (rowIndices: i32), converting
    /// binary32 to the destination's storage type (the KV-cache store). A row with an element that
    /// overflows to ±inf in f16 (stored as IEEE rounding gives it) has its flag raised.
    /// </summary>
    void ScatterRows(Tensor source, Tensor destination, Tensor rowIndices, ScatterShape shape, ProblemFlags? overflowed);

    /// <summary>Converts every value of one stored tensor into another of the same length; returns the f16 overflows (waits).</summary>
    long Convert(Tensor source, Tensor destination);

    /// <summary>
    /// Grouped-query attention over each query row's own key range (ranges: i32 triples of
    /// <see cref="KeyRange"/>, no longer than <see cref="AttentionShape.KeysPerGroup"/>); see
    /// <see cref="Kernels.Attention"/>. A (row, head) with no finite score is written as zeros and
    /// has its flag in <paramref name="fullyMasked"/> ([rows × heads]) raised. Device backends keep
    /// scores in <paramref name="workspace"/> (f32, at least rows × heads × keys per row) when
    /// given, else in space of their own.
    /// </summary>
    void Attention(Tensor q, Tensor keys, Tensor values, Tensor output, Tensor ranges, AttentionShape shape, AttentionBias? bias,
        ProblemFlags? fullyMasked, Tensor? workspace = null);

    /// <summary>output = act(gate) · up element-wise; see <see cref="Kernels.Activations"/>.</summary>
    void GatedActivation(Tensor gate, Tensor up, Tensor output, long count, Activation activation);

    /// <summary>output = a + b element-wise (the residual connection).</summary>
    void Add(Tensor a, Tensor b, Tensor output, long count);

    /// <summary>x = cap·tanh(x / cap) in place (Gemma 2's final logit soft-cap).</summary>
    void SoftCap(Tensor x, long count, float cap);

    /// <summary>Row-wise softmax of logits / temperature; see <see cref="Kernels.Softmax"/>.</summary>
    void Softmax(Tensor logits, Tensor probabilities, SoftmaxShape shape, float temperature);

    /// <summary>
    /// Draws one token per logits row into <paramref name="tokens"/> (i32) from the rows'
    /// <see cref="Sampling.PackParameters"/> (i32, validated on the host against
    /// <paramref name="penalized"/>); rows whose entry in <paramref name="skip"/> is not 0 are
    /// not drawn (token −1). Device backends keep the filtered weights in
    /// <paramref name="workspace"/> (f32, at least rows × vocabulary) when given; see <see cref="Kernels.Sampling"/>.
    /// </summary>
    void Sample(Tensor logits, Tensor parameters, Tensor penalized, Tensor tokens, SamplingShape shape, Tensor? skip,
        Tensor? workspace = null);

    /// <summary>Raises the flag of each row of x [rows, width] that holds NaN or ±inf; see <see cref="FiniteCheck"/>.</summary>
    void FlagNonFinite(Tensor x, int rows, int width, ProblemFlags flags);

    /// <summary>The index of the first NaN or ±inf among the first <paramref name="count"/> values, or −1 (waits).</summary>
    long FirstNonFinite(Tensor x, long count);
}

/// <summary>An additive attention bias: a tensor of binary32 values and where each score's term is.</summary>
public readonly record struct AttentionBias(Tensor Values, AttentionBiasLayout Layout);

/// <summary>
/// Where an op reports a problem per row: i32 flags, each raised to at least <see cref="Mark"/>
/// (flags = max(flag, mark), which no order of writers changes). Marks let one flag say where a
/// problem first appeared: a step marks layer l with layers − l, so the largest mark is the first layer.
/// </summary>
public readonly record struct ProblemFlags(Tensor Flags, int Mark)
{
    /// <param name="what">Names the flags in messages ("scatter: overflow flags").</param>
    public void Validate(string what, long count)
    {
        if (Flags.Type != TensorType.I32)
            throw new ArgumentException($"{what}: {Flags.Name} holds {Flags.Type.Name()} values, not i32");
        Shapes.ExpectAtLeast(what, Flags.Length, count, $"one per item, {count} items");
        if (Mark < 1)
            throw new ArgumentOutOfRangeException(nameof(Mark), $"{what}: mark {Mark} must be at least 1");
    }
}

/// <summary>The shape of a sampling call: rows of logits, each <see cref="Vocabulary"/> wide.</summary>
public readonly record struct SamplingShape(int Rows, int Vocabulary)
{
    public void Validate(long logitsLength, long parametersLength, long tokensLength, long? skipLength)
    {
        Shapes.Positive("sampling: vocabulary", Vocabulary);
        Shapes.Positive("sampling: rows", Rows);
        Shapes.Expect("sampling: logits", logitsLength, (long)Rows * Vocabulary, $"rows {Rows} × vocabulary {Vocabulary}");
        Shapes.Expect("sampling: parameters", parametersLength, (long)Rows * Sampling.ParameterInts, $"{Sampling.ParameterInts} per row, rows {Rows}");
        Shapes.Expect("sampling: tokens", tokensLength, Rows, $"one per row, rows {Rows}");
        if (skipLength is long skip)
            Shapes.ExpectAtLeast("sampling: skipped rows", skip, Rows, $"one per row, rows {Rows}");
    }
}
