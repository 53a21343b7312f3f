using IlgpuLlm.Tests.Create;
using IlgpuLlm.Tests.EndToEnd;
using IlgpuLlm.Tests.Formats;
using IlgpuLlm.Tests.Support;
using Xunit.Abstractions;

namespace IlgpuLlm.Tests.Cli;

/// <summary>
/// What users script against: wrong usage exits 2, any other failure exits 1, and either way
/// stderr holds one line starting "error: " that says what to fix — never a stack trace.
/// </summary>
[Collection(nameof(ConsoleCollection))]
public class CliErrorTests(ITestOutputHelper log)
{
    static readonly string Stories = References.Stories("stories260K.bin");

    public static TheoryData<string[], string> WrongUsage => new()
    {
        { ["generate", "-m", Stories, "--bogus"], "--bogus" },
        { ["frobnicate"], "frobnicate" },
        { ["generate", "-m", Stories, "--prompt", "a", "--prompts-file", "x.txt"], "either --prompt or --prompts-file" },
        { ["generate", "-m", Stories, "--top-p", "2"], "top-p 2" },
        { ["generate", "-m", Stories, "--top-p", "0"], "top-p 0" },
        { ["generate", "-m", Stories, "--top-k", "-1"], "top-k -1" },
        { ["generate", "-m", Stories, "--min-p", "2"], "min-p 2" },
        { ["generate", "-m", Stories, "--temperature", "-1"], "--temp -1 is out of range" },
        { ["generate", "-m", Stories, "--temperature", "NaN"], "--temp 'NaN' is not a number" },
        { ["generate", "-m", Stories, "--repeat-penalty", "0"], "--repeat-penalty 0 is out of range" },
        { ["generate", "-m", Stories, "--threads", "-1"], "--threads -1" },
        { ["generate", "-m", Stories, "--context", "-5"], "--ctx-size -5 is out of range" },
        { ["generate", "-m", Stories, "-n", "-1"], "--n-predict -1 is out of range" },
        { ["generate", "-m", Stories, "-n", "abc"], "abc" },
        { ["generate", "-m", Stories, "--batch-size", "0"], "--parallel 0 is out of range" },
        { ["generate", "-m", Stories, "--kv-dtype", "f8"], "'f8'" },
        { ["generate", "-m", Stories, "--device", "tpu"], "'tpu'" },
        { ["generate", "-m", Stories, "--prompt", "a", "--output-json", "x.json"], "--output-json needs --prompts-file" },
        { ["generate", "-m", Stories, "--prompt", "a", "--system", "be kind"], "--system needs --chat" },
        { ["generate", "-m", Stories, "--prompt", "a", "--chat", "--chat-template", "vicuna"], "'vicuna'" },
        { ["logits", "-m", Stories, "--tokens", "1 two", "-o", "x.bin"], "'two'" },
        { ["logits", "-m", Stories, "--tokens", "1 512", "-o", "x.bin"], "id 512 is outside the vocabulary of 512" },
        { ["logits", "-m", Stories, "-o", "x.bin"], "--tokens" },
        { ["tokenize", "-m", Stories], "--text" },
    };

    [Theory]
    [MemberData(nameof(WrongUsage))]
    public void Wrong_usage_exits_2_with_one_line(string[] args, string mentions)
    {
        var result = InProcessCli.Run(args);
        log.WriteLine(result.Error.Trim());
        InProcessCli.AssertOneLineError(result, 2, mentions);
        Assert.Equal("", result.Out);
    }

