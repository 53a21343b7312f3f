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
}
