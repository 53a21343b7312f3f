using System.Security.Cryptography;
using System.Text;
using IlgpuLlm.Cli;
using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Formats;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Tests.EndToEnd;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Create;

/// <summary>
/// <c>quantize</c> against llama-quantize (llama.cpp c392e509, the shared peer): the same tensors,
/// types and bytes. The expected digests below were taken from llama-quantize's output files for
/// the same inputs (SHA-256 over every tensor's name, ggml type id and bytes, in name order; the
/// first 128 bits), so the test needs no llama.cpp.
/// </summary>
[Collection(nameof(ConsoleCollection))]
public class QuantizeTests
{
    /// <summary>
    /// Inputs: "quant/…" is the shared quantized model's Q8_0 file dequantized to f32 (widths are
    /// multiples of 256, so every K-quant is written); "families/…" is the shared tiny f32 model
    /// (widths 64 and 160: the fallbacks to Q5_0, Q5_1 and Q8_0, four layers of use_more_bits).
    /// </summary>
    public static TheoryData<string, string, string> LlamaQuantizeDigests() => new()
    {
        { "quant/llama3", "Q8_0", "b37bd444d5a44488c2bf9d3f7eb590ac" },
        { "quant/llama3", "Q4_0", "5bceb319e1221f71a6fa4f6f39900c6c" },
        { "quant/llama3", "Q4_K_M", "40aeae1fd6e7312a5a65713254630947" },
        { "quant/llama3", "Q5_K_M", "cf3ce2a591d61fec182dea036d1ce408" },
        { "quant/llama3", "Q6_K", "0c6b5512902825bd370b88854857b99f" },
        { "quant/llama3", "Q4_1", "cb6e240b5d37065dacb4b1cf36f0ba57" },
        { "quant/llama3", "Q5_0", "316c3922c766df0ad076269fa0ab05f3" },
        { "quant/llama3", "Q5_1", "22fc192ed3fbea32bdd9a696e04adda3" },
        { "quant/qwen2", "Q8_0", "f8f56aebdd33ce65e6d808ebde9e52e3" },
        { "quant/qwen2", "Q4_0", "e3abc27f5948e13c9a7bb0a61304e06e" },
        { "quant/qwen2", "Q4_K_M", "b0c1c745c4122d825d30f9c55f93907f" },
        { "quant/qwen2", "Q5_K_M", "80545edae81e053b07815190acfd8c6c" },
        { "quant/qwen2", "Q6_K", "ccf449c2b929bcae9498fd64e2553ad1" },
        { "families/llama3", "Q4_0", "560310f6bcadeb4fb8e1a51ec76b3bc1" },
        { "families/llama3", "Q4_K_M", "cf4f4188f5c540489ad7c54155a0c782" },
        { "families/llama3", "Q5_K_M", "9a173c5ba56712af23f204dbf2de64f2" },
        { "families/llama3", "Q6_K", "9bf6e13ce0b7efc4dc42c32e6f099079" },
        { "families/qwen2", "Q4_K_M", "d8f485c2e2ea76a593ad2d921a1576ae" },
        { "families/qwen2", "Q5_K_M", "288a628d0ecd14fd10c4622a09962e37" },
        { "families/gemma", "Q4_0", "4b22520e8372571a6b0603e063129336" },
        { "families/gemma", "Q4_K_M", "eed26a7945b9ee02094f23ad91b595cc" },
        { "families/gemma", "Q8_0", "7d206500c12d6af765a3862dfcd3bd45" },
    };

    [Theory]
    [MemberData(nameof(LlamaQuantizeDigests))]
    public void Quantizing_gives_llama_quantize_bytes(string model, string type, string digest)
    {
        using var temp = new TempFolder();
        string input = Input(model, temp);
        string output = temp.File("out.gguf");
        using (var plan = GgufQuantizer.Plan(input, output, TensorQuantization.Parse(type)))
            plan.Write.Write();
        Assert.Equal(digest, Digest(output));

        // From the Hugging Face form of the same model: the same tensors.
        if (model.StartsWith("families/", StringComparison.Ordinal))
        {
            string fromFolder = temp.File("from-hf.gguf");
            using (var plan = GgufQuantizer.Plan(References.Family("main", model["families/".Length..], "hf"), fromFolder, TensorQuantization.Parse(type)))
                plan.Write.Write();
            Assert.Equal(digest, Digest(fromFolder));
        }
    }

    /// <summary>The input file of a case, made in <paramref name="temp"/> when it is a dequantization.</summary>
    static string Input(string model, TempFolder temp)
    {
        var (set, family) = (model.Split('/')[0], model.Split('/')[1]);
        if (set == "families")
            return References.Family("main", family, "model.gguf");
        using var gguf = GgufFile.Open(QuantizedModelTests.Quant(family, "model-Q8_0.gguf"));
        var writer = Formats.GgufWriter.FromFile(gguf);
        for (int i = 0; i < writer.Tensors.Count; i++)
            if (GgmlTypeLayout.ToQuantFormat((GgmlType)writer.Tensors[i].GgmlType) is QuantFormat format)
            {
                var values = new float[writer.Tensors[i].Data.Length / format.BlockBytes() * format.BlockSize()];
                QuantizedBlocks.Dequantize(format, writer.Tensors[i].Data, values);
                writer.Tensors[i] = writer.Tensors[i] with { GgmlType = 0, Data = System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray() };
            }
        writer.UInt32("general.file_type", 0).Remove(TensorQuantization.VersionKey);
        return temp.Write("f32.gguf", writer.Build());
    }

