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
        ByteLength = checked(ElementCount * dataType.SizeOf());
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

    /// <summary>Elements [firstElement, firstElement + destination.Length / size) as stored bytes.</summary>
    public void Read(long firstElement, Span<byte> destination)
    {
        int size = DataType.SizeOf();
        if (destination.Length % size != 0)
            throw new ArgumentException($"tensor '{Name}': {destination.Length} bytes is not a whole number of {DataType.Name()} elements", nameof(destination));
        long count = destination.Length / size;
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
        const int chunk = 1 << 14;
        int size = DataType.SizeOf();
        Span<byte> buffer = new byte[Math.Min(destination.Length, chunk) * size];
        for (int done = 0; done < destination.Length; done += chunk)
        {
            int n = Math.Min(chunk, destination.Length - done);
            var bytes = buffer[..(n * size)];
            Read(firstElement + done, bytes);
            DataType.WidenToFloat32(bytes, destination.Slice(done, n));
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
        int size = tensor.DataType.SizeOf();
        return new TensorSource(tensor.Name, tensor.DataType, tensor.Shape,
            (first, destination) => new ReadOnlySpan<byte>(tensor.Pointer + first * size, destination.Length).CopyTo(destination));
    }

    /// <summary>
    /// A tensor whose f32 values come from <paramref name="values"/> (elements
    /// [first, first + span.Length)) and are stored in <paramref name="dataType"/>, rounded to nearest
    /// even exactly as <see cref="HalfBits"/> does.
    /// </summary>
    public static TensorSource FromFloat32(string name, StorageType dataType, IEnumerable<long> shape, Action<long, Span<float>> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (dataType == StorageType.F32)
            return new TensorSource(name, dataType, shape, (first, destination) => values(first, MemoryMarshal.Cast<byte, float>(destination)));
        return new TensorSource(name, dataType, shape, (first, destination) =>
        {
            const int chunk = 1 << 18;
            var bits = MemoryMarshal.Cast<byte, ushort>(destination);
            Span<float> buffer = new float[Math.Min(bits.Length, chunk)];
            for (int done = 0; done < bits.Length; done += chunk)
            {
                int n = Math.Min(chunk, bits.Length - done);
                values(first + done, buffer[..n]);
                StorageNarrowing.Narrow(dataType, buffer[..n], MemoryMarshal.AsBytes(bits.Slice(done, n)));
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

/// <summary>
/// f32 → storage type, round to nearest even: the same bits as <see cref="HalfBits"/>'s scalar
/// conversions (NaN included), vectorised because writing a model narrows every weight.
/// </summary>
public static class StorageNarrowing
{
    public static void Narrow(StorageType type, ReadOnlySpan<float> source, Span<byte> destination)
    {
        if (destination.Length != source.Length * type.SizeOf())
            throw new ArgumentException($"{source.Length} {type.Name()} elements need {source.Length * type.SizeOf()} bytes, not {destination.Length}");
        switch (type)
        {
            case StorageType.F32:
                MemoryMarshal.AsBytes(source).CopyTo(destination);
                break;
            case StorageType.F16:
                NarrowToF16(source, MemoryMarshal.Cast<byte, ushort>(destination));
                break;
            case StorageType.BF16:
                NarrowToBf16(source, MemoryMarshal.Cast<byte, ushort>(destination));
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(type), type, null);
        }
    }

    static void NarrowToF16(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        // .NET's float → Half is IEEE round-to-nearest-even, as HalfBits.F32ToF16 is; only the
        // payload a NaN keeps may differ, so any NaN sends the span down the scalar path.
        if (source.Length > 0 && !float.IsNaN(TensorPrimitives.Max(source)))
        {
            TensorPrimitives.ConvertToHalf(source, MemoryMarshal.Cast<ushort, Half>(destination));
            return;
        }
        for (int i = 0; i < source.Length; i++)
            destination[i] = HalfBits.F32ToF16(source[i]);
    }

    static void NarrowToBf16(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        var bits = MemoryMarshal.Cast<float, uint>(source);
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            int width = Vector<uint>.Count;
            for (; i + 2 * width <= bits.Length; i += 2 * width)
                Vector.Narrow(RoundToBf16(new Vector<uint>(bits[i..])), RoundToBf16(new Vector<uint>(bits[(i + width)..])))
                    .CopyTo(destination[i..]);
        }
        for (; i < bits.Length; i++)
            destination[i] = HalfBits.F32ToBf16(source[i]);
    }

    /// <summary>HalfBits.F32ToBf16 lane by lane: ties to even, NaN made quiet with its sign and high payload.</summary>
    static Vector<uint> RoundToBf16(Vector<uint> bits)
    {
        var rounded = (bits + new Vector<uint>(0x7FFF) + ((bits >> 16) & Vector<uint>.One)) >> 16;
        var nan = Vector.GreaterThan(bits & new Vector<uint>(0x7FFFFFFF), new Vector<uint>(0x7F800000));
        return Vector.ConditionalSelect(nan, (bits >> 16) | new Vector<uint>(0x40), rounded);
    }

    /// <summary>The value <paramref name="value"/> becomes when stored as <paramref name="type"/> and widened back.</summary>
    public static float RoundTo(StorageType type, float value) => type switch
    {
        StorageType.F32 => value,
        StorageType.F16 => HalfBits.F16ToF32(HalfBits.F32ToF16(value)),
        StorageType.BF16 => HalfBits.Bf16ToF32(HalfBits.F32ToBf16(value)),
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, null),
    };
}
