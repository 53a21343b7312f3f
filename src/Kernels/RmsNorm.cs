using ILGPU;
using ILGPU.Runtime;
using static IlgpuLlm.Kernels.ExactMath;

namespace IlgpuLlm.Kernels;

/// <summary>
/// y = x / √(mean(x²) + ε) · w per row, or · (1 + w) for Gemma's convention. The row's sum of
/// squares is the canonical reduction of fma(x, x, ·); then, each one rounding:
/// mean = ss / width, inverse = 1 / √(mean + ε), y = (x · inverse) · w′ with w′ = w or 1 + w —
/// the grouping of transformers' LlamaRMSNorm and llama.cpp's rms_norm followed by mul.
/// Also the q/k norm of Gemma 3 (rows = tokens × heads, width = head_dim).
/// </summary>
public readonly record struct RmsNormShape(int Rows, int Width, float Epsilon, bool AddOneToWeight)
{
    public void Validate(long xLength, long weightLength, long yLength)
    {
        Shapes.Positive("rms norm: rows", Rows);
        Shapes.Positive("rms norm: width", Width);
        if (!(Epsilon >= 0f) || float.IsInfinity(Epsilon))
            throw new ArgumentException($"rms norm: epsilon {Epsilon} must be finite and not negative");
        Shapes.Expect("rms norm: x", xLength, (long)Rows * Width, $"rows {Rows} × width {Width}");
        Shapes.Expect("rms norm: weight", weightLength, Width, $"width {Width}");
        Shapes.Expect("rms norm: y", yLength, (long)Rows * Width, $"rows {Rows} × width {Width}");
    }
}

public static partial class RmsNorm
{
    public static void Reference(ReadOnlySpan<float> x, HostStorage weight, Span<float> y, RmsNormShape shape)
    {
        shape.Validate(x.Length, weight.Length, y.Length);
        for (int r = 0; r < shape.Rows; r++)
        {
            var row = x.Slice(r * shape.Width, shape.Width);
            float inverse = InverseRms(Canonical.SumOfSquares(row), shape.Width, shape.Epsilon);
            for (int i = 0; i < shape.Width; i++)
                y[r * shape.Width + i] = Mul(Mul(row[i], inverse), EffectiveWeight(weight[i], shape.AddOneToWeight));
        }
    }

    /// <summary>1 / √(ss / width + ε), each operation rounded once.</summary>
    public static float InverseRms(float sumOfSquares, int width, float epsilon) =>
        Div(1f, Sqrt(Add(Div(sumOfSquares, width), epsilon)));

    public static float EffectiveWeight(float w, bool addOne) => addOne ? Add(1f, w) : w;

    public struct Args<TWeight> where TWeight : struct, IStorage
    {
        public ArrayView<float> X;
        public TWeight Weight;
        public ArrayView<float> Y;
        public int Width;
        public float Epsilon;
        public int AddOneToWeight;
    }

    /// <summary>
    /// One warp per row: lane j folds x[j], x[j+32], … into its canonical lane, the warp tree sums
    /// the lanes, and every lane then scales its own elements. Neighbouring lanes touch neighbouring
    /// elements of x, w and y, so every access is coalesced. Safe in place (y = x): each element is
    /// read by the lane that later writes it.
    /// </summary>
    [GpuKernel]
    static void Kernel<TWeight>(Args<TWeight> a) where TWeight : struct, IStorage
    {
        int lane = Group.IdxX;
        long row = (long)Grid.IdxX * a.Width;
        float lanes = 0f;
        for (int i = lane; i < a.Width; i += Canonical.Lanes)
        {
            float x = a.X[row + i];
            lanes = Fma(x, x, lanes);
        }
        float inverse = InverseRms(WarpTree.Sum(lanes), a.Width, a.Epsilon);
        for (int i = lane; i < a.Width; i += Canonical.Lanes)
            a.Y[row + i] = Mul(Mul(a.X[row + i], inverse), EffectiveWeight(a.Weight.Load(i), a.AddOneToWeight != 0));
    }

    public static void Run(KernelLibrary library, ArrayView<float> x, ArrayView<byte> weight, StorageType weightType,
        ArrayView<float> y, RmsNormShape shape)
    {
        shape.Validate(x.Length, weightType.ElementCount(weight.Length), y.Length);
        var launch = new Launch
        {
            Library = library, Config = new KernelConfig(shape.Rows, KernelContext.WarpSize), X = x, Weight = weight, Y = y,
            Width = shape.Width, Epsilon = shape.Epsilon, AddOne = shape.AddOneToWeight ? 1 : 0,
        };
        weightType.Format().Dispatch(ref launch);
    }

    struct Launch : IStorageAction
    {
        public KernelLibrary Library;
        public KernelConfig Config;
        public ArrayView<float> X, Y;
        public ArrayView<byte> Weight;
        public int Width, AddOne;
        public float Epsilon;

        public readonly void Run<TStorage, TWeights, TExact>()
            where TStorage : struct, IStorageView<TStorage> where TWeights : struct, IStoredVectors where TExact : struct, IStoredVectors =>
            Library.Get<Args<TStorage>>(Kernel)(Config, new Args<TStorage>
            {
                X = X, Weight = TStorage.Over(Weight), Y = Y, Width = Width, Epsilon = Epsilon, AddOneToWeight = AddOne,
            });
    }
}
