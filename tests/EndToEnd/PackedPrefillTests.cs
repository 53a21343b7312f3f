using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Runtime.Generation;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.EndToEnd;

/// <summary>
/// Packed prefill — sequences concatenated in one token buffer with cumulative lengths — equals
/// separate prefill bit for bit, because attention never crosses a boundary; malformed
/// boundaries are rejected before anything runs.
/// </summary>
[Collection(BackendCollection.Name)]
public class PackedPrefillTests
{
    public static IEnumerable<object[]> Cases() =>
        TestModels.Backends().Select(b => new object[] { b[0], "default", StorageType.F32 })
            .Concat(from backend in TestModels.FamilyBackends()
                    from model in TestModels.Families()
                    from kv in new[] { StorageType.F32, StorageType.F16, StorageType.BF16 }
                    select new object[] { backend, model, kv });

    [Theory]
    [MemberData(nameof(Cases))]
    public void Packed_prefill_equals_separate_prefill(string backendName, string modelName, StorageType kvType)
    {
        using var model = TestModels.Open(backendName, modelName, slots: 4, kvType);
        var prompts = TestModels.Prompts(model.Config.VocabSize, 1, 5, 17, 30);
        var tokens = prompts.SelectMany(p => p).ToArray();
        int[] cumulative = [0, 1, 6, 23, 53];
        var packed = Scoring.PackedLogits(model.Transformer, PromptBatches.FromPacked(tokens, cumulative));
        for (int i = 0; i < prompts.Length; i++)
            Bits.Equal(Scoring.Logits(model.Transformer, prompts[i], allPositions: true), packed[i], $"{backendName} {modelName} {kvType.Name()} KV: prompt {i}");
    }

    [Theory]
    [InlineData(new[] { 1, 5 }, "start at 0")]
    [InlineData(new[] { 0, 3, 3, 6 }, "strictly increase")]
    [InlineData(new[] { 0, 4, 2, 6 }, "strictly increase")]
    [InlineData(new[] { 0, 3, 7 }, "buffer holds 6")]
    [InlineData(new[] { 0 }, "at least two")]
    public void Malformed_boundaries_are_rejected(int[] cumulative, string message)
    {
        var error = Assert.Throws<ArgumentException>(() => PromptBatches.FromPacked([1, 2, 3, 4, 5, 6], cumulative));
        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void Padded_input_with_holes_or_no_tokens_is_rejected()
    {
        Assert.Contains("hole", Assert.Throws<ArgumentException>(() =>
            PromptBatches.FromPadded([[5, 6, 7]], [[1, 0, 1]])).Message);
        Assert.Contains("no tokens", Assert.Throws<ArgumentException>(() =>
            PromptBatches.FromPadded([[5, 6, 7]], [[0, 0, 0]])).Message);
        Assert.Contains("rectangular", Assert.Throws<ArgumentException>(() =>
            PromptBatches.FromPadded([[5, 6, 7], [5]], [[1, 1, 1], [1]])).Message);
    }

    [Fact]
    public void Rows_outside_the_model_are_rejected_before_any_op_runs()
    {
        using var model = TestModels.Open(TestModels.Backends().First()[0].ToString()!, slots: 2);
        Assert.Contains("slot 5", Assert.ThrowsAny<ArgumentException>(() =>
            model.Transformer.Forward([new TokenRow(5, 0, 1)], [0])).Message);
        Assert.ThrowsAny<ArgumentException>(() => model.Transformer.Forward([new TokenRow(0, 0, 100000)], [0]));
        Assert.ThrowsAny<ArgumentException>(() => model.Transformer.Forward([new TokenRow(0, -1, 1)], [0]));
        Assert.ThrowsAny<ArgumentException>(() => model.Transformer.Forward([new TokenRow(0, 0, 1)], [3]));
    }
}
