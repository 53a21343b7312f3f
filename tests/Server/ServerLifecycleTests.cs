using System.ClientModel;
using System.Net;
using System.Text;
using IlgpuLlm.Server;
using IlgpuLlm.Tests.Support;
using OpenAI.Chat;

namespace IlgpuLlm.Tests.Server;

/// <summary>
/// serve around its requests: /health is 503 until the model has loaded, the API key guards /v1
/// (not the probes), a full queue answers 503 with Retry-After and the waiting gauge shows the
/// queue, and the serve command refuses bad options as usage errors.
/// </summary>
public sealed class ServerLifecycleTests
{
    static StringContent Body(string json) => new(json, Encoding.UTF8, "application/json");

    [Fact]
    public async Task Health_is_503_while_the_model_loads_and_the_api_key_guards_v1_only()
    {
        using var loaded = new ManualResetEventSlim();
        await using var server = await ServerFixture.Start(new ServerOptions { Port = 0, ModelName = "tiny", ApiKey = "sesame" }, () =>
        {
            loaded.Wait(TimeSpan.FromSeconds(30));
            return LanguageModel.Load(ServerFixture.Stories, new LanguageModelOptions { Threads = 1 });
        });
        using var http = new HttpClient { BaseAddress = server.Address };
        var loading = await http.GetAsync("/health");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, loading.StatusCode);
        Assert.Contains("loading", await loading.Content.ReadAsStringAsync());
        Assert.NotNull(loading.Headers.RetryAfter);
        using (var request = new HttpRequestMessage(HttpMethod.Get, "/v1/models") { Headers = { { "Authorization", "Bearer sesame" } } })
            Assert.Equal(HttpStatusCode.ServiceUnavailable, (await http.SendAsync(request)).StatusCode);

        loaded.Set();
        await server.Model;
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/metrics")).StatusCode);
        var refused = await http.PostAsync("/v1/chat/completions", Body("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}"));
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        Assert.Contains("invalid_api_key", await refused.Content.ReadAsStringAsync());
        var wrongKey = await Assert.ThrowsAsync<ClientResultException>(() =>
            ServerFixture.Client(server, "open").GetChatClient("tiny").CompleteChatAsync([new UserChatMessage("Hi")], new ChatCompletionOptions { MaxOutputTokenCount = 2 }));
        Assert.Equal(401, wrongKey.Status);
        var answered = await ServerFixture.Client(server, "sesame").GetChatClient("tiny")
            .CompleteChatAsync([new UserChatMessage("Hi")], new ChatCompletionOptions { MaxOutputTokenCount = 2 });
        Assert.Equal(2, answered.Value.Usage.OutputTokenCount);
    }

    [Fact]
    public async Task A_full_queue_answers_503_with_retry_after_and_the_waiting_request_runs_when_a_slot_frees()
    {
        // ILGPU's CPU accelerator is slow enough that a long reply holds the only slot while the test looks.
        await using var server = await ServerFixture.Start(new ServerOptions { Port = 0, ModelName = "tiny" },
            () => LanguageModel.Load(ServerFixture.Stories, new LanguageModelOptions { Device = ComputeDevice.IlgpuCpu, Threads = 1, Slots = 1, MaxWaiting = 1 }));
        var model = await server.Model;
        using var http = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(120) };

        using var holding = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = Body("{\"prompt\": \"Once\", \"max_tokens\": 500, \"stream\": true}") };
        using var held = await http.SendAsync(holding, HttpCompletionOption.ResponseHeadersRead);
        using var events = new StreamReader(await held.Content.ReadAsStreamAsync());
        Assert.StartsWith("data: ", await events.ReadLineAsync());
        Assert.Equal(1, model.Status.Running);

        var waiting = http.PostAsync("/v1/completions", Body("{\"prompt\": \"Once upon a time\", \"max_tokens\": 3, \"temperature\": 0}"));
        await ServerFixture.Until(() => model.Status.Waiting == 1, "the request waits for the slot");
        Assert.Equal(1, OpenAiServerTests.Value(await http.GetStringAsync("/metrics"), "ilgpullm_num_requests_waiting"));
        Assert.True(OpenAiServerTests.Value(await http.GetStringAsync("/metrics"), "ilgpullm_kv_cache_usage_perc") > 0);

        var refused = await http.PostAsync("/v1/completions", Body("{\"prompt\": \"The cat\", \"max_tokens\": 3}"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
        Assert.Equal(TimeSpan.FromSeconds(1), refused.Headers.RetryAfter!.Delta);
        Assert.Contains("queue_full", await refused.Content.ReadAsStringAsync());

        // The long reply's client leaves: its slot goes to the waiting request.
        held.Dispose();
        var answer = await waiting;
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        Assert.Contains("\", there was\"", (await answer.Content.ReadAsStringAsync()).Replace("\"text\":", "", StringComparison.Ordinal));
        await ServerFixture.Until(() => model.Status.Waiting + model.Status.Running == 0, "no request is left");
    }

    [Fact]
    public void The_serve_command_refuses_bad_options_before_loading()
    {
        InProcessCli.AssertOneLineError(InProcessCli.Run("serve", "--port", "70000"), 2, "--port 70000 is out of range");
        InProcessCli.AssertOneLineError(InProcessCli.Run("serve", "--parallel", "0"), 2, "--parallel 0 is out of range");
        InProcessCli.AssertOneLineError(InProcessCli.Run("serve", "--api-key", ""), 2, "--api-key");
        InProcessCli.AssertOneLineError(InProcessCli.Run("serve", "--host", "not an address", "--port", "0"), 2, "host 'not an address'");
    }
}
