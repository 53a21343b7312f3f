using System.Text.Json;
using IlgpuLlm.Kernels;
using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Runtime.Generation;

namespace IlgpuLlm.Server;

/// <summary>
/// A chat or text completion request, read from its JSON and checked field by field: a value of
/// the wrong type or out of range is an <see cref="OpenAiError"/> naming the field (HTTP 400),
/// before any work. Sampling follows OpenAI's defaults (temperature 1, top-p 1, no top-k or
/// min-p); every request draws from the random stream of its seed with sequence 0, so the seed
/// alone decides its tokens — never its arrival order or its slot. A request without a seed gets
/// a random one, which the response reports.
/// </summary>
public sealed record CompletionRequest
{
    public required Prompt Prompt { get; init; }
    public required GenerationOptions Options { get; init; }
    public required ulong Seed { get; init; }
    public bool Stream { get; init; }
    public bool IncludeUsageChunk { get; init; }
    public string? Model { get; init; }

    /// <summary>Whether log-probabilities were asked for (chat: logprobs true; completions: logprobs N).</summary>
    public bool LogProbabilities => Options.LogProbabilities != null;

    /// <summary>Fields OpenAI defines whose only value here is the default one.</summary>
    static readonly string[] Unsupported = ["tools", "tool_choice", "functions", "function_call", "response_format", "suffix", "logit_bias"];

    public static CompletionRequest Parse(JsonElement body, bool chat, int contextLength)
    {
        if (body.ValueKind != JsonValueKind.Object)
            throw OpenAiError.Invalid("the request body must be a JSON object");
        var reader = new Fields(body);
        string? model = reader.String("model");
        Prompt prompt = chat ? Prompt.FromMessages(Messages(body)) : TextPrompt(body);

        int? maxTokens = reader.Int(chat ? "max_completion_tokens" : "max_tokens") ?? reader.Int("max_tokens");
        if (maxTokens is <= 0)
            throw OpenAiError.Invalid($"max_tokens {maxTokens} must be at least 1", chat && body.TryGetProperty("max_completion_tokens", out _) ? "max_completion_tokens" : "max_tokens");

        float temperature = reader.Float("temperature") ?? 1f;
        if (!(temperature == 0f || temperature >= SamplingRow.MinTemperature) || float.IsInfinity(temperature))
            throw OpenAiError.Invalid($"temperature {temperature} must be 0 (greedy) or a finite number from {SamplingRow.MinTemperature} up", "temperature");
        float topP = reader.Float("top_p") ?? 1f;
        if (!(topP > 0f && topP <= 1f))
            throw OpenAiError.Invalid($"top_p {topP} must be above 0 and at most 1", "top_p");
        int topK = reader.Int("top_k") ?? 0;
        if (topK < 0)
            throw OpenAiError.Invalid($"top_k {topK} must be 0 (off) or positive", "top_k");
        float minP = reader.Float("min_p") ?? 0f;
        if (!(minP >= 0f && minP <= 1f))
            throw OpenAiError.Invalid($"min_p {minP} must be from 0 to 1", "min_p");
        float repetition = reader.Float("repetition_penalty") ?? reader.Float("repeat_penalty") ?? 1f;
        if (!(repetition >= SamplingRow.MinRepetitionPenalty) || float.IsInfinity(repetition))
            throw OpenAiError.Invalid($"repetition_penalty {repetition} must be a finite number from {SamplingRow.MinRepetitionPenalty} up (1: off)", "repetition_penalty");
        foreach (var name in (string[])["frequency_penalty", "presence_penalty"])
            if (reader.Float(name) is float penalty && penalty != 0f)
                throw OpenAiError.Invalid($"{name} is not supported by this server's sampler; use repetition_penalty (llama.cpp's and transformers' penalty) or leave {name} at 0", name);
        int n = reader.Int("n") ?? 1;
        if (n != 1)
            throw OpenAiError.Invalid($"n {n}: this server returns one choice per request (n = 1)", "n");
        if (!chat && reader.Int("best_of") is int bestOf && bestOf != 1)
            throw OpenAiError.Invalid($"best_of {bestOf}: this server returns one choice per request (best_of = 1)", "best_of");
        if (!chat && reader.Bool("echo") == true)
            throw OpenAiError.Invalid("echo is not supported; the prompt is not returned", "echo");
        foreach (var name in Unsupported)
            if (body.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null)
                throw OpenAiError.Invalid($"{name} is not supported by this server", name);

        ulong seed = reader.Seed("seed") ?? (ulong)Random.Shared.NextInt64(long.MinValue, long.MaxValue);
        var stops = Stops(body);
        int? logProbabilities = chat ? ChatLogProbabilities(reader) : reader.Int("logprobs");
        if (!chat && logProbabilities is < 0 or > 5)
            throw OpenAiError.Invalid($"logprobs {logProbabilities} must be from 0 to 5", "logprobs");
        bool stream = reader.Bool("stream") ?? false;
        bool usageChunk = false;
        if (body.TryGetProperty("stream_options", out var streamOptions) && streamOptions.ValueKind == JsonValueKind.Object)
            usageChunk = new Fields(streamOptions, "stream_options.").Bool("include_usage") ?? false;
        _ = reader.String("user"); // accepted and ignored, as the issue of its type aside

        return new CompletionRequest
        {
            Prompt = prompt,
            Model = model,
            Seed = seed,
            Stream = stream,
            IncludeUsageChunk = usageChunk,
            Options = new GenerationOptions
            {
                // Without a limit a reply runs to its stop or to the end of the context.
                MaxNewTokens = maxTokens ?? contextLength,
                StopStrings = stops,
                LogProbabilities = logProbabilities,
                Sampling = new SamplerSettings
                {
                    Temperature = temperature,
                    TopP = topP,
                    TopK = topK,
                    MinP = minP,
                    RepetitionPenalty = repetition,
                    Seed = seed,
                },
            },
        };
    }

