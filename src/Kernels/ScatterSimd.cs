using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace IlgpuLlm.Kernels;

/// <summary>
/// The SIMD CPU twin of <see cref="Scatter"/>: rows (scatter) or chunks of values (convert) split
/// over threads; each value narrowed exactly as the destination format's scalar narrowing does
/// (<see cref="IVectorNarrowing"/>), so the thread count and the SIMD level never change a bit.
/// Overflow counts are integers, so summing them across threads in any order is exact.
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
        internal int* RowIndices;
        internal int* RowFlags;
        internal int Mark;
        internal ScatterShape Shape;
        internal long RowBytes;
        internal SimdLevel Level;
        internal delegate*<SimdLevel, byte*, long, byte*, int, int> NarrowRow;

        public void Run(int start, int end)
        {
            int width = Shape.Width;
            for (int r = start; r < end; r++)
            {
                float* source = Source + (long)r * width;
                byte* destination = Destination + RowIndices[r] * RowBytes;
                if (NarrowRow(Level, (byte*)source, 0, destination, width) != 0 && Mark > 0)
                    RowFlags[r] = Math.Max(RowFlags[r], Mark);
            }
        }
    }

    /// <summary>Picks the narrowing of the destination format for rows of binary32 values.</summary>
    struct RowNarrowing : INarrowingAction
    {
        public Job Job;

        public readonly void Run<TStore, TNarrowing>() where TStore : struct, IStorageStore<TStore> where TNarrowing : struct, IVectorNarrowing =>
            Job.NarrowRow = &Narrow<F32Vectors, TNarrowing>;
    }

    /// <summary>
    /// Runs a validated scatter; when <paramref name="mark"/> is positive, the flag of each row with
    /// an f16 overflow is raised to at least the mark.
    /// </summary>
    public static void Run(CpuWorkers workers, SimdLevel level, Job job, float* source, byte* destination, StorageType type,
        int* rowIndices, ScatterShape shape, int* rowFlags, int mark)
    {
        job.Source = source;
        job.Destination = destination;
        job.RowBytes = type.ByteLength(shape.Width);
        job.RowIndices = rowIndices;
        job.Shape = shape;
        job.RowFlags = rowFlags;
        job.Mark = mark;
        job.Level = SimdLevels.AtMost(level);
        var narrowing = new RowNarrowing { Job = job };
        type.Format().DispatchNarrowing(ref narrowing);
        // Rows narrower than a few vectors are not worth a thread hand-off each.
        int rowsPerChunk = Math.Max(workers.ChunkFor(shape.Rows), 4096 / shape.Width);
        workers.For(shape.Rows, rowsPerChunk, job);
    }

    /// <summary>The reusable job object a backend keeps for its convert calls.</summary>
    public sealed class ConvertJob : IRangeJob
    {
        internal byte* Source, Destination;
        internal StorageFormat Format = StorageType.F32.Format();
        internal long Count;
        internal long Overflows;
        internal SimdLevel Level;
        internal delegate*<SimdLevel, byte*, long, byte*, int, int> NarrowChunk;

        public void Run(int start, int end)
        {
            long begin = (long)start * ConvertChunk;
            long stop = Math.Min(Count, (long)end * ConvertChunk);
            byte* destination = Destination + Format.ByteLength(begin);
            int length = checked((int)(stop - begin));
            long overflows = NarrowChunk(Level, Source, begin, destination, length);
            if (overflows != 0)
                Interlocked.Add(ref Overflows, overflows);
        }
    }

    /// <summary>The source format's exact widening (values may be ±inf or NaN), then the destination's narrowing.</summary>
    struct ConvertSource : IStorageAction
    {
        public ConvertJob Job;

        public readonly void Run<TStorage, TWeights, TExact>()
            where TStorage : struct, IStorageView<TStorage> where TWeights : struct, IStoredVectors where TExact : struct, IStoredVectors
        {
            var destination = new ConvertDestination<TExact> { Job = Job };
            Job.Format.DispatchNarrowing(ref destination);
        }
    }

    struct ConvertDestination<TSource> : INarrowingAction where TSource : struct, IStoredVectors
    {
        public ConvertJob Job;

        public readonly void Run<TStore, TNarrowing>() where TStore : struct, IStorageStore<TStore> where TNarrowing : struct, IVectorNarrowing =>
            Job.NarrowChunk = &Narrow<TSource, TNarrowing>;
    }

    /// <summary>Converts every value (lengths validated by the caller); returns the f16 overflows.</summary>
    public static long Convert(CpuWorkers workers, SimdLevel level, ConvertJob job, byte* source, StorageType sourceType,
        byte* destination, StorageType type, long count)
    {
        job.Source = source;
        job.Destination = destination;
        job.Format = type.Format();
        job.Count = count;
        job.Overflows = 0;
        job.Level = SimdLevels.AtMost(level);
        var select = new ConvertSource { Job = job };
        sourceType.Format().Dispatch(ref select);
        int chunks = checked((int)((count + ConvertChunk - 1) / ConvertChunk));
        workers.For(chunks, 1, job);
        return job.Overflows;
    }

    /// <summary>
    /// destination[0..count) = narrow(widen(source[at..at + count))); returns how many values
    /// overflowed f16. <typeparamref name="TSource"/> widens exactly, ±inf and NaN included.
    /// </summary>
    static int Narrow<TSource, TNarrowing>(SimdLevel level, byte* source, long at, byte* destination, int count)
        where TSource : struct, IStoredVectors where TNarrowing : struct, IVectorNarrowing
    {
        if (typeof(TSource) == typeof(F32Vectors) && typeof(TNarrowing) == typeof(F32Narrowing))
        {
            // Binary32 to binary32 keeps the bits, NaN payloads included.
            Buffer.MemoryCopy(source + at * 4, destination, (long)count * 4, (long)count * 4);
            return 0;
        }
        int i = 0;
        int overflows = 0;
        if (level == SimdLevel.Avx512)
            for (; i + 16 <= count; i += 16)
                overflows += TNarrowing.Store16(TSource.Load16(source, at + i).AsUInt32(), destination, i);
        else if (level == SimdLevel.Avx2)
            for (; i + 16 <= count; i += 16)
                overflows += TNarrowing.Store16(TSource.Load8(source, at + i).AsUInt32(), TSource.Load8(source, at + i + 8).AsUInt32(), destination, i);
        for (; i < count; i++)
            overflows += TNarrowing.Store1(TSource.Load1(source, at + i), destination, i) ? 1 : 0;
        return overflows;
    }
}
