using IlgpuLlm.Model.Formats;

namespace IlgpuLlm.Cli;

/// <summary>
/// The model the CLI runs when no --model is given, so the first command on a fresh machine tells
/// a story instead of asking for files: stories260K from llama2.c's "tinyllamas" (Andrej Karpathy,
/// MIT licence), a 260K-parameter Llama trained on TinyStories, with its 512-token vocabulary.
/// The embedded stories260K.gguf is product data shipped with the executable, not test data (the
/// tests read their own copy from the shared data folder). It is llama.cpp's f32 conversion of the
/// checkpoint with one key added, tokenizer.ggml.eot_token_id = 1: the model ends a story with BOS,
/// as llama2.c's run.c stops on it.
/// </summary>
public static class DefaultModel
{
    /// <summary>What messages call the model (its <see cref="ModelCheckpoint.SourcePath"/>).</summary>
    public const string Name = "stories260K (built in)";

    const string Resource = "IlgpuLlm.Cli.DefaultModel.stories260K.gguf";

    public const string Note = "note: no --model given: running the built-in stories260K (llama2.c's 260K-parameter TinyStories model); " +
        "pass --model PATH (a GGUF file, a Hugging Face folder or a llama2.c checkpoint) to run another";

    public static ModelCheckpoint Open()
    {
        using var stream = typeof(DefaultModel).Assembly.GetManifestResourceStream(Resource)
            ?? throw new InvalidOperationException($"the built-in model ({Resource}) is missing from this build");
        var bytes = new byte[stream.Length];
        stream.ReadExactly(bytes);
        return ModelCheckpoint.OpenGguf(Name, bytes);
    }
}
