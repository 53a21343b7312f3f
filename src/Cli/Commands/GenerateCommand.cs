using System.CommandLine;
using System.Text.Json;
using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Runtime.Generation;

namespace IlgpuLlm.Cli.Commands;

/// <summary>
/// <c>generate</c>: text from a prompt (streamed as it is produced) or from a file of prompts
/// (batched, results in input order), on any backend.
/// </summary>
public static class GenerateCommand
{
    public static Command Create()
    {
        var model = new ModelOptions();
        var prompt = new Option<string?>("--prompt", "-p") { Description = "The prompt (without one, generation starts from BOS)" };
        var promptsFile = new Option<string?>("--prompts-file") { Description = "A file with one prompt per line, generated in batches" };
        var chat = new Option<bool>("--chat") { Description = "Wrap the prompt in the model's chat template as a user message" };
        var system = new Option<string?>("--system") { Description = "System message for --chat" };
        var template = new Option<string?>("--chat-template")
        {
            Description = $"Chat format (default: from the model): {string.Join(", ", ChatTemplate.Names)}",
        };
        template.Validators.Add(result =>
        {
            if (result.Tokens.Count > 0 && !ChatTemplate.Names.Contains(result.Tokens[^1].Value.Trim().ToLowerInvariant()))
                result.AddError($"--chat-template '{result.Tokens[^1].Value}' is not one of {string.Join(", ", ChatTemplate.Names)}");
        });
        // Names as llama.cpp's; the names these options had before are kept as aliases.
        var maxNewTokens = NumberOptions.Int("--n-predict", ["-n", "--max-new-tokens"], "Tokens to generate at most", Accepts<int>.AtLeast(0), 256);
        var sampling = new SamplingOptions();
        var batchSize = NumberOptions.Int("--parallel", ["-np", "--batch-size"], "Prompts of --prompts-file generated together",
            Accepts<int>.AtLeast(1), 4);
        var outputJson = new Option<string?>("--output-json") { Description = "Write results of --prompts-file as JSON to this file ('-': stdout)" };
        var stop = new Option<string[]>("--stop") { Description = "Stop when the generated text contains this string, which is left out of the output (repeatable)" };
        stop.Validators.Add(result =>
        {
            if (result.Tokens.Any(t => t.Value.Length == 0))
                result.AddError("--stop needs a non-empty string; an empty one would stop before any text");
        });

        var command = new Command("generate", "Generate text with a model (streams to stdout; summary on stderr)");
        model.AddTo(command);
        foreach (var option in new Option[] { prompt, promptsFile, chat, system, template, maxNewTokens })
            command.Options.Add(option);
        sampling.AddTo(command);
        foreach (var option in new Option[] { batchSize, outputJson, stop })
            command.Options.Add(option);

        command.SetAction(async (parse, cancellation) =>
        {
            bool isChat = parse.GetValue(chat);
            if (parse.GetValue(prompt) != null && parse.GetValue(promptsFile) != null)
                throw new UsageException("give either --prompt or --prompts-file, not both");
            if (parse.GetValue(outputJson) != null && parse.GetValue(promptsFile) == null)
                throw new UsageException("--output-json needs --prompts-file");
            model.CheckPaths(parse);
            if (parse.GetValue(promptsFile) is string promptsPath)
                PathArguments.Input("--prompts-file", promptsPath);
            if (parse.GetValue(outputJson) is string jsonPath)
                PathArguments.Output("--output-json", jsonPath, standardAllowed: true);
            if (!isChat && parse.GetValue(system) != null)
                throw new UsageException("--system needs --chat");
            if (!isChat && parse.GetValue(template) != null)
                throw new UsageException("--chat-template needs --chat");
            var generation = sampling.Generation(parse, parse.GetValue(maxNewTokens), parse.GetValue(stop) ?? []);

            var file = parse.GetValue(promptsFile);
            var lines = file != null ? ReadPrompts(file) : [new PromptLine(parse.GetValue(prompt) ?? "", 0)];
            int slots = file != null ? Math.Min(parse.GetValue(batchSize), Math.Max(1, lines.Length)) : 1;
            using var llm = model.OpenLanguageModel(parse, slots, isChat ? parse.GetValue(template) : null);
            var prompts = lines.Select(line => isChat ? Prompt.FromMessages(Messages(line.Text, parse.GetValue(system))) : Prompt.FromText(line.Text)).ToArray();
            try
            {
                if (file == null)
                    return await Stream(llm, prompts[0], generation, echo: isChat ? null : lines[0].Text, cancellation);
                var results = llm.Generate(prompts, generation, cancellation);
                Report(results[0].Usage.Run, llm.Device, generation.Sampling);
                Write(lines, results, parse.GetValue(outputJson));
                var failed = results.Select((r, i) => (Result: r, Index: i)).Where(r => r.Result.Error != null).ToArray();
                if (failed.Length == 0)
                    return 0;
                Console.Error.WriteLine($"error: {failed.Length} of {results.Count} prompts failed; prompt {failed[0].Index} " +
                    $"(line {lines[failed[0].Index].Line} of {file}): {TerminalText.Line(failed[0].Result.Error ?? "")}");
                return CliRunner.Failure;
            }
            catch (PromptTooLongException e)
            {
                string which = e.Index is int i ? $"prompt {i} (line {lines[i].Line} of {file})" : "the prompt";
                throw new InvalidOperationException(
                    $"{which} is {e.Length} tokens long; the context holds {e.Limit} positions (--ctx-size, at most the model's own)");
            }
        });
        return command;
    }

