using IlgpuLlm.Kernels;

namespace IlgpuLlm.Runtime.Generation;

/// <summary>
/// How tokens are drawn: temperature 0 is greedy. Defaults are llama.cpp's (temperature 0.8,
/// top-k 40, top-p 0.95, min-p 0.05, no repetition penalty over the last 64 tokens).
/// </summary>
public sealed record SamplerSettings
{
    public float Temperature { get; init; } = 0.8f;
    public int TopK { get; init; } = 40;
    public float TopP { get; init; } = 0.95f;
    public float MinP { get; init; } = 0.05f;
    public float RepetitionPenalty { get; init; } = 1f;

    /// <summary>How many of the latest tokens (prompt included) the repetition penalty looks at.</summary>
    public int PenaltyWindow { get; init; } = 64;

    public ulong Seed { get; init; }

    public static SamplerSettings Greedy { get; } = new() { Temperature = 0f };

    /// <summary>The kernel's row description for one draw of sequence <paramref name="sequence"/>.</summary>
    public SamplingRow Row(int sequence, int step, int penaltyOffset, int penaltyCount) =>
        new(Temperature, TopK, TopP, MinP, RepetitionPenalty, Seed, sequence, step, penaltyOffset, penaltyCount);

    public void Validate()
    {
        Row(0, 0, 0, 0).Validate(0, int.MaxValue, []);
        if (PenaltyWindow < 0)
            throw new ArgumentException($"repetition penalty window {PenaltyWindow} must not be negative");
    }
}
