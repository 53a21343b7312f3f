using IlgpuLlm.Cli;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Formats;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Create;

/// <summary>The create-model command run in-process, as <c>ilgpullm create-model …</c> runs it.</summary>
[Collection(nameof(ConsoleCollection))]
public class CreateModelCommandTests
{
    static (int ExitCode, string Out, string Error) Run(params string[] args)
    {
        var result = InProcessCli.Run(args);
        return (result.ExitCode, result.Out, result.Error);
    }

    [Fact]
    public void WritesAGgufThatOpens()
    {
        using var temp = new TempFolder();
        string path = temp.File("tiny.gguf");
        var (code, output, error) = Run("create-model", "--family", "gemma3", "--preset", "tiny", "--dtype", "bf16", "--seed", "5", "--out", path);
        Assert.True(code == 0, error);
        Assert.Equal("", error);
        Assert.StartsWith("created gemma3 tiny, bf16, seed 5: ", output);
        Assert.Contains(path, output);
        Assert.Single(output.Trim().Split('\n'));
        using var checkpoint = ModelCheckpoint.Open(path);
        Assert.Equal(RandomModel.GetPreset(ModelFamily.Gemma3, "tiny").Config with { RopeScaling = checkpoint.Config.RopeScaling }, checkpoint.Config);
        Assert.Equal(new FileInfo(path).Length, RandomModel.Create(ModelFamily.Gemma3, "tiny", IlgpuLlm.Kernels.StorageType.BF16, 5).PlanGguf(path).TotalBytes);
    }

    [Fact]
    public void WritesAHuggingFaceFolderThatOpens()
    {
        using var temp = new TempFolder();
        string path = temp.File("hf");
        var (code, _, error) = Run("create-model", "--preset", "tiny", "--family", "qwen2", "--format", "hf", "--out", path);
        Assert.True(code == 0, error);
        using var checkpoint = ModelCheckpoint.Open(path);
        Assert.Equal(RandomModel.GetPreset(ModelFamily.Qwen2, "tiny").Config, checkpoint.Config);
        Assert.True(File.Exists(Path.Combine(path, "tokenizer.json")));

        // Writing into a non-empty folder needs --force.
        Assert.Equal(CliRunner.Usage, Run("create-model", "--family", "qwen2", "--format", "hf", "--out", path).ExitCode);
        Assert.Equal(0, Run("create-model", "--family", "qwen2", "--format", "hf", "--seed", "2", "--force", "--out", path).ExitCode);
    }

    [Theory]
    [InlineData("--family", "qwen2", "--preset", "llama-3.2-1b")]
    [InlineData("--preset", "tiny")]
    [InlineData("--preset", "gpt-5")]
    [InlineData("--family", "mistral")]
    [InlineData("--family", "llama", "--dtype", "q4")]
    public void WrongUsageExitsWithTwoAndOneLine(params string[] args)
    {
        using var temp = new TempFolder();
        var (code, output, error) = Run(["create-model", .. args, "--out", temp.File("x.gguf")]);
        Assert.Equal(CliRunner.Usage, code);
        Assert.Equal("", output);
        Assert.StartsWith("error: ", error);
        Assert.DoesNotContain("   at ", error);
        Assert.Empty(Directory.EnumerateFileSystemEntries(temp.Root));
    }

    [Fact]
    public void APresetOfOneFamilyNeedsNoFamily()
    {
        using var temp = new TempFolder();
        string path = temp.File("existing.gguf");
        File.WriteAllText(path, "");
        // Resolving the preset comes first, so the refusal to overwrite shows the family was inferred.
        var (code, _, error) = Run("create-model", "--preset", "llama-3.2-1b", "--out", path);
        Assert.Equal(CliRunner.Usage, code);
        Assert.Contains("--force", error);
    }

    [Fact]
    public void AnExistingFileNeedsForce()
    {
        using var temp = new TempFolder();
        string path = temp.File("m.gguf");
        File.WriteAllText(path, "keep me");
        var (code, _, error) = Run("create-model", "--family", "llama", "--out", path);
        Assert.Equal(CliRunner.Usage, code);
        Assert.Contains("--force", error);
        Assert.Equal("keep me", File.ReadAllText(path));
        Assert.Equal(0, Run("create-model", "--family", "llama", "--force", "--out", path).ExitCode);
        using var checkpoint = ModelCheckpoint.Open(path);
    }

    [Fact]
    public void AnUnwritablePathFailsWithOneAndOneLine()
    {
        using var temp = new TempFolder();
        string blocker = temp.File("not-a-folder");
        File.WriteAllText(blocker, "");
        var (code, output, error) = Run("create-model", "--family", "gemma", "--out", Path.Combine(blocker, "m.gguf"));
        Assert.Equal(CliRunner.Failure, code);
        Assert.Equal("", output);
        Assert.StartsWith($"error: --out {Path.Combine(blocker, "m.gguf")}: the folder {blocker} does not exist", error);
        Assert.Single(error.Trim().Split('\n'));
    }
}
