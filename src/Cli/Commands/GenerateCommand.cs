using System.CommandLine;
using System.Text.Json;
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
        var template = new Option<string?>("--chat-template") { Description = "Chat format: llama3, llama2, gemma or chatml (default: from the model)" };
        var maxNewTokens = new Option<int>("--max-new-tokens", "-n") { Description = "Tokens to generate at most", DefaultValueFactory = _ => 256 };
        var temperature = new Option<float>("--temperature") { Description = "Sampling temperature; 0 is greedy", DefaultValueFactory = _ => 0.8f };
        var topK = new Option<int>("--top-k") { Description = "Keep the k most likely tokens (0: off)", DefaultValueFactory = _ => 40 };
        var topP = new Option<float>("--top-p") { Description = "Keep the most likely tokens up to this probability mass (1: off)", DefaultValueFactory = _ => 0.95f };
        var minP = new Option<float>("--min-p") { Description = "Drop tokens less likely than this fraction of the top one (0: off)", DefaultValueFactory = _ => 0.05f };
        var repeatPenalty = new Option<float>("--repeat-penalty") { Description = "Penalty for tokens among the last 64 (1: off)", DefaultValueFactory = _ => 1f };
        var seed = new Option<ulong?>("--seed", "-s") { Description = "Random seed (default: a new one, printed in the summary)" };
        var batchSize = new Option<int>("--batch-size", "-b") { Description = "Prompts generated together with --prompts-file", DefaultValueFactory = _ => 4 };
        var outputJson = new Option<string?>("--output-json") { Description = "Write results of --prompts-file as JSON to this file" };
        var stop = new Option<string[]>("--stop") { Description = "Stop when the generated text contains this string (repeatable)" };

        var command = new Command("generate", "Generate text with a model (streams to stdout; summary on stderr)");
        model.AddTo(command);
        foreach (var option in new Option[] { prompt, promptsFile, chat, system, template, maxNewTokens, temperature, topK, topP, minP, repeatPenalty, seed, batchSize, outputJson, stop })
            command.Options.Add(option);

        command.SetAction(async (parse, cancellation) =>
        {
            bool isChat = parse.GetValue(chat);
            if (parse.GetValue(prompt) != null && parse.GetValue(promptsFile) != null)
                throw new UsageException("give either --prompt or --prompts-file, not both");
            if (parse.GetValue(maxNewTokens) < 0)
                throw new UsageException($"--max-new-tokens {parse.GetValue(maxNewTokens)} must not be negative");
            if (parse.GetValue(batchSize) < 1)
                throw new UsageException($"--batch-size {parse.GetValue(batchSize)} must be at least 1");
            if (parse.GetValue(outputJson) != null && parse.GetValue(promptsFile) == null)
                throw new UsageException("--output-json needs --prompts-file");
            if (!isChat && parse.GetValue(system) != null)
                throw new UsageException("--system needs --chat");
            if (!isChat && parse.GetValue(template) != null)
                throw new UsageException("--chat-template needs --chat");
            if (parse.GetValue(template) is string templateName)
            {
                try
                {
                    ChatTemplate.FromName(templateName);
                }
                catch (ArgumentException)
                {
                    throw new UsageException($"--chat-template '{templateName}' is not one of llama3, llama2, gemma, chatml, qwen2.5");
                }
            }
            var generation = new GenerationOptions
            {
                MaxNewTokens = parse.GetValue(maxNewTokens),
                Sampling = new SamplerSettings
                {
                    Temperature = parse.GetValue(temperature),
                    TopK = parse.GetValue(topK),
                    TopP = parse.GetValue(topP),
                    MinP = parse.GetValue(minP),
                    RepetitionPenalty = parse.GetValue(repeatPenalty),
                    Seed = parse.GetValue(seed) ?? (ulong)Random.Shared.NextInt64(),
                },
                StopStrings = parse.GetValue(stop) ?? [],
            };
            try
            {
                generation.Validate();
            }
            catch (ArgumentException e)
            {
                throw new UsageException(CliRunner.Describe(e).Replace("sampling row 0: ", "", StringComparison.Ordinal)
                    .Replace("stop string", "--stop", StringComparison.Ordinal));
            }

            var file = parse.GetValue(promptsFile);
            var lines = file != null ? ReadPrompts(file) : [new PromptLine(parse.GetValue(prompt) ?? "", 0)];
            int slots = file != null ? Math.Min(parse.GetValue(batchSize), Math.Max(1, lines.Length)) : 1;
            using var llm = OpenModel(model, parse, slots, isChat ? parse.GetValue(template) : null);
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
                    $"(line {lines[failed[0].Index].Line} of {file}): {failed[0].Result.Error}");
                return CliRunner.Failure;
            }
            catch (PromptTooLongException e)
            {
                string which = e.Index is int i ? $"prompt {i} (line {lines[i].Line} of {file})" : "the prompt";
                throw new InvalidOperationException(
                    $"{which} is {e.Length} tokens long; the context holds {e.Limit} positions (--context, at most the model's own)");
            }
        });
        return command;
    }

    /// <summary>A prompt and the line of the prompts file it came from (0 for --prompt).</summary>
    sealed record PromptLine(string Text, int Line);

    static PromptLine[] ReadPrompts(string file)
    {
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

    static LanguageModel OpenModel(ModelOptions model, ParseResult parse, int slots, string? chatTemplate)
    {
        var path = parse.GetValue(model.Model);
        var options = model.LanguageModelOptions(parse, slots, chatTemplate);
        if (path != null)
            return LanguageModel.Load(path, options);
        Console.Error.WriteLine("note: no --model given, so this runs the built-in demo model: random weights and a byte-level vocabulary, " +
            "so its text is meaningless. Pass --model PATH (a GGUF file, a Hugging Face folder or a llama2.c checkpoint) to run a real model.");
        return LanguageModel.LoadDemo(options);
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
        var output = Console.Out;
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
            output.Flush();
        }
        Report(last!.Usage!.Run, llm.Device, generation.Sampling);
        if (last.Message != null)
            Console.Error.WriteLine($"note: {last.Message}");
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
            try
            {
                File.WriteAllText(jsonPath, json);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new IOException($"cannot write {jsonPath}: {e.Message}", e);
            }
            Console.Error.WriteLine($"wrote {entries.Length} results to {jsonPath}");
            return;
        }
        for (int i = 0; i < entries.Length; i++)
        {
            Console.Out.WriteLine($"--- {i}: {entries[i].finish_reason}");
            Console.Out.WriteLine(entries[i].prompt + entries[i].text);
        }
    }
}
