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
        for (int i = 0; i < output.Length; i++)
            output[i] = Mul(Apply(activation, gate[i]), up[i]);
    }

    public static void AddReference(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> output)
    {
        ValidateElementwise("add", a.Length, b.Length, output.Length);
        for (int i = 0; i < output.Length; i++)
            output[i] = ExactMath.Add(a[i], b[i]);
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