    /// <summary>SHA-256 over (name, NUL, type id as uint32 LE, bytes) of every tensor in ordinal name order; 32 hex digits.</summary>
    static string Digest(string path)
    {
        using var gguf = GgufFile.Open(path);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var info in gguf.Tensors.OrderBy(t => t.Name, StringComparer.Ordinal))
        {
            sha.AppendData(Encoding.UTF8.GetBytes(info.Name + "\0"));
            sha.AppendData(BitConverter.GetBytes((uint)info.Type));
            sha.AppendData(gguf.GetTensorBytes(info));
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset())[..32];
    }

    /// <summary>llama-quantize's choices, tensor by tensor, as the shared Q4_K_M / Q5_K_M / Q6_K files have them.</summary>
    [Theory]
    [InlineData("llama3", "Q4_K_M")]
    [InlineData("llama3", "Q5_K_M")]
    [InlineData("qwen2", "Q4_K_M")]
    [InlineData("qwen2", "Q5_K_M")]
    [InlineData("qwen2", "Q4_0")]
    [InlineData("llama3", "Q6_K")]
    public void Per_tensor_types_are_llama_quantizes(string family, string type)
    {
        using var gguf = GgufFile.Open(QuantizedModelTests.Quant(family, $"model-{type}.gguf"));
        using var checkpoint = ModelCheckpoint.Open(QuantizedModelTests.Quant(family, $"model-{type}.gguf"));
        var quantization = new TensorQuantization(TensorQuantization.Parse(type), checkpoint.Config);
        foreach (var info in gguf.Tensors)
            Assert.True((quantization.TypeOf(info.Name, info.Shape) ?? GgmlType.F32) == info.Type,
                $"{family} {type} {info.Name}: {quantization.TypeOf(info.Name, info.Shape)}, llama-quantize {info.Type}");
        Assert.Equal(gguf.GetUInt32("general.file_type"), quantization.FileType);
    }

    /// <summary>The command end to end: a file the engine opens, whose logits stay within quantization noise of the source's.</summary>
    [Fact]
    public void The_command_writes_a_gguf_that_generates_near_the_source()
    {
        using var temp = new TempFolder();
        string source = References.Family("main", "llama3", "model.gguf");
        string output = temp.File("q8.gguf");
        var result = InProcessCli.Run("quantize", "-m", source, "--type", "Q8_0", "-o", output);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.StartsWith($"quantized {source} to Q8_0: 40 tensors (", result.Out);
        Assert.Contains(output, result.Out);

        using var gguf = GgufFile.Open(output);
        Assert.Equal(7u, gguf.GetUInt32("general.file_type"));
        Assert.Equal(TensorQuantization.Version, gguf.GetUInt32(TensorQuantization.VersionKey));
        Assert.Equal(GgufFile.Open(source).GetStringArray("tokenizer.ggml.tokens"), gguf.GetStringArray("tokenizer.ggml.tokens"));

        var tokens = References.Tokens(References.Family("main", "llama3", "ref", "promptB.tokens"));
        using var backend = new SimdBackend(2);
        float[] Logits(string path)
        {
            using var model = ModelLoader.Open(path, backend, new TransformerOptions());
            return Scoring.Logits(model.Transformer, tokens, allPositions: true);
        }
        var original = Logits(source);
        var quantized = Logits(output);
        float difference = References.MaxAbsDifference(original, quantized);
        // Q8_0 of std-0.02 weights: a few thousandths on logits of std ≈ 0.1; a wrong block moves far more.
        Assert.True(difference is > 0 and < 0.02f, $"max |Δlogit| {difference}");
    }

    [Fact]
    public void The_command_refuses_bad_requests_clearly()
    {
        using var temp = new TempFolder();
        string source = References.Family("main", "llama3", "model.gguf");
        var quantized = QuantizedModelTests.Quant("llama3", "model-Q4_K_M.gguf");

        var result = InProcessCli.Run("quantize", "-m", quantized, "--type", "Q8_0", "-o", temp.File("a.gguf"));
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("tensor 'output.weight' is already Q6_K; quantize the F32, F16 or BF16 model instead", result.Error);

        result = InProcessCli.Run("quantize", "-m", source, "--type", "Q3_K_S", "-o", temp.File("b.gguf"));
        Assert.Equal(CliRunner.Usage, result.ExitCode);

        File.WriteAllText(temp.File("c.gguf"), "x");
        result = InProcessCli.Run("quantize", "-m", source, "--type", "Q4_0", "-o", temp.File("c.gguf"));
        Assert.Equal(CliRunner.Usage, result.ExitCode);
        Assert.Contains("--force", result.Error);

        // Gemma 2's 48-wide embedding is no whole number of blocks of any type llama.cpp would fall back to.
        result = InProcessCli.Run("quantize", "-m", References.Family("main", "gemma2", "model.gguf"), "--type", "Q4_K_M", "-o", temp.File("d.gguf"));
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("tensor 'token_embd.weight': rows of 48 weights are not whole Q8_0 blocks of 32", result.Error);
        Assert.False(File.Exists(temp.File("d.gguf")));
    }
}
