using System.CommandLine;
using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Server;

namespace IlgpuLlm.Cli.Commands;

/// <summary>
/// <c>serve</c>: an OpenAI-compatible HTTP server (chat and text completions, models, health,
/// Prometheus metrics) with continuous batching over <c>--parallel</c> slots. Options are named as
/// llama-server names them.
/// </summary>
public static class ServeCommand
{
    public static Command Create()
    {
        var model = new ModelOptions();
        var host = new Option<string>("--host") { Description = "Address to listen on (loopback unless you say otherwise)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = NumberOptions.Int("--port", [], "Port to listen on (0: a free one, printed)", Accepts<int>.Between(0, 65535), 8080);
        var apiKey = new Option<string?>("--api-key") { Description = "Require Authorization: Bearer with this key on /v1 (401 otherwise)" };
        var parallel = NumberOptions.Int("--parallel", ["-np"], "Requests generated at once (cache slots; more wait in the queue)", Accepts<int>.Between(1, 256), 4);
        var queue = NumberOptions.Int("--queue", [], "Requests that may wait for a slot; more are answered 503 with Retry-After (0: no limit)", Accepts<int>.AtLeast(0), 64);
        var alias = new Option<string?>("--alias", "-a") { Description = "The model's id in /v1/models and in requests (default: the model file's name)" };
        var template = new Option<string?>("--chat-template")
        {
            Description = $"Chat format (default: from the model): {string.Join(", ", ChatTemplate.Names)}",
        };
        template.Validators.Add(result =>
        {
            if (result.Tokens.Count > 0 && !ChatTemplate.Names.Contains(result.Tokens[^1].Value.Trim().ToLowerInvariant()))
                result.AddError($"--chat-template '{result.Tokens[^1].Value}' is not one of {string.Join(", ", ChatTemplate.Names)}");
        });

        var command = new Command("serve", "Serve the model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models, /health, /metrics)");
        model.AddTo(command);
        foreach (var option in new Option[] { host, port, apiKey, parallel, queue, alias, template })
            command.Options.Add(option);

        command.SetAction(async (parse, cancellation) =>
        {
            model.CheckPaths(parse);
            if (parse.GetValue(apiKey) is { Length: 0 })
                throw new UsageException("--api-key needs a non-empty key");
            var path = model.ModelPath(parse);
            var options = model.LanguageModelOptions(parse, parse.GetValue(parallel), parse.GetValue(template)) with { MaxWaiting = parse.GetValue(queue) };
            var serverOptions = new ServerOptions
            {
                Host = parse.GetValue(host)!,
                Port = parse.GetValue(port),
                ApiKey = parse.GetValue(apiKey),
                ModelName = parse.GetValue(alias) ?? (path != null ? Path.GetFileName(Path.TrimEndingDirectorySeparator(path)) : "stories260K"),
            };
            try
            {
                serverOptions.Validate();
            }
            catch (ArgumentException e)
            {
                throw new UsageException(CliRunner.Describe(e));
            }
            Func<LanguageModel> load = path != null
                ? () => LanguageModel.Load(path, options)
                : () =>
                {
                    Console.Error.WriteLine(DefaultModel.Note);
                    return LanguageModel.Load(DefaultModel.Open(), options);
                };
            await using var server = await OpenAiServer.StartAsync(serverOptions, load, cancellationToken: cancellation);
            Console.Error.WriteLine($"listening on {server.Address} (model '{serverOptions.ModelName}', {options.Slots} slots, queue {options.MaxWaiting}); loading the model");
            try
            {
                var loaded = await server.Model.WaitAsync(cancellation);
                Console.Error.WriteLine($"ready: {TerminalText.Line(loaded.ToString())}");
            }
            catch (OperationCanceledException)
            {
                return 0;
            }
            try
            {
                await server.WaitForShutdownAsync(cancellation);
            }
            catch (OperationCanceledException)
            {
            }
            return 0;
        });
        return command;
    }
}
