using ILGPU;
using ILGPU.Runtime;
using static IlgpuLlm.Kernels.ExactMath;

namespace IlgpuLlm.Kernels;

/// <summary>The gate activation of a gated feed-forward block.</summary>
public enum Activation
{
    /// <summary>SiLU (Llama, Qwen2).</summary>
    Silu,

    /// <summary>GELU, tanh approximation (Gemma's gelu_pytorch_tanh).</summary>
    GeluTanh,
}

/// <summary>
/// Element-wise ops of the transformer block: the gated activation act(gate)·up (one rounding for
/// the product after the activation's own), the residual a + b, and logit soft-capping.
/// </summary>
public static partial class Activations
{
    public static float Apply(Activation activation, float x) =>
        activation == Activation.Silu ? CanonicalMath.Silu(x) : CanonicalMath.GeluTanh(x);

    public static void GatedReference(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> output, Activation activation)
    {
        ValidateElementwise("gated activation", gate.Length, up.Length, output.Length);
        ValidateActivation(activation);
        for (int i = 0; i < output.Length; i++)
            output[i] = Mul(Apply(activation, gate[i]), up[i]);
    }

    public static void AddReference(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> output)
    {
        ValidateElementwise("add", a.Length, b.Length, output.Length);
        for (int i = 0; i < output.Length; i++)
            output[i] = ExactMath.Add(a[i], b[i]);
    }

    /// <summary>
    /// The backends' form of the element-wise checks: the op covers the first
    /// <paramref name="count"/> values of tensors that may be longer (buffers sized for the largest batch).
    /// </summary>
    public static void ValidateCount(string op, long count, long a, long b, long output)
    {
        Shapes.Positive($"{op}: count", count);
        Shapes.ExpectAtLeast($"{op}: first input", a, count, $"count {count}");
        Shapes.ExpectAtLeast($"{op}: second input", b, count, $"count {count}");
        Shapes.ExpectAtLeast($"{op}: output", output, count, $"count {count}");
    }

    public static void ValidateActivation(Activation activation)
    {
        if (!Enum.IsDefined(activation))
            throw new ArgumentOutOfRangeException(nameof(activation), activation, "gated activation: unknown activation");
    }

    public struct GatedArgs
    {
        public ArrayView<float> Gate, Up, Output;
        public int GeluTanh;
    }

    /// <summary>One thread per element; the activation choice is uniform across the launch.</summary>
    [GpuKernel]
    static void GatedKernel(Index1D index, GatedArgs a)
    {
        float gate = a.Gate[index];
        float activated = a.GeluTanh != 0 ? CanonicalMath.GeluTanh(gate) : CanonicalMath.Silu(gate);
        a.Output[index] = Mul(activated, a.Up[index]);
    }

    public static void RunGated(KernelLibrary library, ArrayView<float> gate, ArrayView<float> up, ArrayView<float> output,
        long count, Activation activation)
    {
        ValidateCount("gated activation", count, gate.Length, up.Length, output.Length);
        ValidateActivation(activation);
        int threads = Elementwise.ThreadCount("gated activation: count", count);
        library.GetElementwise<GatedArgs>(GatedKernel)(threads, new GatedArgs
        {
            Gate = gate, Up = up, Output = output, GeluTanh = activation == Activation.GeluTanh ? 1 : 0,
        });
    }

    public struct AddArgs
    {
        public ArrayView<float> A, B, Output;
    }

    [GpuKernel]
    static void AddKernel(Index1D index, AddArgs a) => a.Output[index] = ExactMath.Add(a.A[index], a.B[index]);

    public static void RunAdd(KernelLibrary library, ArrayView<float> a, ArrayView<float> b, ArrayView<float> output, long count)
    {
        ValidateCount("add", count, a.Length, b.Length, output.Length);
        int threads = Elementwise.ThreadCount("add: count", count);
        library.GetElementwise<AddArgs>(AddKernel)(threads, new AddArgs { A = a, B = b, Output = output });
    }

    public static void SoftCapReference(Span<float> x, float cap)
    {
        ValidateCap(cap);
        for (int i = 0; i < x.Length; i++)
            x[i] = CanonicalMath.SoftCap(x[i], cap);
    }

    public static void ValidateElementwise(string op, long a, long b, long output)
    {
        Shapes.Positive($"{op}: count", output);
        Shapes.Expect($"{op}: first input", a, output, "the output's length");
        Shapes.Expect($"{op}: second input", b, output, "the output's length");
    }

    public static void ValidateCap(float cap)
    {
        if (!(cap > 0f) || float.IsInfinity(cap))
            throw new ArgumentException($"soft-cap {cap} must be positive and finite");
    }
}
