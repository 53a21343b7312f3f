using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace IlgpuLlm.Bench;

/// <summary>
/// Short, repeatable runs with the memory diagnoser on, plus the columns that say what a time
/// means: GB/s of weights streamed, its ratio to the memory baseline, and GFLOP/s.
/// </summary>
public sealed class BenchConfig : ManualConfig
{
    public BenchConfig()
    {
        AddJob(Job.Default.WithWarmupCount(3).WithIterationCount(10).WithLaunchCount(1));
        AddDiagnoser(MemoryDiagnoser.Default);
        AddColumn(new ThroughputColumn(ThroughputColumn.Kind.WeightGBps));
        AddColumn(new ThroughputColumn(ThroughputColumn.Kind.BaselineRatio));
        AddColumn(new ThroughputColumn(ThroughputColumn.Kind.Gflops));
    }
}

/// <summary>Derives throughput from a benchmark's mean time and the work its parameters imply.</summary>
public sealed class ThroughputColumn(ThroughputColumn.Kind kind) : IColumn
{
    public enum Kind { WeightGBps, BaselineRatio, Gflops }

    /// <summary>Baseline GB/s per thread count, recorded from the MemoryBandwidth rows of a summary.</summary>
    static readonly Dictionary<int, double> Baselines = [];

    public string Id => $"{nameof(ThroughputColumn)}.{kind}";
    public string ColumnName => kind switch
    {
        Kind.WeightGBps => "GB/s",
        Kind.BaselineRatio => "vs memory",
        _ => "GFLOP/s",
    };
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => (int)kind;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => kind switch
    {
        Kind.WeightGBps => "bytes of weights (or the 1 GiB buffer) read per second",
        Kind.BaselineRatio => "GB/s over the MemoryBandwidth baseline with the same threads, measured in the same run",
        _ => "2·rows·out·in floating-point operations per second",
    };

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public bool IsAvailable(Summary summary) => true;
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase)
    {
        var report = summary[benchmarkCase];
        if (report?.ResultStatistics is not { } statistics)
            return "-";
        double seconds = statistics.Mean / 1e9;
        var parameters = benchmarkCase.Parameters;
        int threads = parameters.Items.FirstOrDefault(p => p.Name == "Threads")?.Value is int t ? t : 1;
        double? bytes = Bytes(benchmarkCase);
        switch (kind)
        {
            case Kind.WeightGBps:
                return bytes is double b ? (b / seconds / 1e9).ToString("F1") : "-";
            case Kind.BaselineRatio:
                RecordBaselines(summary);
                if (bytes is not double read || !Baselines.TryGetValue(threads, out var baseline))
                    return "-";
                return (read / seconds / 1e9 / baseline).ToString("P0");
            default:
                var flops = Flops(benchmarkCase);
                return flops is double f ? (f / seconds / 1e9).ToString("F1") : "-";
        }
    }

    static double? Bytes(BenchmarkCase benchmarkCase)
    {
        if (benchmarkCase.Descriptor.Type == typeof(MemoryBandwidth))
            return MemoryBandwidth.Bytes;
        return Instance(benchmarkCase) is LinearBenchmark linear ? linear.WeightBytes : null;
    }

    static double? Flops(BenchmarkCase benchmarkCase) => Instance(benchmarkCase) switch
    {
        LinearPrefill linear => linear.Flops,
        LinearIlgpuCpu oracle => oracle.Flops,
        _ => null,
    };

    /// <summary>A parameterised instance of the benchmark class (without its setup) to ask for its work.</summary>
    static object? Instance(BenchmarkCase benchmarkCase)
    {
        var instance = Activator.CreateInstance(benchmarkCase.Descriptor.Type);
        foreach (var parameter in benchmarkCase.Parameters.Items)
            benchmarkCase.Descriptor.Type.GetProperty(parameter.Name)?.SetValue(instance, parameter.Value);
        if (instance is LinearBenchmark linear)
            linear.PrepareShape();
        if (instance is LinearIlgpuCpu oracle)
            oracle.PrepareShape();
        return instance;
    }

    static void RecordBaselines(Summary summary)
    {
        foreach (var report in summary.Reports)
            if (report.BenchmarkCase.Descriptor.Type == typeof(MemoryBandwidth) && report.ResultStatistics is { } s)
            {
                int threads = (int)report.BenchmarkCase.Parameters["Threads"];
                Baselines[threads] = MemoryBandwidth.Bytes / (s.Mean / 1e9) / 1e9;
            }
    }
}
