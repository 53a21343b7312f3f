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
        public int Rows, OutFeatures, InFeatures, HasBias;
    }

    /// <summary>
    /// One warp per (weight row n, tile of up to four x rows): lane j walks k = j, j+32, … of the
    /// weight row once and fuses it into every row's lane accumulator, then the warp tree.
    /// </summary>
    [GpuKernel]
    static void Kernel<TWeights>(Args<TWeights> a) where TWeights : struct, IStorage
    {
        int lane = Group.IdxX;
        int n = Grid.IdxX % a.OutFeatures;
        int m0 = Grid.IdxX / a.OutFeatures * RowsPerGroup;
        int rows = a.Rows - m0 < RowsPerGroup ? a.Rows - m0 : RowsPerGroup;
        long weightRow = (long)n * a.InFeatures;
        long x0 = (long)m0 * a.InFeatures;
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
        acc0 = WarpTree.Sum(acc0);
        acc1 = WarpTree.Sum(acc1);
        acc2 = WarpTree.Sum(acc2);
        acc3 = WarpTree.Sum(acc3);
        if (lane != 0)
            return;
        float bias = a.HasBias != 0 ? a.Bias[n] : 0f;
        long y0 = (long)m0 * a.OutFeatures + n;
        a.Y[y0] = a.HasBias != 0 ? Add(acc0, bias) : acc0;
        if (rows > 1)
            a.Y[y0 + a.OutFeatures] = a.HasBias != 0 ? Add(acc1, bias) : acc1;
        if (rows > 2)
            a.Y[y0 + 2L * a.OutFeatures] = a.HasBias != 0 ? Add(acc2, bias) : acc2;
        if (rows > 3)
            a.Y[y0 + 3L * a.OutFeatures] = a.HasBias != 0 ? Add(acc3, bias) : acc3;
    }

    public static void Run(KernelLibrary library, ArrayView<float> x, ArrayView<byte> w, StorageType wType,
        ArrayView<float>? bias, ArrayView<float> y, LinearShape shape)
    {
        shape.Validate(x.Length, w.Length / wType.SizeOf(), bias?.Length, y.Length);
        int tiles = (shape.Rows + RowsPerGroup - 1) / RowsPerGroup;
        var config = new KernelConfig(checked(tiles * shape.OutFeatures), KernelContext.WarpSize);
        var biasView = bias ?? x;
        int hasBias = bias.HasValue ? 1 : 0;
        switch (wType)
        {
            case StorageType.F32:
                library.Get<Args<F32Storage>>(Kernel)(config, new Args<F32Storage>
                {
                    X = x, W = new F32Storage(w.Cast<float>()), Bias = biasView, Y = y, Rows = shape.Rows,
                    OutFeatures = shape.OutFeatures, InFeatures = shape.InFeatures, HasBias = hasBias,
                });
                break;
            case StorageType.F16:
                library.Get<Args<F16Storage>>(Kernel)(config, new Args<F16Storage>
                {
                    X = x, W = new F16Storage(w.Cast<ushort>()), Bias = biasView, Y = y, Rows = shape.Rows,
                    OutFeatures = shape.OutFeatures, InFeatures = shape.InFeatures, HasBias = hasBias,
                });
                break;
            default:
                library.Get<Args<Bf16Storage>>(Kernel)(config, new Args<Bf16Storage>
                {
                    X = x, W = new Bf16Storage(w.Cast<ushort>()), Bias = biasView, Y = y, Rows = shape.Rows,
                    OutFeatures = shape.OutFeatures, InFeatures = shape.InFeatures, HasBias = hasBias,
                });
                break;
        }
    }
}
