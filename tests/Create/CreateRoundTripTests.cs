using IlgpuLlm.Tests.Support;
using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Formats;
using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Tests.Formats;

namespace IlgpuLlm.Tests.Create;

/// <summary>
/// Every family's tiny random model, in every storage type, written as a GGUF and as a Hugging Face
/// folder and opened again: both must give the config the generator intended and the same tensors
/// bit for bit. The readers normalise llama.cpp's conventions (permuted q/k rows, 1 + w norms,
/// rope_freqs) and transformers' onto one layout, so this shows each writer applies its format's
/// conventions as the exact inverse of its reader.
/// </summary>
public class CreateRoundTripTests
{
    public static IEnumerable<object[]> FamiliesAndTypes =>
        from family in Enum.GetValues<ModelFamily>()
        from type in new[] { StorageType.F32, StorageType.F16, StorageType.BF16 }
        select new object[] { family, type };

    [Theory]
    [MemberData(nameof(FamiliesAndTypes))]
    public void TinyPresetOpensAsTheIntendedModelFromBothFormats(ModelFamily family, StorageType type)
    {
        using var temp = new TempFolder();
        var model = RandomModel.Create(family, "tiny", type, seed: 7);
        string ggufPath = temp.File("model.gguf"), hfPath = temp.File("hf");
        var ggufPlan = model.PlanGguf(ggufPath);
        var hfPlan = model.PlanHuggingFace(hfPath);
        ggufPlan.Write();
        hfPlan.Write();
        Assert.Equal(ggufPlan.TotalBytes, new FileInfo(ggufPath).Length);
        Assert.Equal(hfPlan.TotalBytes, hfPlan.Files.Sum(f => new FileInfo(f.Path).Length));
        Assert.False(Directory.EnumerateFiles(temp.Root, "*.partial", SearchOption.AllDirectories).Any());

        using var gguf = ModelCheckpoint.Open(ggufPath);
        using var hf = ModelCheckpoint.Open(hfPath);
        Assert.Equal(ModelSourceFormat.Gguf, gguf.Format);
        Assert.Equal(ModelSourceFormat.HuggingFace, hf.Format);

        // config.json states everything, the Llama 3 parameters included.
        Assert.Equal(ModelComparison.Describe(model.Config), ModelComparison.Describe(hf.Config));
        Assert.Equal(model.Config, hf.Config);
        // A GGUF carries Llama 3 rope scaling only as its frequency factors.
        var ggufConfig = gguf.Config with { RopeScaling = gguf.Config.RopeScaling with { Llama3 = model.Config.RopeScaling.Llama3 } };
        Assert.Equal(ModelComparison.Describe(model.Config), ModelComparison.Describe(ggufConfig));
        Assert.Equal(model.Config, ggufConfig);

        ModelComparison.AssertSameTensors(gguf, hf);
        using var intended = model.ToCheckpoint();
        ModelComparison.AssertSameTensors(intended, gguf);

        // Matrices keep the requested type; llama.cpp's converter keeps 1-D tensors in F32.
        foreach (var tensor in gguf.Tensors)
            Assert.Equal(tensor.Shape.Length == 1 ? StorageType.F32 : type, tensor.DataType);
        foreach (var tensor in hf.Tensors.Where(t => t.Shape.Length == 2))
            Assert.Equal(type, tensor.DataType);
    }

