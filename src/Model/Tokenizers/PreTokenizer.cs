using System.Globalization;
using System.Text.RegularExpressions;

namespace IlgpuLlm.Model.Tokenizers;

/// <summary>
/// Cuts text into the pieces byte-level BPE works on, each encoded on its own. The patterns of
/// GPT-2, Llama 3 and Qwen2 are hand-coded matchers that give exactly the matches their regular
/// expressions give in Hugging Face tokenizers (Oniguruma) and tiktoken (fancy-regex), judged per Unicode
/// code point. .NET's Regex judges UTF-16 code units, so a letter or digit outside the Basic
/// Multilingual Plane (𝐀, 𠀋, 𝟙) is two surrogates of category Cs to it and falls into
/// [^\s\p{L}\p{N}]; the hand-coded matchers do not have that difference. Any other pattern from a
/// tokenizer.json runs on .NET's Regex, with that caveat.
/// </summary>
public abstract class PreTokenizer
{
    /// <summary>The Llama 3 pattern: digits in groups of up to three, case-insensitive contractions, a non-letter may lead a word.</summary>
    public const string Llama3Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>The Qwen2 pattern: as Llama 3's but every digit is a piece of its own.</summary>
    public const string Qwen2Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>GPT-2's pattern, which Hugging Face's ByteLevel pre-tokenizer applies when use_regex is set.</summary>
    public const string Gpt2Pattern =
        @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    public static PreTokenizer Llama3 { get; } = new UnicodeClassSplitter(UnicodeClassSplitter.Flavor.Llama3);
    public static PreTokenizer Qwen2 { get; } = new UnicodeClassSplitter(UnicodeClassSplitter.Flavor.Qwen2);
    public static PreTokenizer Gpt2 { get; } = new UnicodeClassSplitter(UnicodeClassSplitter.Flavor.Gpt2);

    /// <summary>No split: the whole text is one piece (a ByteLevel pre-tokenizer with use_regex false and nothing else).</summary>
    public static PreTokenizer None { get; } = new WholeText();

    /// <summary>A human-readable name for messages and tests.</summary>
    public abstract string Name { get; }

    /// <summary>
    /// A Hugging Face <c>Split</c> pre-tokenizer with behavior "Isolated": matches and the text between
    /// them both become pieces. The three known patterns get their exact matchers.
    /// </summary>
    /// <param name="source">The file the pattern came from, for messages (see <see cref="UserPatterns"/>).</param>
    public static PreTokenizer FromRegex(string pattern, string source = "a tokenizer") => pattern switch
    {
        Llama3Pattern => Llama3,
        Qwen2Pattern => Qwen2,
        Gpt2Pattern => Gpt2,
        _ => new RegexSplitter(pattern, source),
    };

    /// <summary>Applies several pre-tokenizers in turn, each splitting the pieces of the one before (Hugging Face's Sequence).</summary>
    public static PreTokenizer Sequence(params PreTokenizer[] stages) =>
        stages.Length == 1 ? stages[0] : new SequenceSplitter(stages);

    /// <summary>
    /// The pre-tokenizer llama.cpp selects for a GGUF <c>tokenizer.ggml.pre</c> name, or null when this engine
    /// does not know the name. <paramref name="ignoreMerges"/> says whether llama.cpp also sets ignore_merges
    /// (a piece that is already a token is not split), which it does for the Llama 3 family.
    /// </summary>
    public static PreTokenizer? FromGgufName(string name, out bool ignoreMerges)
    {
        ignoreMerges = false;
        switch (name)
        {
            case "llama3" or "llama-v3" or "llama-bpe" or "falcon3" or "smaug-bpe":
                ignoreMerges = true;
                return Llama3;
            case "qwen2":
                return Qwen2;
            case "default" or "gpt-2" or "gpt2":
                return Gpt2;
            default:
                return null;
        }
    }

    /// <summary>Appends the (start, length) of each piece of <paramref name="text"/>, in order, covering all of it.</summary>
    public abstract void Split(ReadOnlySpan<char> text, List<(int Start, int Length)> pieces);

    /// <summary>The pieces as strings (for tests and diagnostics).</summary>
    public IReadOnlyList<string> SplitToStrings(string text)
    {
        var pieces = new List<(int Start, int Length)>();
        Split(text, pieces);
        return pieces.Select(p => text.Substring(p.Start, p.Length)).ToList();
    }

