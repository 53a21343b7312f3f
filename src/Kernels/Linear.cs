using ILGPU;
using ILGPU.Runtime;
using static IlgpuLlm.Kernels.ExactMath;

namespace IlgpuLlm.Kernels;

/// <summary>
/// y = x·Wᵀ (+ b): x [rows, in] binary32, W [out, in] row-major as Hugging Face stores it, in any
/// storage type, b [out]. Each y[m, n] is the canonical dot product of x row m and W row n, then
/// the bias added once — the same order for one row (decode) as for many (prefill).
/// </summary>
public readonly record struct LinearShape(int Rows, int OutFeatures, int InFeatures)
{
    public void Validate(long xLength, long wLength, long? biasLength, long yLength)
    {
        if (Rows < 1 || OutFeatures < 1 || InFeatures < 1)
            throw new ArgumentException($"linear: rows {Rows}, out features {OutFeatures} and in features {InFeatures} must all be at least 1");
        Shapes.Expect("linear: x", xLength, (long)Rows * InFeatures, $"rows {Rows} × in features {InFeatures}");
        Shapes.Expect("linear: weight", wLength, (long)OutFeatures * InFeatures, $"out features {OutFeatures} × in features {InFeatures}");
        if (biasLength is long b)
            Shapes.Expect("linear: bias", b, OutFeatures, $"out features {OutFeatures}");
        Shapes.Expect("linear: y", yLength, (long)Rows * OutFeatures, $"rows {Rows} × out features {OutFeatures}");
    }
}

public static class Linear
{
    /// <summary>Rows of x one warp multiplies with the weight row it has loaded.</summary>
    public const int RowsPerGroup = 4;

    public static void Reference(ReadOnlySpan<float> x, HostStorage w, ReadOnlySpan<float> bias, bool hasBias,
        Span<float> y, LinearShape shape)
    {
        shape.Validate(x.Length, w.Length, hasBias ? bias.Length : null, y.Length);
        var weightRow = new float[shape.InFeatures];
        for (int n = 0; n < shape.OutFeatures; n++)
        {
            for (int k = 0; k < shape.InFeatures; k++)
                weightRow[k] = w[(long)n * shape.InFeatures + k];
            for (int m = 0; m < shape.Rows; m++)
            {
                float dot = Canonical.Dot(x.Slice(m * shape.InFeatures, shape.InFeatures), weightRow);
                y[m * shape.OutFeatures + n] = hasBias ? Add(dot, bias[n]) : dot;
            }
        }
    }

    public struct Args<TWeights> where TWeights : struct, IStorage
    {
        public ArrayView<float> X;
        public TWeights W;
        public ArrayView<float> Bias;
        public ArrayView<float> Y;
        public int Rows, OutFeatures, InFeatures, HasBias, OutputsPerGroup;
    }

    /// <summary>
    /// One warp per tile of up to four x rows × <see cref="Args{T}.OutputsPerGroup"/> weight rows.
    /// For each weight row, lane j walks k = j, j+32, … once, fusing it into every x row's lane
    /// accumulator, and parks the lanes in shared memory; after one barrier, thread c folds output
    /// c's 32 lanes with the canonical tree. Tiling changes the speed, never the order.
    /// </summary>
    [GpuKernel(ReadsWeights = true)]
    static void Kernel<TWeights>(Args<TWeights> a) where TWeights : struct, IStorage
    {
        var partials = SharedMemory.Allocate<float>(RowsPerGroup * MaxOutputsPerGroup * LaneStride);
        int lane = Group.IdxX;
        int outputTiles = (a.OutFeatures + a.OutputsPerGroup - 1) / a.OutputsPerGroup;
        int n0 = Grid.IdxX % outputTiles * a.OutputsPerGroup;
        int m0 = Grid.IdxX / outputTiles * RowsPerGroup;
        int rows = a.Rows - m0 < RowsPerGroup ? a.Rows - m0 : RowsPerGroup;
        int outputs = a.OutFeatures - n0 < a.OutputsPerGroup ? a.OutFeatures - n0 : a.OutputsPerGroup;
        long x0 = (long)m0 * a.InFeatures;
        for (int c = 0; c < outputs; c++)
        {
            long weightRow = (long)(n0 + c) * a.InFeatures;
            float acc0 = 0f, acc1 = 0f, acc2 = 0f, acc3 = 0f;
            for (int k = lane; k < a.InFeatures; k += Canonical.Lanes)
            {
                float w = a.W.Load(weightRow + k);
                acc0 = Fma(a.X[x0 + k], w, acc0);
                if (rows > 1)
                    acc1 = Fma(a.X[x0 + a.InFeatures + k], w, acc1);
                if (rows > 2)
                    acc2 = Fma(a.X[x0 + 2L * a.InFeatures + k], w, acc2);
                if (rows > 3)
                    acc3 = Fma(a.X[x0 + 3L * a.InFeatures + k], w, acc3);
            }
            int slot = c * LaneStride + lane;
            partials[slot] = acc0;
            partials[RowStride + slot] = acc1;
            partials[2 * RowStride + slot] = acc2;
            partials[3 * RowStride + slot] = acc3;
        }
        Group.Barrier();
        if (lane >= outputs)
            return;
        int n = n0 + lane;
        for (int r = 0; r < rows; r++)
        {
            float dot = StoredTree.Sum(partials.SubView(r * RowStride + lane * LaneStride, Canonical.Lanes));
            a.Y[(long)(m0 + r) * a.OutFeatures + n] = a.HasBias != 0 ? Add(dot, a.Bias[n]) : dot;
        }
    }

