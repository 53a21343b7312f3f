using IlgpuLlm.Kernels;
using System.Collections.Immutable;
using System.Runtime.InteropServices;

namespace IlgpuLlm.Model.Formats;

/// <summary>
/// One weight tensor of a loaded model, under its canonical (llama.cpp GGUF) name, with a
/// row-major shape as transformers reports it. The bytes live in the file's memory map; only a
/// tensor the loader had to transform (see <see cref="Transformation"/>) is materialised, and
/// that happens on first access, so opening a model touches no weight.
/// Pointers and spans stay valid until the owning <see cref="ModelCheckpoint"/> is disposed.
/// </summary>
public sealed unsafe class ModelTensor
{
    readonly TensorMemory _bytes;

    ModelTensor(TensorStore store, string name, string sourceName, string sourcePath, StorageType dataType,
        ImmutableArray<long> shape, MappedFile? file, long fileOffset, Action<IntPtr>? materialise, string? transformation,
        QuantizedData? quantized = null, byte* ready = null)
    {
        Quantized = quantized;
        _bytes = new TensorMemory(store, file, fileOffset, materialise, ready);
        Name = name;
        SourceName = sourceName;
        SourcePath = sourcePath;
        DataType = dataType;
        Shape = shape;
        ElementCount = shape.Aggregate(1L, (a, b) => checked(a * b));
        ByteLength = dataType.ByteLength(ElementCount);
        Transformation = transformation;
    }

    internal static ModelTensor Mapped(TensorStore store, string name, string sourceName, StorageType dataType,
        ImmutableArray<long> shape, MappedFile file, long fileOffset)
    {
        var tensor = new ModelTensor(store, name, sourceName, file.Path, dataType, shape, file, fileOffset, null, null);
        file.CheckRange(fileOffset, tensor.ByteLength, $"tensor '{sourceName}'");
        return tensor;
    }

    /// <summary>A tensor whose bytes already sit in native memory the store owns (in-memory checkpoints).</summary>
    internal static ModelTensor InMemory(TensorStore store, string name, string sourcePath, StorageType dataType,
        ImmutableArray<long> shape, byte* data) =>
        new(store, name, name, sourcePath, dataType, shape, null, 0, null, null, ready: data);

    /// <summary>A tensor computed from others on first access; <paramref name="fill"/> writes ByteLength bytes.</summary>
    internal static ModelTensor Derived(TensorStore store, string name, string sourceName, string sourcePath,
        StorageType dataType, ImmutableArray<long> shape, string transformation, Action<IntPtr> fill) =>
        new(store, name, sourceName, sourcePath, dataType, shape, null, 0, fill, transformation);

    /// <summary>
    /// A tensor in a block format (Q4_K, Q8_0, …): <see cref="Quantized"/> holds its blocks (rows in
    /// the normalised order), and <see cref="Pointer"/> is their exact dequantization to f32
    /// (docs/NUMERICS.md, "Quantized weights"), computed on first access.
    /// </summary>
    internal static ModelTensor Dequantized(TensorStore store, string name, string sourceName, string sourcePath,
        ImmutableArray<long> shape, QuantizedData blocks, string? rowTransformation)
    {
        string transformation = (rowTransformation is null ? "" : rowTransformation + "; ") +
            $"dequantized from {blocks.Format.Name} to f32 on first use";
        return new ModelTensor(store, name, sourceName, sourcePath, StorageType.F32, shape, null, 0,
            destination => blocks.Dequantize(new Span<float>((void*)destination, checked((int)blocks.ElementCount))), transformation, blocks);
    }

    /// <summary>
    /// The weights in their block format, exactly as the file stores them apart from the row order
    /// of <see cref="Transformation"/>; null for f32, f16 and bf16 tensors. When it is set,
    /// <see cref="DataType"/> and <see cref="Pointer"/> describe the f32 dequantization instead,
    /// made only when something reads them: a model computes on the blocks.
    /// </summary>
    public QuantizedData? Quantized { get; }

    /// <summary>The format the weights are kept in: the block format of a quantized tensor, else <see cref="DataType"/>.</summary>
    public StorageType StoredType => Quantized?.Format.Type ?? DataType;

    /// <summary>Bytes of the weights as kept: the blocks of a quantized tensor, else <see cref="ByteLength"/>.</summary>
    public long StoredByteLength => Quantized?.ByteLength ?? ByteLength;

    /// <summary>Canonical name, e.g. <c>blk.0.attn_q.weight</c> (see <see cref="TensorNames"/>).</summary>
    public string Name { get; }

    /// <summary>The name the source file uses (e.g. <c>model.layers.0.self_attn.q_proj.weight</c>).</summary>
    public string SourceName { get; }

