using IlgpuLlm.Runtime.Generation;

namespace IlgpuLlm;

/// <summary>
/// What one request used: its prompt and generated tokens, and the timing of the whole run it was
/// part of (a batch shares one run).
/// </summary>
public sealed record GenerationUsage(int PromptTokens, int GeneratedTokens, GenerationStats Run)
{
    /// <summary>A conversation's turn: prompt tokens whose keys the cache already held from earlier turns, so they were not prefilled again.</summary>
    public int ReusedPromptTokens { get; init; }
}

/// <summary>
/// One step of a streamed generation: the token drawn and the text it completed. The text may be
/// empty — the token ends a character that needs more bytes, or begins what may be a stop string,
/// which is released with a later piece once it is known not to be one. The last piece has no
/// token; it carries the rest of the text, why generation ended, and the usage.
/// </summary>
public sealed record GenerationPiece(string Text, int? Token)
{
    /// <summary>Set on the last piece: <see cref="FinishReason.Stop"/> (a stop token or stop string) or <see cref="FinishReason.Length"/>.</summary>
    public FinishReason? FinishReason { get; init; }

    /// <summary>On the last piece, a note on how it ended when there is one (the context limit was reached).</summary>
    public string? Message { get; init; }

    /// <summary>Set on the last piece.</summary>
    public GenerationUsage? Usage { get; init; }

    /// <summary>The token's log-probability and the likeliest alternatives, when <see cref="GenerationOptions.LogProbabilities"/> asks for them.</summary>
    public TokenLogProbability? LogProbability { get; init; }
}

/// <summary>
/// The result of one prompt of a batch: its text (decoded as the continuation of the prompt, cut
/// before a stop string), the generated ids (a stop token included), why it ended, and the error
/// when it could not continue.
/// </summary>
public sealed record Completion(string Text, IReadOnlyList<int> Tokens, FinishReason FinishReason, string? Message, GenerationUsage Usage)
{
    /// <summary>Why the sequence failed (non-finite values, f16 cache overflow); null unless <see cref="FinishReason"/> is Error.</summary>
    public string? Error => FinishReason == Runtime.Generation.FinishReason.Error ? Message : null;
}

/// <summary>A streamed generation could not continue (non-finite values, f16 cache overflow); the text before it was streamed.</summary>
public sealed class GenerationException(string message) : Exception(message);

/// <summary>A prompt needs more positions than the context holds; raised before any work.</summary>
public sealed class PromptTooLongException(int? index, int length, int limit)
    : ArgumentException((index is int i ? $"prompt {i} is" : "the prompt is") +
        $" {length} tokens long; the context holds {limit} positions (LanguageModelOptions.ContextLength, at most the model's own)")
{
    /// <summary>The prompt's index in its batch; null for a single prompt.</summary>
    public int? Index { get; } = index;

    /// <summary>The prompt's length in tokens.</summary>
    public int Length { get; } = length;

    /// <summary>The positions the context holds.</summary>
    public int Limit { get; } = limit;
}