    public override string ToString() => Name;
}

/// <summary>The GPT-2 / Llama 3 / Qwen2 patterns as code-point matchers, alternative by alternative.</summary>
internal sealed class UnicodeClassSplitter(UnicodeClassSplitter.Flavor flavor) : PreTokenizer
{
    internal enum Flavor { Gpt2, Llama3, Qwen2 }

    enum Cls : byte { Letter, Number, Space, Newline, Other }

    static readonly Cls[] Ascii = BuildAscii();

    public override string Name => flavor.ToString();

    public override void Split(ReadOnlySpan<char> text, List<(int Start, int Length)> pieces)
    {
        for (int pos = 0; pos < text.Length;)
        {
            int end = flavor == Flavor.Gpt2 ? NextGpt2(text, pos) : NextLlama3(text, pos);
            pieces.Add((pos, end - pos));
            pos = end;
        }
    }

    // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    // (Qwen2: \p{N} instead of \p{N}{1,3})
    int NextLlama3(ReadOnlySpan<char> s, int pos)
    {
        int contraction = Contraction(s, pos, ignoreCase: true);
        if (contraction > 0)
            return pos + contraction;

        var c = Classify(s, pos, out int width);
        if (c == Cls.Letter)
            return SkipWhile(s, pos, Cls.Letter);
        if (c is Cls.Space or Cls.Other && pos + width < s.Length && Classify(s, pos + width, out _) == Cls.Letter)
            return SkipWhile(s, pos + width, Cls.Letter);

        if (c == Cls.Number)
        {
            int end = pos + width;
            if (flavor == Flavor.Llama3)
                for (int k = 1; k < 3 && end < s.Length && Classify(s, end, out int w) == Cls.Number; k++)
                    end += w;
            return end;
        }

        int p = pos;
        if (s[p] == ' ' && p + 1 < s.Length && Classify(s, p + 1, out _) == Cls.Other)
            p++;
        if (Classify(s, p, out _) == Cls.Other)
        {
            p = SkipWhile(s, p, Cls.Other);
            while (p < s.Length && s[p] is '\r' or '\n')
                p++;
            return p;
        }

        // Whitespace: \s*[\r\n]+ ends at the run's last line break; otherwise \s+(?!\S) leaves the
        // run's last whitespace for the next word, unless the run ends the text or is one character.
        int runEnd = pos, lastBreak = -1;
        while (runEnd < s.Length)
        {
            var k = Classify(s, runEnd, out int w);
            if (k == Cls.Newline)
                lastBreak = runEnd;
            else if (k != Cls.Space)
                break;
            runEnd += w;
        }
        if (lastBreak >= 0)
            return lastBreak + 1;
        return WhitespaceRunEnd(s, pos, runEnd);
    }

    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    int NextGpt2(ReadOnlySpan<char> s, int pos)
    {
        int contraction = Contraction(s, pos, ignoreCase: false);
        if (contraction > 0)
            return pos + contraction;

        foreach (var cls in (ReadOnlySpan<Cls>)[Cls.Letter, Cls.Number, Cls.Other])
        {
            int p = pos;
            if (s[p] == ' ' && p + 1 < s.Length && Classify(s, p + 1, out _) == cls)
                p++;
            if (Classify(s, p, out _) == cls)
                return SkipWhile(s, p, cls);
        }

        int runEnd = pos;
        while (runEnd < s.Length && Classify(s, runEnd, out int w) is Cls.Space or Cls.Newline)
            runEnd += w;
        return WhitespaceRunEnd(s, pos, runEnd);
    }

    static int WhitespaceRunEnd(ReadOnlySpan<char> s, int pos, int runEnd)
    {
        if (runEnd == s.Length || runEnd - pos < 2)
            return runEnd; // \s+(?!\S) at the end of text, or \s+ for a single whitespace before a word
        return runEnd - 1;  // \s+(?!\S) backs off one (whitespace is always one UTF-16 unit)
    }

    static int Contraction(ReadOnlySpan<char> s, int pos, bool ignoreCase)
    {
        if (s[pos] != '\'' || pos + 1 >= s.Length)
            return 0;
        char a = Fold(s[pos + 1], ignoreCase);
        char b = pos + 2 < s.Length ? Fold(s[pos + 2], ignoreCase) : '\0';
        if (a is 's' or 't' or 'm' or 'd')
            return 2;
        if ((a == 'r' || a == 'v') && b == 'e' || a == 'l' && b == 'l')
            return 3;
        return 0;
    }