    /// <summary>The file the bytes come from.</summary>
    public string SourcePath { get; }

    public StorageType DataType { get; }

    /// <summary>Row-major, outermost first: [out_features, in_features] for matrices, [vocab, hidden] for embeddings.</summary>
    public ImmutableArray<long> Shape { get; }

    public long ElementCount { get; }

    public long ByteLength { get; }

    /// <summary>
    /// Null when the bytes are the file's, untouched. Otherwise what the loader did to reach the
    /// normalised (transformers) layout, e.g. un-permuting llama.cpp's interleaved q/k rows.
    /// </summary>
    public string? Transformation { get; }

    public bool IsTransformed => Transformation is not null;

    /// <summary>The first byte; materialises a transformed tensor on first use.</summary>
    public byte* Pointer
    {
        get => _bytes.Pointer(ByteLength);
    }

    public IntPtr Address => (IntPtr)Pointer;

    /// <summary>All bytes; the tensor must be under 2 GiB (use <see cref="GetBytes"/> or <see cref="Pointer"/> beyond).</summary>
    public ReadOnlySpan<byte> Bytes => GetBytes(0, ByteLength <= int.MaxValue
        ? (int)ByteLength
        : throw new InvalidOperationException($"tensor '{Name}' has {ByteLength} bytes, more than one span can hold; use GetBytes or Pointer"));

    /// <summary>A byte range of the tensor.</summary>
    public ReadOnlySpan<byte> GetBytes(long offset, int length)
    {
        if (offset < 0 || length < 0 || offset > ByteLength - length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, {offset + length}) is outside tensor '{Name}' of {ByteLength} bytes");
        return new ReadOnlySpan<byte>(Pointer + offset, length);
    }

    /// <summary>
    /// The elements reinterpreted as <typeparamref name="T"/>, which must have the element's size:
    /// float for F32, Half or ushort for F16, ushort for BF16.
    /// </summary>
    public ReadOnlySpan<T> AsSpan<T>() where T : unmanaged
    {
        var format = DataType.Format();
        if (format.BlockElements != 1 || sizeof(T) != format.BlockBytes)
            throw new InvalidOperationException($"tensor '{Name}' is {DataType}; {typeof(T).Name} has the wrong size");
        return MemoryMarshal.Cast<byte, T>(Bytes);
    }

    /// <summary>Rows [firstRow, firstRow + rowCount) of a tensor viewed as [Shape[0], rest].</summary>
    public ReadOnlySpan<byte> GetRowBytes(long firstRow, int rowCount)
    {
        long rowBytes = ByteLength / Math.Max(1, Shape.IsEmpty ? 1 : Shape[0]);
        return GetBytes(checked(firstRow * rowBytes), checked((int)(rowCount * rowBytes)));
    }

    /// <summary>Widens elements [first, first + destination.Length) to f32, exactly (f16 and bf16 are subsets of f32).</summary>
    public void CopyToFloat32(Span<float> destination, long first = 0)
    {
        if (first < 0 || first > ElementCount - destination.Length)
            throw new ArgumentOutOfRangeException(nameof(first));
        var format = DataType.Format();
        format.Widen(new ReadOnlySpan<byte>(Pointer + format.ByteLength(first), checked((int)format.ByteLength(destination.Length))), destination);
    }

    /// <summary>All elements widened to f32 (for tests and small tensors).</summary>
    public float[] ToFloat32Array()
    {
        var result = new float[checked((int)ElementCount)];
        CopyToFloat32(result);
        return result;
    }

    public override string ToString() =>
        $"{Name} {StoredType.Name()} [{string.Join(", ", Shape)}]{(IsTransformed ? " (transformed)" : "")}";
}

/// <summary>
/// A weight's blocks in one of the <see cref="BlockFormat"/>s: rows of whole blocks, row-major like
/// every tensor. The bytes are the file's memory map, or for rows the loader reordered a copy made
/// on first access; valid until the owning <see cref="ModelCheckpoint"/> is disposed.
/// </summary>
public sealed unsafe class QuantizedData
{
    readonly TensorMemory _bytes;

    QuantizedData(TensorStore store, BlockFormat format, ImmutableArray<long> shape, MappedFile? file, long fileOffset, Action<IntPtr>? materialise)
    {
        _bytes = new TensorMemory(store, file, fileOffset, materialise, null);
        Format = format;
        ElementCount = shape.Aggregate(1L, (a, b) => checked(a * b));
        RowLength = shape.IsEmpty ? 1 : shape[^1];
        RowBytes = format.ByteLength(RowLength);
        ByteLength = checked(ElementCount / RowLength * RowBytes);
    }

