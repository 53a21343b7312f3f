using System.CommandLine;
using IlgpuLlm.Model.Tokenizers;

namespace IlgpuLlm.Cli.Commands;

/// <summary>
/// <c>chat</c>: a conversation at the terminal with the model's chat template. The history stays in
/// the KV cache between turns (only what a turn adds is prefilled); replies stream as they are
/// generated; <c>/clear</c> forgets the conversation, <c>/exit</c> (or end of input) leaves, and
/// Ctrl-C stops the current reply without leaving.
/// </summary>
public static class ChatCommand
{
    public const string Name = "chat";

    public static Command Create()
    {
        var model = new ModelOptions();
        var system = new Option<string?>("--system", "-sys") { Description = "System prompt" };
        var template = new Option<string?>("--chat-template")
        {
            Description = $"Chat format (default: from the model): {string.Join(", ", ChatTemplate.Names)}",
        };
        template.Validators.Add(result =>
        {
            if (result.Tokens.Count > 0 && !ChatTemplate.Names.Contains(result.Tokens[^1].Value.Trim().ToLowerInvariant()))
                result.AddError($"--chat-template '{result.Tokens[^1].Value}' is not one of {string.Join(", ", ChatTemplate.Names)}");
        });
        var maxNewTokens = NumberOptions.Int("--n-predict", ["-n"], "Tokens per reply at most", Accepts<int>.AtLeast(1), 512);
        var verbosePrompt = new Option<bool>("--verbose-prompt") { Description = "Show each turn's prompt as the chat template renders it, and how much of it the cache already held (stderr)" };
        var sampling = new SamplingOptions();

        var command = new Command(Name, "Chat with the model: type a message, get a streamed reply; /clear forgets, /exit leaves, Ctrl-C stops a reply");
        model.AddTo(command);
        foreach (var option in new Option[] { system, template, maxNewTokens, verbosePrompt })
            command.Options.Add(option);
        sampling.AddTo(command);

        command.SetAction(async (parse, cancellation) =>
        {
            model.CheckPaths(parse);
            var generation = sampling.Generation(parse, parse.GetValue(maxNewTokens), []);
            using var llm = model.OpenLanguageModel(parse, slots: 1, parse.GetValue(template));
            _ = llm.ChatTemplate; // a vocabulary without the template's tokens fails here, before the first turn
            var repl = new ChatRepl(llm, generation, parse.GetValue(system), parse.GetValue(verbosePrompt));
            // Ctrl-C stops the reply in progress; between replies it leaves, as it does elsewhere.
            ConsoleCancelEventHandler interrupt = (_, e) => e.Cancel = repl.Interrupt();
            Console.CancelKeyPress += interrupt;
            try
            {
                return await repl.RunAsync(Console.In, Console.Out, Console.Error, cancellation);
            }
            finally
            {
                Console.CancelKeyPress -= interrupt;
            }
        });
        return command;
    }
}

/// <summary>The read–reply loop of <c>chat</c>, on any reader and writers (tests drive it in-process).</summary>
public sealed class ChatRepl(LanguageModel model, GenerationOptions generation, string? systemPrompt, bool verbosePrompt)
{
    readonly Lock gate = new();
    CancellationTokenSource? reply;

    /// <summary>Stops the reply in progress; false when none is (then Ctrl-C does what it does elsewhere).</summary>
    public bool Interrupt()
    {
        lock (gate)
        {
            if (reply == null)
                return false;
            reply.Cancel();
            return true;
        }
    }

    public async Task<int> RunAsync(TextReader input, TextWriter output, TextWriter error, CancellationToken cancellation)
    {
        using var conversation = model.StartConversation(systemPrompt);
        error.WriteLine("chat: type a message; /clear forgets the conversation, /exit leaves, Ctrl-C stops a reply");
        while (!cancellation.IsCancellationRequested)
        {
            output.Write("> ");
            output.Flush();
            var line = await input.ReadLineAsync(cancellation);
            if (line == null)
                break;
            line = line.Trim();
            if (line.Length == 0)
                continue;
            if (line == "/exit")
                break;
            if (line == "/clear")
            {
                conversation.Clear();
                error.WriteLine("(conversation cleared)");
                continue;
            }
            await Reply(conversation, line, output, error, cancellation);
        }
        return 0;
    }

    async Task Reply(Conversation conversation, string message, TextWriter output, TextWriter error, CancellationToken cancellation)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        lock (gate)
            reply = stop;
        var writer = new TerminalText.Writer(output);
        GenerationPiece? last = null;
        try
        {
            bool first = true;
            await foreach (var piece in conversation.SendAsync(message, generation, stop.Token))
            {
                if (first && verbosePrompt)
                    error.WriteLine($"prompt:\n{conversation.RenderedPrompt}");
                first = false;
                writer.Write(piece.Text);
                writer.Flush();
                last = piece;
            }
        }
        catch (OperationCanceledException) when (!cancellation.IsCancellationRequested)
        {
            writer.WriteLine();
            writer.Finish();
            error.WriteLine("(reply stopped)");
            return;
        }
        catch (GenerationException e)
        {
            writer.WriteLine();
            writer.Finish();
            error.WriteLine($"error: {TerminalText.Line(e.Message)}");
            return;
        }
        finally
        {
            lock (gate)
                reply = null;
        }
        writer.WriteLine();
        writer.Finish();
        if (verbosePrompt && last?.Usage is { } usage)
            error.WriteLine($"(prompt {usage.PromptTokens} tokens, {usage.ReusedPromptTokens} of them already in the cache; {usage.GeneratedTokens} generated)");
        if (last?.FinishReason == Runtime.Generation.FinishReason.Length && last.Message != null)
            error.WriteLine($"note: {TerminalText.Line(last.Message)}");
    }
}
