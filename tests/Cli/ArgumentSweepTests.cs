using System.Text.RegularExpressions;
using IlgpuLlm.Cli;
using IlgpuLlm.Tests.EndToEnd;
using IlgpuLlm.Tests.Support;
using Xunit.Abstractions;

namespace IlgpuLlm.Tests.Cli;

/// <summary>
/// Every command with a table of bad arguments — numbers that do not parse or lie out of range,
/// missing files, folders, named pipes, unwritable outputs, empty strings, unknown options — each
/// answered by exactly one line on stderr that names what is wrong, with no stack trace and no
/// .NET type name, and the exit code of the convention: 2 when the command line alone is wrong,
/// 1 when a file (or the machine) is.
/// </summary>
[Collection(nameof(ConsoleCollection))]
public sealed class ArgumentSweepTests(ITestOutputHelper log, ArgumentSweepTests.Files files) : IClassFixture<ArgumentSweepTests.Files>
{
    const int Usage = CliRunner.Usage, Failure = CliRunner.Failure;

    /// <summary>The paths the table refers to by placeholder: {missing}, {folder}, {pipe}, {file}, {text}.</summary>
    public sealed class Files : IDisposable
    {
        readonly TempFolder temp = new();

        public Files()
        {
            Directory.CreateDirectory(temp.File("folder"));
            temp.Write("file", "not a folder");
            temp.Write("text.txt", "Once upon a time\n");
            if (NamedPipes.Supported)
                NamedPipes.Create(temp.File("pipe"));
        }

        public string Expand(string arg) => arg
            .Replace("{missing}", temp.File("no-such-file"))
            .Replace("{folder}", temp.File("folder"))
            .Replace("{pipe}", temp.File("pipe"))
            .Replace("{file}", temp.File("file"))
            .Replace("{text}", temp.File("text.txt"))
            .Replace("{stories}", References.Stories("stories260K.bin"));

        public void Dispose() => temp.Dispose();
    }

    static readonly string[] Generate = ["generate", "-m", "{stories}", "--device", "cpu"];

