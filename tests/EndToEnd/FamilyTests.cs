using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Runtime.Generation;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.EndToEnd;

/// <summary>
/// Every family's tiny random model, from its GGUF, HF and HF-bf16 forms, against llama.cpp: logits
/// at every position of prompts A (8 tokens) and B (30, longer than every sliding window) within
/// 1e-4, and 16 greedy tokens decoded one at a time through the KV cache with their logits.
/// </summary>
[Collection(BackendCollection.Name)]
public class FamilyTests
{
    public static IEnumerable<object[]> Cases()
    {
        foreach (var set in new[] { "main", "stress" })
            foreach (var family in new[] { "llama3", "qwen2", "gemma", "gemma2", "gemma3" })
                foreach (var form in new[] { "model.gguf", "hf", "hf-bf16" })
                    yield return [set, family, form];
    }

    const float Tolerance = 1e-4f;

    [Theory]
    [MemberData(nameof(Cases))]
    public void Prompt_logits_and_greedy_decoding_match_llama_cpp(string set, string family, string form)
    {
        using var backend = new SimdBackend(2);
        using var model = ModelLoader.Open(References.Family(set, family, form), backend, new TransformerOptions());
        int vocabulary = model.Config.VocabSize;
        foreach (var prompt in new[] { "promptA", "promptB" })
        {
            var tokens = References.Tokens(References.Family(set, family, "ref", prompt + ".tokens"));
            var expected = References.Floats(References.Family(set, family, "ref", prompt + ".logits.f32"));
            var logits = Scoring.Logits(model.Transformer, tokens, allPositions: true);
            for (int p = 0; p < tokens.Length; p++)
            {
                float difference = References.MaxAbsDifference(expected.AsSpan(p * vocabulary, vocabulary), logits.AsSpan(p * vocabulary, vocabulary));
                Assert.True(difference <= Tolerance, $"{set}/{family}/{form} {prompt} position {p}: max |diff| {difference}");
            }

            // Greedy, one token per forward pass through the cache (no EOS stop, ties to the lowest id).
            var greedy = References.Tokens(References.Family(set, family, "ref", prompt + ".greedy16.tokens"));
            var greedyLogits = References.Floats(References.Family(set, family, "ref", prompt + ".greedy16.logits.f32"));
            int next = Sampling.Argmax(logits.AsSpan((tokens.Length - 1) * vocabulary, vocabulary));
            for (int j = 0; j < greedy.Length; j++)
            {
                Assert.True(greedy[j] == next, $"{set}/{family}/{form} {prompt} greedy token {j}: {next}, llama.cpp {greedy[j]}");
                var step = model.Transformer.Forward([new TokenRow(0, tokens.Length + j, next)], [0]);
                var row = backend.DownloadFloats(step.Logits);
                float difference = References.MaxAbsDifference(greedyLogits.AsSpan(j * vocabulary, vocabulary), row);
                Assert.True(difference <= Tolerance, $"{set}/{family}/{form} {prompt} greedy step {j}: max |diff| {difference}");
                next = Sampling.Argmax(row);
            }
        }
    }

    [Theory]
    [InlineData("main", "gemma2")]
    [InlineData("main", "llama3")]
    public void The_three_forms_give_bit_identical_logits(string set, string family)
    {
        using var backend = new SimdBackend(2);
        var tokens = References.Tokens(References.Family(set, family, "ref", "promptB.tokens"));
        float[]? first = null;
        foreach (var form in new[] { "model.gguf", "hf", "hf-bf16" })
        {
            using var model = ModelLoader.Open(References.Family(set, family, form), backend, new TransformerOptions());
            var logits = Scoring.Logits(model.Transformer, tokens, allPositions: true);
            if (first == null)
                first = logits;
            else
                Bits.Equal(first, logits, form);
        }
    }
}
