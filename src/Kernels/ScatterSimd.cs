using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace IlgpuLlm.Kernels;

/// <summary>
/// <see cref="HalfBits.F32ToF16"/>, <see cref="HalfBits.F32ToBf16"/> and
/// <see cref="HalfBits.OverflowsF16"/> lane-wise on binary32 bit patterns, in the same integer
/// arithmetic: round to nearest even, overflow to ±inf, NaN to a quiet NaN with the same sign and
/// top payload bits. Each case is computed for every lane and the right one selected, in the order
/// HalfBits tests them. The results are 16-bit patterns in 32-bit lanes.
/// </summary>
public static class NarrowSimd
{
    // Round half to even by adding (half − 1) plus the kept part's lowest bit, then truncating:
    // the sum carries into the kept bits exactly when the dropped part is above half, or is half
    // and the kept part is odd.

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<uint> F16(Vector512<uint> bits)
    {
        var sign = Vector512.ShiftRightLogical(bits, 16) & Vector512.Create(0x8000u);
        var magnitude = bits & Vector512.Create(0x7FFFFFFFu);
        var nan = Vector512.Create(0x7E00u) | (Vector512.ShiftRightLogical(magnitude, 13) & Vector512.Create(0x1FFu));
        var rebiased = magnitude - Vector512.Create(0x38000000u);
        var normal = Vector512.ShiftRightLogical(
            rebiased + Vector512.Create(0xFFFu) + (Vector512.ShiftRightLogical(rebiased, 13) & Vector512<uint>.One), 13);
        // Subnormal halves: the 24-bit significand shifted right by 126 − exponent (14..24 where
        // selected; other lanes compute garbage that is never selected).
        var shift = Vector512.Create(126u) - Vector512.ShiftRightLogical(magnitude, 23);
        var significand = (magnitude & Vector512.Create(0x7FFFFFu)) | Vector512.Create(0x800000u);
        var halfMinusOne = Avx512F.ShiftLeftLogicalVariable(Vector512<uint>.One, shift - Vector512<uint>.One) - Vector512<uint>.One;
        var kept = Avx512F.ShiftRightLogicalVariable(significand, shift);
        var subnormal = Avx512F.ShiftRightLogicalVariable(significand + halfMinusOne + (kept & Vector512<uint>.One), shift);
        var result = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(0x33000000u)), subnormal, Vector512<uint>.Zero);
        result = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(0x38800000u)), normal, result);
        result = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(0x477FF000u)), Vector512.Create(0x7C00u), result);
        result = Vector512.ConditionalSelect(Vector512.GreaterThan(magnitude, Vector512.Create(0x7F800000u)), nan, result);
        return result | sign;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<uint> F16(Vector256<uint> bits)
    {
        var sign = Vector256.ShiftRightLogical(bits, 16) & Vector256.Create(0x8000u);
        var magnitude = bits & Vector256.Create(0x7FFFFFFFu);
        var nan = Vector256.Create(0x7E00u) | (Vector256.ShiftRightLogical(magnitude, 13) & Vector256.Create(0x1FFu));
        var rebiased = magnitude - Vector256.Create(0x38000000u);
        var normal = Vector256.ShiftRightLogical(
            rebiased + Vector256.Create(0xFFFu) + (Vector256.ShiftRightLogical(rebiased, 13) & Vector256<uint>.One), 13);
        var shift = Vector256.Create(126u) - Vector256.ShiftRightLogical(magnitude, 23);
        var significand = (magnitude & Vector256.Create(0x7FFFFFu)) | Vector256.Create(0x800000u);
        var halfMinusOne = Avx2.ShiftLeftLogicalVariable(Vector256<uint>.One, shift - Vector256<uint>.One) - Vector256<uint>.One;
        var kept = Avx2.ShiftRightLogicalVariable(significand, shift);
        var subnormal = Avx2.ShiftRightLogicalVariable(significand + halfMinusOne + (kept & Vector256<uint>.One), shift);
        var result = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x33000000u)), subnormal, Vector256<uint>.Zero);
        result = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x38800000u)), normal, result);
        result = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x477FF000u)), Vector256.Create(0x7C00u), result);
        result = Vector256.ConditionalSelect(Vector256.GreaterThan(magnitude, Vector256.Create(0x7F800000u)), nan, result);
        return result | sign;
    }

    /// <summary>All-ones in lanes whose finite value rounds past the largest half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<uint> F16Overflows(Vector512<uint> bits)
    {
        var magnitude = bits & Vector512.Create(0x7FFFFFFFu);
        return Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(0x477FF000u)) & Vector512.LessThan(magnitude, Vector512.Create(0x7F800000u));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<uint> F16Overflows(Vector256<uint> bits)
    {
        var magnitude = bits & Vector256.Create(0x7FFFFFFFu);
        return Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x477FF000u)) & Vector256.LessThan(magnitude, Vector256.Create(0x7F800000u));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<uint> Bf16(Vector512<uint> bits)
    {
        var high = Vector512.ShiftRightLogical(bits, 16);
        var rounded = Vector512.ShiftRightLogical(bits + Vector512.Create(0x7FFFu) + (high & Vector512<uint>.One), 16);
        var isNaN = Vector512.GreaterThan(bits & Vector512.Create(0x7FFFFFFFu), Vector512.Create(0x7F800000u));
        return Vector512.ConditionalSelect(isNaN, high | Vector512.Create(0x40u), rounded);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<uint> Bf16(Vector256<uint> bits)
    {
        var high = Vector256.ShiftRightLogical(bits, 16);
        var rounded = Vector256.ShiftRightLogical(bits + Vector256.Create(0x7FFFu) + (high & Vector256<uint>.One), 16);
        var isNaN = Vector256.GreaterThan(bits & Vector256.Create(0x7FFFFFFFu), Vector256.Create(0x7F800000u));
        return Vector256.ConditionalSelect(isNaN, high | Vector256.Create(0x40u), rounded);
    }
}

