using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using IlgpuLlm.Tests.EndToEnd;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Library;

/// <summary>The README's C# example is ReadmeExample.cs, compiled with the tests, and it tells run.c's story.</summary>
[Collection(BackendCollection.Name)]
public class ReadmeTests
{
    static string Here([CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;

    [Fact]
    public async Task The_readme_example_compiles_and_tells_run_c_s_story()
    {
        var readme = File.ReadAllText(Path.Combine(Here(), "..", "..", "README.md")).ReplaceLineEndings("\n");
        var block = Regex.Match(readme, @"## Use it from C#\n.*?```csharp\n(.*?)```", RegexOptions.Singleline);
        Assert.True(block.Success, "README.md has no C# block under \"## Use it from C#\"");
        Assert.Equal(File.ReadAllText(Path.Combine(Here(), "ReadmeExample.cs")).ReplaceLineEndings("\n"), block.Groups[1].Value);

        using var output = new StringWriter();
        await Story.TellAsync(References.Stories("stories260K.bin"), output);
        var expected = File.ReadAllText(References.Stories("expected", "expected_greedy_n64_prompt_Once_upon_a_time.txt")).TrimEnd('\n');
        Assert.Equal(expected, output.ToString());
    }

    [Fact]
    public async Task The_readme_chat_client_example_compiles_and_answers_the_same_with_its_seed()
    {
        var readme = File.ReadAllText(Path.Combine(Here(), "..", "..", "README.md")).ReplaceLineEndings("\n");
        var block = Regex.Match(readme, @"### Microsoft\.Extensions\.AI\n.*?```csharp\n(.*?)```", RegexOptions.Singleline);
        Assert.True(block.Success, "README.md has no C# block under \"### Microsoft.Extensions.AI\"");
        Assert.Equal(File.ReadAllText(Path.Combine(Here(), "ReadmeChatClientExample.cs")).ReplaceLineEndings("\n"), block.Groups[1].Value);

        using var model = LanguageModel.Load(References.Stories("stories260K.bin"), new LanguageModelOptions { Threads = 2, Slots = 2 });
        var first = await Assistant.AnswerAsync(model, "Tell me about a cat");
        Assert.EndsWith(" tokens)", first);
        Assert.Equal(first, await Assistant.AnswerAsync(model, "Tell me about a cat"));
    }
}
