using ILGPU;
using ILGPU.Runtime;
using static IlgpuLlm.Kernels.ExactMath;

namespace IlgpuLlm.Kernels;

/// <summary>
/// Row-wise softmax over the vocabulary with a temperature: x′ = x / T, m = max x′ (canonical),
/// e = exp(x′ − m), Z = Σ e (canonical), p = e / Z — each step rounded once. T = 1 divides by one,
/// which changes no bit. −inf logits get probability 0; a row of only −inf gets all zeros (and
/// the sampler reports it) instead of NaN.
/// </summary>
public readonly record struct SoftmaxShape(int Rows, int Width)
{
    public void Validate(long logitsLength, long probabilitiesLength, float temperature)
    {
        Shapes.Positive("softmax: rows", Rows);
        Shapes.Positive("softmax: width", Width);
        if (!(temperature > 0f) || float.IsInfinity(temperature))
            throw new ArgumentException($"softmax: temperature {temperature} must be positive and finite (0 means greedy sampling, which needs no softmax)");
        Shapes.Expect("softmax: logits", logitsLength, (long)Rows * Width, $"rows {Rows} × width {Width}");
        Shapes.Expect("softmax: probabilities", probabilitiesLength, (long)Rows * Width, $"rows {Rows} × width {Width}");
    }
}

public static partial class Softmax
{
    public static void Reference(ReadOnlySpan<float> logits, Span<float> probabilities, SoftmaxShape shape, float temperature)
    {
        shape.Validate(logits.Length, probabilities.Length, temperature);
        for (int r = 0; r < shape.Rows; r++)
            Row(logits.Slice(r * shape.Width, shape.Width), probabilities.Slice(r * shape.Width, shape.Width), temperature);
    }

    /// <summary>One row of <see cref="Reference"/>; also the sampler's softmax.</summary>
    public static void Row(ReadOnlySpan<float> logits, Span<float> probabilities, float temperature)
    {
        for (int i = 0; i < logits.Length; i++)
            probabilities[i] = Div(logits[i], temperature);
        float max = Canonical.Max(probabilities);
        if (max == float.NegativeInfinity)
        {
            probabilities.Clear();
            return;
        }
        for (int i = 0; i < probabilities.Length; i++)
            probabilities[i] = CanonicalMath.Exp(Sub(probabilities[i], max));
        float total = Canonical.Sum(probabilities);
        for (int i = 0; i < probabilities.Length; i++)
            probabilities[i] = Div(probabilities[i], total);
    }

    public struct Args
    {
        public ArrayView<float> Logits;
        public ArrayView<float> Probabilities;
        public int Width;
        public float Temperature;
    }

    /// <summary>
    /// One warp per row, lane j over indices j, j+32, … (coalesced): x / T and the lane maxima in
    /// one pass, the warp tree; e and the lane sums in a second pass, the tree; then e / Z. Each
    /// thread reads back only what it wrote itself, so no barrier is needed.
    /// </summary>
    [GpuKernel]
    static void Kernel(Args a)
    {
        int lane = Group.IdxX;
        long start = (long)Grid.IdxX * a.Width;
        var x = a.Logits.SubView(start, a.Width);
        var p = a.Probabilities.SubView(start, a.Width);
        float max = float.NegativeInfinity;
        for (int i = lane; i < a.Width; i += Canonical.Lanes)
        {
            float scaled = Div(x[i], a.Temperature);
            p[i] = scaled;
            max = CanonicalMath.Max(max, scaled);
        }
        max = WarpTree.Max(max);
        if (max == float.NegativeInfinity)
        {
            for (int i = lane; i < a.Width; i += Canonical.Lanes)
                p[i] = 0f;
            return;
        }
        float total = 0f;
        for (int i = lane; i < a.Width; i += Canonical.Lanes)
        {
            float e = CanonicalMath.Exp(Sub(p[i], max));
            p[i] = e;
            total = Add(total, e);
        }
        total = WarpTree.Sum(total);
        for (int i = lane; i < a.Width; i += Canonical.Lanes)
            p[i] = Div(p[i], total);
    }

    public static void Run(KernelLibrary library, ArrayView<float> logits, ArrayView<float> probabilities,
        SoftmaxShape shape, float temperature)
    {
        shape.Validate(logits.Length, probabilities.Length, temperature);
        library.Get<Args>(Kernel)(new KernelConfig(shape.Rows, KernelContext.WarpSize), new Args
        {
            Logits = logits, Probabilities = probabilities, Width = shape.Width, Temperature = temperature,
        });
    }
}
