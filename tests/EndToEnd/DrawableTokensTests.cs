using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Runtime.Generation;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.EndToEnd;

/// <summary>
/// A model whose embedding table has more rows than its tokenizer has tokens (padded vocabularies)
/// must never generate an id the tokenizer cannot decode: <see cref="Generator.DrawableTokens"/>.
/// </summary>
[Collection(BackendCollection.Name)]
public class DrawableTokensTests
{
    [Theory]
    [MemberData(nameof(TestModels.Backends), MemberType = typeof(TestModels))]
    public void Ids_past_the_drawable_ones_are_never_drawn_and_greedy_takes_the_best_below(string backendName)
    {
        using var model = TestModels.Open(backendName, slots: 2);
        int vocabulary = model.Config.VocabSize;
        var prompts = TestModels.Prompts(vocabulary, 4, 7);
        // Cut the vocabulary just below the unrestricted greedy choice, so the limit changes the first token.
        int first = Sampling.Argmax(Scoring.Logits(model.Transformer, prompts[0], allPositions: false));
        Assert.True(first > 0);
        int limit = first;
        var greedy = new List<(int Request, float[] Logits)>();
        var generator = new Generator(model.Transformer, stopTokens: []) { DrawableTokens = limit };
        var hot = new SamplerSettings { Temperature = 2f, TopK = 0, TopP = 1f, MinP = 0f, Seed = 3 };
        var results = generator.Run(
            [new GenerationRequest(prompts[0], 12, SamplerSettings.Greedy), new GenerationRequest(prompts[1], 24, hot) { Sequence = 1 }],
            batchSize: 2, onLogits: (request, logits) => greedy.Add((request, logits)));

        // The logits seen are the model's own (unmasked); the greedy token is the argmax below the limit.
        var greedyLogits = greedy.Where(g => g.Request == 0).Select(g => g.Logits).ToArray();
        Assert.Equal(12, results[0].Tokens.Count);
        for (int i = 0; i < 12; i++)
            Assert.Equal(Sampling.Argmax(greedyLogits[i].AsSpan(0, limit)), results[0].Tokens[i]);
        Assert.Equal(first, Sampling.Argmax(greedyLogits[0]));
        Assert.NotEqual(first, results[0].Tokens[0]);
        Assert.Equal(24, results[1].Tokens.Count);
        Assert.All(results[1].Tokens, t => Assert.InRange(t, 0, limit - 1));

        Assert.Throws<ArgumentOutOfRangeException>(() => new Generator(model.Transformer, []) { DrawableTokens = 0 });
        Assert.Throws<ArgumentOutOfRangeException>(() => new Generator(model.Transformer, []) { DrawableTokens = vocabulary + 1 });
    }
}