    // Unicode simple case folding for the letters the contractions use; U+017F LONG S folds to 's'.
    static char Fold(char c, bool ignoreCase) =>
        !ignoreCase ? c : c is >= 'A' and <= 'Z' ? (char)(c + 32) : c == '\u017F' ? 's' : c;

    static int SkipWhile(ReadOnlySpan<char> s, int pos, Cls cls)
    {
        while (pos < s.Length && Classify(s, pos, out int width) == cls)
            pos += width;
        return pos;
    }

    static Cls Classify(ReadOnlySpan<char> s, int pos, out int width)
    {
        char c = s[pos];
        width = 1;
        if (c < 128)
            return Ascii[c];
        int codePoint = c;
        if (char.IsHighSurrogate(c) && pos + 1 < s.Length && char.IsLowSurrogate(s[pos + 1]))
        {
            codePoint = char.ConvertToUtf32(c, s[pos + 1]);
            width = 2;
        }
        else if (char.IsWhiteSpace(c))
        {
            // Unicode White_Space, which is what \s means in Oniguruma and Rust's regex: Zs, Zl, Zp, U+0085.
            return Cls.Space;
        }
        return CharUnicodeInfo.GetUnicodeCategory(codePoint) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => Cls.Letter,
            UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => Cls.Number,
            _ => Cls.Other,
        };
    }

    static Cls[] BuildAscii()
    {
        var table = new Cls[128];
        for (int c = 0; c < 128; c++)
            table[c] = c switch
            {
                '\r' or '\n' => Cls.Newline,
                '\t' or '\v' or '\f' or ' ' => Cls.Space,
                >= 'a' and <= 'z' or >= 'A' and <= 'Z' => Cls.Letter,
                >= '0' and <= '9' => Cls.Number,
                _ => Cls.Other,
            };
        return table;
    }
}

/// <summary>A pattern without a hand-coded matcher, on .NET's Regex; see <see cref="PreTokenizer"/> for the surrogate caveat.</summary>
internal sealed class RegexSplitter(string pattern, string source) : PreTokenizer
{
    readonly Regex regex = UserPatterns.Create(pattern, source);

    public override string Name => $"Regex({pattern})";

    public override void Split(ReadOnlySpan<char> text, List<(int Start, int Length)> pieces)
    {
        try
        {
            SplitOnMatches(text, pieces);
        }
        catch (RegexMatchTimeoutException e)
        {
            throw UserPatterns.TimedOut(pattern, source, text.Length, e);
        }
    }

    void SplitOnMatches(ReadOnlySpan<char> text, List<(int Start, int Length)> pieces)
    {
        int last = 0;
        foreach (var match in regex.EnumerateMatches(text))
        {
            if (match.Length == 0)
                continue;
            if (match.Index > last)
                pieces.Add((last, match.Index - last));
            pieces.Add((match.Index, match.Length));
            last = match.Index + match.Length;
        }
        if (last < text.Length)
            pieces.Add((last, text.Length - last));
    }
}

internal sealed class SequenceSplitter(PreTokenizer[] stages) : PreTokenizer
{
    public override string Name => "Sequence(" + string.Join(", ", stages.Select(s => s.Name)) + ")";

    public override void Split(ReadOnlySpan<char> text, List<(int Start, int Length)> pieces)
    {
        var current = new List<(int Start, int Length)>();
        stages[0].Split(text, current);
        var next = new List<(int Start, int Length)>();
        var inner = new List<(int Start, int Length)>();
        for (int stage = 1; stage < stages.Length; stage++)
        {
            next.Clear();
            foreach (var (start, length) in current)
            {
                inner.Clear();
                stages[stage].Split(text.Slice(start, length), inner);
                foreach (var (s, l) in inner)
                    next.Add((start + s, l));
            }
            (current, next) = (next, current);
        }
        pieces.AddRange(current);
    }
}

internal sealed class WholeText : PreTokenizer
{
    public override string Name => "None";

    public override void Split(ReadOnlySpan<char> text, List<(int Start, int Length)> pieces)
    {
        if (text.Length > 0)
            pieces.Add((0, text.Length));
    }
}
