using System.Text.RegularExpressions;
using IlgpuLlm.Tests.EndToEnd;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Cli;

/// <summary>
/// <c>generate</c> on every model in ../shared from each of its formats, greedy and sampled: exit 0,
/// the text on stdout, the one-line summary on stderr. The three files of one model give the same
/// text; stories260K gives run.c's text byte for byte.
/// </summary>
[Collection(nameof(ConsoleCollection))]
public class GenerateEveryModelTests
{
    const string Prompt = "Once upon a time";

    static string[] Greedy(string model) =>
        ["generate", .. CliModels.Options(model), "--prompt", Prompt, "-n", "8", "--temperature", "0", "--device", "cpu"];

    static string[] Sampled(string model) =>
        ["generate", .. CliModels.Options(model), "--prompt", Prompt, "-n", "8", "--temperature", "0.8", "--seed", "1", "--device", "cpu"];

    [Theory]
    [MemberData(nameof(CliModels.All), MemberType = typeof(CliModels))]
    public void Generates_greedy_and_sampled_text(string model)
    {
        var greedy = CliModels.RunOnce(Greedy(model));
        CliChecks.AssertGenerated(greedy, Prompt);
        var sampled = CliModels.RunOnce(Sampled(model));
        CliChecks.AssertGenerated(sampled, Prompt);
        Assert.EndsWith("; seed 1", sampled.ErrorLines[0]);

        // Another file of the same model: the same weights, so the same text, greedy or sampled.
        if (CliModels.GgufTwin(model) is string twin)
        {
            Assert.Equal(CliModels.RunOnce(Greedy(twin)).Out, greedy.Out);
            Assert.Equal(CliModels.RunOnce(Sampled(twin)).Out, sampled.Out);
        }
    }

    public static TheoryData<string> StoriesFormats => new() { "stories260K.bin", "stories260K-f32.gguf", "stories260K/hf" };

    static string Expected(string name) => File.ReadAllText(References.Stories("expected", name));

    [Theory]
    [MemberData(nameof(StoriesFormats))]
    public void Stories_greedy_text_with_a_prompt_is_run_c_s(string model)
    {
        // run.c's 64 steps from BOS: 4 replay the prompt's tokens, 60 are new.
        var result = InProcessCli.Run(["generate", .. CliModels.Options(model), "--prompt", Prompt, "-n", "60", "--temperature", "0", "--device", "cpu"]);
        CliChecks.AssertGenerated(result, Prompt);
        Assert.Equal(Expected("expected_greedy_n64_prompt_Once_upon_a_time.txt"), result.Out);
    }

    [Theory]
    [MemberData(nameof(StoriesFormats))]
    public void Stories_greedy_text_without_a_prompt_starts_at_BOS_and_is_run_c_s(string model)
    {
        var result = InProcessCli.Run(["generate", .. CliModels.Options(model), "-n", "200", "--temperature", "0", "--device", "cpu"]);
        CliChecks.AssertGenerated(result, "");
        Assert.Equal(Expected("expected_greedy_n200_noprompt.txt"), result.Out);
    }
}
