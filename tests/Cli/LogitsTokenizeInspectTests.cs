using System.Runtime.InteropServices;
using IlgpuLlm.Model;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Tests.Create;
using IlgpuLlm.Tests.EndToEnd;
using IlgpuLlm.Tests.Support;
using VocabTestVectors = IlgpuLlm.Tests.Tokenizers.VocabTestVectors;

namespace IlgpuLlm.Tests.Cli;

/// <summary>
/// <c>logits</c> writes exactly the library's logits (and llama.cpp's within 1e-4), <c>tokenize</c>
/// reads every kind of tokenizer file, <c>inspect</c> prints every format's configuration and tensors.
/// </summary>
[Collection(nameof(ConsoleCollection))]
public class LogitsTokenizeInspectTests
{
    public static IEnumerable<object[]> FamilyModels()
    {
        foreach (var family in CliModels.Families)
            yield return [$"main/{family}/model.gguf"];
        yield return ["stress/gemma2/hf"];
        yield return ["stress/qwen2/hf-bf16"];
    }

    [Theory]
    [MemberData(nameof(FamilyModels))]
    public void Logits_are_the_library_s_bytes_and_llama_cpp_s_values(string model)
    {
        var parts = model.Split('/');
        using var temp = new TempFolder();
        var tokens = References.Tokens(References.Family(parts[0], parts[1], "ref", "promptB.tokens"));
        string all = temp.File("all.f32"), last = temp.File("last.f32");
        var result = InProcessCli.Run(["logits", .. CliModels.Options(model), "--tokens", string.Join(' ', tokens), "--all-positions", "-o", all, "--device", "cpu"]);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal($"wrote {tokens.Length} × {(parts[1] == "qwen2" ? 576 : 512)} logits to {all}", result.ErrorLines.Single());
        Assert.Equal(0, InProcessCli.Run(["logits", .. CliModels.Options(model), "--tokens", string.Join(' ', tokens), "-o", last, "--device", "cpu"]).ExitCode);

        using var backend = new SimdBackend(1);
        using var loaded = ModelLoader.Open(CliModels.Options(model)[1], backend, new TransformerOptions());
        var expected = Scoring.Logits(loaded.Transformer, tokens, allPositions: true);
        Bits.Equal(MemoryMarshal.AsBytes(expected.AsSpan()), File.ReadAllBytes(all), "--all-positions");
        int vocabulary = loaded.Config.VocabSize;
        Bits.Equal(MemoryMarshal.AsBytes(expected.AsSpan(expected.Length - vocabulary)), File.ReadAllBytes(last), "last position");

        var reference = References.Floats(References.Family(parts[0], parts[1], "ref", "promptB.logits.f32"));
        var written = References.Floats(all);
        Assert.True(References.MaxAbsDifference(reference, written) <= 1e-4f, $"max |diff| from llama.cpp {References.MaxAbsDifference(reference, written)}");
    }

    public static TheoryData<string, string[], string, string> KnownSentences => new()
    {
        // Llama 2 SentencePiece in its three files, BOS first.
        { "llama2-spm tokenizer.model", ["tokenizers", "llama2-spm", "tokenizer.model"], "--bos", "1 910 338 263 1243 10541 29889" },
        { "llama2-spm tokenizer.bin", ["tokenizers", "llama2-spm", "tokenizer.bin"], "--bos", "1 910 338 263 1243 10541 29889" },
        { "llama2-spm vocabulary GGUF", ["tokenizers", "llama2-spm", "ggml-vocab-llama-spm.gguf"], "--bos", "1 910 338 263 1243 10541 29889" },
        // Llama 3: tiktoken ranks and the GPT-2 layout of the same vocabulary, <|begin_of_text|> first.
        { "llama3 tiktoken", ["tokenizers", "llama3", "tokenizer.model"], "--bos", "128000 2028 374 264 1296 11914 13" },
        { "llama3 encoder.json + vocab.bpe folder", ["tokenizers", "llama3-gpt2-layout"], "--bos", "128000 2028 374 264 1296 11914 13" },
        { "llama3 encoder.json", ["tokenizers", "llama3-gpt2-layout", "encoder.json"], "--bos", "128000 2028 374 264 1296 11914 13" },
        // Qwen2 has no BOS.
        { "qwen2 vocab.json + merges.txt folder", ["tokenizers", "qwen2"], "--bos", "1986 374 264 1273 11652 13" },
        { "qwen2 vocab.json", ["tokenizers", "qwen2", "vocab.json"], "", "1986 374 264 1273 11652 13" },
        // Models: stories260K's tok512.bin found beside the checkpoint, a family GGUF's vocabulary.
        { "stories260K.bin", ["models", "stories260K", "stories260K.bin"], "--bos", "1 274 415 293 410 293 261 259 411 356 262 377 302 331 426" },
        { "tok512.bin", ["models", "stories260K", "tok512.bin"], "--bos", "1 274 415 293 410 293 261 259 411 356 262 377 302 331 426" },
        { "gemma model GGUF", ["models", "families", "main", "gemma", "model.gguf"], "--bos", "1 87 107 275 338 263 260 342 269 296 264 346 49" },
    };

