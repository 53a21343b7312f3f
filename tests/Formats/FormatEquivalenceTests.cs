using IlgpuLlm.Model;
using IlgpuLlm.Model.Formats;

namespace IlgpuLlm.Tests.Formats;

/// <summary>
/// The same model stored as GGUF, Hugging Face folder (F32 and BF16) and llama2.c checkpoint
/// must open to one config and bit-identical tensors after normalisation.
/// </summary>
public class FormatEquivalenceTests
{
    [Fact]
    public void Stories260K_bin_gguf_and_hf_are_the_same_model()
    {
        using var bin = ModelCheckpoint.Open(SharedModels.StoriesBin);
        using var gguf = ModelCheckpoint.Open(SharedModels.StoriesGguf);
        using var hf = ModelCheckpoint.Open(SharedModels.StoriesHf);

        Assert.Equal(ModelSourceFormat.Llama2c, bin.Format);
        Assert.Equal(ModelSourceFormat.Gguf, gguf.Format);
        Assert.Equal(ModelSourceFormat.HuggingFace, hf.Format);

        var c = bin.Config;
        Assert.Equal(ModelFamily.Llama, c.Family);
        Assert.Equal((64, 5, 8, 4, 8, 172, 512, 512), (c.HiddenSize, c.LayerCount, c.HeadCount, c.KeyValueHeadCount, c.HeadDim, c.IntermediateSize, c.VocabSize, c.ContextLength));
        Assert.True(c.TiedEmbeddings);
        Assert.Equal(1e-5f, c.RmsNormEpsilon);
        Assert.Equal(10000f, c.RopeTheta);

        ModelComparison.AssertSameConfig(bin.Config, gguf.Config);
        ModelComparison.AssertSameConfig(bin.Config, hf.Config);
        ModelComparison.AssertSameTensors(hf, bin);
        ModelComparison.AssertSameTensors(hf, gguf);

        // Only q/k of the adjacent-pair sources are transformed; everything else is the file's bytes.
        Assert.All(hf.Tensors, t => Assert.False(t.IsTransformed));
        Assert.Equal(2 * c.LayerCount, gguf.Tensors.Count(t => t.IsTransformed));
        Assert.Equal(2 * c.LayerCount, bin.Tensors.Count(t => t.IsTransformed));
    }

    [Theory]
    [MemberData(nameof(SharedModels.FamilyModels), MemberType = typeof(SharedModels))]
    public void Family_model_is_the_same_from_gguf_hf_and_hf_bf16(string set, string family)
    {
        using var gguf = ModelCheckpoint.Open(SharedModels.Family(set, family, "model.gguf"));
        using var hf = ModelCheckpoint.Open(SharedModels.Family(set, family, "hf"));
        using var bf16 = ModelCheckpoint.Open(SharedModels.Family(set, family, "hf-bf16"));

        ModelComparison.AssertSameConfig(hf.Config, gguf.Config);
        Assert.Equal(hf.Config, bf16.Config);
        ModelComparison.AssertSameTensors(hf, gguf);
        ModelComparison.AssertSameTensors(hf, bf16);

        Assert.All(gguf.Tensors, t => Assert.Equal(TensorDataType.F32, t.DataType));
        // BF16 stays BF16 except the Gemma norms, which become f32 1 + w.
        bool gemma = hf.Config.Family is ModelFamily.Gemma or ModelFamily.Gemma2 or ModelFamily.Gemma3;
        Assert.All(bf16.Tensors, t => Assert.Equal(gemma && t.Name.EndsWith("norm.weight") ? TensorDataType.F32 : TensorDataType.BF16, t.DataType));
        gguf.EnsureAllFinite();
        bf16.EnsureAllFinite();
    }

    [Theory]
    [MemberData(nameof(SharedModels.FamilyModels), MemberType = typeof(SharedModels))]
    public void Family_config_matches_the_model_readme(string set, string family)
    {
        using var model = ModelCheckpoint.Open(SharedModels.Family(set, family, "model.gguf"));
        var c = model.Config;
        Assert.Equal(RotaryLayout.HalfSplit, c.RotaryLayout);
        Assert.Equal(NormWeightConvention.Multiplier, c.NormWeights);
        Assert.Equal(1, c.BosTokenId);
        Assert.Equal(2, c.EosTokenId);
        switch (family)
        {
            case "llama3":
                Assert.Equal(ModelFamily.Llama, c.Family);
                Assert.Equal((64, 4, 4, 2, 16, 160, 512), (c.HiddenSize, c.LayerCount, c.HeadCount, c.KeyValueHeadCount, c.HeadDim, c.IntermediateSize, c.VocabSize));
                Assert.Equal(500000f, c.RopeTheta);
                Assert.Equal(RopeScalingType.Llama3, c.RopeScaling.Type);
                Assert.Equal(8f, c.RopeScaling.Factor);
                Assert.False(c.TiedEmbeddings);
                Assert.Equal(FeedForwardActivation.Silu, c.Activation);
                Assert.Equal(1f, c.EmbeddingScale);
                break;
            case "qwen2":
                Assert.Equal(ModelFamily.Qwen2, c.Family);
                Assert.True(c.HasQkvBias);
                Assert.True(c.TiedEmbeddings);
                Assert.Equal(1e6f, c.RopeTheta);
                Assert.Equal(576, c.VocabSize);
                break;
            case "gemma":
                Assert.Equal(ModelFamily.Gemma, c.Family);
                Assert.Equal((64, 4, 1, 32), (c.HiddenSize, c.HeadCount, c.KeyValueHeadCount, c.HeadDim));
                Assert.Equal(FeedForwardActivation.GeluTanh, c.Activation);
                Assert.Equal(8f, c.EmbeddingScale);
                Assert.True(c.TiedEmbeddings);
                Assert.Equal(32f, c.QueryPreAttentionScalar);
                Assert.Null(c.SlidingWindow);
                break;
            case "gemma2":
                Assert.Equal(ModelFamily.Gemma2, c.Family);
                Assert.Equal(26, c.LayerCount);
                Assert.Equal(8, c.SlidingWindow);
                Assert.Equal(Enumerable.Range(0, 26).Select(i => i % 2 == 0), c.SlidingWindowLayers);
                Assert.Equal(set == "main" ? 50f : 2f, c.AttentionLogitSoftCap);
                Assert.Equal(set == "main" ? 30f : 3f, c.FinalLogitSoftCap);
                Assert.Equal(32f, c.QueryPreAttentionScalar);
                Assert.True(c.HasPostAttentionNorm && c.HasPostFeedForwardNorm);
                Assert.Equal((float)Math.Sqrt(48), c.EmbeddingScale);
                break;
            case "gemma3":
                Assert.Equal(ModelFamily.Gemma3, c.Family);
                Assert.Equal(8, c.SlidingWindow);
                Assert.Equal([true, true, true, true, true, false], c.SlidingWindowLayers.ToArray());
                Assert.Equal(10000f, c.RopeLocalTheta);
                Assert.Equal(1e6f, c.RopeTheta);
                Assert.Equal(RopeScaling.Linear(8f), c.RopeScaling);
                Assert.True(c.HasQueryKeyNorm);
                Assert.Null(c.AttentionLogitSoftCap);
                Assert.Null(c.FinalLogitSoftCap);
                Assert.Equal(32f, c.QueryPreAttentionScalar);
                Assert.Equal(10000f, c.RopeThetaForLayer(0));
                Assert.False(c.RopeScalingAppliesToLayer(0));
                Assert.Equal(1e6f, c.RopeThetaForLayer(5));
                Assert.True(c.RopeScalingAppliesToLayer(5));
                break;
        }
    }

