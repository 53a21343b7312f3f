using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace IlgpuLlm.Tests.Formats;

/// <summary>A tensor for the test writers: a row-major shape and its raw bytes.</summary>
public sealed record TestTensor(string Name, long[] Shape, byte[] Data, uint GgmlType = 0, string SafetensorsDType = "F32")
{
    public static TestTensor F32(string name, long[] shape, Func<int, float> value)
    {
        int n = (int)shape.Aggregate(1L, (a, b) => a * b);
        var values = new float[n];
        for (int i = 0; i < n; i++) values[i] = value(i);
        return new TestTensor(name, shape, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
    }
}

/// <summary>
/// Writes GGUF bytes with every header field overridable, so tests can build files that lie
/// in exactly one place.
/// </summary>
public sealed class GgufWriter
{
    readonly List<(string Key, uint Type, Action<BinaryWriter> Value)> _metadata = [];

    public uint Magic { get; set; } = 0x46554747;
    public uint Version { get; set; } = 3;
    public ulong? TensorCountOverride { get; set; }
    public ulong? MetadataCountOverride { get; set; }
    public int Alignment { get; set; } = 32;
    public List<TestTensor> Tensors { get; } = [];

    /// <summary>Per-tensor overrides of the stored offset (relative to the data section) and dims (GGUF order).</summary>
    public Dictionary<string, ulong> OffsetOverrides { get; } = [];
    public Dictionary<string, ulong[]> DimensionOverrides { get; } = [];

    public GgufWriter Raw(string key, uint type, Action<BinaryWriter> value)
    {
        _metadata.Add((key, type, value));
        return this;
    }

    public GgufWriter Remove(string key)
    {
        _metadata.RemoveAll(m => m.Key == key);
        return this;
    }

    public GgufWriter Replace(string key, uint type, Action<BinaryWriter> value)
    {
        int i = _metadata.FindIndex(m => m.Key == key);
        if (i < 0) return Raw(key, type, value);
        _metadata[i] = (key, type, value);
        return this;
    }

    public GgufWriter String(string key, string value) => Replace(key, 8, w => WriteString(w, value));
    public GgufWriter UInt32(string key, uint value) => Replace(key, 4, w => w.Write(value));
    public GgufWriter Float32(string key, float value) => Replace(key, 6, w => w.Write(value));
    public GgufWriter Bool(string key, bool value) => Replace(key, 7, w => w.Write(value));

    public GgufWriter StringArray(string key, string[] values) => Replace(key, 9, w =>
    {
        w.Write(8u);
        w.Write((ulong)values.Length);
        foreach (var v in values) WriteString(w, v);
    });

    public GgufWriter Float32Array(string key, float[] values) => Replace(key, 9, w =>
    {
        w.Write(6u);
        w.Write((ulong)values.Length);
        foreach (var v in values) w.Write(v);
    });

    public GgufWriter Int32Array(string key, int[] values) => Replace(key, 9, w =>
    {
        w.Write(5u);
        w.Write((ulong)values.Length);
        foreach (var v in values) w.Write(v);
    });

    public static void WriteString(BinaryWriter w, string value)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    /// <summary>A writer holding a parsed file's metadata and tensors, to re-emit it (optionally edited).</summary>
    public static GgufWriter FromFile(IlgpuLlm.Model.Formats.GgufFile file)
    {
        var writer = new GgufWriter { Version = file.Version, Alignment = file.Alignment };
        foreach (var entry in file.Metadata)
            writer.Raw(entry.Key, (uint)entry.Type, w => WriteValue(w, entry.Type, entry.Value));
        foreach (var t in file.Tensors)
            writer.Tensors.Add(new TestTensor(t.Name, [.. t.Shape], file.GetTensorBytes(t).ToArray(), (uint)t.Type));
        return writer;
    }

    static void WriteValue(BinaryWriter w, IlgpuLlm.Model.Formats.GgufValueType type, object value)
    {
        switch (value)
        {
            case byte v: w.Write(v); break;
            case sbyte v: w.Write(v); break;
            case ushort v: w.Write(v); break;
            case short v: w.Write(v); break;
            case uint v: w.Write(v); break;
            case int v: w.Write(v); break;
            case float v: w.Write(v); break;
            case bool v: w.Write(v); break;
            case ulong v: w.Write(v); break;
            case long v: w.Write(v); break;
            case double v: w.Write(v); break;
            case string v: WriteString(w, v); break;
            case IlgpuLlm.Model.Formats.GgufArray a:
                w.Write((uint)a.ElementType);
                w.Write((ulong)a.Count);
                foreach (var item in a.Items) WriteValue(w, a.ElementType, item!);
                break;
            default: throw new ArgumentException($"cannot write {type}");
        }
    }