    [Theory]
    [MemberData(nameof(KnownSentences))]
    public void Tokenize_prints_the_ids_of_a_known_sentence(string kind, string[] path, string bos, string expected)
    {
        string[] flags = bos.Length > 0 ? [bos] : [];
        var result = InProcessCli.Run(["tokenize", "-m", SharedData.Path(path), "--text", "This is a test sentence.", .. flags]);
        Assert.True(result.ExitCode == 0, $"{kind}: {result}");
        Assert.Equal(expected + "\n", result.Out);
        Assert.Equal("", result.Error);
    }

    [Fact]
    public void Tokenize_matches_special_tokens_only_when_asked()
    {
        string qwen = SharedData.Path("tokenizers", "qwen2");
        const string text = "<|im_start|>hello<|im_end|>";
        Assert.Equal("151644 14990 151645\n", InProcessCli.Run("tokenize", "-m", qwen, "--text", text, "--special").Out);
        var plain = InProcessCli.Run("tokenize", "-m", qwen, "--text", text);
        Assert.Equal(0, plain.ExitCode);
        var ids = plain.Out.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray();
        Assert.DoesNotContain(151644, ids);
        Assert.DoesNotContain(151645, ids);
        Assert.Contains(14990, ids);

        string llama3 = SharedData.Path("tokenizers", "llama3", "tokenizer.model");
        Assert.Equal("128000 128006 882 128007\n", InProcessCli.Run("tokenize", "-m", llama3, "--text", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>", "--special").Out);
        Assert.Equal("\n", InProcessCli.Run("tokenize", "-m", llama3, "--text", "").Out);
    }

    public static TheoryData<string, string> VectorFiles => new()
    {
        { "tokenizers/llama2-spm/ggml-vocab-llama-spm.gguf", "tokenizers/llama2-spm/tokenizer.model" },
        { "tokenizers/llama3/ggml-vocab-llama-bpe.gguf", "tokenizers/llama3/tokenizer.model" },
        { "tokenizers/qwen2/ggml-vocab-qwen2.gguf", "tokenizers/qwen2" },
    };

    [Theory]
    [MemberData(nameof(VectorFiles))]
    public void Tokenize_reproduces_llama_cpp_s_test_vectors(string vectors, string tokenizer)
    {
        // A sample of each file through the CLI (the tokenizer tests run all of them on the library).
        var cases = VocabTestVectors.Load(vectors.Split('/'));
        foreach (var @case in cases.Where(c => c.Input.Trim().Length > 0).Take(4))
        {
            var result = InProcessCli.Run("tokenize", "-m", SharedData.Path(tokenizer.Split('/')), "--text", @case.Input);
            Assert.True(result.ExitCode == 0, $"{@case}: {result}");
            Assert.True(string.Join(' ', @case.Expected) + "\n" == result.Out, $"{@case}: expected {string.Join(' ', @case.Expected)}, got {result.Out}");
        }
    }

    public static TheoryData<string, string> InspectFormats => new()
    {
        { "stories260K.bin", "Llama2c" },
        { "stories260K-f32.gguf", "Gguf" },
        { "stories260K/hf", "HuggingFace" },
        { "llama2-tiny-random", "Gguf" },
        { "main/gemma3/model.gguf", "Gguf" },
        { "main/gemma3/hf", "HuggingFace" },
        { "stress/qwen2/hf-bf16", "HuggingFace" },
    };

    [Theory]
    [MemberData(nameof(InspectFormats))]
    public void Inspect_prints_the_configuration_and_every_tensor(string model, string format)
    {
        string path = CliModels.Options(model)[1];
        var result = InProcessCli.Run("inspect", "-m", path);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal("", result.Error);
        var lines = result.Out.Split('\n');
        Assert.Equal($"{path} ({format})", lines[0]);

        using var checkpoint = IlgpuLlm.Model.Formats.ModelCheckpoint.Open(path);
        var config = checkpoint.Config;
        Assert.Contains(lines, l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries) is ["HiddenSize", var v] && v == config.HiddenSize.ToString());
        Assert.Contains(lines, l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries) is ["LayerCount", var v] && v == config.LayerCount.ToString());
        Assert.Contains(lines, l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries) is ["VocabSize", var v] && v == config.VocabSize.ToString());
        // One row per tensor, never wrapped: name, dtype and shape on the same line.
        foreach (var tensor in checkpoint.Tensors)
        {
            string shape = "[" + string.Join(", ", tensor.Shape) + "]";
            Assert.Contains(lines, l => l.TrimStart().StartsWith(tensor.Name + " ", StringComparison.Ordinal) && l.Contains(shape, StringComparison.Ordinal));
        }
        Assert.Matches($"^{checkpoint.Tensors.Length} tensors, [\\d,]+ parameters, [\\d.]+ MiB$", lines.Last(l => l.Length > 0));
    }
}
