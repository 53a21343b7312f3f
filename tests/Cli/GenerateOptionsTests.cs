using System.Text.Json;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Formats;
using IlgpuLlm.Kernels;
using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Runtime.Generation;
using IlgpuLlm.Tests.Create;
using IlgpuLlm.Tests.EndToEnd;
using IlgpuLlm.Tests.Support;
using Formats = IlgpuLlm.Tests.Formats;

namespace IlgpuLlm.Tests.Cli;

/// <summary>
/// <c>generate</c>'s options through the CLI: prompts files in batches (JSON in input order, the
/// same tokens in any batch), chat with a system message (and a clear refusal where the
/// vocabulary has no chat markers), KV cache dtypes, devices, stop strings, -n 0, no prompt.
/// </summary>
[Collection(nameof(ConsoleCollection))]
public class GenerateOptionsTests
{
    static readonly string Stories = References.Stories("stories260K.bin");
    const string Prompt = "Once upon a time";

    /// <summary>Prompts of different lengths, with a blank line (skipped) in the middle.</summary>
    static readonly string[] PromptLines = ["Once upon a time", "The cat", "", "Lily went to the park and saw a big red ball", "Tom"];

    sealed record Entry(string Prompt, int[] Tokens, string Text, string FinishReason);

    static Entry[] RunBatch(TempFolder temp, string[] model, int batchSize, params string[] extra)
    {
        string prompts = temp.File("prompts.txt");
        File.WriteAllLines(prompts, PromptLines);
        string json = temp.File($"out-{batchSize}.json");
        var result = InProcessCli.Run(["generate", .. model, "--prompts-file", prompts, "--batch-size", batchSize.ToString(),
            "--output-json", json, "--device", "cpu", .. extra]);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal("", result.Out);
        Assert.Equal(2, result.ErrorLines.Length);
        Assert.Matches(CliChecks.Summary, result.ErrorLines[0]);
        Assert.Equal($"wrote 4 results to {json}", result.ErrorLines[1]);
        using var document = JsonDocument.Parse(File.ReadAllText(json));
        return document.RootElement.EnumerateArray().Select(e => new Entry(
            e.GetProperty("prompt").GetString()!,
            e.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()).ToArray(),
            e.GetProperty("text").GetString()!,
            e.GetProperty("finish_reason").GetString()!)).ToArray();
    }

    public static TheoryData<string> BatchModels => new() { "stories260K.bin", "main/gemma2/model.gguf" };

    [Theory]
    [MemberData(nameof(BatchModels))]
    public void A_prompts_file_gives_json_in_input_order_and_the_same_tokens_in_any_batch(string model)
    {
        using var temp = new TempFolder();
        string[] sampling = ["-n", "12", "--temperature", "0.8", "--seed", "7"];
        var alone = RunBatch(temp, CliModels.Options(model), 1, sampling);
        Assert.Equal(PromptLines.Where(p => p.Length > 0), alone.Select(e => e.Prompt));
        foreach (var entry in alone)
        {
            Assert.Contains(entry.FinishReason, new[] { "length", "stop" });
            Assert.True(entry.Tokens.Length is > 0 and <= 12, $"{entry.Tokens.Length} tokens");
            Assert.True(entry.FinishReason == "stop" || entry.Tokens.Length == 12);
        }
        foreach (int batchSize in new[] { 2, 3 })
        {
            var batched = RunBatch(temp, CliModels.Options(model), batchSize, sampling);
            Assert.Equal(alone.Length, batched.Length);
            for (int i = 0; i < alone.Length; i++)
            {
                Assert.Equal(alone[i].Prompt, batched[i].Prompt);
                Assert.Equal(alone[i].Tokens, batched[i].Tokens);
                Assert.Equal(alone[i].Text, batched[i].Text);
                Assert.Equal(alone[i].FinishReason, batched[i].FinishReason);
            }
        }

        // The first prompt is sequence 0 in the file and alone: the same draws, the same text as streamed
        // (JSON keeps the text as generated; the terminal sees control characters as U+FFFD).
        var streamed = InProcessCli.Run(["generate", .. CliModels.Options(model), "--prompt", PromptLines[0], "--device", "cpu", .. sampling]);
        CliChecks.AssertGenerated(streamed, PromptLines[0]);
        Assert.Equal(IlgpuLlm.Cli.TerminalText.Sanitize(PromptLines[0] + alone[0].Text) + "\n", streamed.Out);
    }

    [Fact]
    public void Batch_text_output_lists_every_prompt_in_order_with_its_continuation()
    {
        using var temp = new TempFolder();
        string prompts = temp.File("prompts.txt");
        File.WriteAllLines(prompts, PromptLines);
        var result = InProcessCli.Run("generate", "-m", Stories, "--prompts-file", prompts, "-np", "2", "-n", "6", "--temperature", "0", "--device", "cpu");
        Assert.True(result.ExitCode == 0, result.ToString());
        var lines = result.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(8, lines.Length);
        var real = PromptLines.Where(p => p.Length > 0).ToArray();
        for (int i = 0; i < real.Length; i++)
        {
            Assert.Equal($"--- {i}: length", lines[2 * i]);
            Assert.StartsWith(real[i], lines[2 * i + 1]);
        }
        Assert.Equal("Once upon a time, there was a little g", lines[1]);
        Assert.Equal("The cat and a boy we", lines[3]); // the continuation keeps the space SentencePiece puts before a word
    }

    [Fact]
    public void Chat_with_a_system_message_renders_the_template_the_vocabulary_supports()
    {
        // stories260K's vocabulary (and every Llama 2 one) has BOS and EOS: its family's template is Llama 2's [INST] format.
        var result = InProcessCli.Run("generate", "-m", Stories, "--prompt", "Tell me a story", "--chat", "--system", "You are kind.",
            "-n", "8", "--temperature", "0", "--device", "cpu");
        CliChecks.AssertGenerated(result, "");
        using var backend = new SimdBackend(1);
        var tokenizer = ModelLoader.OpenTokenizer(Stories);
        var expected = ChatTemplate.Create(ChatFormat.Llama2).Encode(tokenizer,
            [ChatMessage.System("You are kind."), ChatMessage.User("Tell me a story")], addGenerationPrompt: true);
        Assert.StartsWith($"prompt {expected.Length} tokens,", result.ErrorLines[0]);
    }

    /// <summary>The qwen2 family GGUF with two ordinary tokens turned into ChatML's markers.</summary>
    static string QwenWithChatMarkers(TempFolder temp)
    {
        using var gguf = GgufFile.Open(References.Family("main", "qwen2", "model.gguf"));
        var tokens = gguf.GetStringArray("tokenizer.ggml.tokens").ToArray();
        var types = gguf.GetInt32Array("tokenizer.ggml.token_type").ToArray();
        (tokens[^2], tokens[^1]) = ("<|im_start|>", "<|im_end|>");
        (types[^2], types[^1]) = ((int)TokenKind.Control, (int)TokenKind.Control);
        string path = temp.File("qwen2-chat.gguf");
        File.WriteAllBytes(path, Formats.GgufWriter.FromFile(gguf).StringArray("tokenizer.ggml.tokens", tokens)
            .Int32Array("tokenizer.ggml.token_type", types).Build());
        return path;
    }

    [Fact]
    public void Chat_uses_the_markers_of_a_vocabulary_that_has_them_and_takes_its_end_of_turn_as_a_stop_token()
    {
        using var temp = new TempFolder();
        string path = QwenWithChatMarkers(temp);
        var result = InProcessCli.Run("generate", "-m", path, "--prompt", "hi", "--chat", "--system", "Be brief.",
            "-n", "8", "--temperature", "0", "--device", "cpu");
        CliChecks.AssertGenerated(result, "");
        var tokenizer = ModelLoader.OpenTokenizer(path);
        var expected = ChatTemplate.Create(ChatFormat.ChatML).Encode(tokenizer,
            [ChatMessage.System("Be brief."), ChatMessage.User("hi")], addGenerationPrompt: true);
        Assert.Equal(3, expected.Count(id => id == 574)); // system, user, assistant turns: one id each
        Assert.StartsWith($"prompt {expected.Length} tokens,", result.ErrorLines[0]);

        using var backend = new SimdBackend(1);
        using var model = ModelLoader.Open(path, backend, new TransformerOptions());
        var template = model.ChatTemplate(null);
        Assert.Equal(ChatFormat.ChatML, template.Format);
        Assert.Equal(575, model.EndOfTurnToken(template));
    }

    [Theory]
    [InlineData("stories260K-f32.gguf")]
    [InlineData("llama2-tiny-random")]
    [InlineData("main/llama3/model.gguf")]
    [InlineData("stress/llama3/hf-bf16")]
    public void Chat_works_on_every_llama_model_through_the_llama_2_template(string model)
    {
        // Llama models whose vocabulary lacks Llama 3's header tokens (the family models have the Llama 2
        // prefix) get Llama 2's [INST] template, which needs only BOS.
        var result = InProcessCli.Run(["generate", .. CliModels.Options(model), "--prompt", "hi", "--chat", "--system", "Be brief.",
            "-n", "4", "--temperature", "0", "--device", "cpu"]);
        CliChecks.AssertGenerated(result, "");
    }

    [Fact]
    public void Without_a_model_the_demo_model_runs_and_says_so()
    {
        var result = InProcessCli.Run("generate", "--prompt", "Hello", "-n", "4", "--seed", "1", "--device", "cpu");
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.StartsWith("Hello", result.Out);
        Assert.Equal(2, result.ErrorLines.Length);
        Assert.StartsWith("note: no --model given", result.ErrorLines[0]);
        Assert.Matches(CliChecks.Summary, result.ErrorLines[1]);
    }

    [Fact]
    public void Help_lists_the_commands_and_exits_0()
    {
        var result = InProcessCli.Run("--help");
        Assert.Equal(0, result.ExitCode);
        foreach (var command in new[] { "generate", "logits", "tokenize", "inspect", "create-model" })
            Assert.Contains(command, result.Out);
        var generate = InProcessCli.Run("generate", "--help");
        Assert.Equal(0, generate.ExitCode);
        Assert.Contains("--prompts-file", generate.Out);
        Assert.Equal("", generate.Error);
    }

    [Theory]
    [InlineData("main/qwen2/model.gguf", null, "<|im_start|>")]
    [InlineData("main/gemma/model.gguf", null, "<start_of_turn>")]
    [InlineData("main/gemma3/hf", null, "<start_of_turn>")]
    [InlineData("llama2-tiny-random", "llama3", "<|start_header_id|>")]
    public void Chat_fails_clearly_where_the_vocabulary_lacks_the_template_s_markers(string model, string? template, string missing)
    {
        string[] choice = template == null ? [] : ["--chat-template", template];
        var result = InProcessCli.Run(["generate", .. CliModels.Options(model), "--prompt", "hi", "--chat", .. choice, "-n", "4", "--device", "cpu"]);
        InProcessCli.AssertOneLineError(result, 1, missing);
        Assert.Equal("", result.Out);
    }

    [Theory]
    [InlineData("f16")]
    [InlineData("bf16")]
    public void Kv_dtype_stores_the_cache_in_that_type(string dtype)
    {
        foreach (var model in new[] { "stories260K.bin", "stress/gemma2/model.gguf" })
        {
            var result = InProcessCli.Run(["generate", .. CliModels.Options(model), "--prompt", Prompt, "-n", "12", "--temperature", "0",
                "--kv-dtype", dtype, "--device", "cpu"]);
            CliChecks.AssertGenerated(result, Prompt);
            Assert.Equal(Prompt + GreedyText(CliModels.Options(model)[1], Enum.Parse<KvCacheType>(dtype, ignoreCase: true), Prompt, 12) + "\n", result.Out);
        }
    }

    /// <summary>The library's greedy continuation with the cache in <paramref name="kvType"/>.</summary>
    static string GreedyText(string path, KvCacheType kvType, string prompt, int count)
    {
        using var model = LanguageModel.Load(path, new LanguageModelOptions { Threads = 2, KvCache = kvType });
        return model.Generate([prompt], new GenerationOptions { MaxNewTokens = count, Sampling = SamplerSettings.Greedy })[0].Text;
    }

    [Fact]
    public void Ilgpu_cpu_gives_the_greedy_tokens_of_the_simd_backend()
    {
        string[] args = ["generate", "-m", Stories, "--prompt", Prompt, "-n", "3", "--temperature", "0"];
        var simd = InProcessCli.Run([.. args, "--device", "cpu"]);
        var ilgpu = InProcessCli.Run([.. args, "--device", "ilgpu-cpu", "--threads", "2"]);
        CliChecks.AssertGenerated(simd, Prompt);
        CliChecks.AssertGenerated(ilgpu, Prompt);
        Assert.Contains("; ilgpu-cpu", ilgpu.ErrorLines[0]);
        Assert.Equal(simd.Out, ilgpu.Out);
    }

    [Fact]
    public void Cuda_without_a_gpu_fails_with_one_line()
    {
        var result = InProcessCli.Run("generate", "-m", Stories, "--prompt", Prompt, "-n", "2", "--temperature", "0", "--device", "cuda");
        if (CudaPresent.Value)
            CliChecks.AssertGenerated(result, Prompt);
        else
        {
            InProcessCli.AssertOneLineError(result, 1, "no CUDA device");
            Assert.Equal("", result.Out);
        }
    }

    static readonly Lazy<bool> CudaPresent = new(() =>
    {
        using var context = KernelContext.Create(1);
        return KernelContext.FindCuda(context) != null;
    });

    [Fact]
    public void Auto_runs_on_cuda_or_the_simd_backend()
    {
        var result = InProcessCli.Run("generate", "-m", Stories, "--prompt", Prompt, "-n", "2", "--temperature", "0");
        CliChecks.AssertGenerated(result, Prompt);
        Assert.Contains(CudaPresent.Value ? "; cuda" : "; simd-cpu", result.ErrorLines[0]);
    }

    [Fact]
    public void A_stop_string_ends_the_text_before_it()
    {
        var full = InProcessCli.Run("generate", "-m", Stories, "--prompt", Prompt, "-n", "30", "--temperature", "0", "--device", "cpu");
        Assert.StartsWith("Once upon a time, there was a little girl named Lily. She", full.Out);
        var stopped = InProcessCli.Run("generate", "-m", Stories, "--prompt", Prompt, "-n", "30", "--temperature", "0", "--device", "cpu",
            "--stop", "Lily", "--stop", "never printed");
        CliChecks.AssertGenerated(stopped, Prompt);
        // The stop string ends the text and is not part of it (llama.cpp's server, OpenAI's API).
        Assert.Equal("Once upon a time, there was a little girl named \n", stopped.Out);

        // A stop string may start with the space before the first generated word.
        var first = InProcessCli.Run("generate", "-m", Stories, "--prompt", "Once upon a time, there was a little girl", "-n", "30",
            "--temperature", "0", "--device", "cpu", "--stop", " named");
        CliChecks.AssertGenerated(first, Prompt);
        Assert.Equal("Once upon a time, there was a little girl\n", first.Out);

        // --output-json's text ends before the stop string too; its tokens include the one that completed it.
        using var temp = new TempFolder();
        string prompts = temp.File("prompts.txt");
        File.WriteAllLines(prompts, [Prompt]);
        string json = temp.File("out.json");
        var batch = InProcessCli.Run("generate", "-m", Stories, "--prompts-file", prompts, "--output-json", json, "-n", "30",
            "--temperature", "0", "--device", "cpu", "--stop", "Lily");
        Assert.True(batch.ExitCode == 0, batch.ToString());
        using var document = JsonDocument.Parse(File.ReadAllText(json));
        var entry = document.RootElement[0];
        Assert.Equal(", there was a little girl named ", entry.GetProperty("text").GetString());
        Assert.Equal("stop", entry.GetProperty("finish_reason").GetString());
    }

    [Fact]
    public void An_empty_stop_string_is_wrong_usage()
    {
        var result = InProcessCli.Run("generate", "-m", Stories, "--prompt", Prompt, "--stop", "", "--device", "cpu");
        InProcessCli.AssertOneLineError(result, 2, "--stop needs a non-empty string");
        Assert.Equal("", result.Out);
    }

    [Fact]
    public void Zero_new_tokens_prints_the_prompt_alone()
    {
        var result = InProcessCli.Run("generate", "-m", Stories, "--prompt", Prompt, "-n", "0", "--device", "cpu");
        CliChecks.AssertGenerated(result, Prompt);
        Assert.Equal(Prompt + "\n", result.Out);
        Assert.Contains("generated 0 tokens", result.ErrorLines[0]);
    }

    [Fact]
    public void A_model_with_more_rows_than_its_tokenizer_has_tokens_generates_only_tokens_it_can_decode()
    {
        // The qwen2 family model has 576 embedding rows; stories260K's tokenizer 512 tokens. Hot sampling
        // over every id would soon draw one of the 64 ids no token stands for.
        string[] model = ["-m", References.Family("stress", "qwen2", "hf"), "--tokenizer", References.Stories("tok512.bin")];
        foreach (var seed in new[] { "1", "2", "3" })
        {
            var result = InProcessCli.Run(["generate", .. model, "--prompt", Prompt, "-n", "40", "--temperature", "1.5", "--top-k", "0",
                "--top-p", "1", "--min-p", "0", "--seed", seed, "--device", "cpu"]);
            CliChecks.AssertGenerated(result, Prompt);
        }
    }

    [Theory]
    [InlineData("main/llama3/model.gguf")]
    [InlineData("stress/qwen2/hf")]
    public void Without_a_prompt_generation_starts_at_BOS(string model)
    {
        var result = InProcessCli.Run(["generate", .. CliModels.Options(model), "-n", "4", "--temperature", "0", "--device", "cpu"]);
        CliChecks.AssertGenerated(result, "");
        Assert.StartsWith("prompt 1 tokens,", result.ErrorLines[0]);
    }
}