    /// <summary>Most weight rows one group walks (one per thread for the final trees).</summary>
    public const int MaxOutputsPerGroup = 32;

    /// <summary>Shared-memory floats per parked output: 32 lanes plus one against bank conflicts.</summary>
    const int LaneStride = Canonical.Lanes + 1;

    const int RowStride = MaxOutputsPerGroup * LaneStride;

    /// <summary>
    /// Weight rows per group: for the CPU accelerator as many as possible (each group costs a
    /// barrier across 32 OS threads); for a GPU few enough to keep every multiprocessor busy in
    /// decode, where there is only one x row.
    /// </summary>
    public static int OutputsPerGroup(LaunchProfile profile, int outFeatures) =>
        profile == LaunchProfile.Cpu
            ? MaxOutputsPerGroup
            : Math.Clamp(outFeatures / 1024, 1, MaxOutputsPerGroup);

    /// <summary>
    /// Launches the kernel with the weights behind any <see cref="IStorage"/> (the quantized
    /// formats' included); the caller has validated the buffers.
    /// </summary>
    internal static void LaunchOn<TWeights>(KernelLibrary library, ArrayView<float> x, TWeights w, ArrayView<float>? bias,
        ArrayView<float> y, LinearShape shape) where TWeights : struct, IStorage
    {
        int rowTiles = (shape.Rows + RowsPerGroup - 1) / RowsPerGroup;
        int perGroup = OutputsPerGroup(library.Profile, shape.OutFeatures);
        int outputTiles = (shape.OutFeatures + perGroup - 1) / perGroup;
        library.Get<Args<TWeights>>(Kernel)(new KernelConfig(checked(rowTiles * outputTiles), KernelContext.WarpSize), new Args<TWeights>
        {
            X = x, W = w, Bias = bias ?? x, Y = y, Rows = shape.Rows, OutFeatures = shape.OutFeatures,
            InFeatures = shape.InFeatures, HasBias = bias.HasValue ? 1 : 0, OutputsPerGroup = perGroup,
        });
    }

    public static void Run(KernelLibrary library, ArrayView<float> x, ArrayView<byte> w, StorageType wType,
        ArrayView<float>? bias, ArrayView<float> y, LinearShape shape)
    {
        shape.Validate(x.Length, wType.ElementCount(w.Length), bias?.Length, y.Length);
        var launch = new Launch { Library = library, X = x, W = w, Bias = bias, Y = y, Shape = shape };
        wType.Format().Dispatch(ref launch);
    }

    struct Launch : IStorageAction
    {
        public KernelLibrary Library;
        public ArrayView<float> X, Y;
        public ArrayView<float>? Bias;
        public ArrayView<byte> W;
        public LinearShape Shape;

        public readonly void Run<TStorage, TWeights, TExact>()
            where TStorage : struct, IStorageView<TStorage> where TWeights : struct, IStoredVectors where TExact : struct, IStoredVectors =>
            LaunchOn(Library, X, TStorage.Over(W), Bias, Y, Shape);
    }
}
