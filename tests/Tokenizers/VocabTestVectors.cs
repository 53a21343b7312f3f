using System.Text;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Tokenizers;

/// <summary>
/// llama.cpp's tokenizer test vectors (<c>*.gguf.inp</c> / <c>*.gguf.out</c>), read as its
/// test-tokenizer-0.cpp reads them: the .inp is cut at every "\n__ggml_vocab_test__\n" (the file ends with
/// one, so no empty input follows the last), each .out line is one input's ids separated by spaces, with
/// surrounding whitespace stripped (an empty line is an empty input's empty result). Inputs are encoded
/// without BOS and with special tokens not parsed.
/// </summary>
public static class VocabTestVectors
{
    public sealed record Case(int Index, string Input, int[] Expected)
    {
        public override string ToString() => $"#{Index} \"{Describe(Input)}\"";
    }

    public static IReadOnlyList<Case> Load(params string[] stem)
    {
        var basePath = SharedData.Path(stem);
        var raw = File.ReadAllText(basePath + ".inp", new UTF8Encoding(false, throwOnInvalidBytes: true));
        const string separator = "\n__ggml_vocab_test__\n";
        var inputs = new List<string>();
        for (int pos = 0; pos < raw.Length;)
        {
            int next = raw.IndexOf(separator, pos, StringComparison.Ordinal);
            if (next < 0)
            {
                inputs.Add(raw[pos..]);
                break;
            }
            inputs.Add(raw[pos..next]);
            pos = next + separator.Length;
        }
        var lines = File.ReadAllLines(basePath + ".out");
        if (lines.Length != inputs.Count)
            throw new InvalidDataException($"{basePath}: {inputs.Count} inputs but {lines.Length} output lines");
        return inputs.Select((input, i) => new Case(i, input,
            lines[i].Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray())).ToList();
    }

    /// <summary>Runs every case and returns a readable list of failures (empty when all pass).</summary>
    public static string Failures(IReadOnlyList<Case> cases, Func<string, int[]> encode)
    {
        var sb = new StringBuilder();
        foreach (var c in cases)
        {
            var actual = encode(c.Input);
            if (!actual.SequenceEqual(c.Expected))
                sb.AppendLine($"{c}: expected [{string.Join(' ', c.Expected)}], got [{string.Join(' ', actual)}]");
        }
        return sb.ToString();
    }

    static string Describe(string s)
    {
        var escaped = s.Replace("\n", "\\n").Replace("\t", "\\t");
        return escaped.Length > 40 ? escaped[..40] + "…" : escaped;
    }
}
