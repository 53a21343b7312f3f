using IlgpuLlm.Runtime.Generation;

namespace IlgpuLlm;

/// <summary>What to generate for a prompt: how many tokens at most, how to draw them, where to stop.</summary>
public sealed record GenerationOptions
{
    /// <summary>Tokens to generate at most (the stop token included). Generation also ends at the context's end.</summary>
    public int MaxNewTokens { get; init; } = 256;

    /// <summary>Temperature (0 is greedy), top-k, top-p, min-p, repetition penalty and the seed.</summary>
    public SamplerSettings Sampling { get; init; } = new();

    /// <summary>
    /// Text that ends generation when it appears in the output. The stop string itself is not part
    /// of the text returned, and streamed text that could begin one is held back until it is known
    /// not to.
    /// </summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];

    /// <summary>
    /// Null: no log-probabilities. A number from 0 to <see cref="MaxTopLogProbabilities"/>: each
    /// piece carries its token's log-probability and this many of the most likely tokens at that
    /// step (a copy of the logits to the host per token).
    /// </summary>
    public int? LogProbabilities { get; init; }

    /// <summary>The most alternatives <see cref="LogProbabilities"/> asks for (OpenAI's limit).</summary>
    public const int MaxTopLogProbabilities = 20;

    /// <exception cref="ArgumentException">A value is out of range, or a stop string is empty.</exception>
    public void Validate()
    {
        if (MaxNewTokens < 0)
            throw new ArgumentOutOfRangeException(nameof(MaxNewTokens), MaxNewTokens, $"max new tokens {MaxNewTokens} must not be negative");
        ArgumentNullException.ThrowIfNull(Sampling, nameof(Sampling));
        ArgumentNullException.ThrowIfNull(StopStrings, nameof(StopStrings));
        Sampling.Validate();
        if (LogProbabilities is < 0 or > MaxTopLogProbabilities)
            throw new ArgumentOutOfRangeException(nameof(LogProbabilities), LogProbabilities,
                $"top log-probabilities {LogProbabilities} must be from 0 to {MaxTopLogProbabilities}");
        StopStringMatcher.Validate(StopStrings);
    }
}
