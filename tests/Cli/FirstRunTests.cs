using System.Text.Json;
using IlgpuLlm.Tests.EndToEnd;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Cli;

/// <summary>What a new user meets: the executable alone, the README's first command, and the options around it.</summary>
[Collection(nameof(ConsoleCollection))]
public class FirstRunTests
{
    static readonly string Stories = References.Stories("stories260K.bin");

    [Fact]
    public void The_executable_alone_prints_its_help_with_the_exit_codes()
    {
        var result = InProcessCli.Run();
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal("", result.Error);
        foreach (var command in new[] { "generate", "logits", "tokenize", "inspect", "create-model", "bench", "perplexity", "compare" })
            Assert.Contains(command, result.Out);
        Assert.Contains("Exit codes", result.Out);
    }

    [Fact]
    public void Without_a_model_generate_tells_a_story_with_the_built_in_stories260K()
    {
        var result = InProcessCli.Run("generate", "--prompt", "Once upon a time", "-n", "30", "--temp", "0", "--device", "cpu");
        Assert.True(result.ExitCode == 0, result.ToString());
        // The same greedy story as llama2.c's run.c from the original checkpoint.
        Assert.StartsWith("Once upon a time, there was a little girl named Lily. She", result.Out);
        Assert.Equal(2, result.ErrorLines.Length);
        Assert.StartsWith("note: no --model given: running the built-in stories260K", result.ErrorLines[0]);
        Assert.Matches(CliChecks.Summary, result.ErrorLines[1]);

        var tokens = InProcessCli.Run("tokenize", "--text", "Once upon a time", "--bos");
        Assert.Equal("1 403 407 261 378\n", tokens.Out); // run.c's ids for this prompt
        var inspect = InProcessCli.Run("inspect");
        Assert.Contains("stories260K (built in)", inspect.Out);
    }

    [Fact]
    public void Inspect_shows_nested_settings_field_by_field_not_as_a_record()
    {
        var result = InProcessCli.Run("inspect", "-m", Stories);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("RopeScaling.Factor", result.Out);
        Assert.DoesNotContain("{ Type =", result.Out);
    }

    [Fact]
    public void Help_lists_every_chat_template_the_option_accepts()
    {
        var result = InProcessCli.Run("generate", "--help");
        foreach (var name in IlgpuLlm.Model.Tokenizers.ChatTemplate.Names)
            Assert.Contains(name, result.Out);
    }

    [Fact]
    public void More_threads_than_cores_are_capped_with_a_warning()
    {
        var result = InProcessCli.Run("generate", "-m", Stories, "-t", "20000", "-n", "2", "--temp", "0", "--device", "cpu");
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.StartsWith($"warning: --threads 20000 is more than the {Environment.ProcessorCount} cores", result.ErrorLines[0]);
        Assert.Contains($"{Environment.ProcessorCount} threads", result.ErrorLines[^1]);
    }

    [Fact]
    public void Seed_minus_one_picks_a_random_seed_as_in_llama_cpp()
    {
        var result = InProcessCli.Run("generate", "-m", Stories, "--seed", "-1", "-n", "2", "--device", "cpu");
        CliChecks.AssertGenerated(result, "");
    }

    [Fact]
    public void Output_json_dash_writes_to_stdout_and_stop_strings_are_left_out_of_the_text()
    {
        using var temp = new TempFolder();
        string prompts = temp.Write("prompts.txt", "Once upon a time\n");
        string cwd = Directory.GetCurrentDirectory();
        var result = InProcessCli.Run("generate", "-m", Stories, "--prompts-file", prompts, "--output-json", "-", "-n", "30", "--temp", "0",
            "--stop", "Lily", "--device", "cpu");
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.False(File.Exists(Path.Combine(cwd, "-")));
        using var json = JsonDocument.Parse(result.Out);
        var entry = json.RootElement[0];
        Assert.Equal(", there was a little girl named ", entry.GetProperty("text").GetString());
        Assert.Equal("stop", entry.GetProperty("finish_reason").GetString());
    }
}
