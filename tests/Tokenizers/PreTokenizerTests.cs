using System.Text;
using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Tokenizers;

public class PreTokenizerTests
{
    public static TheoryData<string> Patterns => [PreTokenizer.Llama3Pattern, PreTokenizer.Qwen2Pattern, PreTokenizer.Gpt2Pattern];

    static PreTokenizer HandCoded(string pattern) => PreTokenizer.FromRegex(pattern);

    // The regex itself, on .NET's engine: the reference wherever all characters are in the BMP.
    static PreTokenizer ByRegex(string pattern) => PreTokenizer.FromRegex("(?:" + pattern + ")");

    [Theory]
    [MemberData(nameof(Patterns))]
    public void HandCodedMatchersEqualTheRegexOnBmpText(string pattern)
    {
        var hand = HandCoded(pattern);
        var regex = ByRegex(pattern);
        Assert.NotEqual(hand.Name, regex.Name);
        foreach (var text in BmpSamples())
            Assert.Equal(regex.SplitToStrings(text), hand.SplitToStrings(text));
    }

    [Fact]
    public void LettersAndDigitsOutsideTheBmpCountAsLettersAndDigits()
    {
        // U+1D400 MATHEMATICAL BOLD CAPITAL A and U+2000B (a CJK Extension B ideograph) are letters (Lu, Lo);
        // U+1D7D9.. MATHEMATICAL DOUBLE-STRUCK DIGITs are digits (Nd). Oniguruma and tiktoken see code points.
        Assert.Equal(["a𝐀b𠀋c", " x"], PreTokenizer.Llama3.SplitToStrings("a𝐀b𠀋c x"));
        Assert.Equal(["𝟙𝟚𝟛", "𝟜"], PreTokenizer.Llama3.SplitToStrings("𝟙𝟚𝟛𝟜"));
        Assert.Equal(["𝟙", "𝟚"], PreTokenizer.Qwen2.SplitToStrings("𝟙𝟚"));
        Assert.Equal(["a𝐀b"], PreTokenizer.Gpt2.SplitToStrings("a𝐀b"));
        // .NET's Regex sees two surrogates (category Cs) and cuts the word; this is why the matchers are hand-coded.
        Assert.NotEqual(["a𝐀b𠀋c", " x"], ByRegex(PreTokenizer.Llama3Pattern).SplitToStrings("a𝐀b𠀋c x"));
        // And the ids differ: Microsoft.ML.Tokenizers' TiktokenTokenizer (regex-based) starts " 𝟙𝟚𝟛𝟜" with 82350 (" \xF0\x9D").
        Assert.Equal([220, 57352, 253, 247], TestTokenizers.Llama3.Encode(" 𝟙𝟚𝟛𝟜", false, false)[..4]);
    }

    [Fact]
    public void ContractionsFollowEachPattern()
    {
        Assert.Equal(["I", "'LL", " go"], PreTokenizer.Llama3.SplitToStrings("I'LL go"));
        Assert.Equal(["I", "'", "LL", " go"], PreTokenizer.Gpt2.SplitToStrings("I'LL go")); // GPT-2's are case-sensitive
        Assert.Equal(["we", "'ve"], PreTokenizer.Gpt2.SplitToStrings("we've"));
    }

    [Fact]
    public void KnownPatternsGetTheHandCodedMatcher()
    {
        Assert.Same(PreTokenizer.Llama3, PreTokenizer.FromRegex(PreTokenizer.Llama3Pattern));
        Assert.Same(PreTokenizer.Qwen2, PreTokenizer.FromRegex(PreTokenizer.Qwen2Pattern));
        Assert.Same(PreTokenizer.Gpt2, PreTokenizer.FromRegex(PreTokenizer.Gpt2Pattern));
        Assert.Same(PreTokenizer.Llama3, PreTokenizer.FromGgufName("llama-bpe", out bool ignoreMerges));
        Assert.True(ignoreMerges);
        Assert.Same(PreTokenizer.Qwen2, PreTokenizer.FromGgufName("qwen2", out ignoreMerges));
        Assert.False(ignoreMerges);
        Assert.Null(PreTokenizer.FromGgufName("deepseek-llm", out _));
    }

    static IEnumerable<string> BmpSamples()
    {
        foreach (var c in VocabTestVectors.Load("tokenizers", "llama3", "ggml-vocab-llama-bpe.gguf"))
            if (!c.Input.Any(char.IsSurrogate))
                yield return c.Input;

        var book = File.ReadAllText(SharedData.Path("corpus", "war-and-peace.txt"));
        yield return book[..60_000];

        // Random strings over every character class the patterns distinguish, including the awkward ones:
        // CR/LF runs, other Unicode spaces (NBSP, U+3000, U+2028, U+0085, VT, FF), apostrophe contractions in
        // both cases, letter-like numbers (Ⅻ is Nl, ½ is No), marks (U+0301 is Mn: neither letter nor digit).
        string[] atoms = ["a", "Z", "é", "ß", "Ω", "中", "ー", "0", "7", "٣", "Ⅻ", "½", " ", "  ", "\t", "\n", "\r\n", "\r",
            "\u00A0", "\u3000", "\u2028", "\u0085", "\v", "\f", "!", ".", "(", "—", "'", "'s", "'S", "'ll", "'LL", "'Re", "'ve", "\u0301", "_", "$"];
        var random = new Random(1234);
        for (int n = 0; n < 3000; n++)
        {
            var sb = new StringBuilder();
            int length = random.Next(1, 14);
            for (int i = 0; i < length; i++)
                sb.Append(atoms[random.Next(atoms.Length)]);
            yield return sb.ToString();
        }
    }
}
