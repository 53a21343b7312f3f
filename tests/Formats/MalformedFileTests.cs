using System.Text.RegularExpressions;
using Xunit.Abstractions;
using IlgpuLlm.Model.Formats;

namespace IlgpuLlm.Tests.Formats;

/// <summary>
/// A corpus of broken model files, made here in a temp folder: truncations of every format at
/// many offsets, flipped and lying header fields, missing/misshapen/mistyped tensors, bad JSON,
/// bad alignment, non-finite weights. Each must fail with <see cref="ModelFormatException"/>
/// naming the file and the key or tensor at fault, within a time limit: never a crash, a hang,
/// an OutOfMemoryException or any other exception type.
/// </summary>
public sealed class MalformedFileTests : IClassFixture<MalformedFileTests.Workspace>
{
    /// <summary>A temp folder shared by the cases and deleted afterwards.</summary>
    public sealed class Workspace : IDisposable
    {
        public string Root { get; } = Directory.CreateTempSubdirectory("ilgpullm-malformed-").FullName;

        public void Dispose()
        {
            try { Directory.Delete(Root, recursive: true); }
            catch (IOException) { }
        }
    }

    /// <summary>
    /// One broken file: <see cref="Create"/> writes it and returns the path to open (and the path
    /// the error must name); <see cref="Mentions"/> must all appear in the message.
    /// <see cref="Act"/> defaults to opening the model.
    /// </summary>
    sealed record Case(Func<string, string> Create, string[] Mentions, Action<string>? Act = null);

    const string NamesSomething = @"'[^']+'|magic|version|tensor_count|metadata_kv_count|metadata entry #\d+|header|empty|data section|file size|JSON";

    static readonly Dictionary<string, Case> Cases = BuildCases();

    public static TheoryData<string> CaseNames()
    {
        var data = new TheoryData<string>();
        foreach (var name in Cases.Keys) data.Add(name);
        return data;
    }

    readonly Workspace _workspace;
    readonly ITestOutputHelper _output;

    public MalformedFileTests(Workspace workspace, ITestOutputHelper output)
    {
        _workspace = workspace;
        _output = output;
    }

    [Fact]
    public void The_corpus_has_at_least_30_cases() => Assert.True(Cases.Count >= 30, $"{Cases.Count} cases");

