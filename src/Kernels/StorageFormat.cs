using System.Runtime.Intrinsics;
using ILGPU;

namespace IlgpuLlm.Kernels;

/// <summary>
/// One storage format of weights and the KV cache: everything that depends on how values are
/// stored lives in its subclass (one per <see cref="StorageType"/>, a singleton): the block
/// layout and byte lengths, the reference widening to binary32, narrowing where the format can
/// hold any binary32 value element by element (the KV cache, converted tensors, written models),
/// the finiteness scan of loaded weights, the format's ids in model files, and the structs the
/// generic kernels are specialised with — the ILGPU load (<see cref="IStorageView{TSelf}"/>), the
/// SIMD loads (<see cref="IStoredVectors"/>) and, for narrowing formats, the stores. Kernels never
/// switch over formats: they hand a generic action to <see cref="Dispatch{TAction}"/>. Every
/// member that differs between formats is abstract, so a new format that leaves one out does not
/// compile, and <see cref="StorageTypes.Format"/> is the one switch from the enum to the type.
/// </summary>
/// <remarks>
/// Block formats (ggml's Q8_0: 32 values in 34 bytes; Q4_K: 256 values in 144 bytes) store whole
/// blocks only: <see cref="ByteLength"/> rejects an element count that is not a whole number of
/// blocks, and a tensor or slice of one starts and ends on block boundaries.
/// </remarks>
public abstract class StorageFormat
{
    /// <summary>The enum value naming this format (kernel arguments, options, records).</summary>
    public abstract StorageType Type { get; }

    /// <summary>The name users see and type: f32, f16, bf16.</summary>
    public abstract string Name { get; }

    /// <summary>Names <see cref="StorageTypes.Parse"/> accepts for this format (<see cref="Name"/> first).</summary>
    public abstract IReadOnlyList<string> Aliases { get; }

    /// <summary>Values per block: 1 for a plain element format.</summary>
    public abstract int BlockElements { get; }

    /// <summary>Bytes per block.</summary>
    public abstract int BlockBytes { get; }

    /// <summary>ggml's <c>ggml_type</c> id of this format in GGUF files.</summary>
    public abstract uint GgmlTypeId { get; }

    /// <summary>The safetensors dtype name (F32, F16, BF16), or null where safetensors cannot hold the format.</summary>
    public abstract string? SafetensorsName { get; }

    /// <summary>transformers' <c>torch_dtype</c> name, or null where torch has no such dtype.</summary>
    public abstract string? TorchName { get; }

    /// <summary>Bytes of <paramref name="elements"/> values, which must be a whole number of blocks.</summary>
    public long ByteLength(long elements)
    {
        if (elements < 0 || elements % BlockElements != 0)
            throw new ArgumentException(
                $"{elements} values are not a whole number of {BlockElements}-value {Name} blocks");
        return checked(elements / BlockElements * BlockBytes);
    }

    /// <summary>Values held by <paramref name="bytes"/> bytes, which must be a whole number of blocks.</summary>
    public long ElementCount(long bytes)
    {
        if (bytes < 0 || bytes % BlockBytes != 0)
            throw new ArgumentException($"{bytes} bytes are not a whole number of {BlockBytes}-byte {Name} blocks");
        return checked(bytes / BlockBytes * BlockElements);
    }

    /// <summary>Value <paramref name="index"/> of stored bytes, widened exactly to binary32 (the reference).</summary>
    public abstract float Widen(ReadOnlySpan<byte> data, long index);

    /// <summary>Every value of <paramref name="source"/>, widened exactly; the bulk form of <see cref="Widen(ReadOnlySpan{byte}, long)"/>.</summary>
    public abstract void Widen(ReadOnlySpan<byte> source, Span<float> destination);

    /// <summary>Whether binary32 values can be stored in this format element by element (<see cref="Narrow"/>).</summary>
    public abstract bool Narrows { get; }

    /// <summary>
    /// Stores binary32 values, rounding to nearest even as <see cref="HalfBits"/> does (NaN stays
    /// NaN; f16 overflow gives ±inf). Throws <see cref="NotSupportedException"/> for a format that
    /// does not narrow.
    /// </summary>
    public abstract void Narrow(ReadOnlySpan<float> source, Span<byte> destination);

    /// <summary>True when narrowing this finite value gives ±inf (only f16 reports overflows).</summary>
    public abstract bool Overflows(float value);

    /// <summary>The index of the first NaN or ±inf among <paramref name="count"/> stored values, or −1.</summary>
    public abstract unsafe long IndexOfNonFinite(byte* data, long count);