    public static TheoryData<string[], int, string> Cases()
    {
        var cases = new TheoryData<string[], int, string>();
        void Add(int code, string mentions, params string[] args) => cases.Add(args, code, mentions);

        // generate: numbers
        foreach (var (option, value) in new[]
        {
            ("-n", "abc"), ("-n", "-1"), ("-n", "1.5"), ("-n", "99999999999"), ("--temp", "abc"), ("--temp", "1e-38"), ("--temp", "-1"),
            ("--temp", "NaN"), ("--temp", "inf"), ("--temperature", "1e-38"), ("--repeat-penalty", "1e-39"), ("--repeat-penalty", "0"),
            ("--top-k", "1.5"), ("--top-k", "-1"), ("--top-p", "2"), ("--top-p", "0"), ("--min-p", "-0.1"), ("--min-p", "x"),
            ("--seed", "abc"), ("--seed", "-2"), ("--seed", "1.5"), ("--seed", "18446744073709551616"), ("-t", "abc"), ("-t", "-1"),
            ("-c", "abc"), ("-c", "-5"), ("-c", "99999999999"), ("-np", "0"), ("--parallel", "x"),
        })
        {
            string name = option switch { "-n" => "--n-predict", "--temperature" => "--temp", "-t" => "--threads", "-c" => "--ctx-size", "-np" => "--parallel", _ => option };
            Add(Usage, $"{name} ", [.. Generate, option, value]);
        }
        // generate: values from lists, missing values, conflicts, unknown options, empty strings
        Add(Usage, "--kv-dtype 'f8' is not one of f32, f16, bf16", [.. Generate, "--kv-dtype", "f8"]);
        Add(Usage, "--device 'tpu' is not one of", "generate", "--device", "tpu");
        Add(Usage, "--device was given 2 times; give it once", [.. Generate, "--device", "cpu"]);
        Add(Usage, "--device needs a value", "generate", "--device");
        Add(Usage, "--chat-template 'vicuna' is not one of llama3", [.. Generate, "--chat", "--chat-template", "vicuna"]);
        Add(Usage, "--bogus", [.. Generate, "--bogus"]);
        Add(Usage, "--stop needs a non-empty string", [.. Generate, "--stop", ""]);
        Add(Usage, "--output-json needs --prompts-file", [.. Generate, "--output-json", "-"]);
        Add(Usage, "--tokenizer needs --model", "generate", "--tokenizer", "{stories}");
        Add(Usage, "--model needs a path", "generate", "-m", "");
        // generate: files
        Add(Failure, "--model {missing}: no such file or folder", "generate", "-m", "{missing}");
        Add(Failure, "--model {pipe}: a named pipe, not a regular file", "generate", "-m", "{pipe}");
        Add(Failure, "--tokenizer {pipe}: a named pipe", [.. Generate, "--tokenizer", "{pipe}"]);
        Add(Failure, "--prompts-file {missing}", [.. Generate, "--prompts-file", "{missing}"]);
        Add(Usage, "--prompts-file needs a path", [.. Generate, "--prompts-file", ""]);
        Add(Usage, "--n-predict '' is not a whole number", [.. Generate, "-n", ""]);
        Add(Failure, "--prompts-file {folder} is a folder", [.. Generate, "--prompts-file", "{folder}"]);
        Add(Failure, "--prompts-file {pipe}: a named pipe", [.. Generate, "--prompts-file", "{pipe}"]);
        Add(Failure, "--output-json {file}/out.json: the folder {file} does not exist", [.. Generate, "--prompts-file", "{text}", "--output-json", "{file}/out.json"]);
        Add(Failure, "--output-json {folder} is a folder", [.. Generate, "--prompts-file", "{text}", "--output-json", "{folder}"]);

        // logits
        Add(Usage, "--tokens: 'x' is not a token id", "logits", "-m", "{stories}", "--tokens", "1 x", "-o", "{folder}/l.bin");
        Add(Usage, "--tokens: '-1' is not a token id", "logits", "-m", "{stories}", "--tokens", "1 -1", "-o", "{folder}/l.bin");
        Add(Usage, "--out needs a value", "logits", "-m", "{stories}", "--tokens", "1", "-o");
        Add(Usage, "--tokens lists no token ids", "logits", "-m", "{stories}", "--tokens", "", "-o", "{folder}/l.bin");
        Add(Usage, "--tokens: '99999999999' is not a token id", "logits", "-m", "{stories}", "--tokens", "99999999999", "-o", "{folder}/l.bin");
        Add(Usage, "--out needs a path", "logits", "-m", "{stories}", "--tokens", "1", "-o", "");
        Add(Usage, "--threads 'x' is not a whole number", "logits", "--tokens", "1", "-o", "{folder}/l.bin", "-t", "x");
        Add(Failure, "--out {file}/l.bin: the folder {file} does not exist", "logits", "-m", "{stories}", "--tokens", "1", "-o", "{file}/l.bin");
        Add(Failure, "--model {pipe}: a named pipe", "logits", "-m", "{pipe}", "--tokens", "1", "-o", "{folder}/l.bin");

        // tokenize
        Add(Usage, "--text", "tokenize", "-m", "{stories}");
        Add(Failure, "--model {missing}", "tokenize", "-m", "{missing}", "--text", "hi");
        Add(Failure, "--model {pipe}: a named pipe", "tokenize", "-m", "{pipe}", "--text", "hi");

        // inspect
        Add(Usage, "--bogus", "inspect", "--bogus");
        Add(Failure, "--model {missing}", "inspect", "-m", "{missing}");
        Add(Failure, "--model {pipe}: a named pipe", "inspect", "-m", "{pipe}");
        Add(Failure, "config.json is missing", "inspect", "-m", "{folder}");

        // create-model
        Add(Usage, "--seed -5 is out of range", "create-model", "--family", "llama", "--out", "{folder}/m.gguf", "--seed", "-5");
        Add(Usage, "--seed 'abc' is not a whole number", "create-model", "--family", "llama", "--out", "{folder}/m.gguf", "--seed", "abc");
        Add(Usage, "--dtype 'f8' is not one of", "create-model", "--family", "llama", "--out", "{folder}/m.gguf", "--dtype", "f8");
        Add(Usage, "--out needs a path", "create-model", "--family", "llama", "--out", "");
        Add(Usage, "--out cannot write to stdout", "create-model", "--family", "llama", "--out", "-");
        Add(Failure, "--out {file}/m.gguf: the folder {file} does not exist", "create-model", "--family", "llama", "--out", "{file}/m.gguf");
        Add(Failure, "--out {folder} is a folder", "create-model", "--family", "llama", "--out", "{folder}");

        // bench
        string[] bench = ["bench", "-m", "{stories}", "--device", "cpu", "-p", "1"];
        Add(Usage, "--repetitions 0 is out of range", [.. bench, "-r", "0"]);
        Add(Usage, "--repetitions 'abc' is not a whole number", [.. bench, "-r", "abc"]);
        Add(Usage, "--warmup-seconds -1 is out of range", [.. bench, "--warmup-seconds", "-1"]);
        Add(Usage, "--warmup-seconds 'nan' is not a number", [.. bench, "--warmup-seconds", "nan"]);
        Add(Usage, "--baseline-mib 0 is out of range", [.. bench, "--baseline-mib", "0"]);
        Add(Usage, "--plot-context 1 is out of range", [.. bench, "--plot-context", "1"]);
        Add(Usage, "--parallel: '0' is not a positive whole number", [.. bench, "-np", "0"]);
        Add(Usage, "-b", [.. bench, "-b", "2"]); // llama-bench's -b is a batch of tokens; sequences are -np
        Add(Usage, "--n-gen: 'x' is not a non-negative whole number", [.. bench, "-n", "x"]);
        Add(Failure, "--json {file}/b.json: the folder {file} does not exist", [.. bench, "--json", "{file}/b.json"]);
        Add(Failure, "--model {pipe}: a named pipe", "bench", "-m", "{pipe}", "-p", "1", "-n", "1");

        // perplexity
        Add(Usage, "--ctx-size 3 is out of range", "perplexity", "-m", "{stories}", "-f", "{text}", "-c", "3");
        Add(Usage, "--ctx-size 'abc' is not a whole number", "perplexity", "-m", "{stories}", "-f", "{text}", "-c", "abc");
        Add(Usage, "--chunks -1 is out of range", "perplexity", "-m", "{stories}", "-f", "{text}", "--chunks", "-1");
        Add(Failure, "--file {missing}: no such file or folder", "perplexity", "-m", "{stories}", "-f", "{missing}");
        Add(Failure, "--file {pipe}: a named pipe", "perplexity", "-m", "{stories}", "-f", "{pipe}");
        Add(Failure, "--file {folder} is a folder", "perplexity", "-m", "{stories}", "-f", "{folder}");

        // compare
        Add(Usage, "--tokens: 'a' is not a token id", "compare", "-m", "{stories}", "--tokens", "a", "--reference", "{text}");
        Add(Usage, "--tokens: id 600 is outside the vocabulary of 512 tokens", "compare", "-m", "{stories}", "--tokens", "1 600", "--reference", "{text}");
        Add(Failure, "--reference {missing}: no such file or folder", "compare", "-m", "{stories}", "--tokens", "1", "--reference", "{missing}");
        Add(Failure, "--reference {pipe}: a named pipe", "compare", "-m", "{stories}", "--tokens", "1", "--reference", "{pipe}");

        Add(Usage, "frobnicate", "frobnicate");
        return cases;
    }

    static readonly Regex DotNetTypeName = new(@"System\.[A-Z]|Nullable`|Int32|UInt64|Single\b|Exception\b");

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void A_bad_argument_gets_one_clear_line_and_the_exit_code_of_the_convention(string[] args, int exitCode, string mentions)
    {
        Skip.If(args.Contains("{pipe}") && !NamedPipes.Supported);
        var result = InProcessCli.Run(args.Select(files.Expand).ToArray());
        log.WriteLine(result.Error.Trim());
        InProcessCli.AssertOneLineError(result, exitCode, files.Expand(mentions));
        Assert.DoesNotMatch(DotNetTypeName, result.Error);
        Assert.Equal("", result.Out);
    }
}
