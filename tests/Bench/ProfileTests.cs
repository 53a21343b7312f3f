using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Evaluation;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Runtime.Generation;
using IlgpuLlm.Tests.Formats;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Bench;

/// <summary>
/// The step profiler on stories260K (5 layers): every op of a step is recorded once, named after
/// the weight or cache it touches, in its layer, with the bytes it moves; the profiled forward pass
/// computes what the plain one does. Times are never asserted, only that they are measured.
/// </summary>
[Collection("ConsoleCollection")]
public class ProfileTests
{
    /// <summary>The ops of one layer of a Llama block, in the order the forward pass makes them.</summary>
    static readonly string[] LayerOps =
    [
        "rmsnorm attn_norm", "linear attn_q+attn_k+attn_v", "rotary", "rotary", "kv store", "kv store",
        "attention", "linear attn_output", "add", "rmsnorm ffn_norm", "linear ffn_gate+ffn_up", "gated activation",
        "linear ffn_down", "add",
    ];

    [Theory]
    [InlineData(ThroughputTestKind.Decode, 4, 1)]
    [InlineData(ThroughputTestKind.Decode, 3, 2)]
    [InlineData(ThroughputTestKind.Prefill, 9, 1)]
    public void Every_op_of_a_step_is_recorded_once_in_its_layer(ThroughputTestKind kind, int tokens, int batch)
    {
        using var backend = new SimdBackend(2);
        using var model = ModelLoader.Open(SharedModels.StoriesBin, backend, new TransformerOptions { Slots = 2, MaxRowsPerForward = 16 });
        var profile = new StepProfiler(model.Transformer) { WarmUpSeconds = 0 }.Profile(new ThroughputTest(kind, tokens, batch), repetitions: 2);

        string[] expected =
        [
            "embedding", .. Enumerable.Range(0, 5).SelectMany(_ => LayerOps),
            "gather logits rows", "rmsnorm output_norm", "linear output", "non-finite check", "sample",
        ];
        Assert.Equal(expected, profile.Ops.Select(o => o.Op));
        Assert.Equal(kind == ThroughputTestKind.Decode ? tokens : 2, profile.Steps);
        Assert.Equal([-1, .. Enumerable.Range(0, 5).SelectMany(l => Enumerable.Repeat(l, LayerOps.Length)), -1, -1, -1, -1, -1],
            profile.Ops.Select(o => o.Layer));
        Assert.All(profile.Ops, o => Assert.True(o.Bytes > 0 && o.Seconds >= 0 && !(o.CpuSeconds < 0), $"{o}"));
        Assert.True(profile.StepSeconds > 0 && profile.ProfiledStepSeconds >= profile.OpSeconds * 0.5);

        // Linear bytes are the weights plus x and y (fused projections: x once, every weight and
        // y); attention reads q, writes its output and reads each slot's keys and values once
        // (decode: the median step's depth).
        int rows = kind == ThroughputTestKind.Decode ? batch : tokens, hidden = 64, kvWidth = 32;
        Assert.Equal(64L * 64 * 4 + 2L * rows * hidden * 4, profile.Ops.First(o => o.Op == "linear attn_output").Bytes);
        Assert.Equal((64L + 2 * kvWidth) * hidden * 4 + rows * (hidden + 64L + 2 * kvWidth) * 4,
            profile.Ops.First(o => o.Op == "linear attn_q+attn_k+attn_v").Bytes);
        double cachePositions = kind == ThroughputTestKind.Decode ? batch * (tokens + 1) / 2.0 : tokens;
        Assert.All(profile.Ops.Where(o => o.Op == "attention"), o =>
            Assert.Equal((long)(2L * rows * hidden * 4 + 2 * cachePositions * kvWidth * 4), o.Bytes));
    }

    [Fact]
    public void A_profiled_forward_pass_gives_the_same_logits()
    {
        using var backend = new SimdBackend(2);
        using var model = ModelLoader.Open(SharedModels.StoriesBin, backend, new TransformerOptions());
        var transformer = model.Transformer;
        using var batch = transformer.CreateStepBatch();
        float[] Run(IBackend ops)
        {
            batch.Clear();
            for (int i = 0; i < 6; i++)
                batch.Add(new TokenRow(0, i, 10 + 3 * i));
            batch.AddLogitRow(5);
            batch.Upload();
            var logits = transformer.Forward(batch, ops);
            batch.Download();
            return backend.DownloadFloats(logits);
        }
        var plain = Run(backend);
        var profiler = new ProfilingBackend(backend);
        Bits.Equal(plain, Run(profiler), "profiled forward pass");
        Assert.Equal(5 * LayerOps.Length + 4, profiler.Timings.Count);
    }

    [Fact]
    public void An_empty_hand_off_costs_a_finite_positive_time()
    {
        foreach (int threads in new[] { 1, 2 })
        {
            double seconds = HandOffProbe.SecondsPerFor(threads, callsPerRound: 20, rounds: 3);
            Assert.True(seconds > 0 && seconds < 1, $"{threads} threads: {seconds} s per For");
        }
    }

    [Fact]
    public void Bench_prints_the_profile_tables()
    {
        var (code, output, error) = CommandRunner.Run("bench", "-m", SharedModels.StoriesBin, "--device", "cpu", "-t", "2",
            "-p", "8", "-n", "4", "-r", "1", "--warmup-seconds", "0", "--baseline-mib", "8", "--profile");
        Assert.True(code == 0, error);
        Assert.Contains("profile of a decode step (tg4: 1 row per step, median of 4 steps per op):", output);
        Assert.Contains("profile of a prefill step (pp8: 8 rows in one forward pass, median of 1 passes per op):", output);
        Assert.Matches(@"\| linear attn_q\+attn_k\+attn_v +\| +5 \| +[0-9.]+ \| +[0-9.]* \| +[0-9.]+ % \|", output);
        Assert.Matches(@"\| outside the blocks +\| +6 \|", output);
        Assert.Matches(@"thread hand-off \(.*\): [0-9.]+ µs on 1 thread, [0-9.]+ µs on 2 threads", output);
    }
}