/// <summary>
/// The SIMD CPU twin of <see cref="Scatter"/>: rows (scatter) or chunks of values (convert) split
/// over threads; each value narrowed exactly as <see cref="Scatter.Narrow"/> does, so the thread
/// count and the SIMD level never change a bit. Overflow counts are integers, so summing them
/// across threads in any order is exact.
/// </summary>
public static unsafe class ScatterSimd
{
    /// <summary>Values one convert chunk handles.</summary>
    const int ConvertChunk = 1 << 15;

    /// <summary>The reusable job object a backend keeps for its scatter calls.</summary>
    public sealed class Job : IRangeJob
    {
        internal float* Source;
        internal byte* Destination;
        internal long* RowIndices;
        internal bool* RowOverflowed;
        internal ScatterShape Shape;
        internal StorageType Type;
        internal SimdLevel Level;

        public void Run(int start, int end)
        {
            int width = Shape.Width;
            int size = Type.SizeOf();
            for (int r = start; r < end; r++)
            {
                float* source = Source + (long)r * width;
                byte* destination = Destination + RowIndices[r] * width * size;
                RowOverflowed[r] = Narrow<F32Vectors>(Level, (byte*)source, 0, destination, Type, width) != 0;
            }
        }
    }

    /// <summary>Runs a validated scatter; returns the number of rows with an f16 overflow.</summary>
    public static int Run(CpuWorkers workers, SimdLevel level, Job job, float* source, byte* destination, StorageType type,
        long* rowIndices, ScatterShape shape, bool* rowOverflowed)
    {
        job.Source = source;
        job.Destination = destination;
        job.Type = type;
        job.RowIndices = rowIndices;
        job.Shape = shape;
        job.RowOverflowed = rowOverflowed;
        job.Level = SimdLevels.AtMost(level);
        // Rows narrower than a few vectors are not worth a thread hand-off each.
        int rowsPerChunk = Math.Max(workers.ChunkFor(shape.Rows), 4096 / shape.Width);
        workers.For(shape.Rows, rowsPerChunk, job);
        int overflowed = 0;
        for (int r = 0; r < shape.Rows; r++)
            overflowed += rowOverflowed[r] ? 1 : 0;
        return overflowed;
    }

    /// <summary>The reusable job object a backend keeps for its convert calls.</summary>
    public sealed class ConvertJob : IRangeJob
    {
        internal byte* Source, Destination;
        internal StorageType SourceType, Type;
        internal long Count;
        internal long Overflows;
        internal SimdLevel Level;

        public void Run(int start, int end)
        {
            long begin = (long)start * ConvertChunk;
            long stop = Math.Min(Count, (long)end * ConvertChunk);
            byte* destination = Destination + begin * Type.SizeOf();
            int length = checked((int)(stop - begin));
            long overflows = SourceType switch
            {
                StorageType.F32 => Narrow<F32Vectors>(Level, Source, begin, destination, Type, length),
                StorageType.F16 => Narrow<F16CacheVectors>(Level, Source, begin, destination, Type, length),
                _ => Narrow<Bf16Vectors>(Level, Source, begin, destination, Type, length),
            };
            if (overflows != 0)
                Interlocked.Add(ref Overflows, overflows);
        }
    }

