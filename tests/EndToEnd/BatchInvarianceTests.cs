using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Runtime.Generation;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.EndToEnd;

/// <summary>
/// The engine's promise against the field reports (pad = eos, missing attention masks, right
/// padding): prompts of lengths 1, 5, 17 and 30 generated together — ragged, padded left, padded
/// right — give logits bit-identical to each generated alone, at every step. On every backend's
/// own model, on every family model (sliding windows shorter than the prompts, soft-caps,
/// q/k norms, biases) with each KV-cache type on the fast backends, and on every quantized model.
/// </summary>
[Collection(BackendCollection.Name)]
public class BatchInvarianceTests
{
    const int NewTokens = 6;
    static readonly int[] Lengths = [1, 5, 17, 30];

    static readonly string[] Layouts = ["ragged", "padded-left", "padded-right"];

    public static IEnumerable<object[]> Cases() =>
        (from b in TestModels.Backends()
         from layout in Layouts
         select new object[] { b[0], "default", StorageType.F32, layout })
        .Concat(
         from backend in TestModels.FamilyBackends()
         from model in TestModels.Families()
         from kv in new[] { StorageType.F32, StorageType.F16, StorageType.BF16 }
         from layout in Layouts
         select new object[] { backend, model, kv, layout })
        .Concat(
         from backend in TestModels.FamilyBackends()
         from model in TestModels.QuantizedModels()
         from layout in Layouts
         select new object[] { backend, model, StorageType.F32, layout });

    /// <summary>Every draw's logits, per request: generation with (temperature 0.8, seed 7) sampling.</summary>
    static List<float[]>[] Generate(LoadedModel model, int[][] prompts, int batchSize)
    {
        var logits = Enumerable.Range(0, prompts.Length).Select(_ => new List<float[]>()).ToArray();
        var settings = new SamplerSettings { Temperature = 0.8f, Seed = 7 };
        var requests = prompts.Select((p, i) => new GenerationRequest(p, NewTokens, settings) { Sequence = i }).ToArray();
        var results = new Generator(model.Transformer, stopTokens: []).Run(requests, batchSize, onLogits: (r, l) => logits[r].Add(l));
        Assert.All(results, r => Assert.Equal(FinishReason.Length, r.Reason));
        return logits;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Batched_generation_equals_one_at_a_time_bit_for_bit(string backendName, string modelName, StorageType kvType, string layout)
    {
        using var model = TestModels.Open(backendName, modelName, slots: Lengths.Length, kvType);
        var prompts = TestModels.Prompts(model.Config.VocabSize, Lengths);

        var alone = new List<float[]>[prompts.Length];
        for (int i = 0; i < prompts.Length; i++)
        {
            // Alone: request i by itself (same sequence id, so the same random stream).
            var logits = Enumerable.Range(0, prompts.Length).Select(_ => new List<float[]>()).ToArray();
            var settings = new SamplerSettings { Temperature = 0.8f, Seed = 7 };
            new Generator(model.Transformer, stopTokens: []).Run(
                [new GenerationRequest(prompts[i], NewTokens, settings) { Sequence = i }], 1, onLogits: (_, l) => logits[i].Add(l));
            alone[i] = logits[i];
        }

        int[][] batch = layout switch
        {
            "ragged" => prompts,
            _ => Padded(prompts, left: layout == "padded-left"),
        };
        var together = Generate(model, batch, batchSize: prompts.Length);
        for (int i = 0; i < prompts.Length; i++)
        {
            Assert.Equal(NewTokens, together[i].Count);
            for (int step = 0; step < NewTokens; step++)
                Bits.Equal(alone[i][step], together[i][step], $"{backendName} {modelName} {kvType.Name()} KV {layout}: prompt of {prompts[i].Length} tokens, step {step}");
        }
    }

    /// <summary>Hugging Face-style input: pad to a matrix with a pad id that is also the EOS id, plus the mask.</summary>
    static int[][] Padded(int[][] prompts, bool left)
    {
        int width = prompts.Max(p => p.Length);
        const int pad = 2; // the EOS id: padding must be neither attended to nor taken for an end
        var ids = new List<int[]>();
        var mask = new List<int[]>();
        foreach (var prompt in prompts)
        {
            var row = Enumerable.Repeat(pad, width).ToArray();
            var ones = new int[width];
            int start = left ? width - prompt.Length : 0;
            prompt.CopyTo(row, start);
            Array.Fill(ones, 1, start, prompt.Length);
            ids.Add(row);
            mask.Add(ones);
        }
        return PromptBatches.FromPadded(ids, mask);
    }

    [Fact]
    public void The_simd_backend_and_the_ilgpu_cpu_accelerator_agree_end_to_end()
    {
        var results = new List<List<float[]>[]>();
        foreach (var backendName in new[] { TestModels.Backends().First()[0].ToString()!, "ilgpu-cpu" })
        {
            using var model = ModelLoader.Open(TestModels.PathFor("ilgpu-cpu"), TestBackends.Get(backendName),
                new TransformerOptions { Slots = Lengths.Length });
            results.Add(Generate(model, TestModels.Prompts(model.Config.VocabSize, Lengths), Lengths.Length));
        }
        for (int i = 0; i < Lengths.Length; i++)
            for (int step = 0; step < NewTokens; step++)
                Bits.Equal(results[0][i][step], results[1][i][step], $"prompt {i} step {step}");
    }
}
