using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Runtime.Generation;
using IlgpuLlm.Tests.Formats;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.EndToEnd;

/// <summary>
/// The non-finite guard: logits are checked before sampling; a sequence with NaN/inf stops with an
/// error naming the layer and op where the first non-finite value appeared (found by re-running the
/// step with every op checked); the sampler never sees NaN; other sequences go on.
/// </summary>
[Collection(BackendCollection.Name)]
public class NonFiniteTests
{
    /// <summary>
    /// The tiny Llama with finite weights (loading rejects NaN) that overflow f32 in the feed-forward
    /// down projection: gate = up = ±1000 per row makes every silu(g)·g ≥ 0 and some large, and
    /// 3e38 in ffn_down sums them past the largest float without cancellation.
    /// </summary>
    internal static GgufWriter HugeFeedForwardModel()
    {
        var writer = TinyLlama.Gguf();
        void Replace(string name, long[] shape, Func<int, float> value) =>
            writer.Tensors[writer.Tensors.FindIndex(t => t.Name == name)] = TestTensor.F32(name, shape, value);
        long[] up = [TinyLlama.FeedForward, TinyLlama.Hidden];
        Replace("blk.0.ffn_gate.weight", up, i => i / TinyLlama.Hidden % 2 == 0 ? 1000f : -1000f);
        Replace("blk.0.ffn_up.weight", up, i => i / TinyLlama.Hidden % 2 == 0 ? 1000f : -1000f);
        Replace("blk.0.ffn_down.weight", [TinyLlama.Hidden, TinyLlama.FeedForward], _ => 3e38f);
        return writer;
    }

    [Theory]
    [MemberData(nameof(TestModels.Backends), MemberType = typeof(TestModels))]
    public void A_huge_weight_is_reported_with_its_layer_and_op(string backendName)
    {
        var path = Path.Combine(Path.GetTempPath(), $"ilgpullm-huge-{Environment.ProcessId}-{backendName}.gguf");
        File.WriteAllBytes(path, HugeFeedForwardModel().Build());
        try
        {
            using var model = ModelLoader.Open(path, TestBackends.Get(backendName), new TransformerOptions());
            var seen = new List<float[]>();
            var result = new Generator(model.Transformer, stopTokens: [])
                .Run([new GenerationRequest([1, 5, 6], 4, SamplerSettings.Greedy)], 1, onLogits: (_, l) => seen.Add(l))[0];
            Assert.Equal(FinishReason.Error, result.Reason);
            Assert.Contains("layer 0 feed-forward", result.Message);
            Assert.Contains("f32", result.Message);
            Assert.Empty(seen);
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>A model whose logits are NaN for sequences in odd slots, recording what reaches the sampler.</summary>
    sealed class PoisonedModel(IBackend backend) : ILanguageModel
    {
        readonly Tensor logits = backend.Allocate(TensorType.F32, 4 * 8, "logits");
        public IBackend Backend => backend;
        public int VocabSize => 8;
        public int ContextLength => 64;
        public int Slots => 4;
        public int MaxRowsPerForward => 64;

        public ForwardResult Forward(ReadOnlySpan<TokenRow> rows, ReadOnlySpan<int> logitRows, ForwardChecks checks)
        {
            var values = new float[logitRows.Length * 8];
            var problems = new List<RowProblem>();
            for (int i = 0; i < logitRows.Length; i++)
            {
                var row = rows[logitRows[i]];
                for (int v = 0; v < 8; v++)
                    values[i * 8 + v] = row.Slot % 2 == 1 ? float.NaN : v == row.Position % 8 ? 1f : 0f;
                if (checks == ForwardChecks.EveryOp && row.Slot % 2 == 1)
                    problems.Add(new RowProblem(logitRows[i], "layer 7 attention"));
            }
            var slice = logits.Slice(0, values.Length);
            backend.Upload(slice, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
            return new ForwardResult(slice, problems);
        }
    }

    [Fact]
    public void A_sequence_with_non_finite_logits_stops_alone_and_the_sampler_never_sees_nan()
    {
        var backend = TestBackends.Get(TestModels.Backends().First()[0].ToString()!);
        var model = new PoisonedModel(backend);
        var seen = new List<float[]>();
        var requests = Enumerable.Range(0, 4).Select(i => new GenerationRequest([1, 2], 5, SamplerSettings.Greedy) { Sequence = i }).ToArray();
        var results = new Generator(model, stopTokens: []).Run(requests, 4, onLogits: (_, l) => seen.Add(l));
        Assert.Equal(FinishReason.Length, results[0].Reason);
        Assert.Equal(FinishReason.Error, results[1].Reason);
        Assert.Contains("layer 7 attention", results[1].Message);
        Assert.Equal(FinishReason.Length, results[2].Reason);
        Assert.Equal(FinishReason.Error, results[3].Reason);
        Assert.Equal(5, results[0].Tokens.Count);
        Assert.All(seen, logits => Assert.All(logits, v => Assert.True(float.IsFinite(v))));
    }

    [Fact]
    public void An_f16_cache_overflow_is_reported_not_stored_silently()
    {
        // Huge but finite value weights: their keys/values exceed 65504.
        var writer = TinyLlama.Gguf();
        int at = writer.Tensors.FindIndex(t => t.Name == "blk.0.attn_v.weight");
        writer.Tensors[at] = TestTensor.F32("blk.0.attn_v.weight", [TinyLlama.KvHeads * TinyLlama.HeadDim, TinyLlama.Hidden], _ => 1e6f);
        var path = Path.Combine(Path.GetTempPath(), $"ilgpullm-kv-{Environment.ProcessId}.gguf");
        File.WriteAllBytes(path, writer.Build());
        try
        {
            using var model = ModelLoader.Open(path, TestBackends.Get(TestModels.Backends().First()[0].ToString()!),
                new TransformerOptions { KvType = StorageType.F16 });
            var result = new Generator(model.Transformer, stopTokens: [])
                .Run([new GenerationRequest([1, 5, 6], 4, SamplerSettings.Greedy)], 1)[0];
            Assert.Equal(FinishReason.Error, result.Reason);
            Assert.Contains("f16 KV cache", result.Message);
            Assert.Contains("--kv-dtype", result.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
