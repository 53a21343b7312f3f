using System.Buffers;

namespace IlgpuLlm.Model.Tokenizers;

/// <summary>A special token as the partitioner sees it.</summary>
/// <param name="Text">The exact text that stands for the token.</param>
/// <param name="Id">Its id.</param>
/// <param name="AlwaysMatched">
/// True for user-defined tokens, which Hugging Face's added vocabulary and llama.cpp split out of any
/// text; false for control tokens, which are recognised only when the caller asks for special parsing.
/// </param>
/// <param name="LStrip">Hugging Face <c>lstrip</c>: the token swallows whitespace to its left.</param>
/// <param name="RStrip">Hugging Face <c>rstrip</c>: the token swallows whitespace to its right.</param>
public sealed record SpecialToken(string Text, int Id, bool AlwaysMatched, bool LStrip = false, bool RStrip = false);

/// <summary>A piece of input: either raw text to run through the subword model, or one special token.</summary>
internal readonly record struct Fragment(int Start, int Length, int TokenId)
{
    public bool IsText => TokenId < 0;
}

/// <summary>
/// Splits text around special tokens before subword encoding, leftmost-longest, as Hugging Face's
/// added-vocabulary matcher (an Aho-Corasick automaton with LeftmostLongest) does. Control tokens take
/// part only when special parsing is requested, so "&lt;|eot_id|&gt;" typed by a user stays text.
/// </summary>
internal sealed class SpecialTokenMatcher
{
    readonly Dictionary<char, SpecialToken[]> byFirstChar = new();
    readonly SearchValues<char> anyFirstChars;
    readonly SearchValues<char> alwaysFirstChars;
    readonly bool hasAlwaysMatched;
    readonly bool hasAny;

    public SpecialTokenMatcher(IEnumerable<SpecialToken> tokens)
    {
        var list = tokens.Where(t => t.Text.Length > 0).ToList();
        foreach (var group in list.GroupBy(t => t.Text[0]))
            byFirstChar[group.Key] = group.OrderByDescending(t => t.Text.Length).ToArray();
        anyFirstChars = SearchValues.Create(list.Select(t => t.Text[0]).Distinct().ToArray());
        alwaysFirstChars = SearchValues.Create(list.Where(t => t.AlwaysMatched).Select(t => t.Text[0]).Distinct().ToArray());
        hasAlwaysMatched = list.Any(t => t.AlwaysMatched);
        hasAny = list.Count > 0;
    }

    /// <summary>Appends the fragments of <paramref name="text"/> to <paramref name="output"/>; empty text fragments are dropped.</summary>
    public void Partition(string text, bool parseSpecial, List<Fragment> output) =>
        Partition(text, parseSpecial, trusted: null, output);

    /// <summary>
    /// As above; when <paramref name="trusted"/> is given, control tokens are recognised only where they lie
    /// wholly inside one of its ranges (the template text of a chat prompt, not the messages in it).
    /// </summary>
    public void Partition(string text, bool parseSpecial, IReadOnlyList<Range>? trusted, List<Fragment> output)
    {
        if (!(parseSpecial ? hasAny : hasAlwaysMatched))
        {
            if (text.Length > 0)
                output.Add(new Fragment(0, text.Length, -1));
            return;
        }

        var firstChars = parseSpecial ? anyFirstChars : alwaysFirstChars;
        int textStart = 0, pos = 0;
        while (pos < text.Length)
        {
            int offset = text.AsSpan(pos).IndexOfAny(firstChars);
            if (offset < 0)
                break;
            pos += offset;
            var match = MatchAt(text, pos, parseSpecial, trusted);
            if (match is null)
            {
                pos++;
                continue;
            }

            int start = pos, end = pos + match.Text.Length;
            if (match.LStrip)
                while (start > textStart && char.IsWhiteSpace(text[start - 1]))
                    start--;
            if (match.RStrip)
                while (end < text.Length && char.IsWhiteSpace(text[end]))
                    end++;
            if (start > textStart)
                output.Add(new Fragment(textStart, start - textStart, -1));
            output.Add(new Fragment(start, end - start, match.Id));
            textStart = pos = end;
        }
        if (textStart < text.Length)
            output.Add(new Fragment(textStart, text.Length - textStart, -1));
    }

    SpecialToken? MatchAt(string text, int pos, bool parseSpecial, IReadOnlyList<Range>? trusted)
    {
        if (!byFirstChar.TryGetValue(text[pos], out var candidates))
            return null;
        var rest = text.AsSpan(pos);
        foreach (var token in candidates) // longest first
            if ((token.AlwaysMatched || parseSpecial && (trusted is null || IsInside(trusted, pos, token.Text.Length, text.Length)))
                && rest.StartsWith(token.Text, StringComparison.Ordinal))
                return token;
        return null;
    }

    static bool IsInside(IReadOnlyList<Range> ranges, int start, int length, int textLength)
    {
        foreach (var range in ranges)
        {
            var (offset, count) = range.GetOffsetAndLength(textLength);
            if (start >= offset && start + length <= offset + count)
                return true;
        }
        return false;
    }
}
