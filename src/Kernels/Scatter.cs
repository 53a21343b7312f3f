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
    /// <summary>The lengths of a call; row indices on the device are checked by the kernels (writes outside are dropped).</summary>
    public void ValidateLengths(long sourceLength, long destinationLength, long rowIndicesLength)
    {
        Shapes.Positive("scatter: rows", Rows);
        Shapes.Positive("scatter: width", Width);
        Shapes.Positive("scatter: destination rows", DestinationRows);
        if (DestinationRows > int.MaxValue)
            throw new ArgumentException($"scatter: {DestinationRows} destination rows; row indices are 32-bit");
        Shapes.Expect("scatter: source", sourceLength, (long)Rows * Width, $"rows {Rows} × width {Width}");
        Shapes.Expect("scatter: destination", destinationLength, DestinationRows * Width, $"destination rows {DestinationRows} × width {Width}");
        Shapes.Expect("scatter: row indices", rowIndicesLength, Rows, $"one per row, rows {Rows}");
    }

    /// <summary>Every index targets a destination row.</summary>
    public void ValidateRange(ReadOnlySpan<int> rowIndices)
    {
        for (int r = 0; r < rowIndices.Length; r++)
            if ((uint)rowIndices[r] >= DestinationRows)
                throw new ArgumentOutOfRangeException(nameof(rowIndices),
                    $"scatter: row {r} targets destination row {rowIndices[r]}; the destination has {DestinationRows} rows");
    }

    public void Validate(long sourceLength, long destinationLength, ReadOnlySpan<long> rowIndices)
    {
        ValidateLengths(sourceLength, destinationLength, rowIndices.Length);
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
    public static int Reference(ReadOnlySpan<float> source, Span<byte> destination, StorageType type,
        ReadOnlySpan<long> rowIndices, ScatterShape shape, Span<bool> rowOverflowed)
    {
        var format = type.Format();
        shape.Validate(source.Length, format.ElementCount(destination.Length), rowIndices);
        Shapes.Expect("scatter: overflow flags", rowOverflowed.Length, shape.Rows, $"one per row, rows {shape.Rows}");
        long rowBytes = format.ByteLength(shape.Width);
        int overflowedRows = 0;
        for (int r = 0; r < shape.Rows; r++)
        {
            var row = source.Slice(r * shape.Width, shape.Width);
            format.Narrow(row, destination.Slice(checked((int)(rowIndices[r] * rowBytes)), (int)rowBytes));
            bool overflowed = false;
            foreach (float value in row)
                overflowed |= format.Overflows(value);
            rowOverflowed[r] = overflowed;
            overflowedRows += overflowed ? 1 : 0;
        }
        return overflowedRows;
    }

    /// <summary>Every value of one stored tensor converted to another storage type; returns f16 overflows.</summary>
    public static long ConvertReference(HostStorage source, Span<byte> destination, StorageType type)
    {
        var format = type.Format();
        Shapes.Expect("convert: destination", format.ElementCount(destination.Length), source.Length, "the source's length");
        var values = new float[source.Length];
        long overflows = 0;
        for (long i = 0; i < source.Length; i++)
        {
            values[i] = source[i];
            overflows += format.Overflows(values[i]) ? 1 : 0;
        }
        format.Narrow(values, destination);
        return overflows;
    }

    /// <summary>Threads an element-wise launch uses at most; each walks the elements with this stride.</summary>
    public const int MaxThreads = 1 << 20;

    public struct Args<TDestination> where TDestination : struct, IStorageStore<TDestination>
    {
        public ArrayView<float> Source;
        public TDestination Destination;
        public ArrayView<int> RowIndices;
        public ArrayView<int> RowFlags;
        public long Count, Stride, DestinationRows;
        public int Width, Mark;
    }

    /// <summary>
    /// One thread per element (grid-stride, so counts above 2^31 work): neighbouring threads read
    /// neighbouring source values and write neighbouring destination values of a row. A row with
    /// an f16 overflow has its flag raised to the mark with an integer atomic maximum, which no
    /// order changes. An index outside the destination (host validation rules it out) is dropped.
    /// </summary>
    [GpuKernel]
    static void Kernel<TDestination>(Index1D index, Args<TDestination> a) where TDestination : struct, IStorageStore<TDestination>
    {
        for (long i = index; i < a.Count; i += a.Stride)
        {
            long row = i / a.Width;
            long target = a.RowIndices[row];
            if ((ulong)target >= (ulong)a.DestinationRows)
                continue;
            float value = a.Source[i];
            a.Destination.Store(target * a.Width + (i - row * a.Width), value);
            if (a.Mark > 0 && a.Destination.Overflows(value))
                Atomic.Max(ref a.RowFlags[row], a.Mark);
        }
    }

    /// <summary>
    /// Stores the rows. <paramref name="rowIndices"/> are on the device (validated on the host where
    /// they were made); <paramref name="rowFlags"/>, when <paramref name="mark"/> is positive, has
    /// the flag of each row with an f16 overflow raised to at least the mark.
    /// </summary>
    public static void Run(KernelLibrary library, ArrayView<float> source, ArrayView<byte> destination, StorageType type,
        ArrayView<int> rowIndices, ScatterShape shape, ArrayView<int> rowFlags, int mark)
    {
        shape.ValidateLengths(source.Length, type.ElementCount(destination.Length), rowIndices.Length);
        if (mark > 0)
            Shapes.ExpectAtLeast("scatter: overflow flags", rowFlags.Length, shape.Rows, $"one per row, rows {shape.Rows}");
        long count = (long)shape.Rows * shape.Width;
        var launch = new Launch
        {
            Library = library, Source = source, Destination = destination, RowIndices = rowIndices,
            RowFlags = mark > 0 ? rowFlags : rowIndices, Count = count, Threads = (int)Math.Min(count, MaxThreads), Width = shape.Width,
            DestinationRows = shape.DestinationRows, Mark = Math.Max(0, mark),
        };
        type.Format().DispatchNarrowing(ref launch);
    }

    struct Launch : INarrowingAction
    {
        public KernelLibrary Library;
        public ArrayView<float> Source;
        public ArrayView<byte> Destination;
        public ArrayView<int> RowIndices, RowFlags;
        public long Count, DestinationRows;
        public int Threads, Width, Mark;

        public readonly void Run<TStore, TNarrowing>() where TStore : struct, IStorageStore<TStore> where TNarrowing : struct, IVectorNarrowing =>
            Library.GetElementwise<Args<TStore>>(Kernel)(Threads, new Args<TStore>
            {
                Source = Source, Destination = TStore.Over(Destination), RowIndices = RowIndices, RowFlags = RowFlags,
                Count = Count, Stride = Threads, DestinationRows = DestinationRows, Width = Width, Mark = Mark,
            });
    }

    public struct ConvertArgs<TSource, TDestination>
        where TSource : struct, IStorage where TDestination : struct, IStorageStore<TDestination>
    {
        public TSource Source;
        public TDestination Destination;
        /// <summary>One counter of f16 overflows.</summary>
        public ArrayView<long> Overflows;
        public long Count, Stride;
    }

    /// <summary>
    /// One thread per element, grid-stride. Overflows are counted with an integer atomic: integer
    /// sums do not depend on their order, and overflows are rare.
    /// </summary>
    [GpuKernel]
    static void ConvertKernel<TSource, TDestination>(Index1D index, ConvertArgs<TSource, TDestination> a)
        where TSource : struct, IStorage where TDestination : struct, IStorageStore<TDestination>
    {
        for (long i = index; i < a.Count; i += a.Stride)
        {
            float value = a.Source.Load(i);
            a.Destination.Store(i, value);
            if (a.Destination.Overflows(value))
                Atomic.Add(ref a.Overflows[0], 1L);
        }
    }

    /// <summary>
    /// Validates, then converts every value; <paramref name="overflows"/> (one zeroed counter)
    /// receives the number of values that overflowed f16.
    /// </summary>
    public static void RunConvert(KernelLibrary library, ArrayView<byte> source, StorageType sourceType,
        ArrayView<byte> destination, StorageType type, ArrayView<long> overflows)
    {
        long count = sourceType.ElementCount(source.Length);
        Shapes.Expect("convert: destination", type.ElementCount(destination.Length), count, "the source's length");
        Shapes.Expect("convert: overflow counter", overflows.Length, 1, "one counter");
        if (count == 0)
            return;
        var launch = new ConvertSource
        {
            Library = library, Source = source, Destination = destination, DestinationFormat = type.Format(), Overflows = overflows,
            Count = count, Threads = (int)Math.Min(count, MaxThreads),
        };
        sourceType.Format().Dispatch(ref launch);
    }

    /// <summary>The first half of the double dispatch: the source format, then the destination's.</summary>
    struct ConvertSource : IStorageAction
    {
        public KernelLibrary Library;
        public ArrayView<byte> Source, Destination;
        public StorageFormat DestinationFormat;
        public ArrayView<long> Overflows;
        public long Count;
        public int Threads;

        public readonly void Run<TStorage, TWeights, TExact>()
            where TStorage : struct, IStorageView<TStorage> where TWeights : struct, IStoredVectors where TExact : struct, IStoredVectors
        {
            var launch = new ConvertDestination<TStorage> { Outer = this, SourceStorage = TStorage.Over(Source) };
            DestinationFormat.DispatchNarrowing(ref launch);
        }
    }

    struct ConvertDestination<TSource> : INarrowingAction where TSource : struct, IStorage
    {
        public ConvertSource Outer;
        public TSource SourceStorage;

        public readonly void Run<TStore, TNarrowing>() where TStore : struct, IStorageStore<TStore> where TNarrowing : struct, IVectorNarrowing =>
            Outer.Library.GetElementwise<ConvertArgs<TSource, TStore>>(ConvertKernel)(Outer.Threads, new ConvertArgs<TSource, TStore>
            {
                Source = SourceStorage, Destination = TStore.Over(Outer.Destination), Overflows = Outer.Overflows,
                Count = Outer.Count, Stride = Outer.Threads,
            });
    }
}
