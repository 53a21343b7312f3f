using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using IlgpuLlm.Runtime.Generation;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace IlgpuLlm.Server;

/// <summary>
/// An OpenAI-compatible HTTP server over one <see cref="LanguageModel"/>: <c>POST /v1/chat/completions</c>
/// and <c>POST /v1/completions</c> (whole or streamed as server-sent events), <c>GET /v1/models</c>,
/// <c>GET /health</c> (503 while the model loads) and <c>GET /metrics</c> (Prometheus). Every request
/// is a request to the model's scheduler, so concurrent requests run in one continuously batched
/// step; a client that disconnects leaves the batch before the next step; a full queue is a 503 with
/// Retry-After. A request with a seed (and every greedy one) returns the same text and
/// log-probabilities alone or among any others.
/// </summary>
public sealed class OpenAiServer : IAsyncDisposable
{
    readonly WebApplication app;
    readonly ServerOptions options;
    readonly Task<LanguageModel> loading;
    readonly ServerMetrics metrics;
    readonly long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    OpenAiServer(ServerOptions options, Func<LanguageModel> load, Action<ILoggingBuilder>? logging)
    {
        options.Validate();
        this.options = options;
        // The model loads beside the listening server, so /health can say 503 until it is ready.
        loading = Task.Run(load);
        metrics = new ServerMetrics(options.ModelName, () => loading.IsCompletedSuccessfully ? loading.Result.Status : null);

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        logging?.Invoke(builder.Logging);
        builder.WebHost.UseKestrel(kestrel =>
        {
            if (options.Host == "localhost")
                kestrel.ListenLocalhost(options.Port);
            else
                kestrel.Listen(IPAddress.Parse(options.Host), options.Port);
        });
        app = builder.Build();
        app.Use(Guard);
        app.MapGet("/health", Health);
        app.MapGet("/v1/models", Models);
        app.MapPost("/v1/chat/completions", context => Complete(context, chat: true));
        app.MapPost("/v1/completions", context => Complete(context, chat: false));
        app.MapMetrics("/metrics", metrics.Registry);
    }

    /// <summary>Starts listening; the model loads meanwhile (<paramref name="load"/> runs on the thread pool).</summary>
    public static async Task<OpenAiServer> StartAsync(ServerOptions options, Func<LanguageModel> load, Action<ILoggingBuilder>? logging = null,
        CancellationToken cancellationToken = default)
    {
        var server = new OpenAiServer(options, load, logging);
        await server.app.StartAsync(cancellationToken).ConfigureAwait(false);
        return server;
    }

    /// <summary>Where the server listens (with the port picked when <see cref="ServerOptions.Port"/> was 0).</summary>
    public Uri Address => new(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());

    /// <summary>The model once it has loaded (its failure, if loading failed).</summary>
    public Task<LanguageModel> Model => loading;

    public ServerMetrics Metrics => metrics;

    /// <summary>Waits until the server is stopped (Ctrl-C, SIGTERM).</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) => Microsoft.Extensions.Hosting.HostingAbstractionsHostExtensions.WaitForShutdownAsync(app, cancellationToken);

    /// <summary>The API key for /v1, and 503 while the model loads.</summary>
    async Task Guard(HttpContext context, RequestDelegate next)
    {
        var path = context.Request.Path;
        if (path.StartsWithSegments("/v1"))
        {
            if (options.ApiKey is string key && context.Request.Headers.Authorization.ToString() != "Bearer " + key)
            {
                await WriteError(context, new OpenAiError(401, "a valid API key is required: send it as Authorization: Bearer <key>",
                    type: "invalid_request_error", code: "invalid_api_key")).ConfigureAwait(false);
                return;
            }
            if (!loading.IsCompleted)
            {
                context.Response.Headers.RetryAfter = options.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
                await WriteError(context, new OpenAiError(503, "the model is loading; try again shortly", type: "server_error", code: "model_loading")).ConfigureAwait(false);
                return;
            }
            if (loading.IsFaulted)
            {
                await WriteError(context, new OpenAiError(503, $"the model failed to load: {loading.Exception!.InnerException!.Message}",
                    type: "server_error", code: "model_failed")).ConfigureAwait(false);
                return;
            }
        }
        await next(context).ConfigureAwait(false);
    }

