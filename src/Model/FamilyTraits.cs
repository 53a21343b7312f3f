using IlgpuLlm.Kernels;

namespace IlgpuLlm.Model;

/// <summary>
/// The config fields a family fixes, as the readers derive them from the family alone: what
/// random models are built with and what the writers require, so neither restates the rules.
/// </summary>
internal static class FamilyTraits
{
    public static bool IsGemma(ModelFamily family) => family is ModelFamily.Gemma or ModelFamily.Gemma2 or ModelFamily.Gemma3;

    /// <summary>Gemma 2/3: norms after attention and after the feed-forward block as well as before.</summary>
    public static bool HasSandwichNorms(ModelFamily family) => family is ModelFamily.Gemma2 or ModelFamily.Gemma3;

    public static bool HasQueryKeyNorm(ModelFamily family) => family == ModelFamily.Gemma3;

    public static Activation Activation(ModelFamily family) => IsGemma(family) ? Kernels.Activation.GeluTanh : Kernels.Activation.Silu;

    /// <summary>Gemma: sqrt(hidden) rounded once to f32 (see <see cref="ModelConfig.EmbeddingScale"/>); 1 otherwise.</summary>
    public static float EmbeddingScale(ModelFamily family, int hidden) => IsGemma(family) ? (float)Math.Sqrt(hidden) : 1f;
}
