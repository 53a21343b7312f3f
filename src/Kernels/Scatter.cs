using ILGPU;
using ILGPU.Runtime;

namespace IlgpuLlm.Kernels;

/// <summary>
/// Stores binary32 rows into rows of a stored tensor, narrowing to its storage type (round to
/// nearest even; see <see cref="HalfBits"/>): destination[rowIndices[r]] = narrow(source[r]).
/// This is how keys and values enter the KV cache. A finite value that overflows f16 becomes ±inf
/// as IEEE rounding makes it, and its row is reported, so the runtime can stop that sequence with
/// a message instead of attending to infinities.
/// </summary>
public readonly record struct ScatterShape(int Rows, int Width, long DestinationRows)
{
    public void Validate(long sourceLength, long destinationLength, ReadOnlySpan<long> rowIndices)
    {
        Shapes.Positive("scatter: rows", Rows);
        Shapes.Positive("scatter: width", Width);
        Shapes.Positive("scatter: destination rows", DestinationRows);
        Shapes.Expect("scatter: source", sourceLength, (long)Rows * Width, $"rows {Rows} × width {Width}");
        Shapes.Expect("scatter: destination", destinationLength, DestinationRows * Width, $"destination rows {DestinationRows} × width {Width}");
        Shapes.Expect("scatter: row indices", rowIndices.Length, Rows, $"one per row, rows {Rows}");
        for (int r = 0; r < rowIndices.Length; r++)
            if (rowIndices[r] < 0 || rowIndices[r] >= DestinationRows)
                throw new ArgumentOutOfRangeException(nameof(rowIndices),
                    $"scatter: row {r} targets destination row {rowIndices[r]}; the destination has {DestinationRows} rows");
        // Two rows writing one destination would race on parallel hardware. Sorting a pooled copy
        // finds duplicates without allocating on every call of the generation loop.
        var sorted = System.Buffers.ArrayPool<long>.Shared.Rent(rowIndices.Length);
        try
        {
            rowIndices.CopyTo(sorted);
            Array.Sort(sorted, 0, rowIndices.Length);
            for (int i = 1; i < rowIndices.Length; i++)
                if (sorted[i] == sorted[i - 1])
                {
                    int first = rowIndices.IndexOf(sorted[i]);
                    int second = first + 1 + rowIndices[(first + 1)..].IndexOf(sorted[i]);
                    throw new ArgumentException($"scatter: destination row {sorted[i]} is written twice (row {second})");
                }
        }
        finally
        {
            System.Buffers.ArrayPool<long>.Shared.Return(sorted);
        }
    }
}

public static partial class Scatter
{
    /// <summary>Narrows one binary32 value to the raw bits of a storage type (binary32 bits as is).</summary>
    public static uint Narrow(float value, StorageType type) => type switch
    {
        StorageType.F32 => BitConverter.SingleToUInt32Bits(value),
        StorageType.F16 => HalfBits.F32ToF16(value),
        _ => HalfBits.F32ToBf16(value),
    };

    public static int Reference(ReadOnlySpan<float> source, Span<byte> destination, StorageType type,
        ReadOnlySpan<long> rowIndices, ScatterShape shape, Span<bool> rowOverflowed)
    {
        shape.Validate(source.Length, destination.Length / type.SizeOf(), rowIndices);
        Shapes.Expect("scatter: overflow flags", rowOverflowed.Length, shape.Rows, $"one per row, rows {shape.Rows}");
        int overflowedRows = 0;
        for (int r = 0; r < shape.Rows; r++)
        {
            bool overflowed = false;
            for (int i = 0; i < shape.Width; i++)
            {
                float value = source[r * shape.Width + i];
                long at = rowIndices[r] * shape.Width + i;
                Store(destination, at, Narrow(value, type), type);
                overflowed |= type == StorageType.F16 && HalfBits.OverflowsF16(value);
            }
            rowOverflowed[r] = overflowed;
            overflowedRows += overflowed ? 1 : 0;
        }
        return overflowedRows;
    }

    /// <summary>Every value of one stored tensor converted to another storage type; returns f16 overflows.</summary>
    public static long ConvertReference(HostStorage source, Span<byte> destination, StorageType type)
    {
        Shapes.Expect("convert: destination", destination.Length / type.SizeOf(), source.Length, "the source's length");
        long overflows = 0;
        for (long i = 0; i < source.Length; i++)
        {
            float value = source[i];
            Store(destination, i, Narrow(value, type), type);
            overflows += type == StorageType.F16 && HalfBits.OverflowsF16(value) ? 1 : 0;
        }
        return overflows;
    }

    /// <summary>Threads an element-wise launch uses at most; each walks the elements with this stride.</summary>
    public const int MaxThreads = 1 << 20;

    public struct Args
    {
        public ArrayView<float> Source;
        public ArrayView<float> DestinationF32;
        public ArrayView<ushort> DestinationHalves;
        public ArrayView<long> RowIndices;
        public ArrayView<int> RowOverflowed;
        public long Count, Stride;
        public int Width;
        public StorageType Type;
    }

