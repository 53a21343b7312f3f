using System.Diagnostics;
using System.Globalization;
using IlgpuLlm.Runtime.Generation;

namespace IlgpuLlm.Model.Evaluation;

public enum ThroughputTestKind
{
    /// <summary>llama-bench's pp N: N prompt tokens of one sequence in one forward pass.</summary>
    Prefill,

    /// <summary>llama-bench's tg N: N decode steps, each one token per sequence through the KV cache.</summary>
    Decode,
}

/// <summary>
/// One throughput measurement, named as llama-bench names them: pp128, tg64, and with the tokens
/// already in the cache "tg64 @ d512". <see cref="Batch"/> sequences decode together ("tg64 x4");
/// their tokens/s is the aggregate.
/// </summary>
public sealed record ThroughputTest(ThroughputTestKind Kind, int Tokens, int Batch = 1, int Depth = 0)
{
    public string Name => (Kind == ThroughputTestKind.Prefill ? "pp" : "tg") + Tokens.ToString(CultureInfo.InvariantCulture)
        + (Batch > 1 ? $" x{Batch}" : "") + (Depth > 0 ? $" @ d{Depth}" : "");

    /// <summary>Tokens one run processes: the prompt, or steps × sequences.</summary>
    public long TokensPerRun => Kind == ThroughputTestKind.Prefill ? Tokens : (long)Tokens * Batch;

    /// <summary>Forward passes one run makes.</summary>
    public int ForwardPasses => Kind == ThroughputTestKind.Prefill ? 1 : Tokens;

    /// <summary>Cache positions a sequence needs.</summary>
    public int Positions => Depth + Tokens;

    /// <summary>Rows of the largest forward pass.</summary>
    public int Rows => Kind == ThroughputTestKind.Prefill ? Tokens : Batch;
}

/// <summary>The wall time of each timed run of a test.</summary>
public sealed record ThroughputResult(ThroughputTest Test, IReadOnlyList<double> Seconds)
{
    public IReadOnlyList<double> TokensPerSecond => Seconds.Select(s => Test.TokensPerRun / s).ToArray();

    public double MeanTokensPerSecond => TokensPerSecond.Average();

    /// <summary>Sample standard deviation of the runs' tokens/s (llama-bench's ±); 0 for one run.</summary>
    public double StdDevTokensPerSecond
    {
        get
        {
            var samples = TokensPerSecond;
            if (samples.Count < 2)
                return 0;
            double mean = samples.Average();
            return Math.Sqrt(samples.Sum(s => (s - mean) * (s - mean)) / (samples.Count - 1));
        }
    }

    /// <summary>Forward passes per second, averaged like <see cref="MeanTokensPerSecond"/>.</summary>
    public double MeanForwardsPerSecond => Seconds.Select(s => Test.ForwardPasses / s).Average();
}

/// <summary>
/// Measures prefill and decode throughput through the model's own forward pass, as llama-bench
/// does: random tokens, untimed warm-up, then timed runs. Decode feeds one row per
/// sequence per step and waits for the backend after each step, as a generation loop must before
/// it samples. The cache contents a test needs below its depth are written once (untimed) and
/// reused, so a sweep over growing depths fills the cache only once.
/// </summary>
public sealed class ThroughputRunner
{
    /// <summary>Decode steps of one warm-up run.</summary>
    public const int DecodeWarmUpSteps = 16;

    /// <summary>
    /// Warm-up runs repeat until this much time has passed (at least one run). .NET compiles a
    /// method's optimised code only after it has been called 30 times and 100 ms have passed
    /// without new methods being compiled, in the background: a small model's whole benchmark
    /// can otherwise finish on unoptimised code (stories260K decodes 3× slower for it).
    /// </summary>
    public double WarmUpSeconds { get; init; } = 1.0;

    readonly ILanguageModel model;
    readonly int[] filled;
    uint state;

    public ThroughputRunner(ILanguageModel model, uint seed = 1234)
    {
        this.model = model;
        filled = new int[model.Slots];
        state = seed | 1;
    }

    /// <summary>Reports what is running ("pp128: run 2 of 5"), for a progress line.</summary>
    public Action<string>? Progress { get; init; }

