using System.Runtime.CompilerServices;
using System.Text;
using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Runtime.Generation;

namespace IlgpuLlm;

/// <summary>
/// A chat whose history stays in the KV cache: the conversation holds one cache slot from its
/// first turn until it is cleared or disposed — or until a request finds no other slot free, which
/// takes it (the next turn then prefills the whole history again) — and each turn renders the whole conversation with
/// the chat template and prefills only what it adds to the tokens the cache holds. Where a
/// template renders earlier text differently once a turn follows (or the reply's text encodes to
/// other ids than were drawn), only the shared prefix is kept and the rest is prefilled again;
/// <see cref="GenerationUsage.ReusedPromptTokens"/> says how much was kept. One turn at a time.
/// </summary>
public sealed class Conversation : IDisposable
{
    readonly LanguageModel model;
    readonly List<ChatMessage> messages = [];
    GenerationSequence? sequence;
    bool inTurn, disposed;

    internal Conversation(LanguageModel model, string? systemPrompt)
    {
        this.model = model;
        SystemPrompt = string.IsNullOrEmpty(systemPrompt) ? null : systemPrompt;
        Clear();
    }

    public string? SystemPrompt { get; }

    /// <summary>The conversation so far (the system prompt first, when there is one).</summary>
    public IReadOnlyList<ChatMessage> Messages => messages;

    /// <summary>The prompt of the last turn as the chat template rendered it.</summary>
    public string? RenderedPrompt { get; private set; }

    /// <summary>Forgets every turn (the system prompt stays) and gives the cache slot back.</summary>
    public void Clear()
    {
        if (inTurn)
            throw new InvalidOperationException("a turn is in progress; let it end or cancel it first");
        messages.Clear();
        if (SystemPrompt != null)
            messages.Add(ChatMessage.System(SystemPrompt));
        ReleaseSlot();
    }

    /// <summary>
    /// Streams the reply to <paramref name="userMessage"/>, as <see cref="LanguageModel.GenerateAsync(Prompt, GenerationOptions?, CancellationToken)"/>
    /// does. A reply that ends (or is cancelled) becomes part of the conversation with the text
    /// streamed so far; the user message of a turn that failed is taken back.
    /// </summary>
    public async IAsyncEnumerable<GenerationPiece> SendAsync(string userMessage, GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(userMessage);
        ObjectDisposedException.ThrowIf(disposed, this);
        model.ThrowIfDisposed();
        if (inTurn)
            throw new InvalidOperationException("a turn is in progress; one turn at a time");
        options ??= new GenerationOptions();
        options.Validate();
        messages.Add(ChatMessage.User(userMessage));
        inTurn = true;
        var reply = new StringBuilder();
        bool ended = false;
        try
        {
            var prompt = Prompt.FromMessages(messages.ToArray());
            var prepared = model.Job(prompt, index: null, options);
            RenderedPrompt = model.ChatTemplate.Render(messages, addGenerationPrompt: true);
            sequence ??= new GenerationSequence(prepared.Request) { KeepsSlot = true };
            await foreach (var piece in model.Stream(prepared, sequence, cancellationToken).ConfigureAwait(false))
            {
                reply.Append(piece.Text);
                yield return piece;
            }
            ended = true;
        }
        finally
        {
            inTurn = false;
            if (ended || cancellationToken.IsCancellationRequested)
                messages.Add(ChatMessage.Assistant(reply.ToString()));
            else
                messages.RemoveAt(messages.Count - 1);
        }
    }

    void ReleaseSlot()
    {
        if (sequence != null)
            model.Release(sequence);
        sequence = null;
    }

    /// <summary>Gives the cache slot back.</summary>
    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        if (!inTurn)
            ReleaseSlot();
    }
}