    Task Health(HttpContext context)
    {
        if (loading.IsCompletedSuccessfully)
            return Json(context, 200, new JsonObject { ["status"] = "ok" });
        context.Response.Headers.RetryAfter = options.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return loading.IsFaulted
            ? Json(context, 503, new JsonObject { ["status"] = "error", ["message"] = loading.Exception!.InnerException!.Message })
            : Json(context, 503, new JsonObject { ["status"] = "loading" });
    }

    Task Models(HttpContext context) => Json(context, 200, new JsonObject
    {
        ["object"] = "list",
        ["data"] = new JsonArray(new JsonObject
        {
            ["id"] = options.ModelName,
            ["object"] = "model",
            ["created"] = created,
            ["owned_by"] = "ilgpullm",
            ["meta"] = new JsonObject
            {
                ["n_ctx"] = loading.Result.ContextLength,
                ["slots"] = loading.Result.Slots,
                ["device"] = loading.Result.Device,
            },
        }),
    });

    async Task Complete(HttpContext context, bool chat)
    {
        var arrival = Stopwatch.StartNew();
        var model = loading.Result;
        CompletionRequest request;
        Prompt prompt;
        IAsyncEnumerable<GenerationPiece> pieces;
        try
        {
            JsonElement body;
            try
            {
                using var document = await JsonDocument.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted).ConfigureAwait(false);
                body = document.RootElement.Clone();
            }
            catch (JsonException e)
            {
                throw OpenAiError.Invalid($"the request body is not valid JSON: {e.Message}");
            }
            request = CompletionRequest.Parse(body, chat, model.ContextLength);
            if (request.Model is string name && name != options.ModelName)
                throw new OpenAiError(400, $"model '{name}' is not served here; this server serves '{options.ModelName}'",
                    param: "model", code: "model_not_found");
            prompt = request.Prompt;
            pieces = model.GenerateAsync(prompt, request.Options, context.RequestAborted);
        }
        catch (OpenAiError error)
        {
            await WriteError(context, error).ConfigureAwait(false);
            return;
        }
        catch (PromptTooLongException e)
        {
            await WriteError(context, OpenAiError.Invalid(
                $"the prompt is {e.Length} tokens long; the context holds {e.Limit} positions", chat ? "messages" : "prompt", "context_length_exceeded")).ConfigureAwait(false);
            return;
        }
        catch (ArgumentException e)
        {
            // The template's rules (alternating roles), a token id outside the vocabulary, an empty prompt without BOS.
            await WriteError(context, OpenAiError.Invalid(e.Message.Replace($" (Parameter '{e.ParamName}')", "", StringComparison.Ordinal),
                chat ? "messages" : "prompt")).ConfigureAwait(false);
            return;
        }

