namespace IlgpuLlm.Kernels;

/// <summary>
/// The SIMD CPU twin of <see cref="Linear"/>: the same canonical dot product per output, with the
/// 32 lanes held in two Vector512 or four Vector256 accumulators and weights widened inside the
/// loop. Threads split the output features. Weights in a block format go to
/// <see cref="QuantizedSimd.Linear"/>, which dequantizes whole blocks (decided here alone).
/// </summary>
public static unsafe partial class LinearSimd
{
    /// <summary>Weight rows one decode dot product streams together (<see cref="SimdDot.Dot512x8{T}"/>).</summary>
    const int RowsPerDot = 8;

    /// <summary>The reusable job object a backend keeps for its linear calls.</summary>
    public sealed class Job : IRangeJob
    {
        internal float* X, Bias, Y;
        internal byte* W;
        internal LinearShape Shape;
        /// <summary>The loop for this call's weight format and path (<see cref="Rows{T}"/> or <see cref="TiledBlocks{T}"/>).</summary>
        internal delegate*<Job, int, int, void> Body;
        internal SimdLevel Level;
        internal DeviceCounters Counters = new();
        internal bool Tiled;
        internal float* Packed;
        internal long PackedCapacity;
        internal int BlockOutputs;

        /// <summary>The job of weights in a block format, made by the first such call.</summary>
        internal QuantizedSimd.LinearJob? Blocks;

        /// <summary>x·2^112, for <see cref="F16UnscaledVectors"/> (X points here when that loop runs).</summary>
        internal float* ScaledX;
        internal long ScaledXCapacity;

        /// <summary>The transposed x lives as long as the job; a backend's job lives as long as the backend.</summary>
        ~Job()
        {
            System.Runtime.InteropServices.NativeMemory.AlignedFree(Packed);
            System.Runtime.InteropServices.NativeMemory.AlignedFree(ScaledX);
        }

        public void Run(int start, int end) => Body(this, start, end);
    }

    /// <summary>Picks the loop for the weight format.</summary>
    struct SelectBody : IStorageAction
    {
        public Job Job;

        public readonly void Run<TStorage, TWeights, TExact>()
            where TStorage : struct, IStorageView<TStorage> where TWeights : struct, IStoredVectors where TExact : struct, IStoredVectors
        {
            // Space for x·2^112 is made by the first f16 call of any length (a prefill), so that
            // the decode steps after it allocate nothing.
            bool prescalable = typeof(TWeights) == typeof(F16Vectors) && Job.Level == SimdLevel.Avx512;
            if (prescalable)
                Grow(ref Job.ScaledX, ref Job.ScaledXCapacity, Job.Shape.InFeatures, Job.Counters);
            if (Job.Tiled)
                Job.Body = &TiledBlocks<TWeights>;
            // f16 decode saves one instruction per 16 weights when x·2^112 is exact (F16UnscaledVectors).
            else if (prescalable && Job.Shape.Rows == 1 && ScaleX(Job))
                Job.Body = &Rows<F16UnscaledVectors>;
            else
                Job.Body = &Rows<TWeights>;
        }
    }

    public static void Run(CpuWorkers workers, SimdLevel level, Job job, float* x, byte* w, StorageType type,
        float* bias, float* y, LinearShape shape)
    {
        if (type.Format() is BlockFormat blockFormat)
        {
            QuantizedSimd.Linear(workers, level, job.Blocks ??= new(), x, w, blockFormat, bias, y, shape);
            return;
        }
        Prepare(workers, level, job, x, w, type, bias, y, shape);
        if (job.Tiled)
        {
            PackRows(job);
            job.BlockOutputs = BlockOutputsFor(shape, workers.Threads);
            int blocks = (shape.OutFeatures + job.BlockOutputs - 1) / job.BlockOutputs;
            workers.For(blocks, 1, job);
        }
        else
            workers.For(shape.OutFeatures, workers.StreamChunkFor(shape.OutFeatures, type.ByteLength(shape.InFeatures), RowsPerDot), job);
    }

    /// <summary>One projection of a fused call (<see cref="RunFused"/>): its weights, their format, bias (or null), output and out features.</summary>
    public readonly struct Part(byte* weights, StorageType type, float* bias, float* y, int outFeatures)
    {
        public readonly byte* Weights = weights;
        public readonly StorageType Type = type;
        public readonly float* Bias = bias;
        public readonly float* Y = y;
        public readonly int OutFeatures = outFeatures;
    }

    /// <summary>
    /// The reusable job of fused calls: one <see cref="Job"/> per part, and the parts' outputs laid
    /// end to end as one range of items, so that one parallel call streams them all.
    /// </summary>
    public sealed class FusedJob : IRangeJob
    {
        internal readonly Job[] Parts;
        internal readonly int[] Ends;
        internal int Count;

        /// <param name="capacity">The most parts one call may have.</param>
        public FusedJob(int capacity)
        {
            Parts = new Job[capacity];
            for (int i = 0; i < capacity; i++)
                Parts[i] = new Job();
            Ends = new int[capacity];
        }

        public int Capacity => Parts.Length;