    static int? ChatLogProbabilities(Fields reader)
    {
        bool logprobs = reader.Bool("logprobs") ?? false;
        int? top = reader.Int("top_logprobs");
        if (top is < 0 or > GenerationOptions.MaxTopLogProbabilities)
            throw OpenAiError.Invalid($"top_logprobs {top} must be from 0 to {GenerationOptions.MaxTopLogProbabilities}", "top_logprobs");
        if (top != null && !logprobs)
            throw OpenAiError.Invalid("top_logprobs needs logprobs: true", "top_logprobs");
        return logprobs ? top ?? 0 : null;
    }

    static List<ChatMessage> Messages(JsonElement body)
    {
        if (!body.TryGetProperty("messages", out var messages))
            throw OpenAiError.Invalid("messages is required", "messages");
        if (messages.ValueKind != JsonValueKind.Array)
            throw OpenAiError.Invalid("messages must be an array", "messages");
        if (messages.GetArrayLength() == 0)
            throw OpenAiError.Invalid("messages is empty; give at least one message", "messages");
        var list = new List<ChatMessage>();
        int i = 0;
        foreach (var message in messages.EnumerateArray())
        {
            string where = $"messages[{i++}]";
            if (message.ValueKind != JsonValueKind.Object)
                throw OpenAiError.Invalid($"{where} must be an object", where);
            var fields = new Fields(message, where + ".");
            string role = fields.String("role") ?? throw OpenAiError.Invalid($"{where}.role is required", where + ".role");
            // "developer" is OpenAI's newer name for the system role.
            if (role == "developer")
                role = "system";
            if (role is not ("system" or "user" or "assistant"))
                throw OpenAiError.Invalid($"{where}.role '{role}' is not one of system, user, assistant", where + ".role");
            list.Add(new ChatMessage(role, Content(message, where)));
        }
        return list;
    }