    /// <summary>
    /// One thread per element (grid-stride, so counts above 2^31 work): neighbouring threads read
    /// neighbouring source values and write neighbouring destination values of a row. A row's
    /// overflow flag is a plain store of 1 — any order of such stores gives the same OR.
    /// </summary>
    [GpuKernel]
    static void Kernel(Index1D index, Args a)
    {
        for (long i = index; i < a.Count; i += a.Stride)
        {
            long row = i / a.Width;
            long at = a.RowIndices[row] * a.Width + (i - row * a.Width);
            float value = a.Source[i];
            if (a.Type == StorageType.F32)
                a.DestinationF32[at] = value;
            else if (a.Type == StorageType.F16)
            {
                a.DestinationHalves[at] = HalfBits.F32ToF16(value);
                if (HalfBits.OverflowsF16(value))
                    a.RowOverflowed[row] = 1;
            }
            else
                a.DestinationHalves[at] = HalfBits.F32ToBf16(value);
        }
    }

    /// <summary>
    /// Validates, then stores the rows. <paramref name="rowIndicesOnDevice"/> holds
    /// <paramref name="rowIndices"/>; <paramref name="rowOverflowed"/> (one per row, zeroed by the
    /// caller) receives 1 for each row with an f16 overflow.
    /// </summary>
    public static void Run(KernelLibrary library, ArrayView<float> source, ArrayView<byte> destination, StorageType type,
        ReadOnlySpan<long> rowIndices, ArrayView<long> rowIndicesOnDevice, ScatterShape shape, ArrayView<int> rowOverflowed)
    {
        shape.Validate(source.Length, destination.Length / type.SizeOf(), rowIndices);
        Shapes.Expect("scatter: row indices on the device", rowIndicesOnDevice.Length, rowIndices.Length, "the row indices");
        Shapes.Expect("scatter: overflow flags", rowOverflowed.Length, shape.Rows, $"one per row, rows {shape.Rows}");
        long count = (long)shape.Rows * shape.Width;
        int threads = (int)Math.Min(count, MaxThreads);
        library.GetElementwise<Args>(Kernel)(threads, new Args
        {
            Source = source,
            DestinationF32 = type == StorageType.F32 ? destination.Cast<float>() : ArrayView<float>.Empty,
            DestinationHalves = type == StorageType.F32 ? ArrayView<ushort>.Empty : destination.Cast<ushort>(),
            RowIndices = rowIndicesOnDevice, RowOverflowed = rowOverflowed, Count = count, Stride = threads,
            Width = shape.Width, Type = type,
        });
    }

    public struct ConvertArgs<TSource> where TSource : struct, IStorage
    {
        public TSource Source;
        public ArrayView<float> DestinationF32;
        public ArrayView<ushort> DestinationHalves;
        /// <summary>One counter of f16 overflows.</summary>
        public ArrayView<long> Overflows;
        public long Count, Stride;
        public StorageType Type;
    }

    /// <summary>
    /// One thread per element, grid-stride. Overflows are counted with an integer atomic: integer
    /// sums do not depend on their order, and overflows are rare.
    /// </summary>
    [GpuKernel]
    static void ConvertKernel<TSource>(Index1D index, ConvertArgs<TSource> a) where TSource : struct, IStorage
    {
        for (long i = index; i < a.Count; i += a.Stride)
        {
            float value = a.Source.Load(i);
            if (a.Type == StorageType.F32)
                a.DestinationF32[i] = value;
            else if (a.Type == StorageType.F16)
            {
                a.DestinationHalves[i] = HalfBits.F32ToF16(value);
                if (HalfBits.OverflowsF16(value))
                    Atomic.Add(ref a.Overflows[0], 1L);
            }
            else
                a.DestinationHalves[i] = HalfBits.F32ToBf16(value);
        }
    }

    /// <summary>
    /// Validates, then converts every value; <paramref name="overflows"/> (one zeroed counter)
    /// receives the number of values that overflowed f16.
    /// </summary>
    public static void RunConvert(KernelLibrary library, ArrayView<byte> source, StorageType sourceType,
        ArrayView<byte> destination, StorageType type, ArrayView<long> overflows)
    {
        long count = source.Length / sourceType.SizeOf();
        Shapes.Expect("convert: destination", destination.Length / type.SizeOf(), count, "the source's length");
        Shapes.Expect("convert: overflow counter", overflows.Length, 1, "one counter");
        if (count == 0)
            return;
        int threads = (int)Math.Min(count, MaxThreads);
        var destinationF32 = type == StorageType.F32 ? destination.Cast<float>() : ArrayView<float>.Empty;
        var destinationHalves = type == StorageType.F32 ? ArrayView<ushort>.Empty : destination.Cast<ushort>();
        switch (sourceType)
        {
            case StorageType.F32:
                library.GetElementwise<ConvertArgs<F32Storage>>(ConvertKernel)(threads, Arguments(new F32Storage(source.Cast<float>())));
                break;
            case StorageType.F16:
                library.GetElementwise<ConvertArgs<F16Storage>>(ConvertKernel)(threads, Arguments(new F16Storage(source.Cast<ushort>())));
                break;
            default:
                library.GetElementwise<ConvertArgs<Bf16Storage>>(ConvertKernel)(threads, Arguments(new Bf16Storage(source.Cast<ushort>())));
                break;
        }

        ConvertArgs<T> Arguments<T>(T storage) where T : struct, IStorage => new()
        {
            Source = storage, DestinationF32 = destinationF32, DestinationHalves = destinationHalves, Overflows = overflows,
            Count = count, Stride = threads, Type = type,
        };
    }

    static void Store(Span<byte> destination, long index, uint bits, StorageType type)
    {
        if (type == StorageType.F32)
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(destination.Slice(checked((int)(index * 4)), 4), bits);
        else
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(destination.Slice(checked((int)(index * 2)), 2), (ushort)bits);
    }
}