    /// <summary>Runs generic kernel code specialised with this format's load structs.</summary>
    public abstract void Dispatch<TAction>(ref TAction action) where TAction : struct, IStorageAction;

    /// <summary>
    /// Runs generic kernel code specialised with this format's stores; throws
    /// <see cref="NotSupportedException"/> for a format that does not narrow.
    /// </summary>
    public abstract void DispatchNarrowing<TAction>(ref TAction action) where TAction : struct, INarrowingAction;

    /// <summary>The value <paramref name="value"/> becomes when stored in this format and widened back.</summary>
    public float RoundTrip(float value)
    {
        Span<byte> stored = stackalloc byte[BlockBytes];
        Narrow([value], stored);
        return Widen(stored, 0);
    }

    /// <summary>Every format, in <see cref="StorageType"/> order.</summary>
    public static IReadOnlyList<StorageFormat> All => all ??= [.. Enum.GetValues<StorageType>().Select(t => t.Format())];

    static StorageFormat[]? all;

    /// <summary>The format stored under ggml type id <paramref name="id"/>, or null where the engine has none.</summary>
    public static StorageFormat? FromGgmlTypeId(uint id) => All.FirstOrDefault(f => f.GgmlTypeId == id);

    /// <summary>The format of safetensors dtype <paramref name="dtype"/>, or null where the engine has none.</summary>
    public static StorageFormat? FromSafetensorsName(string dtype) => All.FirstOrDefault(f => f.SafetensorsName == dtype);

    /// <summary>The error of <see cref="Narrow"/> and <see cref="DispatchNarrowing{TAction}"/> in a format that does not narrow.</summary>
    protected NotSupportedException NotNarrowing() =>
        new($"{Name} values cannot be stored one by one from f32; the KV cache and conversions take "
            + string.Join(", ", All.Where(f => f.Narrows).Select(f => f.Name)));

    public override string ToString() => Name;
}

/// <summary>
/// Generic kernel code run for one format (see <see cref="StorageFormat.Dispatch{TAction}"/>): an
/// ILGPU launcher uses <typeparamref name="TStorage"/>, a SIMD twin <typeparamref name="TWeights"/>
/// for weights (finite, validated at load) or <typeparamref name="TExact"/> for values that may be
/// ±inf or NaN (the KV cache after an f16 overflow, converted tensors).
/// </summary>
public interface IStorageAction
{
    void Run<TStorage, TWeights, TExact>()
        where TStorage : struct, IStorageView<TStorage>
        where TWeights : struct, IStoredVectors
        where TExact : struct, IStoredVectors;
}

/// <summary>Generic kernel code that stores binary32 values in one format (see <see cref="StorageFormat.DispatchNarrowing{TAction}"/>).</summary>
public interface INarrowingAction
{
    void Run<TStore, TNarrowing>()
        where TStore : struct, IStorageStore<TStore>
        where TNarrowing : struct, IVectorNarrowing;
}

/// <summary>An ILGPU load of one format, made over the raw bytes of a tensor.</summary>
public interface IStorageView<TSelf> : IStorage where TSelf : struct, IStorageView<TSelf>
{
    static abstract TSelf Over(ArrayView<byte> bytes);
}

/// <summary>An ILGPU store of one narrowing format: value index ← narrow(value).</summary>
public interface IStorageStore<TSelf> where TSelf : struct, IStorageStore<TSelf>
{
    static abstract TSelf Over(ArrayView<byte> bytes);

    void Store(long index, float value);

    /// <summary>True when narrowing this finite value gives ±inf.</summary>
    bool Overflows(float value);
}

/// <summary>
/// SIMD narrowing of one format, lane-wise on binary32 bit patterns, with the bits of the scalar
/// <see cref="HalfBits"/> conversions. Element indices, as in <see cref="IStoredVectors"/>.
/// </summary>
public unsafe interface IVectorNarrowing
{
    /// <summary>Stores 16 values (their binary32 bits) at element <paramref name="at"/>; returns how many overflowed f16.</summary>
    static abstract int Store16(Vector512<uint> bits, byte* destination, long at);

    /// <summary>Stores 16 values given as two halves of eight; returns how many overflowed f16.</summary>
    static abstract int Store16(Vector256<uint> low, Vector256<uint> high, byte* destination, long at);

    /// <summary>Stores one value; returns whether it overflowed f16.</summary>
    static abstract bool Store1(float value, byte* destination, long at);
}
