using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace IlgpuLlm.Kernels;

/// <summary>
/// The SIMD CPU twin of <see cref="Embedding"/>: each output element is the widened table element
/// times the scale, one rounding, as in the reference. Threads split (row, block of the width)
/// items, so a single long row (decode) is shared too. An f16 table must hold finite values (weights
/// are validated at load; <see cref="F16Vectors"/> widens only finite halves exactly).
/// </summary>
public static unsafe class EmbeddingSimd
{
    /// <summary>Elements of a row one work item copies.</summary>
    public const int BlockWidth = 4096;

    /// <summary>The reusable job object a backend keeps for its embedding calls.</summary>
    public sealed class Job : IRangeJob
    {
        internal byte* Table;
        internal int* Ids;
        internal float* Output;
        internal EmbeddingShape Shape;
        internal delegate*<Job, int, int, void> Body;
        internal SimdLevel Level;
        internal float Scale;
        internal int BlocksPerRow;

        public void Run(int start, int end) => Body(this, start, end);
    }

    /// <summary>Picks the loop for the weight format.</summary>
    struct SelectBody : IStorageAction
    {
        public Job Job;

        public readonly void Run<TStorage, TWeights, TExact>()
            where TStorage : struct, IStorageView<TStorage> where TWeights : struct, IStoredVectors where TExact : struct, IStoredVectors =>
            Job.Body = &Blocks<TWeights>;
    }

    /// <summary>Gathers the rows; <paramref name="ids"/> must already be validated against the vocabulary.</summary>
    public static void Run(CpuWorkers workers, SimdLevel level, Job job, byte* table, StorageType type, int* ids,
        float* output, EmbeddingShape shape, float scale)
    {
        job.Table = table;
        var select = new SelectBody { Job = job };
        type.Format().Dispatch(ref select);
        job.Ids = ids;
        job.Output = output;
        job.Shape = shape;
        job.Scale = scale;
        job.Level = SimdLevels.AtMost(level);
        job.BlocksPerRow = (shape.Width + BlockWidth - 1) / BlockWidth;
        int items = checked(shape.Rows * job.BlocksPerRow);
        workers.For(items, workers.ChunkFor(items), job);
    }

    static void Blocks<T>(Job job, int start, int end) where T : struct, IStoredVectors
    {
        int width = job.Shape.Width;
        for (int item = start; item < end; item++)
        {
            int row = item / job.BlocksPerRow;
            int begin = item % job.BlocksPerRow * BlockWidth;
            int count = Math.Min(BlockWidth, width - begin);
            long from = (long)job.Ids[row] * width + begin;
            float* to = job.Output + (long)row * width + begin;
            switch (job.Level)
            {
                case SimdLevel.Avx512: Scale512<T>(job.Table, from, to, count, job.Scale); break;
                case SimdLevel.Avx2: Scale256<T>(job.Table, from, to, count, job.Scale); break;
                default: ScaleScalar<T>(job.Table, from, to, 0, count, job.Scale); break;
            }
        }
    }

    /// <summary>to[i] = widen(table[from + i]) · scale for i &lt; count, 16 lanes at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Scale512<T>(byte* table, long from, float* to, int count, float scale) where T : struct, IStoredVectors
    {
        var s = Vector512.Create(scale);
        int i = 0;
        for (; i + 16 <= count; i += 16)
            (T.Load16(table, from + i) * s).Store(to + i);
        ScaleScalar<T>(table, from, to, i, count, scale);
    }

    /// <summary>to[i] = widen(table[from + i]) · scale for i &lt; count, 8 lanes at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Scale256<T>(byte* table, long from, float* to, int count, float scale) where T : struct, IStoredVectors
    {
        var s = Vector256.Create(scale);
        int i = 0;
        for (; i + 8 <= count; i += 8)
            (T.Load8(table, from + i) * s).Store(to + i);
        ScaleScalar<T>(table, from, to, i, count, scale);
    }

    static void ScaleScalar<T>(byte* table, long from, float* to, int begin, int count, float scale) where T : struct, IStoredVectors
    {
        for (int i = begin; i < count; i++)
            to[i] = T.Load1(table, from + i) * scale;
    }
}