    /// <summary>Configs beyond the presets, each written in the formats that can state it.</summary>
    public static IEnumerable<object[]> Variants()
    {
        ModelConfig Tiny(ModelFamily family) => RandomModel.GetPreset(family, "tiny").Config;
        var llama = Tiny(ModelFamily.Llama) with { RopeScaling = RopeScaling.Linear(4f), RopeFrequencyFactors = null };
        yield return ["llama, q/k/v biases (permuted too), linear rope scaling", llama with { HasQkvBias = true }, true, false];
        yield return ["llama, end-of-turn id", llama with { EotTokenId = 300, StopTokenIds = [257, 300], TiedEmbeddings = true }, true, false];
        yield return ["llama, plain rope, pad id", llama with { RopeScaling = RopeScaling.None, PadTokenId = 0 }, true, true];
        var qwen = Tiny(ModelFamily.Qwen2);
        yield return ["qwen2, sliding window from layer 1", qwen with { SlidingWindow = 64, SlidingWindowLayers = [false, true] }, false, true];
        var gemma2 = Tiny(ModelFamily.Gemma2);
        yield return ["gemma2, no final soft-cap", gemma2 with { FinalLogitSoftCap = null }, true, true];
        var gemma3 = Tiny(ModelFamily.Gemma3);
        yield return ["gemma3, linear rope scaling", gemma3 with { RopeScaling = RopeScaling.Linear(8f) }, true, true];
        yield return ["gemma3, local base 20000, own pattern, soft-caps", gemma3 with
        {
            RopeLocalTheta = 20_000f, SlidingWindowLayers = [true, false, true, false, true, false],
            AttentionLogitSoftCap = 40f, FinalLogitSoftCap = 20f, QueryPreAttentionScalar = 64f,
        }, false, true];
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void VariantsOpenAsWritten(string what, ModelConfig config, bool gguf, bool huggingFace)
    {
        using var temp = new TempFolder();
        var model = RandomModel.Create(config, StorageType.BF16, seed: 21, name: what);
        using var intended = model.ToCheckpoint();
        if (gguf)
        {
            model.PlanGguf(temp.File("m.gguf")).Write();
            using var fromGguf = ModelCheckpoint.Open(temp.File("m.gguf"));
            Assert.Equal(ModelComparison.Describe(config), ModelComparison.Describe(fromGguf.Config));
            Assert.Equal(config, fromGguf.Config);
            ModelComparison.AssertSameTensors(intended, fromGguf);
        }
        else
            Assert.Throws<NotSupportedException>(() => model.PlanGguf(temp.File("m.gguf")));
        if (huggingFace)
        {
            model.PlanHuggingFace(temp.File("hf")).Write();
            using var fromFolder = ModelCheckpoint.Open(temp.File("hf"));
            Assert.Equal(ModelComparison.Describe(config), ModelComparison.Describe(fromFolder.Config));
            Assert.Equal(config, fromFolder.Config);
            ModelComparison.AssertSameTensors(intended, fromFolder);
        }
        else
            Assert.Throws<NotSupportedException>(() => model.PlanHuggingFace(temp.File("hf")));
    }

    [Theory]
    [InlineData(ModelFamily.Llama)]
    [InlineData(ModelFamily.Qwen2)]
    public void GgufQueryRowsArePermutedForLlamaOnly(ModelFamily family)
    {
        using var temp = new TempFolder();
        var model = RandomModel.Create(family, "tiny", StorageType.F32, seed: 3);
        model.PlanGguf(temp.File("m.gguf")).Write();
        using var file = GgufFile.Open(temp.File("m.gguf"));
        var source = model.Tensors.Single(t => t.Name == TensorNames.AttentionQuery(0)).ToFloat32Array();
        var stored = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(file.GetTensorBytes(file.GetTensor(TensorNames.AttentionQuery(0)))).ToArray();
        int rowLength = model.Config.HiddenSize, d = model.Config.HeadDim;
        // convert_hf_to_gguf.py LlamaModel.permute: file row h·d + 2k + j is transformers row h·d + j·d/2 + k.
        int h = 1, k = 3, j = 1;
        int fileRow = h * d + 2 * k + j;
        int transformersRow = family == ModelFamily.Llama ? h * d + j * d / 2 + k : fileRow;
        Assert.Equal(source.AsSpan(transformersRow * rowLength, rowLength).ToArray(), stored.AsSpan(fileRow * rowLength, rowLength).ToArray());
    }

    [Theory]
    [InlineData(ModelFamily.Gemma)]
    [InlineData(ModelFamily.Gemma3)]
    public void GemmaNormsAreOnePlusWInGgufAndWInSafetensors(ModelFamily family)
    {
        using var temp = new TempFolder();
        var model = RandomModel.Create(family, "tiny", StorageType.BF16, seed: 5);
        model.PlanGguf(temp.File("m.gguf")).Write();
        model.PlanHuggingFace(temp.File("hf")).Write();
        using var gguf = GgufFile.Open(temp.File("m.gguf"));
        using var safetensors = SafetensorsFile.Open(temp.File("hf/model.safetensors"));
        foreach (var name in new[] { TensorNames.AttentionNorm(0), TensorNames.OutputNorm })
        {
            var multiplier = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(gguf.GetTensorBytes(gguf.GetTensor(name))).ToArray();
            var info = safetensors.TensorsByName[TensorNames.ToHuggingFace(name, family)];
            Assert.Equal("BF16", info.DType);
            var w = new float[multiplier.Length];
            StorageType.BF16.Format().Widen(ReadBytes(temp.File("hf/model.safetensors"), info.FileOffset, (int)info.ByteLength), w);
            for (int i = 0; i < w.Length; i++)
                Assert.Equal(multiplier[i], 1f + w[i]);
            Assert.Contains(multiplier, m => m != 1f);
        }
    }

    [Fact]
    public void BothFormatsCarryTheSameByteLevelTokenizer()
    {
        using var temp = new TempFolder();
        var model = RandomModel.Create(ModelFamily.Qwen2, "tiny", StorageType.F16, seed: 1);
        model.PlanGguf(temp.File("m.gguf")).Write();
        model.PlanHuggingFace(temp.File("hf")).Write();

        var fromFolder = TokenizerFactory.Open(temp.File("hf"));
        using var gguf = GgufFile.Open(temp.File("m.gguf"));
        Assert.Equal("gpt2", gguf.GetString("tokenizer.ggml.model"));
        var fromGguf = ByteLevelBpeTokenizer.FromGgufVocabulary(
            gguf.GetStringArray("tokenizer.ggml.tokens"), gguf.GetInt32Array("tokenizer.ggml.token_type"),
            gguf.GetStringArray("tokenizer.ggml.merges"), gguf.GetString("tokenizer.ggml.pre"),
            (int)gguf.GetUInt32("tokenizer.ggml.bos_token_id"), (int)gguf.GetUInt32("tokenizer.ggml.eos_token_id"),
            eotId: null, padId: null, addBos: gguf.GetBool("tokenizer.ggml.add_bos_token"));

        Assert.Equal(model.Config.VocabSize, fromFolder.VocabSize);
        Assert.Equal(SyntheticVocabulary.BosId, fromFolder.Special.Bos);
        Assert.Equal(SyntheticVocabulary.EosId, fromFolder.Special.Eos);
        Assert.True(fromFolder.AddBosByDefault);

        // Filler words are reachable through their merges: " a" is the first, "aa" follows " z".
        Assert.Equal([SyntheticVocabulary.MinimumSize], fromFolder.Encode(" a", addBos: false, parseSpecial: false));
        Assert.Equal([SyntheticVocabulary.MinimumSize + 26], fromFolder.Encode("aa", addBos: false, parseSpecial: false));
        foreach (var text in new[] { "ab ba cab, zz!", "héllo wörld — 日本語 🎉", "\n\t  x" })
        {
            var ids = fromFolder.Encode(text, addBos: true, parseSpecial: false);
            Assert.Equal(ids, fromGguf.Encode(text, addBos: true, parseSpecial: false));
            Assert.Equal(SyntheticVocabulary.BosId, ids[0]);
            Assert.Equal(text, fromFolder.Decode(ids));
        }
    }

    static byte[] ReadBytes(string path, long offset, int count)
    {
        using var stream = File.OpenRead(path);
        stream.Position = offset;
        var bytes = new byte[count];
        stream.ReadExactly(bytes);
        return bytes;
    }
}
