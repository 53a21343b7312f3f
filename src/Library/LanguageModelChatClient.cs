using System.Runtime.CompilerServices;
using IlgpuLlm.Runtime.Generation;
using Microsoft.Extensions.AI;
using EngineMessage = IlgpuLlm.Model.Tokenizers.ChatMessage;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace IlgpuLlm;

/// <summary>
/// <see cref="IChatClient"/> (Microsoft.Extensions.AI) over an in-process <see cref="LanguageModel"/>:
/// the conversation rendered with the model's chat template, <see cref="ChatOptions"/> mapped to the
/// sampler (temperature, top-p, top-k, max output tokens, stop sequences, seed), streamed or whole,
/// with usage, and cancellation that takes the request out of the batch before the next step. It
/// composes with <see cref="ChatClientBuilder"/> middleware. Each call is one request to the
/// model's scheduler, so concurrent calls batch together; a call with a seed gets the same reply
/// alone or beside others. What <see cref="ChatOptions"/> leaves unset comes from the defaults
/// given here.
/// </summary>
public sealed class LanguageModelChatClient : IChatClient
{
    readonly LanguageModel model;
    readonly GenerationOptions defaults;
    readonly ChatClientMetadata metadata;

    /// <param name="defaults">Options for what a call's <see cref="ChatOptions"/> leaves unset (llama.cpp's sampling defaults, 256 tokens, when null).</param>
    public LanguageModelChatClient(LanguageModel model, GenerationOptions? defaults = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        this.model = model;
        this.defaults = defaults ?? new GenerationOptions();
        this.defaults.Validate();
        metadata = new ChatClientMetadata("ilgpullm", null, Path.GetFileName(model.Source));
    }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<AIChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var text = new System.Text.StringBuilder();
        GenerationPiece? last = null;
        await foreach (var piece in Generate(messages, options, cancellationToken).ConfigureAwait(false))
        {
            text.Append(piece.Text);
            last = piece;
        }
        return new ChatResponse(new AIChatMessage(ChatRole.Assistant, text.ToString()))
        {
            FinishReason = Reason(last!.FinishReason),
            Usage = Usage(last.Usage!),
            ModelId = metadata.DefaultModelId,
            CreatedAt = DateTimeOffset.UtcNow,
        };
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<AIChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        string id = Guid.NewGuid().ToString("N");
        await foreach (var piece in Generate(messages, options, cancellationToken).ConfigureAwait(false))
        {
            var update = new ChatResponseUpdate(ChatRole.Assistant, piece.Text) { ResponseId = id, MessageId = id, ModelId = metadata.DefaultModelId };
            if (piece.FinishReason is { } reason)
            {
                update.FinishReason = Reason(reason);
                update.Contents.Add(new UsageContent(Usage(piece.Usage!)));
            }
            yield return update;
        }
    }

    IAsyncEnumerable<GenerationPiece> Generate(IEnumerable<AIChatMessage> messages, ChatOptions? options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var conversation = messages.Select(Message).ToArray();
        if (conversation.Length == 0)
            throw new ArgumentException("the conversation has no messages", nameof(messages));
        return model.GenerateAsync(Prompt.FromMessages(conversation), Options(options), cancellationToken);
    }

    static EngineMessage Message(AIChatMessage message)
    {
        var role = message.Role == ChatRole.System ? "system"
            : message.Role == ChatRole.User ? "user"
            : message.Role == ChatRole.Assistant ? "assistant"
            : throw new NotSupportedException($"chat role '{message.Role}' is not supported (system, user and assistant are)");
        return new EngineMessage(role, message.Text);
    }

    /// <summary>ChatOptions over the defaults; what the sampler cannot do is refused, not ignored.</summary>
    GenerationOptions Options(ChatOptions? options)
    {
        if (options == null)
            return defaults;
        if (options.Tools is { Count: > 0 })
            throw new NotSupportedException("tools are not supported by this chat client");
        if (options.FrequencyPenalty is float frequency && frequency != 0f)
            throw new NotSupportedException("frequency penalty is not supported by the sampler; it has a repetition penalty (GenerationOptions.Sampling)");
        if (options.PresencePenalty is float presence && presence != 0f)
            throw new NotSupportedException("presence penalty is not supported by the sampler; it has a repetition penalty (GenerationOptions.Sampling)");
        var sampling = defaults.Sampling with
        {
            Temperature = options.Temperature ?? defaults.Sampling.Temperature,
            TopP = options.TopP ?? defaults.Sampling.TopP,
            TopK = options.TopK ?? defaults.Sampling.TopK,
            Seed = options.Seed is long seed ? unchecked((ulong)seed) : defaults.Sampling.Seed,
        };
        var result = defaults with
        {
            MaxNewTokens = options.MaxOutputTokens ?? defaults.MaxNewTokens,
            StopStrings = options.StopSequences is { Count: > 0 } stops ? [.. stops] : defaults.StopStrings,
            Sampling = sampling,
        };
        result.Validate();
        return result;
    }

    static ChatFinishReason? Reason(FinishReason? reason) => reason switch
    {
        FinishReason.Stop => ChatFinishReason.Stop,
        FinishReason.Length => ChatFinishReason.Length,
        _ => null,
    };

    static UsageDetails Usage(GenerationUsage usage) => new()
    {
        InputTokenCount = usage.PromptTokens,
        OutputTokenCount = usage.GeneratedTokens,
        TotalTokenCount = usage.PromptTokens + usage.GeneratedTokens,
    };

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        return serviceKey != null ? null
            : serviceType == typeof(ChatClientMetadata) ? metadata
            : serviceType.IsInstanceOfType(this) ? this
            : serviceType.IsInstanceOfType(model) ? model
            : null;
    }

    /// <summary>The model belongs to the caller; disposing the client leaves it loaded.</summary>
    public void Dispose()
    {
    }
}

/// <summary>The model as a Microsoft.Extensions.AI chat client.</summary>
public static class LanguageModelChatClientExtensions
{
    public static IChatClient AsChatClient(this LanguageModel model, GenerationOptions? defaults = null) => new LanguageModelChatClient(model, defaults);
}