    [Fact]
    public void A_nonexistent_path_fails_with_one_line_naming_it()
    {
        using var temp = new TempFolder();
        string missing = temp.File("no-such-model.gguf");
        string missingFolder = temp.File("no-such-folder");
        foreach (var (args, path) in new (string[], string)[]
        {
            (["generate", "-m", missing, "--prompt", "hi"], missing),
            (["logits", "-m", missing, "--tokens", "1", "-o", temp.File("x.bin")], missing),
            (["inspect", "-m", missing], missing),
            (["tokenize", "-m", missing, "--text", "hi"], missing),
            (["tokenize", "-m", missingFolder, "--text", "hi"], missingFolder),
            (["generate", "-m", missingFolder, "--prompt", "hi"], missingFolder),
        })
        {
            var result = InProcessCli.Run(args);
            log.WriteLine(result.Error.Trim());
            InProcessCli.AssertOneLineError(result, 1, path);
        }

        string tokenizer = temp.File("tokenizer.model");
        InProcessCli.AssertOneLineError(InProcessCli.Run("generate", "-m", References.Stories("hf"), "--tokenizer", tokenizer, "--prompt", "hi"), 1, tokenizer);
        string prompts = temp.File("prompts.txt");
        InProcessCli.AssertOneLineError(InProcessCli.Run("generate", "-m", Stories, "--prompts-file", prompts), 1, prompts);
        string output = Path.Combine(temp.File("no-such-folder"), "logits.bin");
        InProcessCli.AssertOneLineError(InProcessCli.Run("logits", "-m", Stories, "--tokens", "1 2", "-o", output), 1, output);
        InProcessCli.AssertOneLineError(InProcessCli.Run("generate", "-m", Stories, "--prompts-file", temp.Root,
            "--output-json", output), 1, temp.Root);
    }

    /// <summary>Broken models in every format, each broken in one place.</summary>
    static string Malformed(string kind, string root)
    {
        string path = Path.Combine(root, kind);
        switch (kind)
        {
            case "truncated.gguf":
            {
                var bytes = TinyLlama.Gguf().Build();
                File.WriteAllBytes(path, bytes[..(bytes.Length * 2 / 3)]);
                return path;
            }
            case "header-only.gguf":
                File.WriteAllBytes(path, TinyLlama.Gguf().Build()[..10]);
                return path;
            case "missing-tensor.gguf":
            {
                var writer = TinyLlama.Gguf();
                writer.Tensors.RemoveAll(t => t.Name == "blk.0.attn_k.weight");
                File.WriteAllBytes(path, writer.Build());
                return path;
            }
            case "bad-json-config":
            {
                string folder = TinyLlama.WriteHfFolder(root, kind);
                File.WriteAllText(Path.Combine(folder, "config.json"), "{ \"model_type\": \"llama\", ");
                return folder;
            }
            case "missing-tensor-hf":
                return TinyLlama.WriteHfFolder(root, kind, editTensors: tensors => tensors.Where(t => !t.Name.Contains("down_proj")).ToList());
            case "truncated.bin":
            {
                var bytes = TinyLlama.Llama2c();
                File.WriteAllBytes(path, bytes[..(bytes.Length - 100)]);
                return path;
            }
            case "empty.gguf":
                File.WriteAllBytes(path, []);
                return path;
            default:
                throw new ArgumentException(kind);
        }
    }

    public static TheoryData<string> MalformedKinds => new()
    {
        "truncated.gguf", "header-only.gguf", "missing-tensor.gguf", "bad-json-config", "missing-tensor-hf", "truncated.bin", "empty.gguf",
    };

    [Theory]
    [MemberData(nameof(MalformedKinds))]
    public void A_malformed_model_fails_with_one_line_naming_the_file(string kind)
    {
        using var temp = new TempFolder();
        string path = Malformed(kind, temp.Root);
        foreach (var args in new[]
        {
            new[] { "inspect", "-m", path },
            ["generate", "-m", path, "--tokenizer", References.Stories("tok512.bin"), "--prompt", "hi", "--device", "cpu"],
            ["logits", "-m", path, "--tokens", "1 2", "-o", temp.File("logits.bin"), "--device", "cpu"],
        })
        {
            var result = InProcessCli.Run(args);
            log.WriteLine($"{args[0]}: {result.Error.Trim()}");
            InProcessCli.AssertOneLineError(result, 1, path);
            Assert.Equal("", result.Out);
        }
        Assert.False(File.Exists(temp.File("logits.bin")));
    }