    /// <summary>A message's content: a string, or an array of text parts (OpenAI's content parts), joined.</summary>
    static string Content(JsonElement message, string where)
    {
        if (!message.TryGetProperty("content", out var content) || content.ValueKind == JsonValueKind.Null)
            return "";
        if (content.ValueKind == JsonValueKind.String)
            return content.GetString()!;
        if (content.ValueKind != JsonValueKind.Array)
            throw OpenAiError.Invalid($"{where}.content must be a string or an array of text parts", where + ".content");
        var text = new System.Text.StringBuilder();
        foreach (var part in content.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String
                || type.GetString() != "text" || !part.TryGetProperty("text", out var partText) || partText.ValueKind != JsonValueKind.String)
                throw OpenAiError.Invalid($"{where}.content: only text parts ({{\"type\": \"text\", \"text\": ...}}) are supported", where + ".content");
            text.Append(partText.GetString());
        }
        return text.ToString();
    }

    /// <summary>The completions prompt: a string, an array holding one string, or an array of token ids.</summary>
    static Prompt TextPrompt(JsonElement body)
    {
        if (!body.TryGetProperty("prompt", out var prompt))
            throw OpenAiError.Invalid("prompt is required", "prompt");
        if (prompt.ValueKind == JsonValueKind.String)
            return Prompt.FromText(prompt.GetString()!);
        if (prompt.ValueKind == JsonValueKind.Array)
        {
            var items = prompt.EnumerateArray().ToArray();
            if (items.Length == 1 && items[0].ValueKind == JsonValueKind.String)
                return Prompt.FromText(items[0].GetString()!);
            if (items.Length > 0 && items.All(item => item.ValueKind == JsonValueKind.Number && item.TryGetInt32(out _)))
                return Prompt.FromTokens(items.Select(item => item.GetInt32()).ToArray());
            if (items.Length > 1 && items.All(item => item.ValueKind == JsonValueKind.String))
                throw OpenAiError.Invalid("prompt: one prompt per request (send several requests; they run together)", "prompt");
        }
        throw OpenAiError.Invalid("prompt must be a string or an array of token ids", "prompt");
    }

    static IReadOnlyList<string> Stops(JsonElement body)
    {
        if (!body.TryGetProperty("stop", out var stop) || stop.ValueKind == JsonValueKind.Null)
            return [];
        string[] stops = stop.ValueKind switch
        {
            JsonValueKind.String => [stop.GetString()!],
            JsonValueKind.Array when stop.EnumerateArray().All(s => s.ValueKind == JsonValueKind.String) =>
                stop.EnumerateArray().Select(s => s.GetString()!).ToArray(),
            _ => throw OpenAiError.Invalid("stop must be a string or an array of strings", "stop"),
        };
        if (stops.Any(s => s.Length == 0))
            throw OpenAiError.Invalid("stop strings must not be empty", "stop");
        return stops;
    }

    /// <summary>Typed reads of optional fields; a present field of the wrong type is a 400 naming it. JSON null counts as absent.</summary>
    readonly struct Fields(JsonElement element, string prefix = "")
    {
        bool TryGet(string name, out JsonElement value) =>
            element.TryGetProperty(name, out value) && value.ValueKind != JsonValueKind.Null;

        OpenAiError Wrong(string name, string kind) => OpenAiError.Invalid($"{prefix}{name} must be {kind}", prefix + name);

        public string? String(string name) =>
            !TryGet(name, out var value) ? null : value.ValueKind == JsonValueKind.String ? value.GetString() : throw Wrong(name, "a string");

        public bool? Bool(string name) =>
            !TryGet(name, out var value) ? null : value.ValueKind is JsonValueKind.True or JsonValueKind.False ? value.GetBoolean() : throw Wrong(name, "true or false");

        public int? Int(string name)
        {
            if (!TryGet(name, out var value))
                return null;
            if (value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int i))
                return i;
            if (value.ValueKind == JsonValueKind.Number && value.TryGetDouble(out double d) && d == Math.Floor(d) && Math.Abs(d) <= int.MaxValue)
                return (int)d;
            throw Wrong(name, "a whole number");
        }

        public float? Float(string name) =>
            !TryGet(name, out var value) ? null : value.ValueKind == JsonValueKind.Number ? (float)value.GetDouble() : throw Wrong(name, "a number");

        /// <summary>A seed: any whole number that fits 64 bits (a negative one is taken as its two's-complement bits).</summary>
        public ulong? Seed(string name)
        {
            if (!TryGet(name, out var value))
                return null;
            if (value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out long signed))
                return unchecked((ulong)signed);
            if (value.ValueKind == JsonValueKind.Number && value.TryGetUInt64(out ulong unsigned))
                return unsigned;
            throw Wrong(name, "a whole number of at most 64 bits");
        }
    }
}
