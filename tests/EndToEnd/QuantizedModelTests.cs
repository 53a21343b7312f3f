using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Formats;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Runtime.Generation;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.EndToEnd;

/// <summary>
/// The quantized models of ../shared/models/quant (Llama 3 and Qwen2 shapes in Q8_0, Q4_0, Q4_K_M,
/// Q5_K_M, Q6_K) against llama.cpp run on their exact dequantization (<c>ref-dequant</c>): the
/// numerics contract computes with exactly those weights, so logits at every position of both
/// prompts must agree to 1e-3 and greedy decoding token for token. (A wrong dequantization of any
/// format moves logits by 0.05 to 1.9; llama.cpp's own quantized-activation logits, <c>ref</c>, are
/// 0.04–0.11 away.)
/// </summary>
[Collection(BackendCollection.Name)]
public class QuantizedModelTests
{
    public static readonly string[] Types = ["Q8_0", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K"];

    public static IEnumerable<object[]> Cases() =>
        from family in new[] { "llama3", "qwen2" } from type in Types select new object[] { family, type };

    public static string Quant(string family, params string[] parts) => SharedData.Path(["models", "quant", family, .. parts]);

    const float Tolerance = 1e-3f;

    [Theory]
    [MemberData(nameof(Cases))]
    public void Prompt_logits_and_greedy_decoding_match_llama_cpp_on_the_dequantized_weights(string family, string type)
    {
        using var backend = new SimdBackend(2);
        using var model = ModelLoader.Open(Quant(family, $"model-{type}.gguf"), backend, new TransformerOptions());
        int vocabulary = model.Config.VocabSize;
        float worst = 0;
        foreach (var prompt in new[] { "promptA", "promptB" })
        {
            string Reference(string file) => Quant(family, "ref-dequant", type, $"{prompt}.{file}");
            var tokens = References.Tokens(Reference("tokens"));
            var expected = References.Floats(Reference("logits.f32"));
            var logits = Scoring.Logits(model.Transformer, tokens, allPositions: true);
            for (int p = 0; p < tokens.Length; p++)
            {
                float difference = References.MaxAbsDifference(expected.AsSpan(p * vocabulary, vocabulary), logits.AsSpan(p * vocabulary, vocabulary));
                worst = Math.Max(worst, difference);
                Assert.True(difference <= Tolerance, $"{family} {type} {prompt} position {p}: max |diff| {difference}");
            }

            var greedy = References.Tokens(Reference("greedy16.tokens"));
            var greedyLogits = References.Floats(Reference("greedy16.logits.f32"));
            int next = Sampling.Argmax(logits.AsSpan((tokens.Length - 1) * vocabulary, vocabulary));
            for (int j = 0; j < greedy.Length; j++)
            {
                Assert.True(greedy[j] == next, $"{family} {type} {prompt} greedy token {j}: {next}, llama.cpp {greedy[j]}");
                var row = backend.DownloadFloats(model.Transformer.Forward([new TokenRow(0, tokens.Length + j, next)], [0]).Logits);
                float difference = References.MaxAbsDifference(greedyLogits.AsSpan(j * vocabulary, vocabulary), row);
                Assert.True(difference <= Tolerance, $"{family} {type} {prompt} greedy step {j}: max |diff| {difference}");
                next = Sampling.Argmax(row);
            }
        }
        Assert.True(worst > 0 || type == "never", "logits identical to llama.cpp's to the bit are implausible (different summation order)");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void The_loader_dequantizes_each_tensor_as_the_independent_dequantizer_does(string family, string type)
    {
        using var gguf = GgufFile.Open(Quant(family, $"model-{type}.gguf"));
        using var checkpoint = ModelCheckpoint.Open(Quant(family, $"model-{type}.gguf"));
        int quantized = 0;
        foreach (var info in gguf.Tensors)
        {
            if (GgmlTypeLayout.ToQuantFormat(info.Type) is not QuantFormat format)
                continue;
            quantized++;
            var tensor = checkpoint.GetTensor(info.Name);
            Assert.Equal(format, tensor.Quantized!.Format);
            Assert.Equal(info.ByteLength, tensor.Quantized.ByteLength);
            // q/k rows are un-permuted as whole rows of blocks; compare the rest with the file's blocks.
            if (tensor.IsTransformed && tensor.Transformation!.Contains("un-permuted"))
                continue;
            Bits.Equal(QuantizedTestBlocks.Dequantize(format, gguf.GetTensorBytes(info)), tensor.ToFloat32Array(), info.Name);
        }
        Assert.True(quantized >= 2 * 7, $"{family} {type}: only {quantized} quantized tensors");
    }

    /// <summary>The same bits on the SIMD backend (1 and 2 threads) and ILGPU's CPU accelerator, alone and in a batch.</summary>
    [Fact]
    public void A_quantized_model_gives_the_same_bits_on_every_backend_and_in_a_batch()
    {
        var path = Quant("llama3", "model-Q4_K_M.gguf");
        var tokens = References.Tokens(Quant("llama3", "ref-dequant", "Q4_K_M", "promptB.tokens"));
        float[]? first = null;
        foreach (var backend in new IBackend[] { new SimdBackend(1), new SimdBackend(2), IlgpuBackend.CreateCpu(2) })
            using (backend)
            {
                using var model = ModelLoader.Open(path, backend, new TransformerOptions { Slots = 2 });
                var logits = Scoring.Logits(model.Transformer, tokens, allPositions: true);
                if (first == null)
                    first = logits;
                else
                    Bits.Equal(first, logits, backend.Name);
            }

        // Prompt B's first tokens packed beside prompt A in one forward pass: B's rows must not move.
        using var simd = new SimdBackend(2);
        using var batched = ModelLoader.Open(path, simd, new TransformerOptions { Slots = 2 });
        var other = References.Tokens(Quant("llama3", "ref-dequant", "Q4_K_M", "promptA.tokens"));
        var rows = tokens.Select((t, i) => new TokenRow(0, i, t)).Concat(other.Select((t, i) => new TokenRow(1, i, t))).ToArray();
        var step = batched.Transformer.Forward(rows, [.. Enumerable.Range(0, tokens.Length)]);
        Bits.Equal(first!, simd.DownloadFloats(step.Logits), "prompt B batched with prompt A");
    }
}
