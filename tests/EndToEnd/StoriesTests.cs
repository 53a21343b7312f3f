using IlgpuLlm.Model;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Runtime.Generation;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.EndToEnd;

/// <summary>
/// stories260K, a trained tiny Llama, against llama2.c's run.c: the same greedy text byte for
/// byte from each of its three file formats (through the library entry point), and the same
/// logits within 1e-4.
/// </summary>
[Collection(BackendCollection.Name)]
public class StoriesTests
{
    public static TheoryData<string> Formats => new() { "stories260K.bin", "stories260K-f32.gguf", "hf" };

    static LoadedModel Open(string file, IBackend backend, int slots = 1)
    {
        // The Hugging Face folder carries no tokenizer; run.c's is tok512.bin.
        string? tokenizer = file == "hf" ? References.Stories("tok512.bin") : null;
        return ModelLoader.Open(References.Stories(file), backend, new TransformerOptions { Slots = slots }, tokenizer);
    }

    static string Expected(string name) =>
        File.ReadAllText(References.Stories("expected", name)).TrimEnd('\n'); // run.c ends with printf("\n")

    /// <summary>The entry point's model: threads as the other tests use, run.c's tokenizer for the Hugging Face folder.</summary>
    static LanguageModel Load(string file) => LanguageModel.Load(References.Stories(file),
        new LanguageModelOptions { Threads = 2, TokenizerPath = file == "hf" ? References.Stories("tok512.bin") : null });

    static GenerationOptions Greedy(int tokens) => new() { MaxNewTokens = tokens, Sampling = SamplerSettings.Greedy };

    [Theory]
    [MemberData(nameof(Formats))]
    public void Greedy_200_tokens_without_a_prompt_match_run_c(string file)
    {
        using var model = Load(file);
        // No prompt starts from BOS, as run.c does; its 200 steps are 200 new tokens.
        var result = model.Generate([""], Greedy(200))[0];
        Assert.Equal(200, result.Tokens.Count);
        Assert.Equal(Expected("expected_greedy_n200_noprompt.txt"), result.Text);
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void Prompt_once_upon_a_time_and_60_tokens_match_run_c(string file)
    {
        using var model = Load(file);
        Assert.Equal([1, 403, 407, 261, 378], model.Encode("Once upon a time"));
        // run.c counts 64 steps from BOS: 4 replay the prompt, 60 are new.
        var result = model.Generate(["Once upon a time"], Greedy(60))[0];
        Assert.Equal(Expected("expected_greedy_n64_prompt_Once_upon_a_time.txt"), "Once upon a time" + result.Text);
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void Logits_at_every_prompt_position_match_run_c(string file)
    {
        using var backend = new SimdBackend(2);
        using var model = Open(file, backend);
        var reference = References.StoriesPositions(References.Stories("expected", "ref_tokens_logits_prompt_Once_upon_a_time.txt"));
        int[] tokens = reference.Select(p => p.Input).ToArray();
        var logits = Scoring.Logits(model.Transformer, tokens, allPositions: true);
        int vocabulary = model.Config.VocabSize;
        for (int position = 0; position < tokens.Length; position++)
        {
            var row = logits.AsSpan(position * vocabulary, vocabulary);
            Assert.True(References.MaxAbsDifference(reference[position].First8, row[..8]) <= 1e-4f,
                $"position {position}: first logits {string.Join(" ", row[..8].ToArray())} vs {string.Join(" ", reference[position].First8)}");
            Assert.Equal(reference[position].Argmax, IlgpuLlm.Kernels.Sampling.Argmax(row));
        }
        var last = References.Lines(References.Stories("expected", "ref_last_prompt_position_logits_Once_upon_a_time.txt"));
        int prompt = 5; // the last prompt position of "Once upon a time" (BOS + 4 tokens)
        var lastRow = logits.AsSpan((prompt - 1) * vocabulary, vocabulary);
        Assert.True(References.MaxAbsDifference(last, lastRow) <= 1e-4f,
            $"max |diff| at the last prompt position is {References.MaxAbsDifference(last, lastRow)}");
    }

    [Fact]
    public void All_three_formats_give_bit_identical_logits()
    {
        using var backend = new SimdBackend(2);
        int[] tokens = [1, 403, 407, 261, 378, 432, 383];
        float[]? first = null;
        foreach (var file in new[] { "stories260K.bin", "stories260K-f32.gguf", "hf" })
        {
            using var model = Open(file, backend);
            var logits = Scoring.Logits(model.Transformer, tokens, allPositions: true);
            if (first == null)
                first = logits;
            else
                Bits.Equal(first, logits, file);
        }
    }
}
