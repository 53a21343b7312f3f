using System.CommandLine;
using System.Runtime.InteropServices;
using IlgpuLlm.Model;

namespace IlgpuLlm.Cli.Commands;

/// <summary>
/// <c>logits</c>: raw little-endian float32 logits for a list of token ids, one row per position
/// (or only the last), the format reference implementations are compared in.
/// </summary>
public static class LogitsCommand
{
    public static Command Create()
    {
        var model = new ModelOptions();
        var tokens = new Option<string>("--tokens") { Description = "Token ids separated by spaces, e.g. \"1 403 407\"", Required = true };
        var output = new Option<string>("--out", "-o") { Description = "File to write the float32 logits to ('-': stdout)", Required = true };
        var allPositions = new Option<bool>("--all-positions") { Description = "Write logits after every token, not only the last" };
        var command = new Command("logits", "Write the model's logits for given token ids as raw float32");
        model.AddTo(command);
        command.Options.Add(tokens);
        command.Options.Add(output);
        command.Options.Add(allPositions);
        command.SetAction(parse =>
        {
            var ids = ParseTokens(parse.GetValue(tokens)!);
            model.CheckPaths(parse);
            string path = PathArguments.Output("--out", parse.GetValue(output), standardAllowed: true);
            using var backend = model.CreateBackend(parse);
            using var loaded = model.Open(parse, backend, model.TransformerOptions(parse, slots: 1));
            CheckVocabulary(ids, loaded.Config.VocabSize);
            if (ids.Length > loaded.Transformer.ContextLength)
                throw new InvalidOperationException(
                    $"{ids.Length} tokens need {ids.Length} positions; the context holds {loaded.Transformer.ContextLength} (--ctx-size, at most the model's own)");
            bool all = parse.GetValue(allPositions);
            MemoryPlan.EnsureFits((all ? ids.Length : 1) * 4L * loaded.Config.VocabSize, "the logits");
            var logits = Scoring.Logits(loaded.Transformer, ids, all);
            try
            {
                using var file = path == PathArguments.StandardStream ? Console.OpenStandardOutput() : File.Create(path);
                file.Write(MemoryMarshal.AsBytes(logits.AsSpan()));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new IOException($"cannot write {path}: {e.Message}", e);
            }
            Console.Error.WriteLine($"wrote {logits.Length / loaded.Config.VocabSize} × {loaded.Config.VocabSize} logits to {(path == PathArguments.StandardStream ? "stdout" : path)}");
            return 0;
        });
        return command;
    }

    /// <summary>Every id of --tokens must be one of the model's: a wrong id is a wrong argument.</summary>
    public static void CheckVocabulary(int[] ids, int vocabulary)
    {
        foreach (int id in ids)
            if (id >= vocabulary)
                throw new UsageException($"--tokens: id {id} is outside the vocabulary of {vocabulary} tokens");
    }

    public static int[] ParseTokens(string text)
    {
        var parts = text.Split([' ', ',', '\t', '\n'], StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0)
            throw new UsageException("--tokens lists no token ids");
        return parts.Select(p => int.TryParse(p, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int id)
            ? id
            : throw new UsageException($"--tokens: '{p}' is not a token id (a whole number, 0 or more)")).ToArray();
    }
}
