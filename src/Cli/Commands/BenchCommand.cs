using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using IlgpuLlm.Cli.Reports;
using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Evaluation;
using IlgpuLlm.Model.Formats;
using IlgpuLlm.Runtime.Backends;

namespace IlgpuLlm.Cli.Commands;

/// <summary>
/// <c>bench</c>: llama-bench for this engine. Prefill (pp N: N prompt tokens in one forward pass)
/// and decode (tg N: N steps of one token per sequence through the KV cache) throughput with a
/// warm-up and repeated runs, in llama-bench's table; for decode also the weight bytes it streams
/// per second and their ratio to the machine's memory bandwidth, measured in the same run.
/// </summary>
public static class BenchCommand
{
    static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    public static Command Create()
    {
        var model = new ModelOptions();
        var prompt = new Option<string>("--n-prompt", "-p")
        {
            Description = "Prompt lengths of the prefill tests, comma-separated (0: none)",
            DefaultValueFactory = _ => "128",
        };
        var generate = new Option<string>("--n-gen", "-n")
        {
            Description = "Decode steps of the decode tests, comma-separated (0: none)",
            DefaultValueFactory = _ => "64",
        };
        var repetitions = NumberOptions.Int("--repetitions", ["-r"], "Timed runs per test", Accepts<int>.AtLeast(1), 5);
        // llama-bench's -b is the batch of prompt tokens; sequences decoding together are llama.cpp's
        // -np/--parallel. --batch-size is the name this option had before.
        var batch = new Option<string>("--parallel", "-np", "--batch-size")
        {
            Description = "Sequences decoding together in the decode tests, comma-separated; t/s is their aggregate",
            DefaultValueFactory = _ => "1",
        };
        var json = new Option<string?>("--json") { Description = "Write the results as JSON to this file" };
        var plot = new Option<string?>("--plot") { Description = "Draw tokens/s against context depth, prompt length and batch size into this PNG (runs a sweep)" };
        var plotContext = NumberOptions.Int("--plot-context", [],
            "Longest context of the --plot sweep; it measures at this length and at halvings of it", Accepts<int>.AtLeast(2), 1024);
        var warmUp = NumberOptions.Double("--warmup-seconds", [],
            "Untimed warm-up per test: runs repeat until this much time has passed (at least one), so the JIT's optimised code is measured",
            Accepts<double>.Between(0, 3600, "seconds"), 1.0);
        var baseline = NumberOptions.Int("--baseline-mib", [],
            "Buffer of the memory-bandwidth baseline in MiB; it must be far larger than the caches", Accepts<int>.AtLeast(1),
            (int)(MemoryBandwidthProbe.DefaultBytes >> 20));

        var command = new Command("bench", "Measure prefill and decode tokens/s (like llama-bench) and decode's share of memory bandwidth");
        foreach (var option in new Option[] { model.Model, model.Device, model.Threads, model.KvType })
            command.Options.Add(option);
        foreach (var option in new Option[] { prompt, generate, repetitions, batch, json, plot, plotContext, warmUp, baseline })
            command.Options.Add(option);

        command.SetAction(parse =>
        {
            var settings = new Settings(
                Lengths(parse.GetValue(prompt)!, "--n-prompt", allowZero: true),
                Lengths(parse.GetValue(generate)!, "--n-gen", allowZero: true),
                Lengths(parse.GetValue(batch)!, "--parallel", allowZero: false),
                parse.GetValue(repetitions),
                parse.GetValue(plot) != null ? parse.GetValue(plotContext) : 0,
                parse.GetValue(baseline),
                parse.GetValue(warmUp));
            if (!(settings.WarmUpSeconds >= 0) || double.IsInfinity(settings.WarmUpSeconds))
                throw new UsageException($"--warmup-seconds {settings.WarmUpSeconds} must be a finite number of seconds, 0 or more");
            if (settings.Repetitions < 1)
                throw new UsageException($"--repetitions {settings.Repetitions} must be at least 1");
            if (settings.Baseline < 1)
                throw new UsageException($"--baseline-mib {settings.Baseline} must be at least 1");
            if (parse.GetValue(plot) != null && settings.PlotContext < 2)
                throw new UsageException($"--plot-context {settings.PlotContext} must be at least 2");
            if (settings.Prompts.All(p => p == 0) && settings.Steps.All(n => n == 0))
                throw new UsageException("nothing to measure: --n-prompt and --n-gen are both 0");
            model.CheckPaths(parse);
            if (parse.GetValue(json) is string jsonPath)
                PathArguments.Output("--json", jsonPath, standardAllowed: false);
            if (parse.GetValue(plot) is string plotPath)
                PathArguments.Output("--plot", plotPath, standardAllowed: false);
            return Run(model, parse, settings, parse.GetValue(json), parse.GetValue(plot));
        });
        return command;
    }