        public void Run(int start, int end)
        {
            int begin = 0;
            for (int i = 0; i < Count && start < end; i++)
            {
                int partEnd = Ends[i];
                if (start < partEnd)
                {
                    int stop = Math.Min(end, partEnd);
                    var part = Parts[i];
                    part.Body(part, start - begin, stop - begin);
                    start = stop;
                }
                begin = partEnd;
            }
        }
    }

    /// <summary>
    /// Several projections of the same x in one parallel call when they stream their weights row
    /// by row (decode): each output is the dot product <see cref="Run"/> computes for it, whichever
    /// chunk it falls in, so the bits are those of separate calls; the threads hand off once
    /// instead of once per part, and finish together once instead of once per part. The tiled
    /// path (prefill) runs the parts one after the other: there each call is long, and its
    /// hand-off costs nothing next to it. Quantized parts also run one after the other.
    /// </summary>
    public static void RunFused(CpuWorkers workers, SimdLevel level, FusedJob fused, float* x, ReadOnlySpan<Part> parts,
        int rows, int inFeatures)
    {
        if (parts.Length > fused.Capacity)
            throw new ArgumentException($"linear: {parts.Length} fused projections; this job takes at most {fused.Capacity}", nameof(parts));
        if (Tiles(SimdLevels.AtMost(level), rows) || AnyBlockFormat(parts))
        {
            for (int i = 0; i < parts.Length; i++)
            {
                var part = parts[i];
                Run(workers, level, fused.Parts[i], x, part.Weights, part.Type, part.Bias, part.Y,
                    new LinearShape(rows, part.OutFeatures, inFeatures));
            }
            return;
        }
        int total = 0;
        long rowBytes = 0;
        for (int i = 0; i < parts.Length; i++)
        {
            var part = parts[i];
            Prepare(workers, level, fused.Parts[i], x, part.Weights, part.Type, part.Bias, part.Y,
                new LinearShape(rows, part.OutFeatures, inFeatures));
            total = checked(total + part.OutFeatures);
            fused.Ends[i] = total;
            rowBytes = Math.Max(rowBytes, part.Type.ByteLength(inFeatures));
        }
        fused.Count = parts.Length;
        workers.For(total, workers.StreamChunkFor(total, rowBytes, RowsPerDot), fused);
    }

    /// <summary>Block formats have their own streaming loops (<see cref="QuantizedSimd"/>), run part by part.</summary>
    static bool AnyBlockFormat(ReadOnlySpan<Part> parts)
    {
        foreach (var part in parts)
            if (part.Type.Format() is BlockFormat)
                return true;
        return false;
    }

    /// <summary>Whether a call of <paramref name="rows"/> rows takes the tiled path (prefill) rather than streaming weight rows (decode).</summary>
    static bool Tiles(SimdLevel level, int rows) => level == SimdLevel.Avx512 && rows >= TiledFromRows;

    /// <summary>Sets a job up for one call: its pointers and shape, and the loop for the weight format and path.</summary>
    static void Prepare(CpuWorkers workers, SimdLevel level, Job job, float* x, byte* w, StorageType type,
        float* bias, float* y, LinearShape shape)
    {
        job.X = x;
        job.W = w;
        job.Bias = bias;
        job.Y = y;
        job.Shape = shape;
        job.Level = SimdLevels.AtMost(level);
        job.Counters = workers.Counters;
        job.Tiled = Tiles(job.Level, shape.Rows);
        var select = new SelectBody { Job = job };
        type.Format().Dispatch(ref select);
    }

    /// <summary>
    /// Writes x·2^112 for <see cref="F16UnscaledVectors"/> and points the job at it, when every
    /// product is exact: |x| below 2^16 (so x·2^112 stays finite; scaling by a power of two is
    /// otherwise exact, subnormals included) and no NaN.
    /// </summary>
    static bool ScaleX(Job job)
    {
        int k = job.Shape.InFeatures;
        for (int i = 0; i < k; i++)
        {
            float value = job.X[i];
            if (!(Math.Abs(value) < 65536f))
                return false;
            job.ScaledX[i] = value * F16UnscaledVectors.Scale;
        }
        job.X = job.ScaledX;
        return true;
    }

    static void Rows<T>(Job job, int start, int end) where T : struct, IStoredVectors
    {
        var shape = job.Shape;
        int k = shape.InFeatures;
        if (job.Level == SimdLevel.Avx512 && shape.Rows > 1)
        {
            StreamRows<T>(job, start, end);
            return;
        }
        if (job.Level == SimdLevel.Avx512)
        {
            var dots = stackalloc float[8];
            for (; start + 8 <= end; start += 8)
                for (int m = 0; m < shape.Rows; m++)
                {
                    SimdDot.Dot512x8<T>(job.X + (long)m * k, job.W, (long)start * k, k, k, dots);
                    for (int r = 0; r < 8; r++)
                    {
                        int n = start + r;
                        job.Y[(long)m * shape.OutFeatures + n] = job.Bias != null ? dots[r] + job.Bias[n] : dots[r];
                    }
                }
        }
        for (int n = start; n < end; n++)
        {
            long weightRow = (long)n * k;
            for (int m = 0; m < shape.Rows; m++)
            {
                float* x = job.X + (long)m * k;
                float dot = SimdDot.Dot<T>(job.Level, x, job.W, weightRow, k);
                job.Y[(long)m * shape.OutFeatures + n] = job.Bias != null ? dot + job.Bias[n] : dot;
            }
        }
    }
}
