namespace IlgpuLlm.Kernels;

/// <summary>
/// The SIMD CPU twin of <see cref="Linear"/>: the same canonical dot product per output, with the
/// 32 lanes held in two Vector512 or four Vector256 accumulators and weights widened inside the
/// loop. Threads split the output features.
/// </summary>
public static unsafe partial class LinearSimd
{
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
        job.X = x;
        job.W = w;
        job.Bias = bias;
        job.Y = y;
        job.Shape = shape;
        job.Level = SimdLevels.AtMost(level);
        job.Counters = workers.Counters;
        job.Tiled = job.Level == SimdLevel.Avx512 && shape.Rows >= TiledFromRows;
        var select = new SelectBody { Job = job };
        type.Format().Dispatch(ref select);
        if (job.Tiled)
        {
            PackRows(job);
            job.BlockOutputs = BlockOutputsFor(shape, workers.Threads);
            int blocks = (shape.OutFeatures + job.BlockOutputs - 1) / job.BlockOutputs;
            workers.For(blocks, 1, job);
        }
        else
            workers.For(shape.OutFeatures, workers.ChunkFor(shape.OutFeatures), job);
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