    public ThroughputResult Run(ThroughputTest test, int repetitions, bool warmUp = true)
    {
        Check(test, repetitions);
        Fill(test.Kind == ThroughputTestKind.Prefill ? 1 : test.Batch, test.Depth);
        if (warmUp)
        {
            Progress?.Invoke($"{test.Name}: warm-up");
            int tokens = test.Kind == ThroughputTestKind.Prefill ? test.Tokens : Math.Min(test.Tokens, DecodeWarmUpSteps);
            long start = Stopwatch.GetTimestamp();
            do
                Time(test, tokens);
            while (Stopwatch.GetElapsedTime(start).TotalSeconds < WarmUpSeconds);
        }
        var seconds = new double[repetitions];
        for (int r = 0; r < repetitions; r++)
        {
            Progress?.Invoke($"{test.Name}: run {r + 1} of {repetitions}");
            seconds[r] = Time(test, test.Tokens);
        }
        return new ThroughputResult(test, seconds);
    }

    void Check(ThroughputTest test, int repetitions)
    {
        if (repetitions < 1)
            throw new ArgumentOutOfRangeException(nameof(repetitions), $"repetitions {repetitions} must be at least 1");
        if (test.Tokens < 1 || test.Batch < 1 || test.Depth < 0)
            throw new ArgumentException($"{test.Name}: tokens and batch must be positive, depth not negative");
        if (test.Batch > model.Slots)
            throw new ArgumentException($"{test.Name}: {test.Batch} sequences need {test.Batch} cache slots; the model has {model.Slots}");
        if (test.Rows > model.MaxRowsPerForward)
            throw new ArgumentException($"{test.Name}: a forward pass of {test.Rows} rows exceeds the model's {model.MaxRowsPerForward}");
        if (test.Positions > model.ContextLength)
            throw new ArgumentException($"{test.Name}: needs {test.Positions} positions; the cache holds {model.ContextLength}");
    }

    /// <summary>Writes random tokens at positions [0, depth) of the first <paramref name="slots"/> slots where they are missing.</summary>
    void Fill(int slots, int depth)
    {
        for (int slot = 0; slot < slots; slot++)
            while (filled[slot] < depth)
            {
                int count = Math.Min(model.MaxRowsPerForward, depth - filled[slot]);
                Progress?.Invoke($"filling the cache to depth {depth}");
                var rows = new TokenRow[count];
                for (int i = 0; i < count; i++)
                    rows[i] = new TokenRow(slot, filled[slot] + i, NextToken());
                Forward(rows, []);
                filled[slot] += count;
            }
    }

    /// <summary>One run: the prompt in one pass, or <paramref name="tokens"/> decode steps. Returns seconds.</summary>
    double Time(ThroughputTest test, int tokens)
    {
        if (test.Kind == ThroughputTestKind.Prefill)
        {
            var rows = new TokenRow[tokens];
            for (int i = 0; i < tokens; i++)
                rows[i] = new TokenRow(0, test.Depth + i, NextToken());
            int[] last = [tokens - 1];
            long start = Stopwatch.GetTimestamp();
            Forward(rows, last);
            double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            Written(1, test.Depth + tokens);
            return seconds;
        }

        int batch = test.Batch;
        var step = new TokenRow[batch];
        var logitRows = Enumerable.Range(0, batch).ToArray();
        var ids = new int[tokens * batch];
        for (int i = 0; i < ids.Length; i++)
            ids[i] = NextToken();
        long begin = Stopwatch.GetTimestamp();
        for (int t = 0; t < tokens; t++)
        {
            for (int b = 0; b < batch; b++)
                step[b] = new TokenRow(b, test.Depth + t, ids[t * batch + b]);
            Forward(step, logitRows);
        }
        double elapsed = Stopwatch.GetElapsedTime(begin).TotalSeconds;
        Written(batch, test.Depth + tokens);
        return elapsed;
    }

    void Forward(ReadOnlySpan<TokenRow> rows, ReadOnlySpan<int> logitRows)
    {
        var result = model.Forward(rows, logitRows);
        model.Backend.Synchronize();
        if (result.Problems.Count > 0)
            throw new InvalidOperationException($"row {result.Problems[0].Row}: {result.Problems[0].Message}");
    }

    /// <summary>A run wrote [depth, end) of each slot it used; <see cref="Fill"/> had written everything below depth.</summary>
    void Written(int slots, int end)
    {
        for (int slot = 0; slot < slots; slot++)
            filled[slot] = Math.Max(filled[slot], end);
    }

    /// <summary>Random ids from a fixed xorshift stream, so runs see the same tokens.</summary>
    int NextToken()
    {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        return (int)(state % (uint)model.VocabSize);
    }
}
