using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Evaluation;

namespace IlgpuLlm.Cli.Commands;

/// <summary>
/// <c>perplexity</c>: llama-perplexity's figure over a text — non-overlapping windows of c tokens,
/// each starting at BOS, the second half of each window scored — printed window by window and
/// at the end with llama.cpp's ± estimate, so the numbers compare with llama.cpp's.
/// </summary>
public static class PerplexityCommand
{
    static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    public static Command Create()
    {
        var model = new ModelOptions();
        var file = new Option<string>("--file", "-f") { Description = "The text to score (UTF-8)", Required = true };
        var window = NumberOptions.Int("--ctx-size", ["-c"], "Tokens per window; the first half of each is context, the rest is scored",
            Accepts<int>.AtLeast(4), 512);
        var chunks = NumberOptions.Int("--chunks", [], "Score at most this many windows", Accepts<int>.AtLeast(0, "0: all"), 0);
        var command = new Command("perplexity", "Perplexity of a model over a text, as llama.cpp's llama-perplexity computes it");
        foreach (var option in new Option[] { model.Model, model.Tokenizer, model.Device, model.Threads, model.KvType, file, window, chunks })
            command.Options.Add(option);
        command.SetAction(parse =>
        {
            int c = parse.GetValue(window);
            string path = PathArguments.Input("--file", parse.GetValue(file));
            // The text is read whole: its bytes, its characters (UTF-16) and then its tokens.
            MemoryPlan.EnsureFits(new FileInfo(path).Length * 8, $"reading --file {path}");
            model.CheckPaths(parse);

            using var backend = model.CreateBackend(parse);
            var options = model.TransformerOptions(parse, slots: 1) with { ContextLength = c, MaxRowsPerForward = Math.Min(c, 512) };
            using var loaded = model.Open(parse, backend, options);
            if (loaded.Transformer.ContextLength < c)
                throw new InvalidOperationException($"--ctx-size {c} exceeds the model's context of {loaded.Config.ContextLength}");
            var tokenizer = loaded.RequireTokenizer();

            var clock = Stopwatch.StartNew();
            var tokens = tokenizer.Encode(File.ReadAllText(path), addBos: tokenizer.AddBosByDefault, parseSpecial: false);
            int? bos = tokenizer.AddBosByDefault ? tokenizer.Special.Bos ?? loaded.Config.BosTokenId : null;
            int windows = tokens.Length / c;
            if (parse.GetValue(chunks) > 0)
                windows = Math.Min(windows, parse.GetValue(chunks));
            Console.Error.WriteLine(string.Create(Invariant,
                $"tokenized {path}: {tokens.Length} tokens in {clock.Elapsed.TotalSeconds:0.0} s; {windows} windows of {c}, " +
                $"{Perplexity.ScoredPerWindow(c)} tokens scored in each; {backend.Name}"));
            if (windows == 0)
                throw new InvalidOperationException($"{path} has {tokens.Length} tokens, fewer than one window of {c}; use a smaller --ctx-size");

            clock.Restart();
            var result = Perplexity.Evaluate(loaded.Transformer, tokens, c, bos, windows, progress =>
            {
                Console.Out.WriteLine(string.Create(Invariant,
                    $"[{progress.Window}/{progress.Windows}] window {progress.WindowPerplexity:0.0000}, " +
                    $"running {progress.Perplexity:0.0000} ± {progress.StandardError:0.0000}"));
                Console.Out.Flush();
            });
            Console.Out.WriteLine(string.Create(Invariant,
                $"Final estimate: PPL = {result.Perplexity:0.0000} +/- {result.StandardError:0.00000} " +
                $"({result.Scored} tokens scored in {result.Windows} windows of {result.WindowLength}; mean nll {result.MeanNegativeLogLikelihood:0.000000})"));
            Console.Error.WriteLine(string.Create(Invariant,
                $"{clock.Elapsed.TotalSeconds:0.0} s, {result.Windows * (double)c / clock.Elapsed.TotalSeconds:0.0} tokens/s"));
            return 0;
        });
        return command;
    }
}
