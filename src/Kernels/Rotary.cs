using ILGPU;
using ILGPU.Runtime;
using static IlgpuLlm.Kernels.ExactMath;

namespace IlgpuLlm.Kernels;

/// <summary>Which elements of a head form the rotated pairs.</summary>
public enum RotaryLayout
{
    /// <summary>Pairs (i, i + d/2): transformers' rotate_half, llama.cpp's NEOX mode.</summary>
    HalfSplit,

    /// <summary>Pairs (2i, 2i + 1): GPT-J, Meta's original Llama, llama2.c, llama.cpp's normal mode.</summary>
    Interleaved,
}

/// <summary>
/// Rotary position embedding of x [rows, heads, head_dim] in place. angles [rows, head_dim/2, 2]
/// holds (cos, sin) of every pair's angle at that row's position, made on the host by
/// <see cref="RotaryTable"/>. Each pair (a, b) becomes (a·cos − b·sin, b·cos + a·sin), every
/// product and the sum rounded once — transformers' q·cos + rotate_half(q)·sin, term for term.
/// </summary>
public readonly record struct RotaryShape(int Rows, int Heads, int HeadDim, RotaryLayout Layout)
{
    public int Pairs => HeadDim / 2;

    public void Validate(long xLength, long anglesLength)
    {
        Shapes.Positive("rotary: rows", Rows);
        Shapes.Positive("rotary: heads", Heads);
        if (HeadDim < 2 || HeadDim % 2 != 0)
            throw new ArgumentException($"rotary: head_dim {HeadDim} must be even and at least 2");
        Shapes.Expect("rotary: x", xLength, (long)Rows * Heads * HeadDim, $"rows {Rows} × heads {Heads} × head_dim {HeadDim}");
        Shapes.Expect("rotary: angles", anglesLength, (long)Rows * HeadDim, $"rows {Rows} × {Pairs} pairs × (cos, sin)");
    }
}

public static partial class Rotary
{
    public static void Reference(Span<float> x, ReadOnlySpan<float> angles, RotaryShape shape)
    {
        shape.Validate(x.Length, angles.Length);
        for (int r = 0; r < shape.Rows; r++)
            for (int h = 0; h < shape.Heads; h++)
            {
                var head = x.Slice((r * shape.Heads + h) * shape.HeadDim, shape.HeadDim);
                for (int i = 0; i < shape.Pairs; i++)
                {
                    float cos = angles[(r * shape.Pairs + i) * 2];
                    float sin = angles[(r * shape.Pairs + i) * 2 + 1];
                    var (ia, ib) = PairIndices(i, shape.Pairs, shape.Layout);
                    float a = head[ia], b = head[ib];
                    head[ia] = RotateFirst(a, b, cos, sin);
                    head[ib] = RotateSecond(a, b, cos, sin);
                }
            }
    }

    public static (int First, int Second) PairIndices(int pair, int pairs, RotaryLayout layout) =>
        layout == RotaryLayout.HalfSplit ? (pair, pair + pairs) : (2 * pair, 2 * pair + 1);

    public static float RotateFirst(float a, float b, float cos, float sin) => Sub(Mul(a, cos), Mul(b, sin));

    public static float RotateSecond(float a, float b, float cos, float sin) => Add(Mul(b, cos), Mul(a, sin));

    public struct Args
    {
        public ArrayView<float> X;
        public ArrayView<float> Angles;
        public int Heads, Pairs, Interleaved;
    }

    /// <summary>
    /// One thread per (row, head, pair), pairs fastest: neighbouring threads read neighbouring
    /// (cos, sin) entries and, for rotate_half pairs, neighbouring elements of both halves of the
    /// head (for interleaved pairs, neighbouring two-element pairs).
    /// </summary>
    [GpuKernel]
    static void Kernel(Index1D index, Args a)
    {
        int pair = index % a.Pairs;
        int rowHead = index / a.Pairs;
        int row = rowHead / a.Heads;
        long head = (long)rowHead * (2 * a.Pairs);
        long first = head + (a.Interleaved != 0 ? 2 * pair : pair);
        long second = a.Interleaved != 0 ? first + 1 : first + a.Pairs;
        long angle = ((long)row * a.Pairs + pair) * 2;
        float cos = a.Angles[angle];
        float sin = a.Angles[angle + 1];
        float x0 = a.X[first];
        float x1 = a.X[second];
        a.X[first] = RotateFirst(x0, x1, cos, sin);
        a.X[second] = RotateSecond(x0, x1, cos, sin);
    }

