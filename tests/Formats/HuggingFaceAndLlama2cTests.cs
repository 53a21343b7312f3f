using System.Text.Json;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Formats;

namespace IlgpuLlm.Tests.Formats;

public sealed class HuggingFaceAndLlama2cTests : IDisposable
{
    readonly string _directory = Directory.CreateTempSubdirectory("ilgpullm-hf-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_directory, recursive: true); }
        catch (IOException) { }
    }

    [Fact]
    public void A_sharded_folder_is_the_same_model_as_the_single_file()
    {
        string single = TinyLlama.WriteHfFolder(_directory, "single");
        string sharded = TinyLlama.WriteHfFolder(_directory, "sharded");
        File.Delete(Path.Combine(sharded, "model.safetensors"));
        var tensors = TinyLlama.HfTensors();
        var parts = new[] { tensors.Take(4).ToList(), tensors.Skip(4).ToList() };
        var map = new Dictionary<string, string>();
        for (int i = 0; i < parts.Length; i++)
        {
            string name = $"model-0000{i + 1}-of-00002.safetensors";
            File.WriteAllBytes(Path.Combine(sharded, name), SafetensorsWriter.Build(parts[i]));
            foreach (var t in parts[i]) map[t.Name] = name;
        }
        File.WriteAllText(Path.Combine(sharded, "model.safetensors.index.json"),
            JsonSerializer.Serialize(new { metadata = new { total_size = 0 }, weight_map = map }));

        using var a = ModelCheckpoint.Open(single);
        using var b = ModelCheckpoint.Open(sharded);
        Assert.Equal(a.Config, b.Config);
        ModelComparison.AssertSameTensors(a, b);
        Assert.Contains("model-00002-of-00002.safetensors", b.GetTensor(TensorNames.Output).SourcePath);
    }

    [Fact]
    public void Stop_tokens_come_from_config_and_generation_config()
    {
        string folder = TinyLlama.WriteHfFolder(_directory, "eos", c =>
        {
            c["eos_token_id"] = new[] { 2, 7 };
            c["pad_token_id"] = -1;
        });
        File.WriteAllText(Path.Combine(folder, "generation_config.json"), "{\"eos_token_id\": [9, 2], \"bos_token_id\": 1}");
        using var model = ModelCheckpoint.Open(folder);
        Assert.Equal(2, model.Config.EosTokenId);
        Assert.Equal([2, 7, 9], model.Config.StopTokenIds.ToArray());
        Assert.Null(model.Config.PadTokenId);
        Assert.Equal(1, model.Config.BosTokenId);
    }

    [Fact]
    public void Tied_embeddings_ignore_a_stored_lm_head_as_transformers_does()
    {
        string folder = TinyLlama.WriteHfFolder(_directory, "tied", c => c["tie_word_embeddings"] = true);
        using var model = ModelCheckpoint.Open(folder);
        Assert.True(model.Config.TiedEmbeddings);
        Assert.False(model.TryGetTensor(TensorNames.Output, out _));
    }

    [Fact]
    public void Transformers_5_rope_parameters_read_like_rope_scaling()
    {
        string old = TinyLlama.WriteHfFolder(_directory, "v4", c =>
        {
            c["rope_theta"] = 500000.0;
            c["rope_scaling"] = new Dictionary<string, object>
            {
                ["rope_type"] = "llama3", ["factor"] = 8.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0,
                ["original_max_position_embeddings"] = 16,
            };
        });
        string v5 = TinyLlama.WriteHfFolder(_directory, "v5", c =>
        {
            c.Remove("rope_theta");
            c["rope_parameters"] = new Dictionary<string, object>
            {
                ["rope_type"] = "llama3", ["rope_theta"] = 500000.0, ["factor"] = 8.0, ["low_freq_factor"] = 1.0,
                ["high_freq_factor"] = 4.0, ["original_max_position_embeddings"] = 16,
            };
        });
        using var a = ModelCheckpoint.Open(old);
        using var b = ModelCheckpoint.Open(v5);
        Assert.Equal(RopeScalingType.Llama3, a.Config.RopeScaling.Type);
        Assert.Equal(a.Config, b.Config);
    }

    [Fact]
    public void Llama2c_and_gguf_of_the_same_weights_agree_including_a_separate_classifier()
    {
        // A llama2.c file with vocab_size negated stores its own classifier after the rope tables.
        var bin = TinyLlama.Llama2c([TinyLlama.Hidden, TinyLlama.FeedForward, 1, TinyLlama.Heads, TinyLlama.KvHeads, -TinyLlama.Vocab, TinyLlama.Context],
            extraFloats: TinyLlama.Vocab * TinyLlama.Hidden);
        string path = Path.Combine(_directory, "unshared.bin");
        File.WriteAllBytes(path, bin);
        using var model = ModelCheckpoint.Open(path);
        Assert.False(model.Config.TiedEmbeddings);
        var classifier = model.GetTensor(TensorNames.Output);
        Assert.Equal("wcls", classifier.SourceName);
        // wcls is the last vocab·dim floats of the file
        var expected = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bin.AsSpan(bin.Length - TinyLlama.Vocab * TinyLlama.Hidden * 4)).ToArray();
        Assert.Equal(expected, classifier.ToFloat32Array());
    }

    [Fact]
    public void Adjacent_pair_rows_are_reordered_to_half_split_per_head()
    {
        // Rows of one head numbered 0..7 in llama.cpp order hold transformers rows
        // 0,4,1,5,2,6,3,7 (permute: [2, 4] → swap axes); undoing it restores 0..7.
        const int heads = 2, headDim = 8;
        var rows = new float[heads * headDim];
        int[] hfRowOfGgufRow = [0, 4, 1, 5, 2, 6, 3, 7];
        for (int h = 0; h < heads; h++)
            for (int r = 0; r < headDim; r++)
                rows[h * headDim + r] = h * 100 + hfRowOfGgufRow[r];
        var result = new float[rows.Length];
        unsafe
        {
            fixed (float* source = rows)
            fixed (float* destination = result)
                RotaryRowOrder.ToHalfSplit((byte*)source, (byte*)destination, heads, headDim, sizeof(float));
        }
        Assert.Equal(Enumerable.Range(0, heads * headDim).Select(i => (float)(i / headDim * 100 + i % headDim)), result);
    }
}
