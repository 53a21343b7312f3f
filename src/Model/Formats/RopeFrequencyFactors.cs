using System.Collections.Immutable;

namespace IlgpuLlm.Model.Formats;

/// <summary>
/// Llama 3.1 rope scaling as per-frequency divisors: the form llama.cpp stores in a GGUF's
/// <c>rope_freqs.weight</c> and applies through <c>ggml_rope_ext</c>'s freq_factors. A Hugging
/// Face config's <c>rope_scaling</c> is turned into the same divisors here so that both sources
/// drive one rotary table.
/// </summary>
public static class RopeFrequencyFactors
{
    /// <summary>
    /// convert_hf_to_gguf.py <c>LlamaModel.generate_extra_tensors</c>: frequency i of
    /// <paramref name="headDim"/>/2 keeps divisor 1 when its wavelength is below
    /// original/high_freq_factor, gets <c>factor</c> above original/low_freq_factor, and
    /// 1 / ((1 - smooth) / factor + smooth) in between. Evaluated in float64 and rounded once to
    /// f32; this reproduces the shared Llama 3 GGUFs bit for bit. (The converter itself iterates
    /// over torch float32 scalars, which can land one ulp away inside the smooth band.)
    /// The original context length is the one in <c>rope_scaling</c>, as transformers reads it.
    /// </summary>
    public static ImmutableArray<float> ComputeLlama3(double ropeTheta, int headDim, Llama3RopeParameters parameters)
    {
        double factor = parameters.Factor;
        double lowFreqFactor = parameters.LowFreqFactor;
        double highFreqFactor = parameters.HighFreqFactor;
        double originalContext = parameters.OriginalMaxPositionEmbeddings;
        double lowFreqWavelength = originalContext / lowFreqFactor;
        double highFreqWavelength = originalContext / highFreqFactor;

        var factors = ImmutableArray.CreateBuilder<float>(headDim / 2);
        for (int i = 0; i < headDim; i += 2)
        {
            double frequency = 1.0 / Math.Pow(ropeTheta, (double)i / headDim);
            double wavelength = 2 * Math.PI / frequency;
            double divisor;
            if (wavelength < highFreqWavelength)
                divisor = 1;
            else if (wavelength > lowFreqWavelength)
                divisor = factor;
            else
            {
                double smooth = (originalContext / wavelength - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
                divisor = 1 / ((1 - smooth) / factor + smooth);
            }
            factors.Add((float)divisor);
        }
        return factors.MoveToImmutable();
    }
}
