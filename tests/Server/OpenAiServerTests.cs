using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;
using OpenAI.Chat;
using ChatFinishReason = OpenAI.Chat.ChatFinishReason;
using ChatMessage = OpenAI.Chat.ChatMessage;

#pragma warning disable OPENAI001 // ChatCompletionOptions.Seed is marked experimental by the client

namespace IlgpuLlm.Tests.Server;

/// <summary>
/// serve, through the official OpenAI .NET client (and Microsoft.Extensions.AI's IChatClient over
/// it) on loopback: whole and streamed replies equal the library's, invalid requests are 400s with
/// OpenAI's error object and leave no slot behind, a client that cancels leaves the batch, metrics,
/// and the guarantee: a seeded or greedy request returns the same text and log-probabilities alone,
/// among concurrent requests of other lengths, and after others used its slot.
/// </summary>
public sealed class OpenAiServerTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    const string Once = "Once upon a time";

    ChatClient Chat(string model = ServerFixture.ModelName) => fixture.Client().GetChatClient(model);

    static ChatCompletionOptions Options(int tokens, float temperature = 0, long? seed = null, int? top = null) => new()
    {
        MaxOutputTokenCount = tokens,
        Temperature = temperature,
        Seed = seed,
        IncludeLogProbabilities = top != null ? true : null,
        TopLogProbabilityCount = top,
    };

    /// <summary>What must be identical between two runs of a request: its text and every log-probability, bit for bit.</summary>
    static string Fingerprint(string text, IEnumerable<ChatTokenLogProbabilityDetails> logProbabilities)
    {
        var entries = logProbabilities.ToList();
        var builder = new StringBuilder($"{entries.Count} log-probabilities\n").Append(text).Append('\n');
        foreach (var entry in entries)
        {
            builder.Append(entry.Token).Append(' ').Append(BitConverter.SingleToInt32Bits(entry.LogProbability)).Append(':');
            foreach (var top in entry.TopLogProbabilities)
                builder.Append(top.Token).Append('=').Append(BitConverter.SingleToInt32Bits(top.LogProbability)).Append(',');
            builder.Append('\n');
        }
        return builder.ToString();
    }

    async Task<string> Whole(string user, ChatCompletionOptions options)
    {
        ChatCompletion completion = await Chat().CompleteChatAsync([new UserChatMessage(user)], options);
        return Fingerprint(completion.Content.Count > 0 ? completion.Content[0].Text : "", completion.ContentTokenLogProbabilities);
    }

    async Task<string> Streamed(string user, ChatCompletionOptions options)
    {
        var text = new StringBuilder();
        var logProbabilities = new List<ChatTokenLogProbabilityDetails>();
        await foreach (var update in Chat().CompleteChatStreamingAsync([new UserChatMessage(user)], options))
        {
            foreach (var part in update.ContentUpdate)
                text.Append(part.Text);
            logProbabilities.AddRange(update.ContentTokenLogProbabilities);
        }
        return Fingerprint(text.ToString(), logProbabilities);
    }

    [Fact]
    public async Task Whole_and_streamed_replies_equal_the_library_s_with_usage()
    {
        ChatCompletion completion = await Chat().CompleteChatAsync([new UserChatMessage("Tell me a story")], Options(24));
        var library = fixture.Model.Generate([Prompt.FromMessages([Model.Tokenizers.ChatMessage.User("Tell me a story")])],
            new GenerationOptions { MaxNewTokens = 24, Sampling = Runtime.Generation.SamplerSettings.Greedy })[0];
        Assert.Equal(library.Text, completion.Content[0].Text);
        Assert.Equal(library.Usage.PromptTokens, completion.Usage.InputTokenCount);
        Assert.Equal(library.Tokens.Count, completion.Usage.OutputTokenCount);
        Assert.Equal(library.FinishReason == Runtime.Generation.FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop, completion.FinishReason);

        var text = new StringBuilder();
        ChatTokenUsage? usage = null;
        ChatFinishReason? reason = null;
        int updates = 0;
        await foreach (var update in Chat().CompleteChatStreamingAsync([new UserChatMessage("Tell me a story")], Options(24)))
        {
            updates++;
            foreach (var part in update.ContentUpdate)
                text.Append(part.Text);
            usage ??= update.Usage;
            reason ??= update.FinishReason;
        }
        Assert.Equal(library.Text, text.ToString());
        Assert.True(updates > 5, $"{updates} updates: the reply was not streamed");
        Assert.Equal(completion.Usage.TotalTokenCount, usage!.TotalTokenCount);
        Assert.Equal(completion.FinishReason, reason);

        // A stop sequence ends the text before it, as OpenAI's does.
        var stopped = await Chat().CompleteChatAsync([new UserChatMessage("Tell me a story")],
            new ChatCompletionOptions { MaxOutputTokenCount = 24, Temperature = 0, StopSequences = { library.Text[5..9] } });
        Assert.Equal(library.Text[..library.Text.IndexOf(library.Text[5..9], StringComparison.Ordinal)], stopped.Value.Content.FirstOrDefault()?.Text ?? "");
        Assert.Equal(ChatFinishReason.Stop, stopped.Value.FinishReason);
    }

    [Fact]
    public async Task The_models_list_and_microsoft_extensions_ai_over_the_client_work()
    {
        var models = await fixture.Client().GetOpenAIModelClient().GetModelsAsync();
        Assert.Equal([ServerFixture.ModelName], models.Value.Select(m => m.Id));

        IChatClient client = Chat().AsIChatClient();
        var options = new ChatOptions { MaxOutputTokens = 16, Temperature = 0 };
        var response = await client.GetResponseAsync("Tell me a story", options);
        var streamed = new StringBuilder();
        await foreach (var update in client.GetStreamingResponseAsync("Tell me a story", options))
            streamed.Append(update.Text);
        Assert.False(string.IsNullOrEmpty(response.Text));
        Assert.Equal(response.Text, streamed.ToString());
        Assert.Equal(16, response.Usage!.OutputTokenCount);
    }

    [Fact]
    public async Task Seeded_and_greedy_requests_return_the_same_text_and_log_probabilities_alone_and_among_others()
    {
        var seeded = Options(40, temperature: 0.9f, seed: 42, top: 3);
        var greedy = Options(30, top: 2);
        string seededAlone = await Whole("Tell me a story", seeded);
        string greedyAlone = await Whole("Lily", greedy);
        Assert.StartsWith("40 log-probabilities\n", seededAlone);
        Assert.StartsWith("30 log-probabilities\n", greedyAlone);
        Assert.Contains("=", seededAlone); // the alternatives are there too
        Assert.NotEqual(seededAlone, await Whole("Tell me a story", Options(40, temperature: 0.9f, seed: 43, top: 3)));

        // Among concurrent requests of other lengths and seeds, more than the slots hold, so some wait
        // and take slots that others used before; streamed and whole alike.
        for (int round = 0; round < 2; round++)
        {
            var others = Enumerable.Range(0, 5).Select(i => Streamed(i % 2 == 0 ? "The cat" : "A big red ball and a small dog went to the park",
                Options(10 + 17 * i, temperature: 1f, seed: 100 + i + round))).ToList();
            var seededTogether = round == 0 ? Whole("Tell me a story", seeded) : Streamed("Tell me a story", seeded);
            var greedyTogether = round == 0 ? Streamed("Lily", greedy) : Whole("Lily", greedy);
            await Task.WhenAll(others);
            Assert.Equal(seededAlone, await seededTogether);
            Assert.Equal(greedyAlone, await greedyTogether);
        }

        // After others used every slot, alone again.
        Assert.Equal(seededAlone, await Streamed("Tell me a story", seeded));
        Assert.Equal(greedyAlone, await Whole("Lily", greedy));
        await ServerFixture.Until(() => fixture.Model.Status.Running == 0, "every request left the batch");
    }

    [Fact]
    public async Task A_request_without_a_seed_reports_the_one_it_drew_with_and_repeats_with_it()
    {
        var first = await fixture.Http.PostAsync("/v1/completions", Json(new { prompt = Once, max_tokens = 12, temperature = 1.0 }));
        var body = JsonDocument.Parse(await first.Content.ReadAsStringAsync()).RootElement;
        ulong seed = body.GetProperty("seed").GetUInt64();
        var again = await fixture.Http.PostAsync("/v1/completions", Json(new { prompt = Once, max_tokens = 12, temperature = 1.0, seed }));
        var repeated = JsonDocument.Parse(await again.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(Text(body), Text(repeated));
        Assert.Equal("text_completion", body.GetProperty("object").GetString());
        Assert.Equal(12, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        // Completions' log-probabilities in their legacy form, one entry per token.
        var withLogProbabilities = await fixture.Http.PostAsync("/v1/completions", Json(new { prompt = Once, max_tokens = 5, temperature = 0, logprobs = 2 }));
        var logprobs = JsonDocument.Parse(await withLogProbabilities.Content.ReadAsStringAsync()).RootElement
            .GetProperty("choices")[0].GetProperty("logprobs");
        Assert.Equal(5, logprobs.GetProperty("token_logprobs").GetArrayLength());
        Assert.All(logprobs.GetProperty("top_logprobs").EnumerateArray(), top => Assert.Equal(2, top.EnumerateObject().Count()));
        Assert.Equal(", there was a little", string.Concat(logprobs.GetProperty("tokens").EnumerateArray().Select(t => t.GetString())));

        static string Text(JsonElement response) => response.GetProperty("choices")[0].GetProperty("text").GetString()!;
    }

    static StringContent Json(object body) => new(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");

    [Theory]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"model\": \"gpt-4\"}", "model", "model_not_found")]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"max_tokens\": 0}", "max_tokens", null)]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"max_completion_tokens\": -3}", "max_completion_tokens", null)]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": -1}", "temperature", null)]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": \"NaN\"}", "temperature", null)]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"top_p\": 0}", "top_p", null)]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"top_p\": 1.5}", "top_p", null)]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"frequency_penalty\": 0.5}", "frequency_penalty", null)]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"n\": 2}", "n", null)]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"stop\": 7}", "stop", null)]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"top_logprobs\": 3}", "top_logprobs", null)]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"seed\": \"x\"}", "seed", null)]
    [InlineData("{\"messages\": []}", "messages", null)]
    [InlineData("{\"messages\": \"Hi\"}", "messages", null)]
    [InlineData("{\"messages\": [{\"role\": \"tool\", \"content\": \"Hi\"}]}", "messages[0].role", null)]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", "messages[0].content", null)]
    [InlineData("{\"prompt\": \"x\"}", "messages", null)]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"max_tokens\": 1.5}", "max_tokens", null)]
    [InlineData("[1, 2]", null, null)]
    [InlineData("{\"messages\": [{\"role\": \"user\", ", null, null)]
    public async Task Invalid_chat_requests_are_400s_with_openai_s_error_object(string body, string? param, string? code)
    {
        var response = await fixture.Http.PostAsync("/v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        await AssertError(response, param, code);
    }

    [Theory]
    [InlineData("{\"prompt\": 5}", "prompt")]
    [InlineData("{\"prompt\": [\"a\", \"b\"]}", "prompt")]
    [InlineData("{\"prompt\": [1, 600]}", "prompt")]
    [InlineData("{\"prompt\": \"x\", \"logprobs\": 9}", "logprobs")]
    [InlineData("{\"prompt\": \"x\", \"echo\": true}", "echo")]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}", "prompt")]
    public async Task Invalid_completion_requests_are_400s(string body, string param)
    {
        var response = await fixture.Http.PostAsync("/v1/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        await AssertError(response, param, null);
    }

    async Task AssertError(HttpResponseMessage response, string? param, string? code)
    {
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.Equal(0, fixture.Model.Status.Running + fixture.Model.Status.Waiting);
    }

    [Fact]
    public async Task The_official_client_sees_400s_for_a_prompt_past_the_context_and_bad_options_and_no_slot_is_left_behind()
    {
        var tooLong = await Assert.ThrowsAsync<ClientResultException>(() =>
            Chat().CompleteChatAsync([new UserChatMessage(string.Join(" ", Enumerable.Repeat("Once upon a time", 200)))], Options(4)));
        Assert.Equal(400, tooLong.Status);
        Assert.Contains("context", tooLong.Message);
        var unknown = await Assert.ThrowsAsync<ClientResultException>(() => Chat("gpt-4o").CompleteChatAsync([new UserChatMessage("Hi")], Options(4)));
        Assert.Equal(400, unknown.Status);
        var temperature = await Assert.ThrowsAsync<ClientResultException>(() => Chat().CompleteChatAsync([new UserChatMessage("Hi")], Options(4, temperature: -0.5f)));
        Assert.Equal(400, temperature.Status);
        Assert.Equal(0, fixture.Model.Status.Running + fixture.Model.Status.Waiting);
        var fine = await Chat().CompleteChatAsync([new UserChatMessage("Hi")], Options(4));
        Assert.Equal(4, fine.Value.Usage.OutputTokenCount);
    }

    [Fact]
    public async Task A_client_that_cancels_mid_stream_leaves_the_batch_and_the_server_goes_on()
    {
        using var cancellation = new CancellationTokenSource();
        int updates = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var update in Chat().CompleteChatStreamingAsync([new UserChatMessage("Tell me a long story")], Options(480), cancellation.Token))
                if (++updates == 3)
                    cancellation.Cancel();
        });
        await ServerFixture.Until(() => fixture.Model.Status.Running == 0, "the cancelled request left the batch");
        var metrics = await fixture.Http.GetStringAsync("/metrics");
        Assert.Contains("ilgpullm_requests_failed_total{cause=\"cancelled\"", metrics);
        var after = await Chat().CompleteChatAsync([new UserChatMessage("Hi")], Options(6));
        Assert.Equal(6, after.Value.Usage.OutputTokenCount);
    }

    [Fact]
    public async Task Metrics_are_prometheus_text_with_the_gauges_routers_read_and_token_counters()
    {
        await Chat().CompleteChatAsync([new UserChatMessage("Hi")], Options(5));
        var response = await fixture.Http.GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType!.ToString());
        var text = await response.Content.ReadAsStringAsync();
        foreach (var name in new[] { "ilgpullm_num_requests_waiting", "ilgpullm_num_requests_running", "ilgpullm_kv_cache_usage_perc" })
            Assert.Contains($"# TYPE {name} gauge", text);
        foreach (var name in new[] { "ilgpullm_time_to_first_token_seconds", "ilgpullm_inter_token_latency_seconds", "ilgpullm_e2e_request_latency_seconds" })
            Assert.Contains($"# TYPE {name} histogram", text);
        Assert.True(Value(text, "ilgpullm_generation_tokens_total") >= 5);
        Assert.True(Value(text, "ilgpullm_prompt_tokens_total") > 0);
        Assert.True(Value(text, "ilgpullm_time_to_first_token_seconds_count") >= 1);
        Assert.Equal(200, (int)(await fixture.Http.GetAsync("/health")).StatusCode);
    }

    /// <summary>The value of the first sample of a metric (its labels ignored).</summary>
    internal static double Value(string metrics, string name) =>
        double.Parse(metrics.Split('\n').First(line => line.StartsWith(name + "{", StringComparison.Ordinal) || line.StartsWith(name + " ", StringComparison.Ordinal))
            .Split(' ')[^1], System.Globalization.CultureInfo.InvariantCulture);
}
