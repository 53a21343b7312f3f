using IlgpuLlm;
using IlgpuLlm.Runtime.Generation;

public static class Story
{
    public static async Task TellAsync(string path, TextWriter output, CancellationToken cancellationToken = default)
    {
        using var model = LanguageModel.Load(path, new LanguageModelOptions { Threads = 2 });
        var options = new GenerationOptions { MaxNewTokens = 60, Sampling = SamplerSettings.Greedy };
        output.Write("Once upon a time");
        await foreach (var piece in model.GenerateAsync("Once upon a time", options, cancellationToken))
            output.Write(piece.Text);
    }
}
