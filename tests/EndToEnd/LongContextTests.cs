using IlgpuLlm.Model;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Runtime.Generation;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.EndToEnd;

/// <summary>
/// Long sequences: lengths that are not multiples of 8/16/32 up to the context, fed in one pass or
/// in chunks (the sliding layers' ring buffers wrap many times), give the same bits; the context
/// limit is reported, not overrun.
/// </summary>
[Collection(BackendCollection.Name)]
public class LongContextTests
{
    static LoadedModel Open(string path, int rows, int slots = 1) =>
        ModelLoader.Open(path, new SimdBackend(2), new TransformerOptions { Slots = slots, MaxRowsPerForward = rows });

    [Theory]
    [InlineData(37)]
    [InlineData(255)]
    [InlineData(511)]
    public void Stories_logits_are_the_same_in_one_pass_and_in_chunks(int length)
    {
        var tokens = TestModels.Prompts(512, length)[0];
        using var whole = Open(References.Stories("stories260K.bin"), rows: 512);
        using var chunked = Open(References.Stories("stories260K.bin"), rows: 23);
        Bits.Equal(Scoring.Logits(whole.Transformer, tokens, allPositions: true),
            Scoring.Logits(chunked.Transformer, tokens, allPositions: true), $"{length} tokens");
    }

    [Theory]
    [InlineData("gemma2")]
    [InlineData("gemma3")]
    public void Sliding_window_rings_wrap_without_losing_keys_inside_the_window(string family)
    {
        // Window 8: with 7 rows per pass the ring holds 8 + 7 − 1 = 14 positions and wraps 7 times in 100.
        string path = References.Family("main", family, "model.gguf");
        var tokens = TestModels.Prompts(512, 100)[0];
        using var whole = Open(path, rows: 512);
        using var chunked = Open(path, rows: 7);
        Assert.Equal(8, whole.Config.SlidingWindow);
        Assert.Equal(14, chunked.Transformer.Cache.Layout.Capacity(0));
        Bits.Equal(Scoring.Logits(whole.Transformer, tokens, allPositions: true),
            Scoring.Logits(chunked.Transformer, tokens, allPositions: true), family);
    }

    [Fact]
    public void A_sliding_layer_attends_only_inside_its_window()
    {
        using var model = Open(References.Family("main", "gemma2", "model.gguf"), rows: 512);
        var cache = model.Transformer.Cache;
        int sliding = Enumerable.Range(0, model.Config.LayerCount).First(model.Config.IsSlidingWindowLayer);
        int global = Enumerable.Range(0, model.Config.LayerCount).First(l => !model.Config.IsSlidingWindowLayer(l));
        Assert.Equal(new IlgpuLlm.Kernels.KeyRange(0, 93, 101), cache.Range(sliding, 0, 100));
        Assert.Equal(new IlgpuLlm.Kernels.KeyRange(0, 0, 3), cache.Range(sliding, 0, 2));
        Assert.Equal(new IlgpuLlm.Kernels.KeyRange(0, 0, 101), cache.Range(global, 0, 100));
    }

    [Fact]
    public void Generation_stops_at_the_context_limit_and_says_so()
    {
        using var model = Open(References.Stories("stories260K.bin"), rows: 512);
        var prompt = TestModels.Prompts(512, 509)[0];
        var result = new Generator(model.Transformer, stopTokens: [])
            .Run([new GenerationRequest(prompt, 100, SamplerSettings.Greedy) { Sequence = 3 }], 1)[0];
        Assert.Equal(FinishReason.Length, result.Reason);
        Assert.Equal(512 - 509 + 1, result.Tokens.Count);
        Assert.Contains("sequence 3", result.Message);
        Assert.Contains("512 positions", result.Message);
    }

    [Fact]
    public void A_prompt_longer_than_the_cache_is_an_error_naming_the_sizes()
    {
        using var model = Open(References.Stories("stories260K.bin"), rows: 512);
        var result = new Generator(model.Transformer, stopTokens: [])
            .Run([new GenerationRequest(TestModels.Prompts(512, 600)[0], 5, SamplerSettings.Greedy)], 1)[0];
        Assert.Equal(FinishReason.Error, result.Reason);
        Assert.Contains("600 positions", result.Message);
        Assert.Contains("512", result.Message);
    }
}
