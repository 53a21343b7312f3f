using IlgpuLlm.Model.Evaluation;
using ScottPlot;

namespace IlgpuLlm.Cli.Reports;

/// <summary>
/// The picture of a <c>bench --plot</c> run: one panel per curve — decode tokens/s against the
/// tokens already in the KV cache, prefill tokens/s against the prompt length, and aggregate
/// decode tokens/s against the number of sequences — each point the mean of its runs with the
/// runs' standard deviation as an error bar.
/// </summary>
public static class BenchPlot
{
    /// <summary>One panel: its points' x values (context depth, prompt length, batch size; positive) and results.</summary>
    public sealed record Series(string Title, string XLabel, string Legend, IReadOnlyList<(double X, ThroughputResult Result)> Points);

    public static void Write(string path, string caption, IReadOnlyList<Series> panels)
    {
        var drawn = panels.Where(p => p.Points.Count > 0).ToArray();
        if (drawn.Length == 0)
            throw new InvalidOperationException("there is nothing to plot");
        var multiplot = new Multiplot();
        multiplot.RemovePlot(multiplot.GetPlot(0)); // a new multiplot holds one empty plot
        multiplot.Layout = new ScottPlot.MultiplotLayouts.Columns();
        var colors = new[] { Colors.C0, Colors.C1, Colors.C2 };
        for (int i = 0; i < drawn.Length; i++)
        {
            var panel = drawn[i];
            var plot = new Plot();
            // Lengths and batch sizes double from point to point: a log2 axis spaces them evenly,
            // with a tick labelled by the value at each measured point.
            double[] xs = panel.Points.Select(p => Math.Log2(p.X)).ToArray();
            double[] ys = panel.Points.Select(p => p.Result.MeanTokensPerSecond).ToArray();
            double[] errors = panel.Points.Select(p => p.Result.StdDevTokensPerSecond).ToArray();
            var line = plot.Add.Scatter(xs, ys, colors[i % colors.Length]);
            line.LineWidth = 2;
            line.MarkerSize = 8;
            line.LegendText = panel.Legend;
            var bars = plot.Add.ErrorBar(xs, ys, errors);
            bars.Color = colors[i % colors.Length];
            plot.Title($"{panel.Title}\n{caption}", size: 14);
            plot.XLabel(panel.XLabel);
            plot.YLabel("tokens/s");
            plot.ShowLegend(Alignment.UpperRight);
            // Start the y axis at zero: a throughput curve read from a cropped axis exaggerates every drop.
            plot.Axes.AutoScale();
            var limits = plot.Axes.GetLimits();
            plot.Axes.SetLimitsY(0, Math.Max(limits.Top, ys.Max() * 1.15));
            plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
                xs, panel.Points.Select(p => p.X.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray());
            double pad = xs.Length > 1 ? (xs.Max() - xs.Min()) * 0.08 : 0.5;
            plot.Axes.SetLimitsX(xs.Min() - pad, xs.Max() + pad);
            multiplot.AddPlot(plot);
        }
        multiplot.SavePng(path, 560 * drawn.Length, 480);
    }
}
