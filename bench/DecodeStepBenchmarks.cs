using BenchmarkDotNet.Attributes;
using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Formats;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Runtime.Generation;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Bench;

/// <summary>
/// One whole decode step of a small model through <see cref="Transformer.Forward"/> — every layer,
/// the KV-cache write and the classifier — at position 64, for one sequence and for four decoding
/// together; and the same step followed by a greedy draw, as the generation loop runs it. Small
/// models make the fixed costs of a step visible, and the memory diagnoser's "Allocated" column is
/// what one step allocates: the generation loop should not churn the GC.
/// </summary>
[Config(typeof(BenchConfig))]
public class DecodeStep : IWorkload
{
    const int Position = 64;
    SimdBackend backend = null!;
    ModelCheckpoint checkpoint = null!;
    Transformer model = null!;
    TokenRow[] rows = [];
    int[] logitRows = [];
    SamplingRow[] samplingRows = [];
    int[] drawn = [];

    /// <summary>"tiny": the tiny Llama preset (random weights, in memory); "stories260K": the trained llama2.c model.</summary>
    [Params("tiny", "stories260K")]
    public string Model { get; set; } = "";

    [Params(1, 4)]
    public int Batch { get; set; }

    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        backend = new SimdBackend(Threads);
        checkpoint = Model == "tiny"
            ? RandomModel.Create(ModelFamily.Llama, "tiny", StorageType.F32, 1).ToCheckpoint()
            : ModelCheckpoint.Open(SharedData.Path("models", "stories260K", "stories260K.bin"));
        model = new Transformer(checkpoint, backend, new TransformerOptions { Slots = Batch, ContextLength = 256, MaxRowsPerForward = Position });
        // Positions 0 … 63 of every sequence, so each step attends to 65 keys.
        for (int slot = 0; slot < Batch; slot++)
            model.Forward(Enumerable.Range(0, Position).Select(p => new TokenRow(slot, p, (p * 7 + slot) % model.VocabSize)).ToArray(), []);
        rows = Enumerable.Range(0, Batch).Select(slot => new TokenRow(slot, Position, 5 + slot)).ToArray();
        logitRows = Enumerable.Range(0, Batch).ToArray();
        samplingRows = Enumerable.Range(0, Batch).Select(slot => SamplingRow.Greedy(slot)).ToArray();
        drawn = new int[Batch];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        model.Dispose();
        checkpoint.Dispose();
        backend.Dispose();
    }

    [Benchmark]
    public Tensor Forward() => model.Forward(rows, logitRows).Logits;

    [Benchmark]
    public int ForwardAndGreedyDraw()
    {
        var logits = model.Forward(rows, logitRows).Logits;
        backend.Sample(logits, model.VocabSize, samplingRows, [], drawn);
        return drawn[0];
    }

    public double? Tokens => Batch;
}
