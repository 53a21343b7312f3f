using System.Diagnostics;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Formats;

namespace IlgpuLlm.Tests.Formats;

public sealed class GgufFileTests : IDisposable
{
    readonly string _directory = Directory.CreateTempSubdirectory("ilgpullm-gguf-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_directory, recursive: true); }
        catch (IOException) { }
    }

    string Write(string name, byte[] bytes)
    {
        string path = Path.Combine(_directory, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Fact]
    public void Every_metadata_value_type_and_nested_arrays_read_back()
    {
        var writer = new GgufWriter { Version = 2, Alignment = 64 }
            .Raw("t.u8", 0, w => w.Write((byte)200))
            .Raw("t.i8", 1, w => w.Write((sbyte)-100))
            .Raw("t.u16", 2, w => w.Write((ushort)60000))
            .Raw("t.i16", 3, w => w.Write((short)-30000))
            .Raw("t.u32", 4, w => w.Write(4_000_000_000u))
            .Raw("t.i32", 5, w => w.Write(-2_000_000_000))
            .Raw("t.f32", 6, w => w.Write(1.5f))
            .Raw("t.bool", 7, w => w.Write(true))
            .String("t.string", "héllo ▁world")
            .Raw("t.u64", 10, w => w.Write(ulong.MaxValue))
            .Raw("t.i64", 11, w => w.Write(long.MinValue))
            .Raw("t.f64", 12, w => w.Write(0.1))
            .Raw("general.alignment", 4, w => w.Write(64u))
            .StringArray("t.strings", ["a", "", "ü"])
            .Float32Array("t.floats", [1f, -2f])
            .Int32Array("t.ints", [3, -4])
            .Raw("t.u8s", 9, w => { w.Write(0u); w.Write(3UL); w.Write(new byte[] { 1, 2, 255 }); })
            .Raw("t.empty", 9, w => { w.Write(4u); w.Write(0UL); })
            .Raw("t.nested", 9, w =>
            {
                w.Write(9u); w.Write(2UL);
                w.Write(5u); w.Write(2UL); w.Write(1); w.Write(2);
                w.Write(8u); w.Write(1UL); GgufWriter.WriteString(w, "x");
            });
        writer.Tensors.Add(TestTensor.F32("a", [3], i => i));
        writer.Tensors.Add(TestTensor.F32("b", [2, 5], i => -i));
        using var gguf = GgufFile.Open(Write("types.gguf", writer.Build()));

        Assert.Equal(2u, gguf.Version);
        Assert.Equal(64, gguf.Alignment);
        Assert.Equal(0, gguf.DataOffset % 64);
        Assert.Equal((byte)200, gguf.GetEntry("t.u8").Value);
        Assert.Equal((sbyte)-100, gguf.GetEntry("t.i8").Value);
        Assert.Equal(60000u, gguf.GetUInt32("t.u16"));
        Assert.Equal(-30000, gguf.GetInt32("t.i16"));
        Assert.Equal(4_000_000_000u, gguf.GetUInt32("t.u32"));
        Assert.Equal(-2_000_000_000, gguf.GetInt32("t.i32"));
        Assert.Equal(1.5f, gguf.GetFloat32("t.f32"));
        Assert.True(gguf.GetBool("t.bool"));
        Assert.Equal("héllo ▁world", gguf.GetString("t.string"));
        Assert.Equal(ulong.MaxValue, gguf.GetUInt64("t.u64"));
        Assert.Equal(long.MinValue, gguf.GetEntry("t.i64").Value);
        Assert.Equal(0.1f, gguf.GetFloat32("t.f64"));
        Assert.Equal(["a", "", "ü"], gguf.GetStringArray("t.strings"));
        Assert.Equal([1f, -2f], gguf.GetFloat32Array("t.floats"));
        Assert.Equal([3, -4], gguf.GetInt32Array("t.ints"));
        Assert.Equal([1, 2, 255], gguf.GetInt32Array("t.u8s"));
        Assert.Empty(gguf.GetArray("t.empty").Items);
        var nested = gguf.GetArray("t.nested");
        Assert.Equal(GgufValueType.Array, nested.ElementType);
        var inner = (GgufArray[])nested.Items;
        Assert.Equal([1, 2], (int[])inner[0].Items);
        Assert.Equal(["x"], (string[])inner[1].Items);

        Assert.True(gguf.Contains("t.u8"));
        Assert.False(gguf.Contains("t.absent"));
        Assert.False(gguf.TryGetString("t.absent", out _));
        Assert.True(gguf.TryGetString("t.string", out var s) && s == "héllo ▁world");
        Assert.Equal(19, gguf.Keys.Count());
        Assert.Equal("t.u8", gguf.Metadata[0].Key);

        // Integer getters take any width whose value fits, and refuse values that do not.
        Assert.Throws<ModelFormatException>(() => gguf.GetInt32("t.u32"));
        Assert.Throws<ModelFormatException>(() => gguf.GetUInt32("t.i32"));
        var wrongType = Assert.Throws<ModelFormatException>(() => gguf.GetString("t.u32"));
        Assert.Contains("t.u32", wrongType.Message);
        Assert.Contains("types.gguf", wrongType.Message);

        var b = gguf.GetTensor("b");
        Assert.Equal([2L, 5L], b.Shape.ToArray());
        Assert.Equal([5L, 2L], b.Dimensions.ToArray());
        Assert.Equal(0, b.RelativeOffset % 64);
        Assert.Equal(-9f, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(gguf.GetTensorBytes(b))[9]);
    }

    [Fact]
    public void Rewriting_a_parsed_file_reproduces_it_byte_for_byte()
    {
        foreach (var family in SharedModels.Families)
        {
            string path = SharedModels.Family("main", family, "model.gguf");
            byte[] rewritten;
            using (var gguf = GgufFile.Open(path))
                rewritten = GgufWriter.FromFile(gguf).Build();
            Assert.True(File.ReadAllBytes(path).AsSpan().SequenceEqual(rewritten), family);
        }
    }

    [Fact]
    public void A_vocabulary_only_gguf_opens_for_its_tokenizer_metadata()
    {
        using var gguf = GgufFile.Open(SharedModels.VocabOnlyGguf);
        Assert.Empty(gguf.Tensors);
        Assert.Equal("llama", gguf.GetString("tokenizer.ggml.model"));
        var tokens = gguf.GetStringArray("tokenizer.ggml.tokens");
        Assert.Equal(32000, tokens.Length);
        Assert.Equal("▁the", tokens[278]);
        Assert.Equal(tokens.Length, gguf.GetFloat32Array("tokenizer.ggml.scores").Length);
        // A model needs weights: the same file as a model is a clear error.
        var error = Assert.Throws<ModelFormatException>(() => ModelCheckpoint.Open(SharedModels.VocabOnlyGguf));
        Assert.Contains("ggml-vocab-llama-spm.gguf", error.Message);
    }

    [Fact]
    public void Gemma2_gguf_without_window_or_caps_gets_llama_cpp_defaults()
    {
        string path;
        using (var gguf = GgufFile.Open(SharedModels.Family("main", "gemma2", "model.gguf")))
            path = Write("gemma2.gguf", GgufWriter.FromFile(gguf)
                .Remove("gemma2.attention.sliding_window")
                .Remove("gemma2.attn_logit_softcapping")
                .Remove("gemma2.final_logit_softcapping").Build());
        using var model = ModelCheckpoint.Open(path);
        Assert.Equal(4096, model.Config.SlidingWindow);
        Assert.Equal(50f, model.Config.AttentionLogitSoftCap);
        Assert.Equal(30f, model.Config.FinalLogitSoftCap);
        Assert.True(model.Config.IsSlidingWindowLayer(0));
        Assert.False(model.Config.IsSlidingWindowLayer(1));
    }

    [Fact]
    public void Gemma3_gguf_sliding_pattern_and_local_base_may_be_stated()
    {
        string path;
        using (var gguf = GgufFile.Open(SharedModels.Family("main", "gemma3", "model.gguf")))
            path = Write("gemma3.gguf", GgufWriter.FromFile(gguf)
                .UInt32("gemma3.attention.sliding_window_pattern", 3)
                .Float32("gemma3.rope.freq_base_swa", 20000f).Build());
        using var model = ModelCheckpoint.Open(path);
        Assert.Equal([true, true, false, true, true, false], model.Config.SlidingWindowLayers.ToArray());
        Assert.Equal(20000f, model.Config.RopeLocalTheta);

        string missingWindow;
        using (var gguf = GgufFile.Open(SharedModels.Family("main", "gemma3", "model.gguf")))
            missingWindow = Write("gemma3-nowindow.gguf", GgufWriter.FromFile(gguf).Remove("gemma3.attention.sliding_window").Build());
        var error = Assert.Throws<ModelFormatException>(() => ModelCheckpoint.Open(missingWindow));
        Assert.Contains("gemma3.attention.sliding_window", error.Message);
    }

    /// <summary>
    /// A 3.4 GB model (a sparse file: nothing is written to disk) must open in well under a
    /// second: only the header is read; sizes and offsets are checked arithmetically.
    /// </summary>
    [Fact]
    public void A_multi_gigabyte_gguf_opens_without_touching_its_weights()
    {
        const int hidden = 4096, heads = 32, kvHeads = 8, headDim = 128, ff = 256, vocab = 196_608;
        var writer = new GgufWriter()
            .String("general.architecture", "llama")
            .UInt32("llama.context_length", 4096)
            .UInt32("llama.embedding_length", hidden)
            .UInt32("llama.block_count", 1)
            .UInt32("llama.feed_forward_length", ff)
            .UInt32("llama.attention.head_count", heads)
            .UInt32("llama.attention.head_count_kv", kvHeads)
            .Float32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
        (string, long[]) T(string name, params long[] shape) => (name, shape);
        var tensors = new[]
        {
            T("token_embd.weight", vocab, hidden),
            T("blk.0.attn_norm.weight", hidden),
            T("blk.0.attn_q.weight", heads * headDim, hidden),
            T("blk.0.attn_k.weight", kvHeads * headDim, hidden),
            T("blk.0.attn_v.weight", kvHeads * headDim, hidden),
            T("blk.0.attn_output.weight", hidden, heads * headDim),
            T("blk.0.ffn_norm.weight", hidden),
            T("blk.0.ffn_gate.weight", ff, hidden),
            T("blk.0.ffn_up.weight", ff, hidden),
            T("blk.0.ffn_down.weight", hidden, ff),
            T("output_norm.weight", hidden),
        }.Select(t => (t.Item1, t.Item2, 0u, t.Item2.Aggregate(4L, (a, b) => a * b)));
        var (header, length) = writer.BuildHeaderFor(tensors);
        string path = Path.Combine(_directory, "big.gguf");
        using (var stream = File.Create(path))
        {
            stream.Write(header);
            stream.SetLength(length);
        }
        Assert.True(length > 3_000_000_000L);

        var clock = Stopwatch.StartNew();
        using var model = ModelCheckpoint.Open(path);
        clock.Stop();
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"opening took {clock.Elapsed}");
        Assert.Equal(vocab, model.Config.VocabSize);
        Assert.True(model.Config.TiedEmbeddings);
        var embedding = model.GetTensor(TensorNames.TokenEmbedding);
        Assert.Equal((long)vocab * hidden * 4, embedding.ByteLength);
        Assert.False(embedding.IsTransformed);
        // A row far into the map reads back (zeros in a sparse file) without a copy.
        Assert.Equal(0, embedding.GetRowBytes(vocab - 1, 1)[hidden * 4 - 1]);
    }
}