    /// <summary>A prompt and the line of the prompts file it came from (0 for --prompt).</summary>
    sealed record PromptLine(string Text, int Line);

    static PromptLine[] ReadPrompts(string file)
    {
        MemoryPlan.EnsureFits(new FileInfo(file).Length * 8, $"reading --prompts-file {file}");
        string[] lines;
        try
        {
            lines = File.ReadAllLines(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"cannot read the prompts file {file}: {e.Message}", e);
        }
        var prompts = lines.Select((text, i) => new PromptLine(text, i + 1)).Where(p => p.Text.Trim().Length > 0).ToArray();
        if (prompts.Length == 0)
            throw new InvalidOperationException($"{file} holds no prompts (one per line; blank lines are skipped)");
        return prompts;
    }

    /// <summary>--chat's conversation: the --system message, if any, and the prompt as the user's.</summary>
    static List<ChatMessage> Messages(string text, string? system)
    {
        var messages = new List<ChatMessage>();
        if (!string.IsNullOrEmpty(system))
            messages.Add(ChatMessage.System(system));
        messages.Add(ChatMessage.User(text));
        return messages;
    }

    /// <summary>Streams the text to stdout after the prompt (<paramref name="echo"/>), then the summary to stderr.</summary>
    static async Task<int> Stream(LanguageModel llm, Prompt prompt, GenerationOptions generation, string? echo, CancellationToken cancellation)
    {
        // Encoding and the context check happen here, before anything is printed.
        var pieces = llm.GenerateAsync(prompt, generation, cancellation);
        // Model text reaches the terminal only through the sanitiser.
        using var output = new TerminalText.Writer(Console.Out);
        if (!string.IsNullOrEmpty(echo))
            output.Write(echo);
        GenerationPiece? last = null;
        try
        {
            await foreach (var piece in pieces)
            {
                output.Write(piece.Text);
                output.Flush();
                last = piece;
            }
        }
        finally
        {
            output.WriteLine();
            output.Finish();
        }
        Report(last!.Usage!.Run, llm.Device, generation.Sampling);
        if (last.Message != null)
            Console.Error.WriteLine($"note: {TerminalText.Line(last.Message)}");
        return 0;
    }

    static void Report(GenerationStats stats, string device, SamplerSettings settings) =>
        Console.Error.WriteLine(
            $"prompt {stats.PromptTokens} tokens, prefill {stats.PrefillTokensPerSecond:F1} tokens/s; " +
            $"generated {stats.DecodedTokens} tokens after the first, decode {stats.DecodeTokensPerSecond:F1} tokens/s; " +
            $"{device}; seed {settings.Seed}");

    /// <summary>
    /// The results in input order: as JSON (prompt, tokens, text, finish_reason, error) or as text.
    /// Each text continues its prompt (it starts with the space a SentencePiece vocabulary puts at
    /// the start of a word) and ends before a stop string.
    /// </summary>
    static void Write(PromptLine[] prompts, IReadOnlyList<Completion> results, string? jsonPath)
    {
        var entries = prompts.Select((prompt, i) => new
        {
            prompt = prompt.Text,
            tokens = results[i].Tokens,
            text = results[i].Text,
            finish_reason = results[i].FinishReason.ToString().ToLowerInvariant(),
            error = results[i].Error,
        }).ToArray();
        if (jsonPath != null)
        {
            var json = JsonSerializer.Serialize(entries, new JsonSerializerOptions
            {
                WriteIndented = true,
                DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull,
            });
            PathArguments.WriteText("--output-json", jsonPath, json + "\n");
            Console.Error.WriteLine($"wrote {entries.Length} results to {(jsonPath == PathArguments.StandardStream ? "stdout" : jsonPath)}");
            return;
        }
        using var output = new TerminalText.Writer(Console.Out);
        for (int i = 0; i < entries.Length; i++)
        {
            output.WriteLine($"--- {i}: {entries[i].finish_reason}");
            output.WriteLine(entries[i].prompt + entries[i].text);
        }
    }
}
