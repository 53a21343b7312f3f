using System.ClientModel;
using System.ClientModel.Primitives;
using IlgpuLlm.Server;
using IlgpuLlm.Tests.EndToEnd;
using OpenAI;

namespace IlgpuLlm.Tests.Server;

/// <summary>
/// One server on a free loopback port over stories260K with 4 slots, shared by a test class; the
/// official OpenAI client pointed at it (without retries, so a refusal is seen as it is).
/// </summary>
public sealed class ServerFixture : IAsyncLifetime
{
    public const string ModelName = "stories260K";
    public static readonly string Stories = References.Stories("stories260K.bin");

    public OpenAiServer Server { get; private set; } = null!;
    public LanguageModel Model => Server.Model.Result;
    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromSeconds(60) };

    public async Task InitializeAsync()
    {
        Server = await Start(new ServerOptions { Host = "127.0.0.1", Port = 0, ModelName = ModelName },
            () => LanguageModel.Load(Stories, new LanguageModelOptions { Threads = 2, Slots = 4, MaxWaiting = 32 }));
        await Server.Model;
        Http.BaseAddress = Server.Address;
    }

    public static Task<OpenAiServer> Start(ServerOptions options, Func<LanguageModel> load) => OpenAiServer.StartAsync(options, load);

    public OpenAIClient Client(string key = "unused") => Client(Server, key);

    public static OpenAIClient Client(OpenAiServer server, string key = "unused") =>
        new(new ApiKeyCredential(key), new OpenAIClientOptions
        {
            Endpoint = new Uri(server.Address, "v1"),
            RetryPolicy = new ClientRetryPolicy(maxRetries: 0),
            NetworkTimeout = TimeSpan.FromSeconds(60),
        });

    /// <summary>Waits (bounded) until the scheduler shows what a test expects: no request left behind, a request queued.</summary>
    public static async Task Until(Func<bool> condition, string what)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(20))
                Assert.Fail($"timed out waiting until {what}");
            await Task.Delay(10);
        }
    }

    public async Task DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
    }
}
