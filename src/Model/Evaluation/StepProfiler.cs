using System.Diagnostics;
using IlgpuLlm.Kernels;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Runtime.Generation;

namespace IlgpuLlm.Model.Evaluation;

/// <summary>
/// The profile of one kind of step: each op's wall time (the median over the profiled steps of
/// that op's call in each step), the step's own wall time with and without the profiler, and
/// what lies between the ops (host work: building and uploading the step batch, dispatching the
/// ops, downloading the results).
/// </summary>
/// <param name="StepSeconds">Median wall time of a step without the profiler.</param>
/// <param name="StepCpuSeconds">Median CPU time of the process (every thread) in a step without the profiler; NaN where unknown.</param>
/// <param name="ProfiledStepSeconds">Median wall time of a step with the profiler (one wait after each op).</param>
/// <param name="Ops">One entry per op of a step, in order: its median seconds and the bytes it moved.</param>
public sealed record StepProfile(ThroughputTest Test, int Steps, double StepSeconds, double StepCpuSeconds, double ProfiledStepSeconds,
    IReadOnlyList<OpTiming> Ops)
{
    public double OpSeconds => Ops.Sum(o => o.Seconds);

    /// <summary>Time of a profiled step not inside any op: host work between the ops.</summary>
    public double BetweenOpsSeconds => Math.Max(0, ProfiledStepSeconds - OpSeconds);
}

/// <summary>
/// Profiles the steps a generation loop makes: a decode step (one row per sequence, logits,
/// the non-finite check and a greedy draw, as <see cref="Generator"/> runs them) and a prefill
/// step (a prompt in one forward pass, the last row drawn). Each step runs once without and once
/// with a <see cref="ProfilingBackend"/>, alternating, so both see the same cache depth and the
/// same neighbours on a shared machine.
/// </summary>
public sealed class StepProfiler(Transformer model, uint seed = 4321)
{
    readonly ProfilingBackend profiler = new(model.Backend);
    uint state = seed | 1;

    /// <summary>Untimed steps run first until this much time has passed, so the JIT's optimised code is measured.</summary>
    public double WarmUpSeconds { get; init; } = 1.0;

    /// <summary>
    /// A decode test's steps (<see cref="ThroughputTest.Tokens"/> positions from
    /// <see cref="ThroughputTest.Depth"/>, <see cref="ThroughputTest.Batch"/> sequences), each profiled;
    /// a prefill test's one forward pass, profiled <paramref name="repetitions"/> times.
    /// </summary>
    public StepProfile Profile(ThroughputTest test, int repetitions = 5)
    {
        if (test.Positions > model.ContextLength || test.Rows > model.MaxRowsPerForward || test.Batch > model.Slots)
            throw new ArgumentException($"{test.Name} does not fit this model's cache ({model.ContextLength} positions, " +
                $"{model.MaxRowsPerForward} rows per forward pass, {model.Slots} slots)");
        int steps = test.Kind == ThroughputTestKind.Decode ? test.Tokens : repetitions;
        var tokens = new int[steps][];
        for (int s = 0; s < steps; s++)
        {
            tokens[s] = new int[test.Rows];
            for (int i = 0; i < tokens[s].Length; i++)
                tokens[s][i] = NextToken();
        }
        using var batch = model.CreateStepBatch();
        long warmUp = Stopwatch.GetTimestamp();
        do
            for (int s = 0; s < Math.Min(steps, ThroughputRunner.DecodeWarmUpSteps); s++)
            {
                Step(batch, test, s, tokens[s], null);
                Step(batch, test, s, tokens[s], profiler);
            }
        while (Stopwatch.GetElapsedTime(warmUp).TotalSeconds < WarmUpSeconds);

        var plain = new double[steps];
        var plainCpu = new double[steps];
        var profiled = new double[steps];
        var perStep = new List<OpTiming[]>();
        for (int s = 0; s < steps; s++)
        {
            double cpu = CpuClock.ProcessSeconds();
            plain[s] = Step(batch, test, s, tokens[s], null);
            plainCpu[s] = CpuClock.ProcessSeconds() - cpu;
            profiled[s] = Step(batch, test, s, tokens[s], profiler);
            perStep.Add([.. profiler.Timings]);
        }
        int count = perStep[0].Length;
        if (perStep.Any(ops => ops.Length != count))
            throw new InvalidOperationException("the profiled steps made different numbers of ops");
        var medians = new OpTiming[count];
        for (int i = 0; i < count; i++)
            medians[i] = perStep[0][i] with
            {
                Seconds = Median(perStep.Select(ops => ops[i].Seconds)),
                CpuSeconds = Median(perStep.Select(ops => ops[i].CpuSeconds)),
                Bytes = (long)Median(perStep.Select(ops => (double)ops[i].Bytes)),
            };
        return new StepProfile(test, steps, Median(plain), Median(plainCpu), Median(profiled), medians);
    }

    /// <summary>
    /// One step of the test (step s: position depth + s of each sequence for decode, the prompt
    /// for prefill) through <paramref name="ops"/>, or the model's own backend when null; seconds.
    /// </summary>
    double Step(StepBatch batch, ThroughputTest test, int s, int[] ids, ProfilingBackend? ops)
    {
        long start = Stopwatch.GetTimestamp();
        ops?.Clear();
        batch.Clear();
        if (test.Kind == ThroughputTestKind.Decode)
            for (int b = 0; b < test.Batch; b++)
            {
                batch.Add(new TokenRow(b, test.Depth + s, ids[b]));
                batch.AddLogitRow(b, SamplingRow.Greedy(b, s));
            }
        else
        {
            for (int i = 0; i < test.Tokens; i++)
                batch.Add(new TokenRow(0, test.Depth + i, ids[i]));
            batch.AddLogitRow(test.Tokens - 1, SamplingRow.Greedy());
        }
        batch.Upload();
        var backend = (IBackend?)ops ?? model.Backend;
        var logits = model.Forward(batch, backend);
        int draws = batch.DrawCount;
        backend.FlagNonFinite(logits, draws, model.VocabSize, batch.NonFiniteLogits);
        backend.Sample(logits, batch.SamplingParameters, batch.Penalized, batch.Sampled, new SamplingShape(draws, model.VocabSize),
            batch.NonFiniteLogits.Flags, batch.SamplingWorkspace);
        batch.Download();
        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        if (batch.Problems() is { Count: > 0 } problems)
            throw new InvalidOperationException($"row {problems[0].Row}: {problems[0].Message}");
        return seconds;
    }

    static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        int n = sorted.Length;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }

    int NextToken()
    {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        return (int)(state % (uint)model.VocabSize);
    }
}
