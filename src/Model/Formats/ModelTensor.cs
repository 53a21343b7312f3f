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
    readonly TensorStore _store;
    readonly MappedFile? _file;
    readonly long _fileOffset;
    readonly Action<IntPtr>? _materialise;
    readonly Lock _materialiseLock = new();
    byte* _materialised;

    ModelTensor(TensorStore store, string name, string sourceName, string sourcePath, StorageType dataType,
        ImmutableArray<long> shape, MappedFile? file, long fileOffset, Action<IntPtr>? materialise, string? transformation)
    {
        _store = store;
        Name = name;
        SourceName = sourceName;
        SourcePath = sourcePath;
        DataType = dataType;
        Shape = shape;
        ElementCount = shape.Aggregate(1L, (a, b) => checked(a * b));
        ByteLength = dataType.ByteLength(ElementCount);
        _file = file;
        _fileOffset = fileOffset;
        _materialise = materialise;
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
        new(store, name, name, sourcePath, dataType, shape, null, 0, null, null) { _materialised = data };

    /// <summary>A tensor computed from others on first access; <paramref name="fill"/> writes ByteLength bytes.</summary>
    internal static ModelTensor Derived(TensorStore store, string name, string sourceName, string sourcePath,
        StorageType dataType, ImmutableArray<long> shape, string transformation, Action<IntPtr> fill) =>
        new(store, name, sourceName, sourcePath, dataType, shape, null, 0, fill, transformation);

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
        get
        {
            _store.ThrowIfDisposed();
            if (_file is not null) return _file.PointerAt(_fileOffset);
            if (_materialised != null) return _materialised;
            lock (_materialiseLock)
            {
                if (_materialised == null)
                {
                    byte* buffer = _store.Allocate(ByteLength);
                    _materialise!((IntPtr)buffer);
                    _materialised = buffer;
                }
                return _materialised;
            }
        }
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
        $"{Name} {DataType} [{string.Join(", ", Shape)}]{(IsTransformed ? " (transformed)" : "")}";
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
            return buffer;
        }
    }

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
