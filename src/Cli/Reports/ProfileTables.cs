using System.Globalization;
using System.Text;
using IlgpuLlm.Model.Evaluation;

namespace IlgpuLlm.Cli.Reports;

/// <summary>
/// A step profile as tables: time per op kind (calls per step, wall and CPU milliseconds, share of
/// the step, bytes moved, GB/s) and per layer, and a line on what lies between the ops.
/// </summary>
public static class ProfileTables
{
    static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    public static string Render(StepProfile profile)
    {
        var text = new StringBuilder();
        double step = profile.ProfiledStepSeconds;
        string what = profile.Test.Kind == ThroughputTestKind.Decode
            ? $"decode step ({profile.Test.Name}: {profile.Test.Batch} row{(profile.Test.Batch == 1 ? "" : "s")} per step, median of {profile.Steps} steps per op)"
            : $"prefill step ({profile.Test.Name}: {profile.Test.Tokens} rows in one forward pass, median of {profile.Steps} passes per op)";
        text.AppendLine(Invariant, $"profile of a {what}:");
        text.AppendLine();

        string[] Row(string name, IEnumerable<OpTiming> group)
        {
            var ops = group.ToArray();
            return Cells(name, ops.Length, ops.Sum(o => o.Seconds), ops.Sum(o => o.CpuSeconds), ops.Sum(o => o.Bytes), step);
        }

        var byKind = Table("op");
        foreach (var group in profile.Ops.GroupBy(o => o.Op).OrderByDescending(g => g.Sum(o => o.Seconds)))
            byKind.AddRow(Row(group.Key, group));
        byKind.AddRow(Cells("between ops (host)", 0, profile.BetweenOpsSeconds, double.NaN, 0, step));
        byKind.AddRow(Cells("step", profile.Ops.Count, step, double.NaN, profile.Ops.Sum(o => o.Bytes), step));
        text.Append(byKind);
        text.AppendLine();

        var byLayer = Table("layer");
        foreach (var group in profile.Ops.GroupBy(o => o.Layer).OrderBy(g => g.Key < 0 ? int.MaxValue : g.Key))
            byLayer.AddRow(Row(group.Key < 0 ? "outside the blocks" : group.Key.ToString(Invariant), group));
        text.Append(byLayer);
        text.AppendLine();

        var linear = profile.Ops.Where(o => o.Op.StartsWith("linear", StringComparison.Ordinal)).ToArray();
        double linearSeconds = linear.Sum(o => o.Seconds);
        text.AppendLine(Invariant,
            $"step: {profile.StepSeconds * 1e3:0.00} ms without the profiler (process CPU {profile.StepCpuSeconds * 1e3:0.00} ms), " +
            $"{step * 1e3:0.00} ms with it ({profile.Ops.Count} ops, a wait after each); " +
            $"linears {linearSeconds * 1e3:0.00} ms ({Share(linearSeconds, step)}, {Rate(linear.Sum(o => o.Bytes), linearSeconds)} GB/s), " +
            $"other ops {(profile.OpSeconds - linearSeconds) * 1e3:0.00} ms, between ops {profile.BetweenOpsSeconds * 1e3:0.00} ms");
        text.AppendLine("ms: wall time, the median of each op's call over the steps; cpu ms: the calling thread's CPU time in the op " +
            "(with one thread all of its work, without other processes' time slices)");
        return text.ToString();
    }

    static MarkdownTable Table(string first) =>
        new((first, false), ("calls", true), ("ms", true), ("cpu ms", true), ("share", true), ("MB", true), ("GB/s", true));

    static string[] Cells(string name, int calls, double seconds, double cpuSeconds, long bytes, double step) =>
    [
        name,
        calls > 0 ? calls.ToString(Invariant) : "",
        (seconds * 1e3).ToString("0.000", Invariant),
        double.IsNaN(cpuSeconds) ? "" : (cpuSeconds * 1e3).ToString("0.000", Invariant),
        Share(seconds, step),
        bytes > 0 ? (bytes / 1e6).ToString("0.0", Invariant) : "",
        bytes > 0 ? Rate(bytes, seconds) : "",
    ];

    static string Share(double seconds, double step) => step > 0 ? (seconds / step).ToString("0.0 %", Invariant) : "-";

    static string Rate(long bytes, double seconds) => seconds > 0 ? (bytes / seconds / 1e9).ToString("0.00", Invariant) : "-";
}
