using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Formats;

/// <summary>Paths of the real test models in the shared data (see ../shared/README.md).</summary>
public static class SharedModels
{
    public static string StoriesBin => SharedData.Path("models", "stories260K", "stories260K.bin");
    public static string StoriesGguf => SharedData.Path("models", "stories260K", "stories260K-f32.gguf");
    public static string StoriesHf => SharedData.Path("models", "stories260K", "hf");
    public static string TinyRandomF16Gguf => SharedData.Path("models", "llama2-tiny-random", "llama-2-tiny-random.gguf");
    public static string VocabOnlyGguf => SharedData.Path("tokenizers", "llama2-spm", "ggml-vocab-llama-spm.gguf");

    public static readonly string[] FamilySets = ["main", "stress"];
    public static readonly string[] Families = ["llama3", "qwen2", "gemma", "gemma2", "gemma3"];

    /// <summary>(set, family) for every family model, as xunit theory data.</summary>
    public static TheoryData<string, string> FamilyModels()
    {
        var data = new TheoryData<string, string>();
        foreach (var set in FamilySets)
            foreach (var family in Families)
                data.Add(set, family);
        return data;
    }

    public static string Family(string set, string family, params string[] rest) =>
        SharedData.Path(["models", "families", set, family, .. rest]);
}
