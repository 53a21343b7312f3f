using System.Globalization;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace IlgpuLlm.Bench;

/// <summary>
/// Short, repeatable runs with the memory diagnoser on, plus the columns that say what a time
/// means: GB/s streamed and its ratio to the memory baseline, GFLOP/s, MB/s of text and tokens/s.
/// <c>--job short</c> on the command line (see Program.cs) selects BenchmarkDotNet's ShortRun
/// counts (3 warm-up, 3 measured iterations) for a quick pass over a suite.
/// </summary>
public sealed class BenchConfig : ManualConfig
{
    /// <summary>Set by Program.cs from <c>--job</c>; inherited by the benchmark processes.</summary>
    public const string JobVariable = "ILGPULLM_BENCH_JOB";

    public BenchConfig()
    {
        var job = Environment.GetEnvironmentVariable(JobVariable)?.ToLowerInvariant() switch
        {
            "short" => Job.ShortRun,
            "dry" => Job.Dry,
            _ => Job.Default.WithWarmupCount(3).WithIterationCount(10).WithLaunchCount(1),
        };
        AddJob(job);
        AddDiagnoser(MemoryDiagnoser.Default);
        foreach (var kind in Enum.GetValues<ThroughputColumn.Kind>())
            AddColumn(new ThroughputColumn(kind));
    }
}

/// <summary>
/// What one invocation of a benchmark does, for the throughput columns; each figure that does not
/// apply is null and its column shows "-" (a column no benchmark of a summary fills is hidden).
/// Implementations derive it from their parameters alone, without their setup.
/// </summary>
public interface IWorkload
{
    /// <summary>Turns the parameters into the shape the figures below need; allocates nothing large.</summary>
    void PrepareShape() { }

    /// <summary>Bytes read from memory (weights, KV cache, activations).</summary>
    double? Bytes => null;

    /// <summary>Whether <see cref="Bytes"/> come from DRAM, so that a ratio to the memory baseline means something.</summary>
    bool StreamsFromMemory => false;

    double? Flops => null;

    /// <summary>UTF-8 bytes of text processed.</summary>
    double? TextBytes => null;

    /// <summary>Tokens produced (decoded or sampled).</summary>
    double? Tokens => null;
}

/// <summary>Derives throughput from a benchmark's mean time and the work its parameters imply.</summary>
public sealed class ThroughputColumn(ThroughputColumn.Kind kind) : IColumn
{
    public enum Kind { GBps, BaselineRatio, Gflops, MBps, TokensPerSecond }

    /// <summary>Baseline GB/s per thread count, recorded from the MemoryBandwidth rows of a summary.</summary>
    static readonly Dictionary<int, double> Baselines = [];

    public string Id => $"{nameof(ThroughputColumn)}.{kind}";
    public string ColumnName => kind switch
    {
        Kind.GBps => "GB/s",
        Kind.BaselineRatio => "vs memory",
        Kind.Gflops => "GFLOP/s",
        Kind.MBps => "MB/s",
        _ => "tokens/s",
    };
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => (int)kind;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => kind switch
    {
        Kind.GBps => "bytes read per second (weights, KV cache, activations, or the baseline's 1 GiB)",
        Kind.BaselineRatio => "GB/s over the MemoryBandwidth baseline with the same threads, measured in the same run",
        Kind.Gflops => "floating-point operations per second (2 per multiply-add)",
        Kind.MBps => "UTF-8 text encoded per second (10^6 bytes)",
        _ => "tokens decoded or sampled per second",
    };

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public bool IsAvailable(Summary summary) =>
        kind == Kind.BaselineRatio
            ? summary.BenchmarksCases.Any(c => Workload(c) is { StreamsFromMemory: true, Bytes: not null })
            : summary.BenchmarksCases.Any(c => Work(c) != null);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase)
    {
        var report = summary[benchmarkCase];
        if (report?.ResultStatistics is not { } statistics)
            return "-";
        double seconds = statistics.Mean / 1e9;
        if (kind == Kind.BaselineRatio)
        {
            RecordBaselines(summary);
            int threads = benchmarkCase.Parameters.Items.FirstOrDefault(p => p.Name == "Threads")?.Value is int t ? t : 1;
            if (Workload(benchmarkCase) is not { StreamsFromMemory: true, Bytes: double read } || !Baselines.TryGetValue(threads, out var baseline))
                return "-";
            return (read / seconds / 1e9 / baseline).ToString("P0", CultureInfo.InvariantCulture);
        }
        if (Work(benchmarkCase) is not double work)
            return "-";
        double perSecond = work / seconds;
        return kind switch
        {
            Kind.GBps or Kind.Gflops => (perSecond / 1e9).ToString("F1", CultureInfo.InvariantCulture),
            Kind.MBps => (perSecond / 1e6).ToString("F2", CultureInfo.InvariantCulture),
            _ => perSecond.ToString(perSecond >= 100 ? "F0" : "F2", CultureInfo.InvariantCulture),
        };
    }

    double? Work(BenchmarkCase benchmarkCase)
    {
        if (benchmarkCase.Descriptor.Type == typeof(MemoryBandwidth))
            return kind == Kind.GBps ? MemoryBandwidth.Bytes : null;
        var workload = Workload(benchmarkCase);
        return kind switch
        {
            Kind.GBps => workload?.Bytes,
            Kind.Gflops => workload?.Flops,
            Kind.MBps => workload?.TextBytes,
            Kind.TokensPerSecond => workload?.Tokens,
            _ => null,
        };
    }

    /// <summary>A parameterised instance of the benchmark class (without its setup) to ask for its work.</summary>
    static IWorkload? Workload(BenchmarkCase benchmarkCase)
    {
        if (!typeof(IWorkload).IsAssignableFrom(benchmarkCase.Descriptor.Type))
            return null;
        var instance = (IWorkload)Activator.CreateInstance(benchmarkCase.Descriptor.Type)!;
        foreach (var parameter in benchmarkCase.Parameters.Items)
            benchmarkCase.Descriptor.Type.GetProperty(parameter.Name)?.SetValue(instance, parameter.Value);
        instance.PrepareShape();
        return instance;
    }

    /// <summary>
    /// The MemoryBandwidth rows of the summary when the filter included them; otherwise the same
    /// probe is run here, in the host process, once per thread count.
    /// </summary>
    static void RecordBaselines(Summary summary)
    {
        foreach (var report in summary.Reports)
            if (report.BenchmarkCase.Descriptor.Type == typeof(MemoryBandwidth) && report.ResultStatistics is { } s)
            {
                int threads = (int)report.BenchmarkCase.Parameters["Threads"];
                Baselines[threads] = MemoryBandwidth.Bytes / (s.Mean / 1e9) / 1e9;
            }
        foreach (var benchmarkCase in summary.BenchmarksCases)
            if (benchmarkCase.Parameters.Items.FirstOrDefault(p => p.Name == "Threads")?.Value is int threads && !Baselines.ContainsKey(threads))
                Baselines[threads] = IlgpuLlm.Kernels.MemoryBandwidthProbe.Measure(threads);
    }
}
