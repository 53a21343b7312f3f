using IlgpuLlm.Model.Tokenizers;

namespace IlgpuLlm;

/// <summary>
/// One prompt: plain text, a conversation rendered with the model's chat template, or token ids.
/// A string converts to a text prompt.
/// </summary>
public sealed record Prompt
{
    Prompt(string? text, IReadOnlyList<ChatMessage>? messages, IReadOnlyList<int>? tokens)
    {
        Text = text;
        Messages = messages;
        Tokens = tokens;
    }

    /// <summary>Plain text, encoded with BOS where the model's convention has one. Empty text starts from BOS alone.</summary>
    public string? Text { get; }

    /// <summary>A conversation, rendered with the chat template and ending with the assistant's turn to speak.</summary>
    public IReadOnlyList<ChatMessage>? Messages { get; }

    /// <summary>Token ids fed as they are.</summary>
    public IReadOnlyList<int>? Tokens { get; }

    /// <summary>
    /// The random stream of this prompt: draws are keyed by (seed, sequence, step), so the same
    /// sequence number gives the same tokens in any batch and at any position in it. Null: the
    /// prompt's index in its batch (0 for a single prompt).
    /// </summary>
    public int? Sequence { get; init; }

    public static Prompt FromText(string text) => new(text ?? throw new ArgumentNullException(nameof(text)), null, null);

    public static Prompt FromMessages(IReadOnlyList<ChatMessage> messages) =>
        new(null, messages ?? throw new ArgumentNullException(nameof(messages)), null);

    public static Prompt FromTokens(IReadOnlyList<int> tokens) =>
        new(null, null, tokens ?? throw new ArgumentNullException(nameof(tokens)));

    public static implicit operator Prompt(string text) => FromText(text);
}