        var response = new Response(request, chat, options.ModelName, model.Tokenizer);
        var stream = new StreamWriter(context, response, request, metrics, arrival);
        try
        {
            await foreach (var piece in pieces.ConfigureAwait(false))
                await stream.Add(piece).ConfigureAwait(false);
            await stream.End().ConfigureAwait(false);
        }
        catch (QueueFullException e)
        {
            metrics.FailedRequests.WithLabels("queue_full").Inc();
            context.Response.Headers.RetryAfter = options.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            await WriteError(context, new OpenAiError(503, e.Message, type: "server_error", code: "queue_full")).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client left; its request left the batch before the next step.
            metrics.FailedRequests.WithLabels("cancelled").Inc();
        }
        catch (GenerationException e)
        {
            metrics.FailedRequests.WithLabels("error").Inc();
            await stream.Fail(new OpenAiError(500, e.Message, type: "server_error", code: "generation_failed")).ConfigureAwait(false);
        }
    }

    /// <summary>Writes the pieces out: one JSON response at the end, or an event per piece.</summary>
    sealed class StreamWriter(HttpContext context, Response response, CompletionRequest request, ServerMetrics metrics, Stopwatch arrival)
    {
        readonly StringBuilder text = new();
        readonly List<TokenLogProbability> logProbabilities = [];
        TimeSpan lastToken;
        int tokens;
        bool started;
        GenerationPiece? last;

        public async Task Add(GenerationPiece piece)
        {
            if (piece.Token != null)
            {
                var now = arrival.Elapsed;
                if (tokens++ == 0)
                    metrics.TimeToFirstToken.Observe(now.TotalSeconds);
                else
                    metrics.InterTokenLatency.Observe((now - lastToken).TotalSeconds);
                lastToken = now;
                metrics.GeneratedTokens.Inc();
            }
            if (piece.LogProbability is { } logProbability)
                logProbabilities.Add(logProbability);
            last = piece;
            if (!request.Stream)
            {
                text.Append(piece.Text);
                return;
            }
            if (!started)
                await Start().ConfigureAwait(false);
            if (piece.FinishReason == null && (piece.Text.Length > 0 || piece.LogProbability != null))
                await Event(response.Chunk(piece.Text, piece.LogProbability is { } lp ? [lp] : [], finishReason: null, usage: null)).ConfigureAwait(false);
            else if (piece.FinishReason != null && piece.Text.Length > 0)
                await Event(response.Chunk(piece.Text, [], finishReason: null, usage: null)).ConfigureAwait(false);
        }

        async Task Start()
        {
            started = true;
            context.Response.StatusCode = 200;
            context.Response.ContentType = "text/event-stream";
            context.Response.Headers.CacheControl = "no-cache";
            await Event(response.FirstChunk()).ConfigureAwait(false);
        }

        public async Task End()
        {
            var usage = last!.Usage!;
            metrics.PromptTokens.Inc(usage.PromptTokens);
            metrics.FinishedRequests.WithLabels(Response.Reason(last.FinishReason)).Inc();
            metrics.RequestLatency.Observe(arrival.Elapsed.TotalSeconds);
            if (!request.Stream)
            {
                await Json(context, 200, response.Whole(text.ToString(), logProbabilities, last.FinishReason, usage)).ConfigureAwait(false);
                return;
            }
            if (!started)
                await Start().ConfigureAwait(false);
            await Event(response.Chunk("", [], last.FinishReason, usage)).ConfigureAwait(false);
            if (request.IncludeUsageChunk)
                await Event(response.UsageChunk(usage)).ConfigureAwait(false);
            await context.Response.WriteAsync("data: [DONE]\n\n", context.RequestAborted).ConfigureAwait(false);
            await context.Response.Body.FlushAsync(context.RequestAborted).ConfigureAwait(false);
        }

        /// <summary>A failure after the stream began is an error event (the status is already sent), then the end.</summary>
        public async Task Fail(OpenAiError error)
        {
            if (!started)
            {
                await WriteError(context, error).ConfigureAwait(false);
                return;
            }
            await Event(error.ToJson()).ConfigureAwait(false);
            await context.Response.WriteAsync("data: [DONE]\n\n", context.RequestAborted).ConfigureAwait(false);
        }

        async Task Event(JsonNode data)
        {
            await context.Response.WriteAsync("data: " + data.ToJsonString() + "\n\n", context.RequestAborted).ConfigureAwait(false);
            await context.Response.Body.FlushAsync(context.RequestAborted).ConfigureAwait(false);
        }
    }

    static Task WriteError(HttpContext context, OpenAiError error) => Json(context, error.Status, error.ToJson());

    static async Task Json(HttpContext context, int status, JsonNode body)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(body.ToJsonString(), context.RequestAborted).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync().ConfigureAwait(false);
        await app.DisposeAsync().ConfigureAwait(false);
        try
        {
            (await loading.ConfigureAwait(false)).Dispose();
        }
        catch (Exception)
        {
            // A model that failed to load has nothing to free.
        }
    }
}