    sealed record Settings(int[] Prompts, int[] Steps, int[] Batches, int Repetitions, int PlotContext, int Baseline, double WarmUpSeconds);

    static int Run(ModelOptions modelOptions, ParseResult parse, Settings settings, string? jsonPath, string? plotPath)
    {
        using var backend = modelOptions.CreateBackend(parse);
        using var checkpoint = modelOptions.OpenCheckpoint(parse);
        string path = checkpoint.SourcePath;
        var footprint = ModelFootprint.Of(checkpoint);
        var kvType = StorageTypes.Parse(parse.GetValue(modelOptions.KvType)!);
        int threads = backend is SimdBackend simd ? simd.Threads
            : Math.Min(parse.GetValue(modelOptions.Threads), Environment.ProcessorCount) is > 0 and var t ? t : Environment.ProcessorCount;

        var tests = new List<ThroughputTest>();
        foreach (int p in settings.Prompts.Where(p => p > 0))
            tests.Add(new ThroughputTest(ThroughputTestKind.Prefill, p));
        foreach (int n in settings.Steps.Where(n => n > 0))
            foreach (int b in settings.Batches)
                tests.Add(new ThroughputTest(ThroughputTestKind.Decode, n, b));
        var (depthSweep, promptSweep) = plotPath != null
            ? Sweep(settings, checkpoint.Config.ContextLength)
            : ([], []);
        var all = tests.Concat(promptSweep).Concat(depthSweep).ToArray();

        int context = all.Max(t => t.Positions);
        if (context > checkpoint.Config.ContextLength)
            throw new InvalidOperationException($"the tests need {context} positions; {path} has a context of {checkpoint.Config.ContextLength}");
        var options = new TransformerOptions
        {
            Slots = all.Max(t => t.Batch),
            MaxRowsPerForward = all.Max(t => t.Rows),
            ContextLength = context,
            KvType = kvType,
        };

        // The baseline is host memory read by the CPU threads: it says nothing about a GPU's memory.
        // It is measured again right before each decode test, since on a shared machine the
        // bandwidth left to this process changes while it runs.
        MemoryBandwidthProbe? probe = null;
        CpuWorkers? probeWorkers = null;
        try
        {
            if (backend.Kind != "cuda")
            {
                MemoryPlan.EnsureFits((long)settings.Baseline << 20, $"the memory-bandwidth probe (--baseline-mib {settings.Baseline})");
                Status($"allocating the memory-bandwidth probe ({settings.Baseline} MiB)");
                probe = new MemoryBandwidthProbe((long)settings.Baseline << 20);
                probeWorkers = new CpuWorkers(threads);
            }
            using var transformer = new Transformer(checkpoint, backend, options);
            var runner = new ThroughputRunner(transformer) { Progress = Status, WarmUpSeconds = settings.WarmUpSeconds };
            Measurement Measure(ThroughputTest test)
            {
                double? baseline = null;
                if (probe != null && test.Kind == ThroughputTestKind.Decode)
                {
                    Status($"{test.Name}: measuring memory bandwidth");
                    baseline = probe.MeasureGigabytesPerSecond(probeWorkers!);
                }
                return new Measurement(runner.Run(test, settings.Repetitions), baseline);
            }
            var results = tests.Select(Measure).ToArray();
            var promptResults = promptSweep.Select(Measure).ToArray();
            var depthResults = depthSweep.Select(Measure).ToArray();
            Status(null);
            return Output(path, settings, backend, footprint, threads, kvType, results, promptResults, depthResults, depthSweep,
                jsonPath, plotPath);
        }
        finally
        {
            probeWorkers?.Dispose();
            probe?.Dispose();
        }
    }

    /// <summary>A test's runs and the memory bandwidth measured just before them (decode tests on the CPU).</summary>
    sealed record Measurement(ThroughputResult Result, double? BaselineGBps);

