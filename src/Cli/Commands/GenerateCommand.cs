using System.CommandLine;
using System.Text.Json;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Kernels;
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
        var temperature = NumberOptions.Float("--temp", ["--temperature"], "Sampling temperature",
            new Accepts<float>(t => t == 0 || t >= SamplingRow.MinTemperature,
                $"0 (greedy) or a number from {SamplingRow.MinTemperature.ToString(System.Globalization.CultureInfo.InvariantCulture)} up"), 0.8f);
        var topK = NumberOptions.Int("--top-k", [], "Keep the k most likely tokens", Accepts<int>.AtLeast(0, "0: off"), 40);
        var topP = NumberOptions.Float("--top-p", [], "Keep the most likely tokens up to this probability mass", Accepts<float>.Above(0, 1, "1: off"), 0.95f);
        var minP = NumberOptions.Float("--min-p", [], "Drop tokens less likely than this fraction of the top one", Accepts<float>.Between(0, 1, "0: off"), 0.05f);
        var repeatPenalty = NumberOptions.Float("--repeat-penalty", [], "Penalty for tokens among the last 64",
            new Accepts<float>(p => p >= SamplingRow.MinRepetitionPenalty,
                $"a number from {SamplingRow.MinRepetitionPenalty.ToString(System.Globalization.CultureInfo.InvariantCulture)} up (1: off)"), 1f);
        var seed = NumberOptions.Seed("Random seed (default: a new one, printed in the summary)");
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
        foreach (var option in new Option[] { prompt, promptsFile, chat, system, template, maxNewTokens, temperature, topK, topP, minP, repeatPenalty, seed, batchSize, outputJson, stop })
            command.Options.Add(option);

        command.SetAction(parse =>
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
            model.CheckPaths(parse);
            if (parse.GetValue(promptsFile) is string promptsPath)
                PathArguments.Input("--prompts-file", promptsPath);
            if (parse.GetValue(outputJson) is string jsonPath)
                PathArguments.Output("--output-json", jsonPath, standardAllowed: true);
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
            var settings = new SamplerSettings
            {
                Temperature = parse.GetValue(temperature),
                TopK = parse.GetValue(topK),
                TopP = parse.GetValue(topP),
                MinP = parse.GetValue(minP),
                RepetitionPenalty = parse.GetValue(repeatPenalty),
                Seed = NumberOptions.SeedValue(parse.GetValue(seed)) ?? (ulong)Random.Shared.NextInt64(),
            };
            try
            {
                settings.Validate();
            }
            catch (ArgumentException e)
            {
                throw new UsageException(e.Message.Replace("sampling row 0: ", "", StringComparison.Ordinal));
            }

            var file = parse.GetValue(promptsFile);
            var prompts = file != null ? ReadPrompts(file) : [new Prompt(parse.GetValue(prompt) ?? "", 0)];
            int slots = file != null ? Math.Min(parse.GetValue(batchSize), Math.Max(1, prompts.Length)) : 1;

            using var backend = model.CreateBackend(parse);
            using var loaded = model.Open(parse, backend, model.TransformerOptions(parse, slots));
            var tokenizer = loaded.RequireTokenizer();
            var chatTemplate = isChat ? loaded.ChatTemplate(parse.GetValue(template)) : null;
            var requests = prompts.Select((p, i) => new GenerationRequest(
                Tokens(loaded, tokenizer, chatTemplate, p.Text, parse.GetValue(system)), parse.GetValue(maxNewTokens), settings)
            {
                Sequence = i,
                StopStrings = parse.GetValue(stop) ?? [],
            }).ToArray();
            CheckContext(requests, prompts, file, loaded.Transformer.ContextLength);
            var stopTokens = loaded.StopTokens().ToList();
            if (chatTemplate != null && loaded.EndOfTurnToken(chatTemplate) is int endOfTurn && !stopTokens.Contains(endOfTurn))
                stopTokens.Add(endOfTurn);
            var generator = new Generator(loaded.Transformer, stopTokens, (prompt, generated) => Continuation(tokenizer, prompt, generated))
            {
                DrawableTokens = Math.Min(tokenizer.VocabSize, loaded.Config.VocabSize),
            };

            if (file == null)
                return Stream(generator, requests[0], tokenizer, echo: chatTemplate == null ? prompts[0].Text : null, backend.Name, settings);
            var results = generator.Run(requests, slots);
            Report(generator.Stats, backend.Name, settings);
            Write(prompts, requests, results, tokenizer, parse.GetValue(outputJson));
            var failed = results.Select((r, i) => (Result: r, Index: i)).Where(r => r.Result.Reason == FinishReason.Error).ToArray();
            if (failed.Length == 0)
                return 0;
            Console.Error.WriteLine($"error: {failed.Length} of {results.Count} prompts failed; prompt {failed[0].Index} " +
                $"(line {prompts[failed[0].Index].Line} of {file}): {TerminalText.Line(failed[0].Result.Message ?? "")}");
            return CliRunner.Failure;
        });
        return command;
    }

    /// <summary>A prompt and the line of the prompts file it came from (0 for --prompt).</summary>
    sealed record Prompt(string Text, int Line);

    static Prompt[] ReadPrompts(string file)
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
        var prompts = lines.Select((text, i) => new Prompt(text, i + 1)).Where(p => p.Text.Trim().Length > 0).ToArray();
        if (prompts.Length == 0)
            throw new InvalidOperationException($"{file} holds no prompts (one per line; blank lines are skipped)");
        return prompts;
    }

    /// <summary>A prompt that does not fit the cache fails before any work, naming the prompt and the limit.</summary>
    static void CheckContext(GenerationRequest[] requests, Prompt[] prompts, string? file, int context)
    {
        for (int i = 0; i < requests.Length; i++)
        {
            int length = requests[i].Prompt.Count;
            if (length <= context)
                continue;
            string which = file == null ? "the prompt" : $"prompt {i} (line {prompts[i].Line} of {file})";
            throw new InvalidOperationException(
                $"{which} is {length} tokens long; the context holds {context} positions (--ctx-size, at most the model's own)");
        }
    }

    /// <summary>The prompt's ids: the chat template around a user message, or the raw text (BOS alone when empty).</summary>
    static int[] Tokens(LoadedModel loaded, ITokenizer tokenizer, ChatTemplate? chatTemplate, string text, string? system)
    {
        if (chatTemplate != null)
        {
            var messages = new List<ChatMessage>();
            if (!string.IsNullOrEmpty(system))
                messages.Add(ChatMessage.System(system));
            messages.Add(ChatMessage.User(text));
            return chatTemplate.Encode(tokenizer, messages, addGenerationPrompt: true);
        }
        if (text.Length == 0)
        {
            int bos = tokenizer.Special.Bos ?? loaded.Config.BosTokenId
                ?? throw new UsageException("this model has no BOS token to start from; give a --prompt");
            return [bos];
        }
        return tokenizer.Encode(text, addBos: tokenizer.AddBosByDefault, parseSpecial: false);
    }

    static int Stream(Generator generator, GenerationRequest request, ITokenizer tokenizer, string? echo,
        string backendName, SamplerSettings settings)
    {
        // Model text reaches the terminal only through the sanitiser, and without its stop string.
        using var output = new TerminalText.Writer(Console.Out);
        if (!string.IsNullOrEmpty(echo))
            output.Write(echo);
        var decoder = tokenizer.CreateStreamingDecoder();
        decoder.Prime(request.Prompt.ToArray());
        var shown = new StopText(request.StopStrings);
        var result = generator.Run([request], 1, (_, token) =>
        {
            output.Write(shown.Push(decoder.Append(token)));
            output.Flush();
        })[0];
        output.Write(shown.Push(decoder.Flush()));
        output.Write(shown.Flush());
        output.WriteLine();
        output.Finish();
        if (result.Reason == FinishReason.Error)
        {
            Console.Error.WriteLine($"error: {TerminalText.Line(result.Message ?? "generation failed")}");
            return CliRunner.Failure;
        }
        Report(generator.Stats, backendName, settings);
        if (result.Message != null)
            Console.Error.WriteLine($"note: {TerminalText.Line(result.Message)}");
        return 0;
    }

    static void Report(GenerationStats stats, string backendName, SamplerSettings settings) =>
        Console.Error.WriteLine(
            $"prompt {stats.PromptTokens} tokens, prefill {stats.PrefillTokensPerSecond:F1} tokens/s; " +
            $"generated {stats.DecodedTokens} tokens after the first, decode {stats.DecodeTokensPerSecond:F1} tokens/s; " +
            $"{backendName}; seed {settings.Seed}");

    /// <summary>
    /// The results in input order: as JSON (prompt, tokens, text, finish_reason, error) or as text.
    /// Each text is decoded as the continuation of its prompt, so it starts with the space a
    /// SentencePiece vocabulary puts at the start of a word.
    /// </summary>
    static void Write(Prompt[] prompts, GenerationRequest[] requests, IReadOnlyList<GenerationResult> results, ITokenizer tokenizer, string? jsonPath)
    {
        var entries = prompts.Select((prompt, i) => new
        {
            prompt = prompt.Text,
            tokens = results[i].Tokens,
            text = StopText.Cut(Continuation(tokenizer, requests[i].Prompt, results[i].Tokens), requests[i].StopStrings),
            finish_reason = results[i].Reason.ToString().ToLowerInvariant(),
            error = results[i].Reason == FinishReason.Error ? results[i].Message : null,
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

    /// <summary>The text of <paramref name="generated"/> as it continues <paramref name="prompt"/>.</summary>
    static string Continuation(ITokenizer tokenizer, IReadOnlyList<int> prompt, IReadOnlyList<int> generated)
    {
        var decoder = tokenizer.CreateStreamingDecoder();
        decoder.Prime(prompt.ToArray());
        var text = new System.Text.StringBuilder();
        foreach (int id in generated)
            text.Append(decoder.Append(id));
        return text.Append(decoder.Flush()).ToString();
    }
}
