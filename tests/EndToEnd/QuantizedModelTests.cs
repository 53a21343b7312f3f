using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Formats;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Runtime.Generation;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.EndToEnd;

/// <summary>
/// The quantized models of ../shared/models/quant (Llama 3 and Qwen2 shapes in Q8_0, Q4_0, Q4_K_M,
/// Q5_K_M, Q6_K), computing on their blocks, against llama.cpp run on their exact dequantization
/// (<c>ref-dequant</c>): the numerics contract computes with exactly those weights, so logits at
/// every position of both prompts must agree to 1e-3 and greedy decoding token for token. (A wrong dequantization of any
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
        Assert.True(worst > 0, "logits identical to llama.cpp's to the bit are implausible (different summation order)");
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
            if (GgmlTypeLayout.ToTensorDataType(info.Type)?.Format() is not BlockFormat format)
                continue;
            quantized++;
            var tensor = checkpoint.GetTensor(info.Name);
            Assert.Same(format, tensor.Quantized!.Format);
            Assert.Equal(info.ByteLength, tensor.Quantized.ByteLength);
            // q/k rows are un-permuted as whole rows of blocks; compare the rest with the file's blocks.
            if (tensor.IsTransformed && tensor.Transformation!.Contains("un-permuted"))
                continue;
            Bits.Equal(QuantizedTestBlocks.Dequantize(format.Type, gguf.GetTensorBytes(info)), tensor.ToFloat32Array(), info.Name);
        }
        Assert.True(quantized >= 2 * 7, $"{family} {type}: only {quantized} quantized tensors");
    }

    /// <summary>
    /// The contract end to end: the model computing on the blocks (every linear and the embedding
    /// routed to the block kernels) gives the bits of the same model on their f32 dequantization.
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void Logits_on_the_blocks_equal_logits_on_their_f32_dequantization(string family, string type)
    {
        using var backend = new SimdBackend(2);
        using var checkpoint = ModelCheckpoint.Open(Quant(family, $"model-{type}.gguf"));
        using var routed = new Transformer(checkpoint, backend);
        Assert.All(checkpoint.Tensors.Where(t => t.Shape.Length == 2), t => Assert.NotNull(t.Quantized));
        var tokens = References.Tokens(Quant(family, "ref-dequant", type, "promptB.tokens"));
        var onBlocks = Scoring.Logits(routed, tokens, allPositions: true);

        using var dequantized = ModelCheckpoint.FromTensors(checkpoint.Config, checkpoint.Tensors.Select(TensorSource.FromCheckpoint));
        Assert.All(dequantized.Tensors, t => Assert.Equal(StorageType.F32, t.StoredType));
        using var f32 = new Transformer(dequantized, backend);
        Bits.Equal(Scoring.Logits(f32, tokens, allPositions: true), onBlocks, $"{family} {type}");
    }

    public static IEnumerable<object[]> BackendCases() =>
        from family in new[] { "llama3", "qwen2" }
        from type in Types
        from backend in TestBackends.All.Select(b => (string)b[0])
        select new object[] { family, type, backend };

    /// <summary>
    /// Every backend — the SIMD backend at each level with 1 and 2 threads, ILGPU's CPU accelerator,
    /// CUDA where present — gives the bits of the SIMD backend at its best level, prompt and greedy
    /// steps alike; with the test above against llama.cpp, the references hold on each of them.
    /// </summary>
    [Theory]
    [MemberData(nameof(BackendCases))]
    public void Every_backend_gives_the_same_bits(string family, string type, string backendName)
    {
        var tokens = References.Tokens(Quant(family, "ref-dequant", type, "promptA.tokens"));
        float[] Run(IBackend backend)
        {
            using var model = ModelLoader.Open(Quant(family, $"model-{type}.gguf"), backend, new TransformerOptions());
            var logits = Scoring.Logits(model.Transformer, tokens, allPositions: true).ToList();
            int vocabulary = model.Config.VocabSize;
            int next = Sampling.Argmax(logits.ToArray().AsSpan(logits.Count - vocabulary));
            for (int j = 0; j < 3; j++)
            {
                var row = backend.DownloadFloats(model.Transformer.Forward([new TokenRow(0, tokens.Length + j, next)], [0]).Logits);
                logits.AddRange(row);
                next = Sampling.Argmax(row);
            }
            return [.. logits];
        }
        using var best = new SimdBackend(2);
        Bits.Equal(Run(best), Run(TestBackends.Get(backendName)), $"{family} {type} on {backendName}");
    }

    public static IEnumerable<object[]> BatchCases() =>
        from family in new[] { "llama3", "qwen2" }
        from type in Types
        from layout in new[] { "ragged", "padded", "packed" }
        select new object[] { family, type, layout };

    /// <summary>
    /// Prompts of 1, 5, 17 and 30 tokens (decode rows, the few-row path and the tiled prefill of
    /// the block kernels) give the same logits alone and together: ragged in one batch, padded to
    /// one length and masked (Hugging Face style), and packed into one forward pass.
    /// </summary>
    [Theory]
    [MemberData(nameof(BatchCases))]
    public void Batched_prompts_give_the_logits_of_each_alone(string family, string type, string layout)
    {
        int[] lengths = [1, 5, 17, 30];
        using var backend = new SimdBackend(2);
        using var model = ModelLoader.Open(Quant(family, $"model-{type}.gguf"), backend, new TransformerOptions { Slots = lengths.Length });
        var prompts = TestModels.Prompts(model.Config.VocabSize, lengths);
        int vocabulary = model.Config.VocabSize;
        var alone = prompts.Select(p => Scoring.Logits(model.Transformer, p, allPositions: false)).ToArray();

        if (layout == "packed")
        {
            // Every prompt in one forward pass, each in its own slot; the last row of each gives logits.
            var rows = prompts.SelectMany((p, slot) => p.Select((t, i) => new TokenRow(slot, i, t))).ToArray();
            var last = new List<int>();
            int at = 0;
            foreach (var p in prompts)
                last.Add(at += p.Length);
            var step = model.Transformer.Forward(rows, [.. last.Select(i => i - 1)]);
            var packed = backend.DownloadFloats(step.Logits);
            for (int i = 0; i < prompts.Length; i++)
                Bits.Equal(alone[i], packed.AsSpan(i * vocabulary, vocabulary).ToArray(), $"{family} {type} packed: prompt of {lengths[i]}");
            return;
        }
        var batch = layout == "ragged" ? prompts : PaddedLeft(prompts);
        var settings = new SamplerSettings { Temperature = 0 };
        var first = new float[prompts.Length][];
        var requests = batch.Select((p, i) => new GenerationRequest(p, 1, settings) { Sequence = i }).ToArray();
        new Generator(model.Transformer, stopTokens: []).Run(requests, prompts.Length, onLogits: (r, l) => first[r] ??= l);
        for (int i = 0; i < prompts.Length; i++)
            Bits.Equal(alone[i], first[i], $"{family} {type} {layout}: prompt of {lengths[i]}");
    }

    /// <summary>Left-padded with the EOS id and masked, as a Hugging Face batch comes.</summary>
    static int[][] PaddedLeft(int[][] prompts)
    {
        int width = prompts.Max(p => p.Length);
        const int pad = 2;
        var ids = prompts.Select(p => Enumerable.Repeat(pad, width - p.Length).Concat(p).ToArray()).ToList();
        var mask = prompts.Select(p => Enumerable.Repeat(0, width - p.Length).Concat(Enumerable.Repeat(1, p.Length)).ToArray()).ToList();
        return PromptBatches.FromPadded(ids, mask);
    }

    /// <summary>
    /// Resident weights are the file's blocks: building a model on a quantized file materialises
    /// no f32 copy of any tensor, only the llama q/k matrices whose rows the loader reorders — as
    /// blocks (Llama 3.2 1B's tied Q6_K token_embd included: gather table and classifier at once).
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void A_model_keeps_its_weights_as_blocks(string family, string type)
    {
        foreach (var memory in Enum.GetValues<WeightMemory>())
        {
            using var backend = new SimdBackend(1, weightMemory: memory);
            using var checkpoint = ModelCheckpoint.Open(Quant(family, $"model-{type}.gguf"));
            using (var model = new Transformer(checkpoint, backend))
                Scoring.Logits(model, [1, 5, 9], allPositions: false);
            long reordered = checkpoint.Tensors.Where(t => t.Quantized is { IsMapped: false }).Sum(t => t.Quantized!.ByteLength);
            Assert.Equal(family == "llama3" ? 2 * 2 : 0, checkpoint.Tensors.Count(t => t.Quantized is { IsMapped: false }));
            var plan = MemoryPlan.For(checkpoint, backend, 1, 64, 16, StorageType.F32);
            if (memory == WeightMemory.Mapped)
            {
                Assert.Equal(reordered, checkpoint.MaterialisedBytes);
                Assert.Equal(reordered, plan.WeightBytes);
            }
            else
            {
                // Copied into huge pages as they are stored: every tensor once, blocks as blocks.
                Assert.Equal(checkpoint.Tensors.Sum(t => t.Quantized?.ByteLength ?? t.ByteLength), plan.WeightBytes);
            }
        }
    }
}