    static int Output(string path, Settings settings, IBackend backend, ModelFootprint footprint, int threads, StorageType kvType,
        Measurement[] results, Measurement[] promptResults, Measurement[] depthResults, ThroughputTest[] depthSweep,
        string? jsonPath, string? plotPath)
    {
        var report = new Report(path, footprint, backend, threads, kvType, settings.Baseline);
        Console.Out.Write(report.Table(results));
        if (promptResults.Length + depthResults.Length > 0)
        {
            Console.Out.WriteLine();
            Console.Out.WriteLine("sweep for the plot:");
            Console.Out.WriteLine();
            Console.Out.Write(report.Table([.. promptResults, .. depthResults]));
        }
        Console.Out.WriteLine();
        foreach (var note in report.Notes([.. results, .. promptResults, .. depthResults]))
            Console.Out.WriteLine(note);

        if (jsonPath != null)
        {
            PathArguments.WriteText("--json", jsonPath, report.Json(results, [.. promptResults, .. depthResults]));
            Console.Error.WriteLine($"wrote the results to {jsonPath}");
        }
        if (plotPath != null)
        {
            string caption = $"{footprint.Description}, {backend.Kind}, {threads} threads, kv {kvType.Name()}";
            var decodeBatches = results.Select(m => m.Result)
                .Where(r => r.Test.Kind == ThroughputTestKind.Decode && r.Test.Tokens == settings.Steps.Max()).ToArray();
            BenchPlot.Write(plotPath, caption,
            [
                new BenchPlot.Series($"Decode vs context depth", "tokens already in the KV cache",
                    $"tg{depthSweep.FirstOrDefault()?.Tokens}" + (depthSweep.FirstOrDefault()?.Batch > 1 ? $" x{depthSweep[0].Batch}" : ""),
                    depthResults.Select(m => ((double)m.Result.Test.Depth, m.Result)).ToArray()),
                new BenchPlot.Series("Prefill vs prompt length", "prompt tokens (one forward pass)", "pp",
                    promptResults.Select(m => ((double)m.Result.Test.Tokens, m.Result)).ToArray()),
                new BenchPlot.Series("Decode vs batch size", "sequences decoding together", $"tg{settings.Steps.Max()}, aggregate",
                    decodeBatches.Length > 1 ? decodeBatches.Select(r => ((double)r.Test.Batch, r)).ToArray() : []),
            ]);
            Console.Error.WriteLine($"wrote the plot to {plotPath}");
        }
        return 0;
    }

    /// <summary>
    /// The --plot sweep: prefill at the plot context and its halvings (down to a sixteenth), and
    /// decode at those depths with the first batch size — the cache is filled once, in growing steps.
    /// </summary>
    static (ThroughputTest[] Depths, ThroughputTest[] Prompts) Sweep(Settings settings, int modelContext)
    {
        int steps = Math.Min(settings.Steps.Where(n => n > 0).DefaultIfEmpty(16).First(), 16);
        int longest = Math.Min(settings.PlotContext, modelContext - steps);
        if (longest < 2)
            throw new InvalidOperationException($"the model's context of {modelContext} leaves no room for a plot sweep");
        var points = new List<int>();
        for (int c = longest; c >= Math.Max(2, longest / 16); c /= 2)
            points.Insert(0, c);
        int batch = settings.Batches[0];
        return (points.Select(d => new ThroughputTest(ThroughputTestKind.Decode, steps, batch, d)).ToArray(),
            points.Select(p => new ThroughputTest(ThroughputTestKind.Prefill, p)).ToArray());
    }

