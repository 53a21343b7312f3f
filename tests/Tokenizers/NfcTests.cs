using IlgpuLlm.Model.Tokenizers.Unicode;

namespace IlgpuLlm.Tests.Tokenizers;

public class NfcTests
{
    [Theory]
    [InlineData("e\u0301", "\u00E9")]                      // composes
    [InlineData("\u00E9", "\u00E9")]                       // already NFC
    [InlineData("\u212B", "\u00C5")]                       // ANGSTROM SIGN is a singleton: it becomes Å
    [InlineData("\u1100\u1161\u11A8", "\uAC01")]           // Hangul L V T compose algorithmically
    [InlineData("\uAC00\u11A8", "\uAC01")]                 // LV + T
    [InlineData("a\u0307\u0323", "\u1EA1\u0307")]          // dot above/below reorder (ccc 230 after 220), then ạ composes
    [InlineData("\u1E0B\u0323", "\u1E0D\u0307")]           // ḋ + dot below → ḍ + dot above (UAX #15 example)
    [InlineData("\u0344", "\u0308\u0301")]                 // COMBINING GREEK DIALYTIKA TONOS decomposes and never recomposes
    [InlineData("\u0301e", "\u0301e")]                     // a leading combining mark has nothing to join
    [InlineData("e\u0334\u0301", "\u00E9\u0334")]           // the overlay (ccc 1) does not block the acute (ccc 230)
    [InlineData("Việt", "Việt")]
    [InlineData("𝐀𠀋", "𝐀𠀋")]
    [InlineData("\uD834\uDD5E", "\uD834\uDD57\uD834\uDD65")] // MUSICAL SYMBOL HALF NOTE is a composition exclusion
    public void NormalizesLikeUnicode(string input, string expected)
    {
        Assert.Equal(expected, Nfc.Normalize(input));
    }

    [Fact]
    public void Qwen2EncodesDecomposedTextAsComposed()
    {
        var tok = TestTokenizers.Qwen2;
        Assert.Equal(tok.Encode("caf\u00E9 Vi\u1EC7t", false, false), tok.Encode("cafe\u0301 Vie\u0323\u0302t", false, false));
        Assert.NotEqual(TestTokenizers.Llama3.Encode("caf\u00E9", false, false), TestTokenizers.Llama3.Encode("cafe\u0301", false, false));
    }
}