    /// <summary>Converts every value (lengths validated by the caller); returns the f16 overflows.</summary>
    public static long Convert(CpuWorkers workers, SimdLevel level, ConvertJob job, byte* source, StorageType sourceType,
        byte* destination, StorageType type, long count)
    {
        job.Source = source;
        job.SourceType = sourceType;
        job.Destination = destination;
        job.Type = type;
        job.Count = count;
        job.Overflows = 0;
        job.Level = SimdLevels.AtMost(level);
        int chunks = checked((int)((count + ConvertChunk - 1) / ConvertChunk));
        workers.For(chunks, 1, job);
        return job.Overflows;
    }

    /// <summary>
    /// destination[0..count) = narrow(widen(source[at..at + count))); returns how many values
    /// overflowed f16. <typeparamref name="TSource"/> widens exactly, ±inf and NaN included.
    /// </summary>
    static int Narrow<TSource>(SimdLevel level, byte* source, long at, byte* destination, StorageType type, int count)
        where TSource : struct, IStoredVectors
    {
        if (type == StorageType.F32 && TSource.Type == StorageType.F32)
        {
            // Binary32 to binary32 keeps the bits, NaN payloads included.
            Buffer.MemoryCopy(source + at * 4, destination, (long)count * 4, (long)count * 4);
            return 0;
        }
        int i = 0;
        int overflows = 0;
        if (level == SimdLevel.Avx512)
            (i, overflows) = Narrow512<TSource>(source, at, destination, type, count);
        else if (level == SimdLevel.Avx2)
            (i, overflows) = Narrow256<TSource>(source, at, destination, type, count);
        for (; i < count; i++)
        {
            float value = TSource.Load1(source, at + i);
            uint bits = Scatter.Narrow(value, type);
            if (type == StorageType.F32)
                ((uint*)destination)[i] = bits;
            else
                ((ushort*)destination)[i] = (ushort)bits;
            overflows += type == StorageType.F16 && HalfBits.OverflowsF16(value) ? 1 : 0;
        }
        return overflows;
    }

    /// <summary>Whole vectors of <see cref="Narrow{TSource}"/>: how many values it did, and their overflows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static (int Done, int Overflows) Narrow512<TSource>(byte* source, long at, byte* destination, StorageType type, int count)
        where TSource : struct, IStoredVectors
    {
        int i = 0;
        int overflows = 0;
        for (; i + 16 <= count; i += 16)
        {
            var bits = TSource.Load16(source, at + i).AsUInt32();
            switch (type)
            {
                case StorageType.F32:
                    bits.Store((uint*)destination + i);
                    break;
                case StorageType.F16:
                    Avx512F.ConvertToVector256UInt16(NarrowSimd.F16(bits)).Store((ushort*)destination + i);
                    overflows += BitOperations.PopCount(NarrowSimd.F16Overflows(bits).ExtractMostSignificantBits());
                    break;
                default:
                    Avx512F.ConvertToVector256UInt16(NarrowSimd.Bf16(bits)).Store((ushort*)destination + i);
                    break;
            }
        }
        return (i, overflows);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static (int Done, int Overflows) Narrow256<TSource>(byte* source, long at, byte* destination, StorageType type, int count)
        where TSource : struct, IStoredVectors
    {
        int i = 0;
        int overflows = 0;
        for (; i + 16 <= count; i += 16)
        {
            var low = TSource.Load8(source, at + i).AsUInt32();
            var high = TSource.Load8(source, at + i + 8).AsUInt32();
            switch (type)
            {
                case StorageType.F32:
                    low.Store((uint*)destination + i);
                    high.Store((uint*)destination + i + 8);
                    break;
                case StorageType.F16:
                    // The 16-bit patterns fit their lanes, so the narrowing pack loses nothing.
                    Vector256.Narrow(NarrowSimd.F16(low), NarrowSimd.F16(high)).Store((ushort*)destination + i);
                    overflows += BitOperations.PopCount(NarrowSimd.F16Overflows(low).ExtractMostSignificantBits())
                        + BitOperations.PopCount(NarrowSimd.F16Overflows(high).ExtractMostSignificantBits());
                    break;
                default:
                    Vector256.Narrow(NarrowSimd.Bf16(low), NarrowSimd.Bf16(high)).Store((ushort*)destination + i);
                    break;
            }
        }
        return (i, overflows);
    }
}
