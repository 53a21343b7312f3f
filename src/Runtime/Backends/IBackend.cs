using IlgpuLlm.Kernels;

namespace IlgpuLlm.Runtime.Backends;

/// <summary>
/// Everything the model code asks of a device: memory, and one call per op of the kernel library.
/// Implementations (SIMD CPU, ILGPU on CUDA or on its CPU accelerator) produce the same bits for the
/// same call; the model never knows which one it runs on. Every call validates its arguments
/// (shapes, ids, ranges) before any kernel or loop sees them. Small per-step metadata (token ids,
/// positions, key ranges) is passed as host spans and uploaded by the backend. Calls may run
/// asynchronously; <see cref="Download"/> and the calls that return host values synchronise.
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

    /// <summary>output[r] = table[ids[r]] · scale (exactly widened, one rounding); see <see cref="Embedding"/>.</summary>
    void Embedding(Tensor table, ReadOnlySpan<int> ids, Tensor output, EmbeddingShape shape, float scale);

    /// <summary>y = x·Wᵀ (+ bias); see <see cref="Kernels.Linear"/>.</summary>
    void Linear(Tensor x, Tensor weight, Tensor? bias, Tensor y, LinearShape shape);

    /// <summary>Row-wise RMSNorm with weight w or (1 + w); see <see cref="Kernels.RmsNorm"/>.</summary>
    void RmsNorm(Tensor x, Tensor weight, Tensor y, RmsNormShape shape);

    /// <summary>Rotates each head of x in place by the per-row angles; see <see cref="Kernels.Rotary"/>.</summary>
    void Rotary(Tensor x, Tensor angles, RotaryShape shape);

    /// <summary>
    /// destination[rowIndices[r]] = narrow(source[r]) row by row, converting binary32 to the
    /// destination's storage type (the KV-cache store). Returns how many rows had an element that
    /// overflowed to ±inf in f16 (their values are stored as IEEE rounding gives them).
    /// </summary>
    int ScatterRows(Tensor source, Tensor destination, ReadOnlySpan<long> rowIndices, ScatterShape shape,
        Span<bool> rowOverflowed);

    /// <summary>Converts every value of one stored tensor into another of the same length.</summary>
    long Convert(Tensor source, Tensor destination);

    /// <summary>Grouped-query attention over each query row's own key range; see <see cref="Kernels.Attention"/>.</summary>
    void Attention(Tensor q, Tensor keys, Tensor values, Tensor output, ReadOnlySpan<KeyRange> ranges,
        AttentionShape shape, AttentionBias? bias, Span<bool> fullyMasked);

    /// <summary>output = act(gate) · up element-wise; see <see cref="Kernels.Activations"/>.</summary>
    void GatedActivation(Tensor gate, Tensor up, Tensor output, long count, Activation activation);

    /// <summary>output = a + b element-wise (the residual connection).</summary>
    void Add(Tensor a, Tensor b, Tensor output, long count);

    /// <summary>x = cap·tanh(x / cap) in place (Gemma 2's final logit soft-cap).</summary>
    void SoftCap(Tensor x, long count, float cap);

    /// <summary>Row-wise softmax of logits / temperature; see <see cref="Kernels.Softmax"/>.</summary>
    void Softmax(Tensor logits, Tensor probabilities, SoftmaxShape shape, float temperature);

    /// <summary>Draws one token per logits row; see <see cref="Kernels.Sampling"/>.</summary>
    void Sample(Tensor logits, int vocabulary, ReadOnlySpan<SamplingRow> rows, ReadOnlySpan<int> penalizedTokens,
        Span<int> tokens);

    /// <summary>The index of the first NaN or ±inf among the first <paramref name="count"/> values, or −1.</summary>
    long FirstNonFinite(Tensor x, long count);
}

/// <summary>An additive attention bias: a tensor of binary32 values and where each score's term is.</summary>
public readonly record struct AttentionBias(Tensor Values, AttentionBiasLayout Layout);
