using System.Text;
using System.Text.Json.Nodes;
using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Runtime.Generation;

namespace IlgpuLlm.Server;

/// <summary>
/// The JSON of one completion in OpenAI's shapes: <c>chat.completion</c> / <c>chat.completion.chunk</c>
/// and <c>text_completion</c>, with usage, log-probabilities in each API's form, and the seed the
/// request was drawn with (an extension field, <c>seed</c>: what makes a request without one
/// repeatable). <c>system_fingerprint</c> names the engine.
/// </summary>
internal sealed class Response(CompletionRequest request, bool chat, string model, ITokenizer tokenizer)
{
    readonly string id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
    readonly long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    public const string Fingerprint = "ilgpullm";

    public static string Reason(FinishReason? reason) => reason switch
    {
        FinishReason.Stop => "stop",
        FinishReason.Length => "length",
        _ => "error",
    };

    JsonObject Envelope(bool chunk)
    {
        return new JsonObject
        {
            ["id"] = id,
            ["object"] = chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion",
            ["created"] = created,
            ["model"] = model,
            ["system_fingerprint"] = Fingerprint,
            ["seed"] = request.Seed,
        };
    }

    static JsonObject Usage(GenerationUsage usage) => new()
    {
        ["prompt_tokens"] = usage.PromptTokens,
        ["completion_tokens"] = usage.GeneratedTokens,
        ["total_tokens"] = usage.PromptTokens + usage.GeneratedTokens,
    };

    public JsonObject Whole(string text, IReadOnlyList<TokenLogProbability> logProbabilities, FinishReason? reason, GenerationUsage usage)
    {
        var choice = new JsonObject { ["index"] = 0 };
        if (chat)
            choice["message"] = new JsonObject { ["role"] = "assistant", ["content"] = text };
        else
            choice["text"] = text;
        choice["logprobs"] = request.LogProbabilities ? LogProbabilities(logProbabilities) : null;
        choice["finish_reason"] = Reason(reason);
        var body = Envelope(chunk: false);
        body["choices"] = new JsonArray(choice);
        body["usage"] = Usage(usage);
        return body;
    }

    /// <summary>The first event of a chat stream announces the assistant's role (as OpenAI's does).</summary>
    public JsonObject FirstChunk() => chat
        ? Chunk(new JsonObject { ["role"] = "assistant", ["content"] = "" }, null, null, null)
        : Chunk("", [], null, null);

    public JsonObject Chunk(string text, IReadOnlyList<TokenLogProbability> logProbabilities, FinishReason? finishReason, GenerationUsage? usage) =>
        Chunk(chat ? new JsonObject { ["content"] = text } : null, chat ? null : text,
            request.LogProbabilities && logProbabilities.Count > 0 ? LogProbabilities(logProbabilities) : null, finishReason, usage);

    JsonObject Chunk(JsonObject delta, JsonNode? logprobs, FinishReason? finishReason, GenerationUsage? usage) =>
        Chunk(delta, null, logprobs, finishReason, usage);

    JsonObject Chunk(JsonObject? delta, string? text, JsonNode? logprobs, FinishReason? finishReason, GenerationUsage? usage)
    {
        var choice = new JsonObject { ["index"] = 0 };
        if (chat)
            choice["delta"] = finishReason != null && delta?["content"]?.GetValue<string>() == "" ? new JsonObject() : delta;
        else
            choice["text"] = text ?? "";
        choice["logprobs"] = logprobs;
        choice["finish_reason"] = finishReason == null ? null : Reason(finishReason);
        var body = Envelope(chunk: true);
        body["choices"] = new JsonArray(choice);
        if (usage != null)
            body["usage"] = Usage(usage);
        return body;
    }

    /// <summary>stream_options.include_usage: a last event with no choices and the usage.</summary>
    public JsonObject UsageChunk(GenerationUsage usage)
    {
        var body = Envelope(chunk: true);
        body["choices"] = new JsonArray();
        body["usage"] = Usage(usage);
        return body;
    }

    JsonNode LogProbabilities(IReadOnlyList<TokenLogProbability> entries) => chat ? ChatLogProbabilities(entries) : TextLogProbabilities(entries);

    /// <summary>A token's text as it reads inside the output (with the space a SentencePiece word starts with), special tokens spelled out.</summary>
    string TokenText(int id)
    {
        var decoder = tokenizer.CreateStreamingDecoder(renderSpecial: true);
        decoder.Prime([id]);
        return decoder.Append(id) + decoder.Flush();
    }

    /// <summary>Chat's form: content = [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}].</summary>
    JsonObject ChatLogProbabilities(IReadOnlyList<TokenLogProbability> entries)
    {
        var content = new JsonArray();
        foreach (var entry in entries)
        {
            var top = new JsonArray();
            foreach (var alternative in entry.Top)
                top.Add(TokenEntry(alternative.Token, alternative.LogProbability));
            var item = TokenEntry(entry.Token, entry.LogProbability);
            item["top_logprobs"] = top;
            content.Add(item);
        }
        return new JsonObject { ["content"] = content, ["refusal"] = null };
    }

    JsonObject TokenEntry(int token, double logProbability)
    {
        var text = TokenText(token);
        var bytes = new JsonArray();
        foreach (var b in Encoding.UTF8.GetBytes(text))
            bytes.Add((int)b);
        return new JsonObject { ["token"] = text, ["logprob"] = logProbability, ["bytes"] = bytes };
    }

    /// <summary>Completions' legacy form: tokens, token_logprobs, top_logprobs (token → logprob maps), text_offset.</summary>
    JsonObject TextLogProbabilities(IReadOnlyList<TokenLogProbability> entries)
    {
        var tokens = new JsonArray();
        var values = new JsonArray();
        var tops = new JsonArray();
        var offsets = new JsonArray();
        int offset = 0;
        foreach (var entry in entries)
        {
            var text = TokenText(entry.Token);
            tokens.Add(text);
            values.Add(entry.LogProbability);
            var top = new JsonObject();
            foreach (var alternative in entry.Top)
                top[TokenText(alternative.Token)] = alternative.LogProbability;
            tops.Add(top);
            offsets.Add(offset);
            offset += text.Length;
        }
        return new JsonObject { ["tokens"] = tokens, ["token_logprobs"] = values, ["top_logprobs"] = tops, ["text_offset"] = offsets };
    }
}