    static int[] Lengths(string text, string option, bool allowZero)
    {
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length == 0)
            throw new UsageException($"{option} lists no values");
        return parts.Select(p => int.TryParse(p, NumberStyles.None, Invariant, out int n) && (n > 0 || (allowZero && n == 0))
            ? n
            : throw new UsageException($"{option}: '{p}' is not a {(allowZero ? "non-negative" : "positive")} whole number")).ToArray();
    }

    /// <summary>A one-line status on stderr while a terminal shows it; null clears it.</summary>
    static void Status(string? text)
    {
        if (Console.IsErrorRedirected)
            return;
        const int Width = 79;
        string line = text == null ? "" : text.Length > Width ? text[..Width] : text;
        Console.Error.Write("\r" + line.PadRight(Width) + (text == null ? "\r" : ""));
    }

    /// <summary>The figures of one run, as a table, notes and JSON.</summary>
    sealed class Report(string path, ModelFootprint footprint, IBackend backend, int threads, StorageType kvType, int baselineMiB)
    {
        /// <summary>Weight bytes streamed per second by a decode test: one pass over the weights per step.</summary>
        double? WeightGBps(ThroughputResult r) =>
            r.Test.Kind == ThroughputTestKind.Decode ? footprint.BytesPerForward * r.MeanForwardsPerSecond / 1e9 : null;

        double? Ratio(Measurement m) => WeightGBps(m.Result) is double gbps && m.BaselineGBps is double b ? gbps / b : null;

        public string Table(IReadOnlyList<Measurement> measurements)
        {
            bool showKv = kvType != StorageType.F32;
            var columns = new List<(string, bool)> { ("model", false), ("size", true), ("params", true), ("backend", false), ("threads", true) };
            if (showKv)
                columns.Add(("type_kv", false));
            columns.AddRange([("test", true), ("t/s", true), ("weights GB/s", true), ("vs memory", true)]);
            var table = new MarkdownTable([.. columns]);
            foreach (var m in measurements)
            {
                var r = m.Result;
                var cells = new List<string>
                {
                    footprint.Description, ModelFootprint.FormatBytes(footprint.Bytes), ModelFootprint.FormatCount(footprint.Parameters),
                    backend.Kind, threads.ToString(Invariant),
                };
                if (showKv)
                    cells.Add(kvType.Name());
                cells.Add(r.Test.Name);
                cells.Add(string.Create(Invariant, $"{r.MeanTokensPerSecond:0.00} ± {r.StdDevTokensPerSecond:0.00}"));
                cells.Add(WeightGBps(r) is double gbps ? gbps.ToString("0.00", Invariant) : "-");
                cells.Add(Ratio(m) is double ratio ? ratio.ToString("0.0 %", Invariant) : "-");
                table.AddRow([.. cells]);
            }
            return table.ToString();
        }

        public IEnumerable<string> Notes(IReadOnlyList<Measurement> measurements)
        {
            yield return $"backend: {backend.Name}; weights streamed per forward pass: {ModelFootprint.FormatBytes(footprint.BytesPerForward)}";
            var baselines = measurements.Select(m => m.BaselineGBps).OfType<double>().ToArray();
            if (baselines.Length > 0)
            {
                string range = baselines.Length == 1 ? string.Create(Invariant, $"{baselines[0]:0.00} GB/s")
                    : string.Create(Invariant, $"{baselines.Min():0.00} to {baselines.Max():0.00} GB/s");
                yield return $"memory baseline: {range}, measured before each decode test (median of 5 vectorised sums over {baselineMiB} MiB " +
                    $"on {threads} thread{(threads == 1 ? "" : "s")}); vs memory = the test's weights GB/s over it";
            }
            else if (backend.Kind == "cuda")
                yield return "memory baseline: not measured (it is host memory read by the CPU; a CUDA device's memory is another bus)";
        }

        public string Json(IReadOnlyList<Measurement> results, IReadOnlyList<Measurement> sweep)
        {
            object Entry(Measurement m)
            {
                var r = m.Result;
                return new JsonResult(
                    r.Test.Name, r.Test.Kind == ThroughputTestKind.Prefill ? "pp" : "tg",
                    r.Test.Kind == ThroughputTestKind.Prefill ? r.Test.Tokens : 0,
                    r.Test.Kind == ThroughputTestKind.Decode ? r.Test.Tokens : 0,
                    r.Test.Batch, r.Test.Depth, r.Seconds.Count,
                    r.Seconds.Select(s => (long)Math.Round(s * 1e9)).ToArray(),
                    r.TokensPerSecond.ToArray(), r.MeanTokensPerSecond, r.StdDevTokensPerSecond,
                    WeightGBps(r), m.BaselineGBps, Ratio(m));
            }
            var document = new JsonDocumentRoot(
                new JsonModel(path, footprint.Description, footprint.Family, footprint.WeightType, footprint.Parameters, footprint.Bytes,
                    footprint.BytesPerForward),
                backend.Name, backend.Kind, threads, kvType.Name(), backend.Kind == "cuda" ? null : (long)baselineMiB << 20,
                results.Select(Entry).ToArray(), sweep.Select(Entry).ToArray());
            return JsonSerializer.Serialize(document, new JsonSerializerOptions
            {
                WriteIndented = true,
                PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
                NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
            });
        }
    }

    sealed record JsonModel(string Path, string Description, string Family, string WeightType, long Parameters, long SizeBytes,
        long WeightBytesPerForward);

    sealed record JsonResult(string Test, string Kind, int NPrompt, int NGen, int Batch, int Depth, int Repetitions,
        long[] SamplesNs, double[] SamplesTs, double AvgTs, double StddevTs, double? WeightGbps, double? MemoryBaselineGbps, double? VsMemory);

    sealed record JsonDocumentRoot(JsonModel Model, string Backend, string BackendKind, int Threads, string TypeKv,
        long? MemoryBaselineBytes, object[] Results, object[] Sweep);
}