    /// <summary>
    /// The header alone, for tensors given as (name, row-major shape, ggml type, bytes) without
    /// data; returns the header and the length the whole file must have.
    /// </summary>
    public (byte[] Header, long FileLength) BuildHeaderFor(IEnumerable<(string Name, long[] Shape, uint Type, long Bytes)> tensors)
    {
        var list = tensors.ToList();
        Tensors.Clear();
        long offset = 0;
        foreach (var t in list)
        {
            Tensors.Add(new TestTensor(t.Name, t.Shape, [], t.Type));
            OffsetOverrides[t.Name] = (ulong)offset;
            offset += AlignUp(t.Bytes, Alignment);
        }
        var header = Build();
        return (header, header.Length + offset);
    }

    public byte[] Build()
    {
        using var stream = new MemoryStream();
        using var w = new BinaryWriter(stream);
        w.Write(Magic);
        w.Write(Version);
        w.Write(TensorCountOverride ?? (ulong)Tensors.Count);
        w.Write(MetadataCountOverride ?? (ulong)_metadata.Count);
        foreach (var (key, type, value) in _metadata)
        {
            WriteString(w, key);
            w.Write(type);
            value(w);
        }
        ulong offset = 0;
        var offsets = new List<ulong>();
        foreach (var t in Tensors)
        {
            WriteString(w, t.Name);
            var dims = DimensionOverrides.TryGetValue(t.Name, out var d) ? d : t.Shape.Reverse().Select(x => (ulong)x).ToArray();
            w.Write((uint)dims.Length);
            foreach (var dim in dims) w.Write(dim);
            w.Write(t.GgmlType);
            w.Write(OffsetOverrides.TryGetValue(t.Name, out var o) ? o : offset);
            offsets.Add(offset);
            offset += (ulong)AlignUp(t.Data.Length, Alignment);
        }
        Pad(w, Alignment);
        foreach (var t in Tensors)
        {
            w.Write(t.Data);
            Pad(w, Alignment);
        }
        w.Flush();
        return stream.ToArray();
    }

    static long AlignUp(long value, int alignment) => (value + alignment - 1) / alignment * alignment;

    static void Pad(BinaryWriter w, int alignment)
    {
        while (w.BaseStream.Position % alignment != 0) w.Write((byte)0);
    }
}

/// <summary>Writes safetensors bytes; the header can be replaced wholesale for malformed cases.</summary>
public static class SafetensorsWriter
{
    public static byte[] Build(IEnumerable<TestTensor> tensors, Func<string, string>? editHeader = null)
    {
        var header = new Dictionary<string, object> { ["__metadata__"] = new Dictionary<string, string> { ["format"] = "pt" } };
        long offset = 0;
        var list = tensors.ToList();
        foreach (var t in list)
        {
            header[t.Name] = new { dtype = t.SafetensorsDType, shape = t.Shape, data_offsets = new[] { offset, offset + t.Data.Length } };
            offset += t.Data.Length;
        }
        string json = JsonSerializer.Serialize(header);
        if (editHeader != null) json = editHeader(json);
        var headerBytes = Encoding.UTF8.GetBytes(json);
        using var stream = new MemoryStream();
        using var w = new BinaryWriter(stream);
        w.Write((ulong)headerBytes.Length);
        w.Write(headerBytes);
        foreach (var t in list) w.Write(t.Data);
        w.Flush();
        return stream.ToArray();
    }
}

/// <summary>
/// A tiny complete Llama model (hidden 8, 1 layer, 2 heads, 1 kv head, ff 16, vocab 16) that the
/// malformed-file tests break in one place at a time.
/// </summary>
public static class TinyLlama
{
    public const int Hidden = 8, Layers = 1, Heads = 2, KvHeads = 1, HeadDim = 4, FeedForward = 16, Vocab = 16, Context = 32;

    /// <summary>Canonical (GGUF) names and row-major shapes.</summary>
    public static List<TestTensor> Tensors()
    {
        int seed = 0;
        float Next(int i) => (float)Math.Sin(++seed * 0.37 + i) * 0.1f;
        var tensors = new List<TestTensor> { TestTensor.F32("token_embd.weight", [Vocab, Hidden], Next) };
        for (int l = 0; l < Layers; l++)
        {
            tensors.Add(TestTensor.F32($"blk.{l}.attn_norm.weight", [Hidden], Next));
            tensors.Add(TestTensor.F32($"blk.{l}.attn_q.weight", [Heads * HeadDim, Hidden], Next));
            tensors.Add(TestTensor.F32($"blk.{l}.attn_k.weight", [KvHeads * HeadDim, Hidden], Next));
            tensors.Add(TestTensor.F32($"blk.{l}.attn_v.weight", [KvHeads * HeadDim, Hidden], Next));
            tensors.Add(TestTensor.F32($"blk.{l}.attn_output.weight", [Hidden, Heads * HeadDim], Next));
            tensors.Add(TestTensor.F32($"blk.{l}.ffn_norm.weight", [Hidden], Next));
            tensors.Add(TestTensor.F32($"blk.{l}.ffn_gate.weight", [FeedForward, Hidden], Next));
            tensors.Add(TestTensor.F32($"blk.{l}.ffn_up.weight", [FeedForward, Hidden], Next));
            tensors.Add(TestTensor.F32($"blk.{l}.ffn_down.weight", [Hidden, FeedForward], Next));
        }
        tensors.Add(TestTensor.F32("output_norm.weight", [Hidden], Next));
        tensors.Add(TestTensor.F32("output.weight", [Vocab, Hidden], Next));
        return tensors;
    }