    [Fact]
    public void Llama3_rope_factors_from_config_json_equal_the_gguf_rope_freqs_tensor()
    {
        foreach (var set in SharedModels.FamilySets)
        {
            using var gguf = ModelCheckpoint.Open(SharedModels.Family(set, "llama3", "model.gguf"));
            using var hf = ModelCheckpoint.Open(SharedModels.Family(set, "llama3", "hf"));
            var fromGguf = gguf.Config.RopeFrequencyFactors!.Value;
            var fromHf = hf.Config.RopeFrequencyFactors!.Value;
            Assert.Equal(fromGguf.Select(BitConverter.SingleToInt32Bits), fromHf.Select(BitConverter.SingleToInt32Bits));
            Assert.Equal(new Llama3RopeParameters(8f, 1f, 4f, 64), hf.Config.RopeScaling.Llama3);
            Assert.Null(gguf.Config.RopeScaling.Llama3);
            Assert.False(gguf.TryGetTensor(TensorNames.RopeFrequencies, out _));
        }
    }

    [Fact]
    public void Gemma_norms_become_one_plus_w_in_f32_and_match_the_gguf()
    {
        using var hf = ModelCheckpoint.Open(SharedModels.Family("main", "gemma3", "hf-bf16"));
        using var gguf = ModelCheckpoint.Open(SharedModels.Family("main", "gemma3", "model.gguf"));
        var norm = hf.GetTensor(TensorNames.AttentionQueryNorm(0));
        Assert.True(norm.IsTransformed);
        Assert.Equal(TensorDataType.F32, norm.DataType);
        Assert.Equal("model.layers.0.self_attn.q_norm.weight", norm.SourceName);
        Assert.False(gguf.GetTensor(TensorNames.AttentionQueryNorm(0)).IsTransformed);
        // the stored w is around 0, the multiplier around 1
        Assert.InRange(norm.ToFloat32Array().Average(), 0.5, 1.5);
    }

    [Fact]
    public void F16_gguf_with_llama2_vocabulary_opens_without_copying_weights()
    {
        using var model = ModelCheckpoint.Open(SharedModels.TinyRandomF16Gguf);
        var c = model.Config;
        Assert.Equal((8, 1, 2, 2, 4, 32, 32000, 4096), (c.HiddenSize, c.LayerCount, c.HeadCount, c.KeyValueHeadCount, c.HeadDim, c.IntermediateSize, c.VocabSize, c.ContextLength));
        Assert.False(c.TiedEmbeddings);
        Assert.Equal(10000f, c.RopeTheta); // llama.cpp's default: the file has no rope.freq_base
        Assert.Equal(TensorDataType.F16, model.GetTensor(TensorNames.TokenEmbedding).DataType);
        Assert.Equal(TensorDataType.F32, model.GetTensor(TensorNames.AttentionNorm(0)).DataType);
        Assert.Equal(TensorDataType.F16, model.GetTensor(TensorNames.AttentionQuery(0)).DataType); // permutation keeps the dtype
        Assert.Equal([32000L, 8L], model.GetTensor(TensorNames.Output).Shape.ToArray());
        model.EnsureAllFinite();

        var tokens = model.Gguf!.GetStringArray("tokenizer.ggml.tokens");
        Assert.Equal(32000, tokens.Length);
        Assert.Equal("<s>", tokens[1]);
        Assert.Equal(32000, model.Gguf.GetFloat32Array("tokenizer.ggml.scores").Length);
        Assert.Equal(32000, model.Gguf.GetInt32Array("tokenizer.ggml.token_type").Length);
        Assert.Equal("llama", model.Gguf.GetString("tokenizer.ggml.model"));
        Assert.Equal(1u, model.Gguf.GetUInt32("tokenizer.ggml.bos_token_id"));
    }
}
