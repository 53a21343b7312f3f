using IlgpuLlm.Kernels;
using System.Collections.Immutable;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace IlgpuLlm.Model.Formats;

/// <summary>
/// Produces elements [<paramref name="firstElement"/>, firstElement + n) of a tensor as its storage
/// type's bytes, where n = destination.Length / element size. Called many times per tensor, in any
/// order, so a source must give the same bytes for the same range every time.
/// </summary>
public delegate void TensorElementReader(long firstElement, Span<byte> destination);

/// <summary>
/// A weight to be written, in the engine's normalised layout (what <see cref="ModelCheckpoint"/>
/// hands out): canonical name (<see cref="TensorNames"/>), row-major transformers shape, q/k rows in
/// half-split rotary order, norm weights as the multiplier (Gemma's 1 + w). The bytes are produced
/// on demand, range by range, so a writer streams a multi-GB model without ever holding it; each
/// writer applies its own format's conventions on the way out.
/// </summary>
public sealed class TensorSource
{
    readonly TensorElementReader _read;

    public TensorSource(string name, StorageType dataType, IEnumerable<long> shape, TensorElementReader read)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(read);
        Name = name;
        DataType = dataType;
        Shape = [.. shape];
        if (Shape.Any(d => d < 0))
            throw new ArgumentException($"tensor '{name}': shape [{string.Join(", ", Shape)}] has a negative dimension", nameof(shape));
        ElementCount = Shape.Aggregate(1L, (a, b) => checked(a * b));
        ByteLength = dataType.ByteLength(ElementCount);
        _read = read;
    }

    /// <summary>Canonical (GGUF) name, e.g. <c>blk.0.attn_q.weight</c>.</summary>
    public string Name { get; }

    public StorageType DataType { get; }

    /// <summary>Row-major, outermost first: [out_features, in_features], embeddings [vocab, hidden].</summary>
    public ImmutableArray<long> Shape { get; }

    public long ElementCount { get; }

    public long ByteLength { get; }

    /// <summary>Rows of the tensor viewed as [Shape[0], rest] (1 for a scalar).</summary>
    public long RowCount => Shape.IsEmpty ? 1 : Shape[0];

    /// <summary>Elements per row of the tensor viewed as [Shape[0], rest].</summary>
    public long RowLength => RowCount == 0 ? 0 : ElementCount / RowCount;

    /// <summary>Elements [firstElement, firstElement + the elements the destination holds) as stored bytes (whole blocks).</summary>
    public void Read(long firstElement, Span<byte> destination)
    {
        long count;
        try
        {
            count = DataType.ElementCount(destination.Length);
            DataType.ByteLength(firstElement);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"tensor '{Name}': {e.Message}", nameof(destination));
        }
        if (firstElement < 0 || firstElement > ElementCount - count)
            throw new ArgumentOutOfRangeException(nameof(firstElement),
                $"tensor '{Name}': elements [{firstElement}, {firstElement + count}) are outside its {ElementCount}");
        if (count > 0)
            _read(firstElement, destination);
    }

    /// <summary>Elements widened to f32 (exact for every storage type).</summary>
    public void ReadFloat32(long firstElement, Span<float> destination)
    {
        if (DataType == StorageType.F32)
        {
            Read(firstElement, MemoryMarshal.AsBytes(destination));
            return;
        }
        var format = DataType.Format();
        int chunk = (1 << 14) / format.BlockElements * format.BlockElements;
        Span<byte> buffer = new byte[format.ByteLength(Math.Min(destination.Length, chunk))];
        for (int done = 0; done < destination.Length; done += chunk)
        {
            int n = Math.Min(chunk, destination.Length - done);
            var bytes = buffer[..(int)format.ByteLength(n)];
            Read(firstElement + done, bytes);
            format.Widen(bytes, destination.Slice(done, n));
        }
    }

    /// <summary>All elements widened to f32 (tests and small tensors).</summary>
    public float[] ToFloat32Array()
    {
        var values = new float[checked((int)ElementCount)];
        ReadFloat32(0, values);
        return values;
    }

    /// <summary>A loaded checkpoint's tensor, as it is (already in the normalised layout).</summary>
    public static unsafe TensorSource FromCheckpoint(ModelTensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        var format = tensor.DataType.Format();
        return new TensorSource(tensor.Name, tensor.DataType, tensor.Shape,
            (first, destination) => new ReadOnlySpan<byte>(tensor.Pointer + format.ByteLength(first), destination.Length).CopyTo(destination));
    }

    /// <summary>
    /// A tensor whose f32 values come from <paramref name="values"/> (elements
    /// [first, first + span.Length)) and are stored in <paramref name="dataType"/>, rounded to nearest
    /// even exactly as <see cref="HalfBits"/> does.
    /// </summary>
    public static TensorSource FromFloat32(string name, StorageType dataType, IEnumerable<long> shape, Action<long, Span<float>> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        var format = dataType.Format();
        if (!format.Narrows)
            throw new ArgumentException($"tensor '{name}': {format.Name} values cannot be written from f32 values", nameof(dataType));
        if (dataType == StorageType.F32)
            return new TensorSource(name, dataType, shape, (first, destination) => values(first, MemoryMarshal.Cast<byte, float>(destination)));
        return new TensorSource(name, dataType, shape, (first, destination) =>
        {
            const int chunk = 1 << 18;
            long count = format.ElementCount(destination.Length);
            Span<float> buffer = new float[Math.Min(count, chunk)];
            for (int done = 0; done < count; done += chunk)
            {
                int n = (int)Math.Min(chunk, count - done);
                values(first + done, buffer[..n]);
                format.Narrow(buffer[..n], destination.Slice((int)format.ByteLength(done), (int)format.ByteLength(n)));
            }
        });
    }

    /// <summary>A small tensor held in memory as f32 values (stored in <paramref name="dataType"/>).</summary>
    public static TensorSource FromArray(string name, StorageType dataType, IEnumerable<long> shape, float[] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        var source = FromFloat32(name, dataType, shape, (first, destination) => values.AsSpan((int)first, destination.Length).CopyTo(destination));
        if (source.ElementCount != values.Length)
            throw new ArgumentException($"tensor '{name}': shape [{string.Join(", ", source.Shape)}] needs {source.ElementCount} values, {values.Length} given", nameof(values));
        return source;
    }

    public override string ToString() => $"{Name} {DataType.Name()} [{string.Join(", ", Shape)}]";
}
