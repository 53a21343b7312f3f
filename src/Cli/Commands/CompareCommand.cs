using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using IlgpuLlm.Cli.Reports;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Evaluation;

namespace IlgpuLlm.Cli.Commands;

/// <summary>
/// <c>compare</c>: the model's logits for given token ids against a reference dump in the
/// <c>logits</c> command's format (raw little-endian float32, one row per position or only the
/// last) — per position the largest and mean absolute difference, KL(reference ‖ model) and
/// whether the top token agrees, then a summary.
/// </summary>
public static class CompareCommand
{
    static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    public static Command Create()
    {
        var model = new ModelOptions();
        var tokens = new Option<string>("--tokens") { Description = "Token ids separated by spaces, e.g. \"1 403 407\"", Required = true };
        var reference = new Option<string>("--reference") { Description = "Raw little-endian float32 logits to compare with", Required = true };
        var allPositions = new Option<bool>("--all-positions") { Description = "The reference holds a row after every token, not only the last" };
        var command = new Command("compare", "Compare the model's logits for token ids with a reference float32 dump");
        model.AddTo(command);
        command.Options.Add(tokens);
        command.Options.Add(reference);
        command.Options.Add(allPositions);
        command.SetAction(parse =>
        {
            var ids = LogitsCommand.ParseTokens(parse.GetValue(tokens)!);
            string referencePath = PathArguments.Input("--reference", parse.GetValue(reference));
            model.CheckPaths(parse);
            bool all = parse.GetValue(allPositions);

            using var backend = model.CreateBackend(parse);
            using var loaded = model.Open(parse, backend, model.TransformerOptions(parse, slots: 1));
            int vocabulary = loaded.Config.VocabSize;
            LogitsCommand.CheckVocabulary(ids, vocabulary);
            var expected = ReadReference(referencePath, all ? ids.Length : 1, vocabulary, ids.Length, all);
            var logits = Scoring.Logits(loaded.Transformer, ids, all);
            var positions = LogitComparison.Compare(expected, logits, vocabulary);

            var table = new MarkdownTable(("position", true), ("token", true), ("max abs diff", true), ("mean abs diff", true),
                ("KL(ref‖model)", true), ("top-1 ref", true), ("top-1 model", true), ("agree", false));
            foreach (var p in positions)
            {
                int position = all ? p.Position : ids.Length - 1;
                table.AddRow(position.ToString(Invariant), ids[position].ToString(Invariant), Number(p.MaxAbsDiff), Number(p.MeanAbsDiff),
                    Number(p.KlDivergence), p.ReferenceTop1.ToString(Invariant), p.ModelTop1.ToString(Invariant), p.Top1Agrees ? "yes" : "NO");
            }
            Console.Out.Write(table.ToString());
            var summary = LogitComparison.Summarize(positions);
            Console.Out.WriteLine();
            Console.Out.WriteLine(string.Create(Invariant,
                $"{summary.Positions} position{(summary.Positions == 1 ? "" : "s")} of {vocabulary} logits: " +
                $"max abs diff {Number(summary.MaxAbsDiff)}, mean abs diff {Number(summary.MeanAbsDiff)}, " +
                $"KL mean {Number(summary.MeanKlDivergence)} max {Number(summary.MaxKlDivergence)}, " +
                $"top-1 agreement {summary.Top1Agreements}/{summary.Positions} ({summary.Top1Rate:0.0 %})"));
            return 0;
        });
        return command;
    }

    static string Number(double x) => x == 0 ? "0" : x.ToString("0.000E+00", Invariant);

    /// <summary>The reference's floats, or a failure that says what shape the file has and what was expected.</summary>
    static float[] ReadReference(string path, int rows, int vocabulary, int tokens, bool all)
    {
        long expected = (long)rows * vocabulary;
        // The shape is told from the length alone: a wrong file may be huge.
        long length = new FileInfo(path).Length;
        string want = $"{rows} × {vocabulary} (the vocabulary) = {expected} float32 values for {tokens} token{(tokens == 1 ? "" : "s")}"
            + (all ? " with --all-positions" : ", the last position only");
        if (length % 4 != 0)
            throw new InvalidOperationException($"the reference {path} is {length} bytes, not whole float32 values; expected {want}");
        long count = length / 4;
        if (count != expected)
        {
            string holds = count % vocabulary == 0 ? $"{count / vocabulary} row{(count / vocabulary == 1 ? "" : "s")} of {vocabulary}" : $"{count} values, not whole rows of {vocabulary}";
            string hint = !all && count == (long)tokens * vocabulary ? "; it has a row per token: pass --all-positions"
                : all && count == vocabulary ? "; it has the last row only: leave out --all-positions"
                : "";
            throw new InvalidOperationException($"shape mismatch: the reference {path} holds {holds}; expected {want}{hint}");
        }
        MemoryPlan.EnsureFits(length, $"the reference {path}");
        return MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(path)).ToArray();
    }
}