    [Theory]
    [MemberData(nameof(CaseNames))]
    public async Task Malformed_file_is_rejected_with_a_clear_message(string name)
    {
        var @case = Cases[name];
        string directory = Path.Combine(_workspace.Root, Sanitize(name));
        Directory.CreateDirectory(directory);
        string path = @case.Create(directory);

        Exception? thrown = null;
        var run = Task.Run(() =>
        {
            try
            {
                (@case.Act ?? OpenModel)(path);
            }
            catch (Exception e)
            {
                thrown = e;
            }
        });
        var finished = await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(20)));
        Assert.True(finished == run, $"{name}: no answer within 20 s (hang?)");

        Assert.NotNull(thrown);
        _output.WriteLine(thrown.Message);
        var error = Assert.IsType<ModelFormatException>(thrown);
        Assert.Contains(path, error.Message);
        Assert.StartsWith(path, error.FilePath);
        Assert.Matches(new Regex(NamesSomething), error.Message);
        foreach (var mention in @case.Mentions)
            Assert.Contains(mention, error.Message);
    }

    static void OpenModel(string path)
    {
        using var model = ModelCheckpoint.Open(path);
    }

    static void OpenModelAndCheckFinite(string path)
    {
        using var model = ModelCheckpoint.Open(path);
        model.EnsureAllFinite();
    }

    static string Sanitize(string name) => Regex.Replace(name, "[^A-Za-z0-9_.-]", "_");

    static string Write(string directory, string fileName, byte[] bytes)
    {
        string path = Path.Combine(directory, fileName);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    static byte[] Truncate(string source, long length)
    {
        using var stream = File.OpenRead(source);
        var bytes = new byte[length];
        stream.ReadExactly(bytes);
        return bytes;
    }

    static byte[] Patch(byte[] bytes, int offset, params byte[] replacement)
    {
        var copy = (byte[])bytes.Clone();
        replacement.CopyTo(copy, offset);
        return copy;
    }

    /// <summary>Copies a shared HF folder with its safetensors replaced, returning the folder.</summary>
    static string HfFolderWithSafetensors(string directory, string sharedFolder, byte[] safetensors)
    {
        File.Copy(Path.Combine(sharedFolder, "config.json"), Path.Combine(directory, "config.json"));
        File.WriteAllBytes(Path.Combine(directory, "model.safetensors"), safetensors);
        return directory;
    }

    static Dictionary<string, Case> BuildCases()
    {
        var cases = new Dictionary<string, Case>();
        void Add(string name, Func<string, string> create, params string[] mentions) => cases.Add(name, new Case(create, mentions));

        // ------------------------------------------------ GGUF: truncations of a real file
        long ggufLength = new FileInfo(SharedModels.StoriesGguf).Length;
        foreach (long cut in new long[] { 0, 2, 6, 14, 22, 40, 300, 3000, 9000, 14000, 14320, 500_000, ggufLength - 1 })
            Add($"gguf truncated at {cut}", d => Write(d, "m.gguf", Truncate(SharedModels.StoriesGguf, cut)));

        // ------------------------------------------------ GGUF: flipped and lying header fields
        Add("gguf bad magic", d => Write(d, "m.gguf", TinyLlama.Gguf().Apply(w => w.Magic = 0x46554748).Build()), "magic");
        Add("gguf version 1", d => Write(d, "m.gguf", TinyLlama.Gguf().Apply(w => w.Version = 1).Build()), "version");
        Add("gguf version 99", d => Write(d, "m.gguf", TinyLlama.Gguf().Apply(w => w.Version = 99).Build()), "version");
        Add("gguf big-endian version", d => Write(d, "m.gguf", TinyLlama.Gguf().Apply(w => w.Version = 0x03000000).Build()), "big-endian");
        Add("gguf tensor_count 2^40", d => Write(d, "m.gguf", TinyLlama.Gguf().Apply(w => w.TensorCountOverride = 1UL << 40).Build()), "tensor_count");
        Add("gguf metadata_kv_count 2^40", d => Write(d, "m.gguf", TinyLlama.Gguf().Apply(w => w.MetadataCountOverride = 1UL << 40).Build()), "metadata_kv_count");
        Add("gguf key length 2^40", d =>
        {
            var bytes = TinyLlama.Gguf().Build();
            return Write(d, "m.gguf", Patch(bytes, 24, BitConverter.GetBytes(1UL << 40)));
        }, "metadata entry #0 key");
        Add("gguf string value 2^40 bytes", d => Write(d, "m.gguf", TinyLlama.Gguf()
            .Raw("general.name", 8, w => { w.Write(1UL << 40); w.Write((byte)'x'); }).Build()), "general.name");
        Add("gguf array of 2^40 strings", d => Write(d, "m.gguf", TinyLlama.Gguf()
            .Replace("tokenizer.ggml.tokens", 9, w => { w.Write(8u); w.Write(1UL << 40); }).Build()), "tokenizer.ggml.tokens");
        Add("gguf array of 2^62 floats", d => Write(d, "m.gguf", TinyLlama.Gguf()
            .Raw("tokenizer.ggml.scores", 9, w => { w.Write(6u); w.Write(1UL << 62); }).Build()), "tokenizer.ggml.scores");
        Add("gguf unknown value type", d => Write(d, "m.gguf", TinyLlama.Gguf().Raw("general.odd", 99, _ => { }).Build()), "general.odd", "value type");
        Add("gguf unknown array element type", d => Write(d, "m.gguf", TinyLlama.Gguf()
            .Raw("general.odd", 9, w => { w.Write(42u); w.Write(1UL); }).Build()), "general.odd");
        Add("gguf arrays nested 9 deep", d => Write(d, "m.gguf", TinyLlama.Gguf().Raw("general.nested", 9, w =>
        {
            for (int i = 0; i < 9; i++) { w.Write(9u); w.Write(1UL); }
            w.Write(4u); w.Write(0UL);
        }).Build()), "general.nested");
        Add("gguf duplicate key", d => Write(d, "m.gguf", TinyLlama.Gguf().Raw("llama.block_count", 4, w => w.Write(1u)).Build()), "llama.block_count", "twice");
        Add("gguf alignment 0", d => Write(d, "m.gguf", TinyLlama.Gguf().UInt32("general.alignment", 0).Build()), "general.alignment");
        Add("gguf alignment 48", d => Write(d, "m.gguf", TinyLlama.Gguf().UInt32("general.alignment", 48).Build()), "general.alignment");
        Add("gguf alignment as string", d => Write(d, "m.gguf", TinyLlama.Gguf().String("general.alignment", "32").Build()), "general.alignment");
        Add("gguf tensor offset not aligned", d => Write(d, "m.gguf", TinyLlama.Gguf()
            .Apply(w => w.OffsetOverrides["blk.0.ffn_up.weight"] = 4).Build()), "blk.0.ffn_up.weight", "alignment");
        Add("gguf tensor offset beyond file", d => Write(d, "m.gguf", TinyLlama.Gguf()
            .Apply(w => w.OffsetOverrides["output.weight"] = 1UL << 50).Build()), "output.weight");
        Add("gguf overlapping tensors", d => Write(d, "m.gguf", TinyLlama.Gguf()
            .Apply(w => w.OffsetOverrides["blk.0.attn_k.weight"] = 0).Build()), "overlaps");
        Add("gguf tensor of 2^60 bytes", d => Write(d, "m.gguf", TinyLlama.Gguf()
            .Apply(w => w.DimensionOverrides["blk.0.ffn_up.weight"] = [1UL << 29, 1UL << 29]).Build()), "blk.0.ffn_up.weight");
        Add("gguf dims overflow int64", d => Write(d, "m.gguf", TinyLlama.Gguf()
            .Apply(w => w.DimensionOverrides["blk.0.ffn_up.weight"] = [1UL << 40, 1UL << 40]).Build()), "blk.0.ffn_up.weight", "overflow");
        Add("gguf 5 dimensions", d => Write(d, "m.gguf", TinyLlama.Gguf()
            .Apply(w => w.DimensionOverrides["blk.0.ffn_up.weight"] = [8, 16, 1, 1, 1]).Build()), "blk.0.ffn_up.weight", "n_dimensions");
        Add("gguf duplicate tensor", d => Write(d, "m.gguf", TinyLlama.Gguf()
            .Apply(w => w.Tensors.Add(w.Tensors[1])).Build()), "blk.0.attn_norm.weight", "twice");
        Add("gguf tensor name of 64 bytes", d => Write(d, "m.gguf", TinyLlama.Gguf()
            .Apply(w => w.Tensors.Add(TestTensor.F32(new string('x', 64), [4], _ => 0))).Build()), "xxxx");
        Add("gguf unknown ggml type", d => Write(d, "m.gguf", TinyLlama.Gguf()
            .Apply(w => w.Tensors[2] = w.Tensors[2] with { GgmlType = 77 }).Build()), "blk.0.attn_q.weight", "type id 77");
        Add("gguf row not a multiple of the block", d => Write(d, "m.gguf", TinyLlama.Gguf()
            .Apply(w => w.Tensors[2] = w.Tensors[2] with { GgmlType = 2 }).Build()), "blk.0.attn_q.weight", "Q4_0");

        // ------------------------------------------------ GGUF: valid file, unsupported or inconsistent model
        Add("gguf Q4_0 tensor of the wrong shape", d => Write(d, "m.gguf", QuantizedGguf(2, 32, 18)), "blk.0.ffn_up.weight", "expected shape [16, 8]");
        Add("gguf IQ2_XXS tensor", d => Write(d, "m.gguf", QuantizedGguf(16, 256, 66)), "blk.0.ffn_up.weight", "is IQ2_XXS", "supported tensor types");
        Add("gguf TQ1_0 tensor", d => Write(d, "m.gguf", QuantizedGguf(34, 256, 54)), "blk.0.ffn_up.weight", "is TQ1_0", "supported tensor types");

        // ------------------------------------------------ GGUF: quantized model (the shared Q4_K_M Llama 3) broken in one place
        Add("gguf quantized file truncated inside a block", d => Write(d, "m.gguf",
            Truncate(QuantizedModel, new FileInfo(QuantizedModel).Length - 100)), "truncated", "blk.1.ffn_up.weight");
        Add("gguf Q6_K tensor declared Q8_0 (wrong byte size)", d => Write(d, "m.gguf", EditQuantized(w =>
        {
            int i = w.Tensors.FindIndex(t => t.Name == "output.weight");
            w.Tensors[i] = w.Tensors[i] with { GgmlType = 8 };
        })), "output.weight");
        Add("gguf Q4_K tensor with a NaN scale", d => Write(d, "m.gguf", EditQuantized(w => PatchScale(w, "blk.0.ffn_up.weight", 3, 0, 0x7E00))),
            "blk.0.ffn_up.weight", "Q4_K", "block 3 has d = NaN", "finite");
        cases["gguf Q4_K tensor with a NaN scale"] = cases["gguf Q4_K tensor with a NaN scale"] with { Act = OpenModelAndCheckFinite };
        Add("gguf Q6_K tensor with an infinite scale", d => Write(d, "m.gguf", EditQuantized(w => PatchScale(w, "output.weight", 1, 208, 0xFC00))),
            "output.weight", "Q6_K", "block 1 has d = ", "finite");
        cases["gguf Q6_K tensor with an infinite scale"] = cases["gguf Q6_K tensor with an infinite scale"] with { Act = OpenModelAndCheckFinite };
        Add("gguf Q4_K tensor with an infinite dmin", d => Write(d, "m.gguf", EditQuantized(w => PatchScale(w, "blk.1.attn_q.weight", 0, 2, 0x7C00))),
            "blk.1.attn_q.weight", "block 0 has dmin");
        cases["gguf Q4_K tensor with an infinite dmin"] = cases["gguf Q4_K tensor with an infinite dmin"] with { Act = OpenModelAndCheckFinite };
        Add("gguf I32 tensor", d => Write(d, "m.gguf", TinyLlama.Gguf()
            .Apply(w => w.Tensors[1] = w.Tensors[1] with { GgmlType = 26 }).Build()), "blk.0.attn_norm.weight", "I32");
        Add("gguf unknown architecture", d => Write(d, "m.gguf", TinyLlama.Gguf().String("general.architecture", "mamba").Build()),
            "general.architecture", "mamba");
        Add("gguf missing architecture", d => Write(d, "m.gguf", TinyLlama.Gguf().Remove("general.architecture").Build()), "general.architecture", "missing");
        Add("gguf missing embedding_length", d => Write(d, "m.gguf", TinyLlama.Gguf().Remove("llama.embedding_length").Build()), "llama.embedding_length");
        Add("gguf embedding_length as string", d => Write(d, "m.gguf", TinyLlama.Gguf().String("llama.embedding_length", "8").Build()),
            "llama.embedding_length", "string");
        Add("gguf block_count lies", d => Write(d, "m.gguf", TinyLlama.Gguf().UInt32("llama.block_count", int.MaxValue).Build()), "llama.block_count");
        Add("gguf head_count_kv does not divide", d => Write(d, "m.gguf", TinyLlama.Gguf().UInt32("llama.attention.head_count_kv", 3).Build()),
            "llama.attention.head_count_kv", "3");
        Add("gguf missing tensor", d => Write(d, "m.gguf", TinyLlama.Gguf()
            .Apply(w => w.Tensors.RemoveAll(t => t.Name == "blk.0.ffn_up.weight")).Build()), "blk.0.ffn_up.weight", "missing");
        Add("gguf wrong shape", d => Write(d, "m.gguf", TinyLlama.Gguf()
            .Apply(w => w.Tensors[2] = TestTensor.F32("blk.0.attn_q.weight", [8, 7], _ => 0)).Build()), "blk.0.attn_q.weight", "[8, 8]", "[8, 7]");
        Add("gguf unexpected tensor", d => Write(d, "m.gguf", TinyLlama.Gguf()
            .Apply(w => w.Tensors.Add(TestTensor.F32("blk.0.attn_output.bias", [8], _ => 0))).Build()), "blk.0.attn_output.bias", "unexpected");
        Add("gguf token list shorter than embedding", d => Write(d, "m.gguf", TinyLlama.Gguf()
            .StringArray("tokenizer.ggml.tokens", ["a", "b"]).Build()), "tokenizer.ggml.tokens");
        Add("gguf rope_freqs of wrong length", d => Write(d, "m.gguf", TinyLlama.Gguf()
            .Apply(w => w.Tensors.Add(TestTensor.F32("rope_freqs.weight", [3], _ => 1))).Build()), "rope_freqs.weight", "[2]");
        Add("gguf yarn rope scaling", d => Write(d, "m.gguf", TinyLlama.Gguf().String("llama.rope.scaling.type", "yarn").Build()),
            "llama.rope.scaling.type", "yarn");
        Add("gguf partial rotary", d => Write(d, "m.gguf", TinyLlama.Gguf().UInt32("llama.rope.dimension_count", 2).Build()),
            "llama.rope.dimension_count");
        Add("gguf eos id beyond vocabulary", d => Write(d, "m.gguf", TinyLlama.Gguf().UInt32("tokenizer.ggml.eos_token_id", 99).Build()),
            "tokenizer.ggml.eos_token_id", "99");

        // ------------------------------------------------ non-finite weights
        Add("gguf NaN weight", d => Write(d, "m.gguf", TinyLlama.Gguf()
            .Apply(w => w.Tensors[8] = TestTensor.F32("blk.0.ffn_up.weight", [16, 8], i => i == 37 ? float.NaN : 0)).Build()),
            "blk.0.ffn_up.weight", "element 37");
        Add("gguf F16 infinity", d => Write(d, "m.gguf", TinyLlama.Gguf()
            .Apply(w => w.Tensors[0] = new TestTensor("token_embd.weight", [16, 8], F16Bytes(128, 101, Half.PositiveInfinity), GgmlType: 1)).Build()),
            "token_embd.weight", "element 101");
        Add("hf BF16 negative infinity", d => TinyLlama.WriteHfFolder(d, "bf16", editTensors: ts =>
        {
            ts[5] = new TestTensor(ts[5].Name, ts[5].Shape, Bf16Bytes(64, 63, float.NegativeInfinity), SafetensorsDType: "BF16");
            return ts;
        }), "blk.0.attn_output.weight", "model.layers.0.self_attn.o_proj.weight", "element 63");
        foreach (var (name, _) in cases.Where(c => c.Key.Contains("NaN") || c.Key.Contains("infinity")).ToList())
            cases[name] = cases[name] with { Act = OpenModelAndCheckFinite };

        // ------------------------------------------------ safetensors / Hugging Face folders
        long safetensorsLength = new FileInfo(Path.Combine(SharedModels.StoriesHf, "model.safetensors")).Length;
        foreach (long cut in new long[] { 0, 5, 8, 100, 4000, 4950, safetensorsLength / 2, safetensorsLength - 1 })
            Add($"safetensors truncated at {cut}", d => HfFolderWithSafetensors(d, SharedModels.StoriesHf,
                Truncate(Path.Combine(SharedModels.StoriesHf, "model.safetensors"), cut)));
        Add("safetensors header length 2^60", d => HfFolderWithSafetensors(d, SharedModels.StoriesHf,
            Patch(File.ReadAllBytes(Path.Combine(SharedModels.StoriesHf, "model.safetensors")), 0, BitConverter.GetBytes(1UL << 60))), "header length");
        Add("safetensors header not JSON", d => TinyLlama.WriteHfFolder(d, "m", editHeader: h => h[..^5]), "header", "JSON");
        Add("safetensors header is an array", d => TinyLlama.WriteHfFolder(d, "m", editHeader: _ => "[1, 2, 3]"), "header", "object");
        Add("safetensors unknown dtype", d => TinyLlama.WriteHfFolder(d, "m",
            editTensors: ts => { ts[1] = ts[1] with { SafetensorsDType = "Q4" }; return ts; }), "model.layers.0.input_layernorm.weight", "Q4");
        Add("safetensors I32 tensor", d => TinyLlama.WriteHfFolder(d, "m",
            editTensors: ts => { ts[1] = ts[1] with { SafetensorsDType = "I32" }; return ts; }), "model.layers.0.input_layernorm.weight", "I32");
        Add("safetensors offsets disagree with shape", d => TinyLlama.WriteHfFolder(d, "m",
            editHeader: h => h.Replace("\"shape\":[8],", "\"shape\":[9],")), "model.layers.0.input_layernorm.weight", "[9]");
        Add("safetensors negative dimension", d => TinyLlama.WriteHfFolder(d, "m",
            editHeader: h => h.Replace("\"shape\":[8],", "\"shape\":[-8],")), "model.layers.0.input_layernorm.weight", "-8");
        Add("safetensors overlapping tensors", d => TinyLlama.WriteHfFolder(d, "m",
            editHeader: h => h.Replace("\"data_offsets\":[512,544]", "\"data_offsets\":[0,32]")), "overlapping");
        Add("safetensors trailing bytes", d =>
        {
            string folder = TinyLlama.WriteHfFolder(d, "m");
            using (var f = File.Open(Path.Combine(folder, "model.safetensors"), FileMode.Append)) f.Write(new byte[16]);
            return folder;
        }, "trailing");
        Add("hf config not JSON", d =>
        {
            string folder = TinyLlama.WriteHfFolder(d, "m");
            File.WriteAllText(Path.Combine(folder, "config.json"), "{\"model_type\": \"llama\", ");
            return folder;
        }, "config.json", "JSON");
        Add("hf config missing hidden_size", d => TinyLlama.WriteHfFolder(d, "m", c => c.Remove("hidden_size")), "config.json", "hidden_size");
        Add("hf config hidden_size as string", d => TinyLlama.WriteHfFolder(d, "m", c => c["hidden_size"] = "8"), "config.json", "hidden_size", "\"8\"");
        Add("hf unknown model_type", d => TinyLlama.WriteHfFolder(d, "m", c => c["model_type"] = "mistral"), "model_type", "mistral");
        Add("hf yarn rope scaling", d => TinyLlama.WriteHfFolder(d, "m",
            c => c["rope_scaling"] = new Dictionary<string, object> { ["rope_type"] = "yarn", ["factor"] = 4.0 }), "rope_scaling", "yarn");
        Add("hf missing tensor", d => TinyLlama.WriteHfFolder(d, "m",
            editTensors: ts => ts.Where(t => !t.Name.EndsWith("mlp.up_proj.weight")).ToList()), "blk.0.ffn_up.weight", "model.layers.0.mlp.up_proj.weight", "missing");
        Add("hf wrong shape", d => TinyLlama.WriteHfFolder(d, "m",
            editTensors: ts => { ts[8] = TestTensor.F32(ts[8].Name, [16, 9], _ => 0); return ts; }), "model.layers.0.mlp.up_proj.weight", "[16, 8]", "[16, 9]");
        Add("hf unexpected tensor", d => TinyLlama.WriteHfFolder(d, "m",
            editTensors: ts => [.. ts, TestTensor.F32("vision_tower.patch_embed.weight", [4], _ => 0)]), "vision_tower.patch_embed.weight");
        Add("hf untied without lm_head", d => TinyLlama.WriteHfFolder(d, "m",
            editTensors: ts => ts.Where(t => t.Name != "lm_head.weight").ToList()), "output.weight", "lm_head.weight");
        Add("hf no weights", d =>
        {
            string folder = TinyLlama.WriteHfFolder(d, "m");
            File.Delete(Path.Combine(folder, "model.safetensors"));
            return folder;
        }, "model.safetensors");
        Add("hf index names a missing shard", d => ShardedFolder(d, index => index.Replace("shard-2.safetensors", "shard-9.safetensors")), "shard-9.safetensors");
        Add("hf index shard escapes the folder", d => ShardedFolder(d, index => index.Replace("shard-2.safetensors", "../shard-2.safetensors")), "../shard-2.safetensors");
        Add("hf index omits a tensor", d => ShardedFolder(d, index => index.Replace("\"model.norm.weight\":\"shard-2.safetensors\",", "")), "model.norm.weight");
        Add("hf index weight_map not an object", d => ShardedFolder(d, _ => "{\"weight_map\": [1]}"), "weight_map");
        Add("hf layer_types of wrong length", d => TinyLlama.WriteHfFolder(d, "m", c =>
        {
            c["model_type"] = "gemma2";
            c["layer_types"] = new[] { "sliding_attention", "full_attention" };
        }), "layer_types");

        // ------------------------------------------------ llama2.c checkpoints
        long binLength = new FileInfo(SharedModels.StoriesBin).Length;
        foreach (long cut in new long[] { 0, 10, 27, 28, 100, 400_000, binLength - 4, binLength - 1 })
            Add($"llama2.c truncated at {cut}", d => Write(d, "m.bin", Truncate(SharedModels.StoriesBin, cut)));
        Add("llama2.c trailing bytes", d => Write(d, "m.bin", TinyLlama.Llama2c(extraFloats: 3)), "file size");
        Add("llama2.c separate classifier with positive vocab", d => Write(d, "m.bin", TinyLlama.Llama2c(extraFloats: TinyLlama.Vocab * TinyLlama.Hidden)),
            "vocab_size be negative");
        Add("llama2.c negative dim", d => Write(d, "m.bin", TinyLlama.Llama2c([-8, 16, 1, 2, 1, 16, 32])), "dim");
        Add("llama2.c n_heads does not divide dim", d => Write(d, "m.bin", TinyLlama.Llama2c([8, 16, 1, 3, 1, 16, 32])), "n_heads");
        Add("llama2.c n_layers lies", d => Write(d, "m.bin", TinyLlama.Llama2c([8, 16, int.MaxValue, 2, 1, 16, 32])), "rms_att_weight");
        Add("llama2.c every field huge", d => Write(d, "m.bin", TinyLlama.Llama2c([1 << 30, int.MaxValue, int.MaxValue, 1 << 28, 1 << 28, int.MinValue + 1, int.MaxValue])),
            "token_embedding_table");
        Add("llama2.c path holding a PyTorch zip", d => Write(d, "pytorch_model.bin", [0x50, 0x4b, 0x03, 0x04, .. new byte[200]]), "zip");
        Add("llama2.c versioned export", d => Write(d, "m.bin", Patch(TinyLlama.Llama2c(), 0, 0x32, 0x34, 0x6b, 0x61)), "ak42");

        // ------------------------------------------------ GgufFile on its own (the tokenizer's entry point)
        Add("gguf metadata of wrong type through a getter", d => Write(d, "m.gguf", TinyLlama.Gguf().Build()), "tokenizer.ggml.tokens", "array of int32");
        cases["gguf metadata of wrong type through a getter"] = cases["gguf metadata of wrong type through a getter"] with
        {
            Act = p => { using var g = GgufFile.Open(p); g.GetInt32Array("tokenizer.ggml.tokens"); },
        };
        Add("gguf missing key through a getter", d => Write(d, "m.gguf", TinyLlama.Gguf().Build()), "tokenizer.ggml.merges", "missing");
        cases["gguf missing key through a getter"] = cases["gguf missing key through a getter"] with
        {
            Act = p => { using var g = GgufFile.Open(p); g.GetStringArray("tokenizer.ggml.merges"); },
        };
        return cases;
    }

    static string QuantizedModel => IlgpuLlm.Tests.Support.SharedData.Path("models", "quant", "llama3", "model-Q4_K_M.gguf");

    /// <summary>The shared Q4_K_M model re-emitted after an edit.</summary>
    static byte[] EditQuantized(Action<GgufWriter> edit)
    {
        using var file = GgufFile.Open(QuantizedModel);
        var writer = GgufWriter.FromFile(file);
        edit(writer);
        return writer.Build();
    }

    /// <summary>Writes an f16 field (offset <paramref name="field"/> within block <paramref name="block"/>) of a tensor.</summary>
    static void PatchScale(GgufWriter writer, string tensor, int block, int field, ushort bits)
    {
        int i = writer.Tensors.FindIndex(t => t.Name == tensor);
        var data = (byte[])writer.Tensors[i].Data.Clone();
        int blockBytes = writer.Tensors[i].GgmlType == 14 ? 210 : 144;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(block * blockBytes + field), bits);
        writer.Tensors[i] = writer.Tensors[i] with { Data = data };
    }

    /// <summary>A one-layer model whose blk.0.ffn_up.weight is a quantized type of the given block layout.</summary>
    static byte[] QuantizedGguf(uint type, int blockSize, int bytesPerBlock)
    {
        var writer = TinyLlama.Gguf();
        int i = writer.Tensors.FindIndex(t => t.Name == "blk.0.ffn_up.weight");
        writer.Tensors[i] = new TestTensor("blk.0.ffn_up.weight", [16, blockSize], new byte[16 * bytesPerBlock], GgmlType: type);
        return writer.Build();
    }

    static byte[] F16Bytes(int count, int index, Half special)
    {
        var values = new Half[count];
        for (int i = 0; i < count; i++) values[i] = (Half)(i * 0.01f);
        values[index] = special;
        return System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
    }

    static byte[] Bf16Bytes(int count, int index, float special)
    {
        var values = new ushort[count];
        for (int i = 0; i < count; i++) values[i] = (ushort)(BitConverter.SingleToInt32Bits(i * 0.01f) >> 16);
        values[index] = (ushort)(BitConverter.SingleToInt32Bits(special) >> 16);
        return System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
    }

    /// <summary>The tiny model split over two shards plus an index, with the index text edited.</summary>
    static string ShardedFolder(string directory, Func<string, string> editIndex)
    {
        string folder = TinyLlama.WriteHfFolder(directory, "m");
        File.Delete(Path.Combine(folder, "model.safetensors"));
        var tensors = TinyLlama.HfTensors();
        var first = tensors.Take(5).ToList();
        var second = tensors.Skip(5).ToList();
        File.WriteAllBytes(Path.Combine(folder, "shard-1.safetensors"), SafetensorsWriter.Build(first));
        File.WriteAllBytes(Path.Combine(folder, "shard-2.safetensors"), SafetensorsWriter.Build(second));
        var map = first.Select(t => (t.Name, File: "shard-1.safetensors")).Concat(second.Select(t => (t.Name, File: "shard-2.safetensors")));
        string index = "{\"metadata\":{\"total_size\":0},\"weight_map\":{" + string.Join(",", map.Select(m => $"\"{m.Name}\":\"{m.File}\"")) + "}}";
        File.WriteAllText(Path.Combine(folder, "model.safetensors.index.json"), editIndex(index));
        return folder;
    }
}

internal static class WriterExtensions
{
    public static GgufWriter Apply(this GgufWriter writer, Action<GgufWriter> change)
    {
        change(writer);
        return writer;
    }
}