    public static GgufWriter Gguf()
    {
        var w = new GgufWriter()
            .String("general.architecture", "llama")
            .UInt32("llama.context_length", Context)
            .UInt32("llama.embedding_length", Hidden)
            .UInt32("llama.block_count", Layers)
            .UInt32("llama.feed_forward_length", FeedForward)
            .UInt32("llama.attention.head_count", Heads)
            .UInt32("llama.attention.head_count_kv", KvHeads)
            .Float32("llama.attention.layer_norm_rms_epsilon", 1e-5f)
            .Float32("llama.rope.freq_base", 10000f)
            .StringArray("tokenizer.ggml.tokens", Enumerable.Range(0, Vocab).Select(i => $"t{i}").ToArray())
            .UInt32("tokenizer.ggml.bos_token_id", 1)
            .UInt32("tokenizer.ggml.eos_token_id", 2);
        w.Tensors.AddRange(Tensors());
        return w;
    }

    public static Dictionary<string, object?> HfConfig() => new()
    {
        ["model_type"] = "llama",
        ["architectures"] = new[] { "LlamaForCausalLM" },
        ["hidden_size"] = Hidden,
        ["intermediate_size"] = FeedForward,
        ["num_hidden_layers"] = Layers,
        ["num_attention_heads"] = Heads,
        ["num_key_value_heads"] = KvHeads,
        ["vocab_size"] = Vocab,
        ["max_position_embeddings"] = Context,
        ["rms_norm_eps"] = 1e-5,
        ["rope_theta"] = 10000.0,
        ["tie_word_embeddings"] = false,
        ["bos_token_id"] = 1,
        ["eos_token_id"] = 2,
    };

    static readonly Dictionary<string, string> CanonicalToHf = new()
    {
        ["token_embd.weight"] = "model.embed_tokens.weight",
        ["output_norm.weight"] = "model.norm.weight",
        ["output.weight"] = "lm_head.weight",
        ["attn_norm.weight"] = "input_layernorm.weight",
        ["attn_q.weight"] = "self_attn.q_proj.weight",
        ["attn_k.weight"] = "self_attn.k_proj.weight",
        ["attn_v.weight"] = "self_attn.v_proj.weight",
        ["attn_output.weight"] = "self_attn.o_proj.weight",
        ["ffn_norm.weight"] = "post_attention_layernorm.weight",
        ["ffn_gate.weight"] = "mlp.gate_proj.weight",
        ["ffn_up.weight"] = "mlp.up_proj.weight",
        ["ffn_down.weight"] = "mlp.down_proj.weight",
    };

    public static string HfName(string canonical)
    {
        if (CanonicalToHf.TryGetValue(canonical, out var n)) return n;
        var parts = canonical.Split('.', 3);
        return $"model.layers.{parts[1]}.{CanonicalToHf[parts[2]]}";
    }

    public static List<TestTensor> HfTensors() => Tensors().Select(t => t with { Name = HfName(t.Name) }).ToList();

    /// <summary>Writes config.json + model.safetensors into a new folder and returns it.</summary>
    public static string WriteHfFolder(string root, string name, Action<Dictionary<string, object?>>? editConfig = null,
        Func<List<TestTensor>, List<TestTensor>>? editTensors = null, Func<string, string>? editHeader = null)
    {
        string folder = Path.Combine(root, name);
        Directory.CreateDirectory(folder);
        var config = HfConfig();
        editConfig?.Invoke(config);
        File.WriteAllText(Path.Combine(folder, "config.json"), JsonSerializer.Serialize(config));
        var tensors = HfTensors();
        if (editTensors != null) tensors = editTensors(tensors);
        File.WriteAllBytes(Path.Combine(folder, "model.safetensors"), SafetensorsWriter.Build(tensors, editHeader));
        return folder;
    }

    /// <summary>A llama2.c checkpoint: the 7-int header and f32 weights in run.c's order.</summary>
    public static byte[] Llama2c(int[]? header = null, int extraFloats = 0)
    {
        header ??= [Hidden, FeedForward, Layers, Heads, KvHeads, Vocab, Context];
        int dim = Hidden, hidden = FeedForward, layers = Layers, kv = KvHeads * HeadDim, vocab = Vocab;
        long floats = (long)vocab * dim + layers * dim + layers * dim * dim + 2L * layers * dim * kv + layers * dim * dim
            + layers * dim + 3L * layers * dim * hidden + dim + (long)Context * HeadDim + extraFloats;
        using var stream = new MemoryStream();
        using var w = new BinaryWriter(stream);
        foreach (int h in header) w.Write(h);
        for (long i = 0; i < floats; i++) w.Write((float)Math.Cos(i) * 0.1f);
        w.Flush();
        return stream.ToArray();
    }
}