    internal static QuantizedData Mapped(TensorStore store, BlockFormat format, ImmutableArray<long> shape, MappedFile file, long fileOffset, string what)
    {
        var data = new QuantizedData(store, format, shape, file, fileOffset, null);
        file.CheckRange(fileOffset, data.ByteLength, what);
        return data;
    }

    /// <summary>Blocks computed on first access; <paramref name="fill"/> writes ByteLength bytes.</summary>
    internal static QuantizedData Derived(TensorStore store, BlockFormat format, ImmutableArray<long> shape, Action<IntPtr> fill) =>
        new(store, format, shape, null, 0, fill);

    public BlockFormat Format { get; }

    /// <summary>True when the blocks are the file's memory map; false when they are a copy (reordered rows).</summary>
    public bool IsMapped => _bytes.IsMapped;

    public long ElementCount { get; }

    /// <summary>Weights per row (the innermost dimension): whole blocks.</summary>
    public long RowLength { get; }

    public long RowBytes { get; }

    public long ByteLength { get; }

    /// <summary>The first byte of the first block.</summary>
    public byte* Pointer
    {
        get => _bytes.Pointer(ByteLength);
    }

    /// <summary>A byte range of the blocks.</summary>
    public ReadOnlySpan<byte> GetBytes(long offset, int length)
    {
        if (offset < 0 || length < 0 || offset > ByteLength - length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, {offset + length}) is outside {ByteLength} bytes of {Format.Name} blocks");
        return new ReadOnlySpan<byte>(Pointer + offset, length);
    }

    /// <summary>Every weight dequantized exactly (the scalar reference's bits, computed with the SIMD dequantizer).</summary>
    public void Dequantize(Span<float> destination)
    {
        if (destination.Length != ElementCount)
            throw new ArgumentException($"{ElementCount} {Format.Name} weights need {ElementCount} floats, not {destination.Length}");
        fixed (float* y = destination)
            Format.Dequantize(SimdLevels.Best, Pointer, y, ElementCount / Format.BlockElements);
    }

    /// <summary>The first block whose scales are NaN or infinite, or null (reads every block's scale fields).</summary>
    public BadScale? FindBadScale() => Format.FindBadScale(Pointer, ByteLength / Format.BlockBytes);
}

/// <summary>
/// Owns what tensors point into: the memory maps and the native buffers of materialised tensors.
/// Native (not managed) buffers because transformed tensors are handed to kernels as pointers
/// and may exceed a managed array's limit; 64-byte aligned for SIMD loads.
/// </summary>
internal sealed unsafe class TensorStore : IDisposable
{
    readonly List<IDisposable> _owned = [];
    readonly List<IntPtr> _buffers = [];
    bool _disposed;

    public void Own(IDisposable resource) => _owned.Add(resource);

    public byte* Allocate(long bytes)
    {
        lock (_buffers)
        {
            ThrowIfDisposed();
            var buffer = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(1, bytes), 64);
            _buffers.Add((IntPtr)buffer);
            AllocatedBytes += bytes;
            return buffer;
        }
    }

    /// <summary>Bytes of every buffer allocated so far (materialised tensors).</summary>
    public long AllocatedBytes { get; private set; }

    public void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, typeof(ModelCheckpoint));

    public void Dispose()
    {
        lock (_buffers)
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var buffer in _buffers) NativeMemory.AlignedFree((void*)buffer);
            _buffers.Clear();
        }
        foreach (var resource in _owned) resource.Dispose();
    }
}

/// <summary>
/// Where a tensor's bytes are: the file's memory map at an offset, native memory the store already
/// holds, or a copy the store allocates and <c>materialise</c> fills on first access (once, under a lock).
/// </summary>
sealed unsafe class TensorMemory
{
    readonly TensorStore store;
    readonly MappedFile? file;
    readonly long fileOffset;
    readonly Action<IntPtr>? materialise;
    readonly Lock materialiseLock = new();
    byte* materialised;

    public TensorMemory(TensorStore store, MappedFile? file, long fileOffset, Action<IntPtr>? materialise, byte* ready)
    {
        this.store = store;
        this.file = file;
        this.fileOffset = fileOffset;
        this.materialise = materialise;
        materialised = ready;
    }

    public bool IsMapped => file is not null;

    public byte* Pointer(long byteLength)
    {
        store.ThrowIfDisposed();
        if (file is not null) return file.PointerAt(fileOffset);
        if (materialised != null) return materialised;
        lock (materialiseLock)
        {
            if (materialised == null)
            {
                byte* buffer = store.Allocate(byteLength);
                materialise!((IntPtr)buffer);
                materialised = buffer;
            }
            return materialised;
        }
    }
}
