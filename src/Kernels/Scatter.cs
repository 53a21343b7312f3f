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
        var seen = new HashSet<long>();
        for (int r = 0; r < rowIndices.Length; r++)
        {
            if (rowIndices[r] < 0 || rowIndices[r] >= DestinationRows)
                throw new ArgumentOutOfRangeException(nameof(rowIndices),
                    $"scatter: row {r} targets destination row {rowIndices[r]}; the destination has {DestinationRows} rows");
            // Two rows writing one destination would race on parallel hardware.
            if (!seen.Add(rowIndices[r]))
                throw new ArgumentException($"scatter: destination row {rowIndices[r]} is written twice (row {r})");
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

    static void Store(Span<byte> destination, long index, uint bits, StorageType type)
    {
        if (type == StorageType.F32)
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(destination.Slice(checked((int)(index * 4)), 4), bits);
        else
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(destination.Slice(checked((int)(index * 2)), 2), (ushort)bits);
    }
}
