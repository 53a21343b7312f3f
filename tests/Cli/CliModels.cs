using System.Collections.Concurrent;
using System.Text.RegularExpressions;
using IlgpuLlm.Tests.EndToEnd;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Cli;

/// <summary>
/// Every model in ../shared in each of its formats, as the CLI is told to open it: the options
/// that name the model and, where the model carries no tokenizer, the one that fits it.
/// </summary>
public static class CliModels
{
    public static readonly string[] Families = ["llama3", "qwen2", "gemma", "gemma2", "gemma3"];
    public static readonly string[] Sets = ["main", "stress"];

    /// <summary>Names for [MemberData]: stories260K's three formats, llama2-tiny-random, and every family model's three.</summary>
    public static IEnumerable<object[]> All()
    {
        yield return ["stories260K.bin"];
        yield return ["stories260K-f32.gguf"];
        yield return ["stories260K/hf"];
        yield return ["llama2-tiny-random"];
        foreach (var set in Sets)
            foreach (var family in Families)
                foreach (var form in new[] { "model.gguf", "hf", "hf-bf16" })
                    yield return [$"{set}/{family}/{form}"];
    }

    /// <summary>The model options: <c>--model PATH</c> and, for Hugging Face folders (no tokenizer files), <c>--tokenizer</c>.</summary>
    public static string[] Options(string name) => name switch
    {
        "stories260K.bin" => ["--model", References.Stories("stories260K.bin")],
        "stories260K-f32.gguf" => ["--model", References.Stories("stories260K-f32.gguf")],
        // run.c's tokenizer; the family folders borrow their GGUF's vocabulary (the Llama 2 prefix they were made with).
        "stories260K/hf" => ["--model", References.Stories("hf"), "--tokenizer", References.Stories("tok512.bin")],
        "llama2-tiny-random" => ["--model", SharedData.Path("models", "llama2-tiny-random", "llama-2-tiny-random.gguf")],
        _ => FamilyOptions(name.Split('/')),
    };

    static string[] FamilyOptions(string[] parts) => parts[2] == "model.gguf"
        ? ["--model", References.Family(parts[0], parts[1], "model.gguf")]
        : ["--model", References.Family(parts[0], parts[1], parts[2]), "--tokenizer", References.Family(parts[0], parts[1], "model.gguf")];

    /// <summary>The same model in its GGUF form (every family model is one model in three files), or null.</summary>
    public static string? GgufTwin(string name)
    {
        var parts = name.Split('/');
        if (name.StartsWith("stories260K", StringComparison.Ordinal))
            return name == "stories260K.bin" ? null : "stories260K.bin";
        return parts.Length == 3 && parts[2] != "model.gguf" ? $"{parts[0]}/{parts[1]}/model.gguf" : null;
    }

    static readonly ConcurrentDictionary<string, CliResult> Memo = new();

    /// <summary>A CLI run, remembered by its arguments, for results several tests compare against.</summary>
    public static CliResult RunOnce(params string[] args) =>
        Memo.GetOrAdd(string.Join('\u0001', args), _ => InProcessCli.Run(args));
}

/// <summary>What a successful <c>generate</c> looks like from outside.</summary>
public static class CliChecks
{
    /// <summary>The summary generate writes to stderr after a run.</summary>
    public static readonly Regex Summary = new(
        @"^prompt \d+ tokens, prefill [\d.]+ tokens/s( \(\d+ of its \d+ ms compiling code on first use\))?; " +
        @"generated \d+ tokens after the first, decode [\d.]+ tokens/s( \(\d+ of its \d+ ms compiling code on first use\))?; [^;]+; seed \d+$");

    /// <summary>Exit 0, stdout the prompt (as given) and the text, one newline at the end, the summary alone on stderr.</summary>
    public static void AssertGenerated(CliResult result, string prompt)
    {
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.StartsWith(prompt, result.Out);
        Assert.EndsWith("\n", result.Out);
        var lines = result.ErrorLines;
        Assert.True(lines.Length == 1 && Summary.IsMatch(lines[0]), $"expected the summary alone on stderr; {result}");
    }
}