    [Theory]
    [InlineData("models/stories260K/tok512.bin", "this is a tokenizer, not a model")]
    [InlineData("tokenizers/llama2-spm/tokenizer.model", "this is a tokenizer, not a model")]
    [InlineData("tokenizers/llama3/tokenizer.model", "this is a tokenizer, not a model")]
    [InlineData("tokenizers/qwen2/merges.txt", "this is a tokenizer, not a model")]
    [InlineData("tokenizers/qwen2/vocab.json", "a JSON file other than config.json is not a model")]
    [InlineData("tokenizers/qwen2", "config.json is missing")]
    public void A_tokenizer_given_as_the_model_is_called_what_it_is(string path, string mentions)
    {
        string full = SharedData.Path(path.Split('/'));
        InProcessCli.AssertOneLineError(InProcessCli.Run("inspect", "-m", full), 1, mentions);
        InProcessCli.AssertOneLineError(InProcessCli.Run("generate", "-m", full, "--prompt", "hi", "--device", "cpu"), 1, mentions);
    }

    [Fact]
    public void A_prompt_longer_than_the_context_fails_before_generating()
    {
        string longPrompt = string.Join(' ', Enumerable.Repeat("hello", 600));
        var result = InProcessCli.Run("generate", "-m", Stories, "--prompt", longPrompt, "-n", "4", "--device", "cpu");
        InProcessCli.AssertOneLineError(result, 1, "the context holds 512 positions");
        Assert.Equal("", result.Out);

        // --context shrinks the cache below the model's own.
        result = InProcessCli.Run("generate", "-m", Stories, "--prompt", "Once upon a time", "--context", "4", "-n", "4", "--device", "cpu");
        InProcessCli.AssertOneLineError(result, 1, "the prompt is 5 tokens long; the context holds 4 positions");

        using var temp = new TempFolder();
        string prompts = temp.File("prompts.txt");
        File.WriteAllLines(prompts, ["Once", "", "Once upon a time"]);
        result = InProcessCli.Run("generate", "-m", Stories, "--prompts-file", prompts, "--context", "4", "-n", "4", "--device", "cpu");
        InProcessCli.AssertOneLineError(result, 1, $"prompt 1 (line 3 of {prompts}) is 5 tokens long");

        result = InProcessCli.Run("logits", "-m", Stories, "--tokens", "1 2 3 4 5", "--context", "4", "-o", temp.File("x.bin"), "--device", "cpu");
        InProcessCli.AssertOneLineError(result, 1, "5 tokens need 5 positions; the context holds 4");
    }

    [Fact]
    public void Generation_that_reaches_the_context_stops_with_a_note()
    {
        var result = InProcessCli.Run("generate", "-m", Stories, "--prompt", "Once upon a time", "--context", "8", "-n", "20",
            "--temperature", "0", "--device", "cpu");
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(2, result.ErrorLines.Length);
        Assert.Matches(CliChecks.Summary, result.ErrorLines[0]);
        Assert.Equal("note: sequence 0 reached the context limit of 8 positions", result.ErrorLines[1]);
        Assert.Equal("Once upon a time, there was a\n", result.Out);
    }

    [Fact]
    public void A_model_without_a_tokenizer_or_with_a_foreign_one_fails_with_one_line()
    {
        var result = InProcessCli.Run("generate", "-m", References.Family("main", "llama3", "hf"), "--prompt", "hi", "--device", "cpu");
        InProcessCli.AssertOneLineError(result, 1, "comes with no tokenizer; pass --tokenizer");

        // The Llama 2 tokenizer has 32000 tokens; the family model only the first 512 of them.
        string llama2 = SharedData.Path("tokenizers", "llama2-spm", "tokenizer.model");
        result = InProcessCli.Run("generate", "-m", References.Family("main", "llama3", "hf"), "--tokenizer", llama2, "--prompt", "hi", "--device", "cpu");
        InProcessCli.AssertOneLineError(result, 1, $"the tokenizer {llama2} has 32000 tokens");

        // A model file is no tokenizer unless it carries one.
        result = InProcessCli.Run("generate", "-m", References.Family("main", "llama3", "hf"), "--tokenizer", References.Family("main", "llama3", "hf-bf16"),
            "--prompt", "hi", "--device", "cpu");
        InProcessCli.AssertOneLineError(result, 1, "comes with no tokenizer");
    }
}
