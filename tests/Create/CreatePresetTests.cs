using IlgpuLlm.Tests.Support;
using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Formats;

namespace IlgpuLlm.Tests.Create;

/// <summary>The real-model presets have the published shapes (checked on the plan; nothing multi-GB is written).</summary>
public class CreatePresetTests
{
    [Fact]
    public void Llama32OneBHasMetasShape()
    {
        var model = RandomModel.Create(ModelFamily.Llama, "llama-3.2-1b", StorageType.F16, seed: 0);
        var c = model.Config;
        Assert.Equal((2048, 16, 32, 8, 64, 8192, 128256, 131072), (c.HiddenSize, c.LayerCount, c.HeadCount, c.KeyValueHeadCount, c.HeadDim, c.IntermediateSize, c.VocabSize, c.ContextLength));
        Assert.Equal(500_000f, c.RopeTheta);
        Assert.Equal(1e-5f, c.RmsNormEpsilon);
        Assert.True(c.TiedEmbeddings);
        Assert.Equal(RopeScalingType.Llama3, c.RopeScaling.Type);
        Assert.Equal(new Llama3RopeParameters(32f, 1f, 4f, 8192), c.RopeScaling.Llama3);
        var factors = c.RopeFrequencyFactors!.Value;
        Assert.Equal(32, factors.Length);
        Assert.Equal(1f, factors[0]);
        Assert.Equal(32f, factors[^1]);

        // embed + 16 × (q, k, v, o, gate, up, down, 2 norms) + final norm; no output.weight (tied).
        long hidden = 2048, kv = 8 * 64, ff = 8192;
        long perLayer = hidden * hidden * 2 + hidden * kv * 2 + 3 * hidden * ff + 2 * hidden;
        long expected = 128256 * hidden + 16 * perLayer + hidden;
        Assert.Equal(expected, model.ParameterCount);
        Assert.Equal(1_235_814_400, model.ParameterCount);
        Assert.Equal(expected, RandomModel.GetPreset(ModelFamily.Llama, "llama-3.2-1b").ParameterCount);
        Assert.Equal(1 + 16 * 9 + 1, model.Tensors.Length);
        Assert.DoesNotContain(model.Tensors, t => t.Name == TensorNames.Output);
        Assert.Equal([128256L, 2048], model.Tensors.Single(t => t.Name == TensorNames.TokenEmbedding).Shape.ToArray());
        Assert.Equal([512L, 2048], model.Tensors.Single(t => t.Name == TensorNames.AttentionKey(15)).Shape.ToArray());
        Assert.Equal([2048L, 8192], model.Tensors.Single(t => t.Name == TensorNames.FeedForwardDown(0)).Shape.ToArray());

        using var temp = new TempFolder();
        var plan = model.PlanGguf(temp.File("llama.gguf"));
        long matrices = model.Tensors.Where(t => t.Shape.Length == 2).Sum(t => t.ElementCount) * 2;
        long vectors = model.Tensors.Where(t => t.Shape.Length == 1).Sum(t => t.ElementCount) * 4 + 32 * 4;
        Assert.InRange(plan.TotalBytes, matrices + vectors, matrices + vectors + (8 << 20)); // + header with the vocabulary
        var hf = model.PlanHuggingFace(temp.File("hf"));
        Assert.InRange(hf.TotalBytes, model.ParameterCount * 2, model.ParameterCount * 2 + (32 << 20));
        Assert.Empty(Directory.EnumerateFileSystemEntries(temp.Root));
    }

    [Fact]
    public void Qwen25HalfBHasQwensShape()
    {
        var c = RandomModel.GetPreset(ModelFamily.Qwen2, "qwen2.5-0.5b").Config;
        Assert.Equal((896, 24, 14, 2, 64, 4864, 151936, 32768), (c.HiddenSize, c.LayerCount, c.HeadCount, c.KeyValueHeadCount, c.HeadDim, c.IntermediateSize, c.VocabSize, c.ContextLength));
        Assert.Equal(1_000_000f, c.RopeTheta);
        Assert.True(c.HasQkvBias);
        Assert.True(c.TiedEmbeddings);
        Assert.Equal(494_032_768, RandomModel.GetPreset(ModelFamily.Qwen2, "qwen2.5-0.5b").ParameterCount);
    }

    [Fact]
    public void Gemma3OneBHasGooglesShape()
    {
        var c = RandomModel.GetPreset(ModelFamily.Gemma3, "gemma-3-1b").Config;
        Assert.Equal((1152, 26, 4, 1, 256, 6912, 262144, 32768), (c.HiddenSize, c.LayerCount, c.HeadCount, c.KeyValueHeadCount, c.HeadDim, c.IntermediateSize, c.VocabSize, c.ContextLength));
        Assert.Equal(512, c.SlidingWindow);
        Assert.Equal(Enumerable.Range(0, 26).Select(l => (l + 1) % 6 != 0), c.SlidingWindowLayers);
        Assert.Equal((1_000_000f, 10_000f), (c.RopeTheta, c.RopeLocalTheta!.Value));
        Assert.Equal(256f, c.QueryPreAttentionScalar);
        Assert.True(c.HasQueryKeyNorm && c.TiedEmbeddings);
        Assert.Null(c.AttentionLogitSoftCap);
        // The published count of gemma-3-1b: 999,885,952.
        Assert.Equal(999_885_952, RandomModel.GetPreset(ModelFamily.Gemma3, "gemma-3-1b").ParameterCount);
    }

    [Fact]
    public void EveryPresetIsWritableInBothFormats()
    {
        foreach (var preset in RandomModel.Presets)
        {
            GgufModelWriter.EnsureRepresentable(preset.Config);
            HuggingFaceModelWriter.EnsureRepresentable(preset.Config);
        }
        foreach (var family in Enum.GetValues<ModelFamily>())
            Assert.Contains(RandomModel.Presets, p => p.Family == family && p.Name == "tiny");
        Assert.All(RandomModel.Presets.Where(p => p.Name == "tiny"), p =>
        {
            Assert.InRange(p.Config.HiddenSize, 64, 128);
            Assert.InRange(p.Config.VocabSize, 512, 1024);
        });
    }

    [Fact]
    public void UnknownPresetNamesTheOnesThatExist()
    {
        var e = Assert.Throws<ArgumentException>(() => RandomModel.GetPreset(ModelFamily.Qwen2, "llama-3.2-1b"));
        Assert.Contains("qwen2.5-0.5b", e.Message);
        Assert.Contains("llama preset", e.Message);
        Assert.Throws<ArgumentException>(() => RandomModel.ParseFamily("mistral"));
    }
}