    public static void Run(KernelLibrary library, ArrayView<float> x, ArrayView<float> angles, RotaryShape shape)
    {
        shape.Validate(x.Length, angles.Length);
        int count = Elementwise.ThreadCount("rotary: pairs", (long)shape.Rows * shape.Heads * shape.Pairs);
        library.GetElementwise<Args>(Kernel)(count, new Args
        {
            X = x, Angles = angles, Heads = shape.Heads, Pairs = shape.Pairs,
            Interleaved = shape.Layout == RotaryLayout.Interleaved ? 1 : 0,
        });
    }
}

/// <summary>How a checkpoint stretches rotary frequencies for long contexts.</summary>
public abstract record RotaryScaling
{
    /// <summary>Divides every frequency by the factor (positions / factor): Gemma 3's global layers.</summary>
    public sealed record Linear(double Factor) : RotaryScaling;

    /// <summary>
    /// Llama 3.1's scheme: long wavelengths divided by the factor, short ones kept, a smooth blend
    /// between (transformers' _compute_llama3_parameters; llama.cpp's rope_freqs factors).
    /// </summary>
    public sealed record Llama3(double Factor, double LowFrequencyFactor, double HighFrequencyFactor,
        int OriginalContextLength) : RotaryScaling;

    /// <summary>Explicit per-pair divisors, as llama.cpp's rope_freqs tensor stores them.</summary>
    public sealed record PerPairDivisors(double[] Divisors) : RotaryScaling;
}

/// <summary>
/// The angles of one rotary configuration (head_dim, base θ, scaling), computed on the host in
/// double precision and rounded once to binary32, so every backend rotates with the same bits.
/// </summary>
public sealed class RotaryTable
{
    readonly double[] inverseFrequencies;

    public RotaryTable(int headDim, double theta, RotaryScaling? scaling = null)
    {
        if (headDim < 2 || headDim % 2 != 0)
            throw new ArgumentException($"rotary: head_dim {headDim} must be even and at least 2");
        if (!(theta > 0) || double.IsInfinity(theta))
            throw new ArgumentException($"rotary: base θ {theta} must be positive and finite");
        HeadDim = headDim;
        Theta = theta;
        Scaling = scaling;
        inverseFrequencies = new double[headDim / 2];
        for (int i = 0; i < inverseFrequencies.Length; i++)
            inverseFrequencies[i] = Scale(1.0 / Math.Pow(theta, 2.0 * i / headDim), i, scaling);
    }

    public int HeadDim { get; }
    public double Theta { get; }
    public RotaryScaling? Scaling { get; }
    public ReadOnlySpan<double> InverseFrequencies => inverseFrequencies;

    static double Scale(double inverseFrequency, int pair, RotaryScaling? scaling)
    {
        switch (scaling)
        {
            case null:
                return inverseFrequency;
            case RotaryScaling.Linear linear:
                return inverseFrequency / linear.Factor;
            case RotaryScaling.PerPairDivisors divisors:
                return inverseFrequency / divisors.Divisors[pair];
            case RotaryScaling.Llama3 llama3:
                double lowFrequencyWavelength = llama3.OriginalContextLength / llama3.LowFrequencyFactor;
                double highFrequencyWavelength = llama3.OriginalContextLength / llama3.HighFrequencyFactor;
                double wavelength = 2 * Math.PI / inverseFrequency;
                if (wavelength < highFrequencyWavelength)
                    return inverseFrequency;
                if (wavelength > lowFrequencyWavelength)
                    return inverseFrequency / llama3.Factor;
                double smooth = (llama3.OriginalContextLength / wavelength - llama3.LowFrequencyFactor)
                    / (llama3.HighFrequencyFactor - llama3.LowFrequencyFactor);
                return (1 - smooth) * inverseFrequency / llama3.Factor + smooth * inverseFrequency;
            default:
                throw new ArgumentException($"rotary: unknown scaling {scaling}");
        }
    }

    /// <summary>Writes (cos, sin) of every pair for each position: the angles tensor of <see cref="Rotary"/>.</summary>
    public void Fill(ReadOnlySpan<int> positions, Span<float> angles)
    {
        int pairs = HeadDim / 2;
        Shapes.Expect("rotary table: angles", angles.Length, (long)positions.Length * HeadDim,
            $"{positions.Length} positions × {pairs} pairs × (cos, sin)");
        for (int r = 0; r < positions.Length; r++)
        {
            if (positions[r] < 0)
                throw new ArgumentOutOfRangeException(nameof(positions), $"rotary: position {positions[r]} at row {r} is negative");
            for (int i = 0; i < pairs; i++)
            {
                double angle = positions[r] * inverseFrequencies[i];
                angles[(r * pairs + i) * 2] = (float)Math.Cos(angle);
                angles[(r * pairs + i) * 2 + 1] = (float)Math.Sin(angle);
            }
        }
    }
}
