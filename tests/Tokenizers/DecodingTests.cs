using System.Text;
using IlgpuLlm.Model.Tokenizers;

namespace IlgpuLlm.Tests.Tokenizers;

public class DecodingTests
{
    public static TheoryData<string> Vocabularies => ["llama2-model", "llama2-bin", "llama3", "llama3-gpt2", "qwen2"];

    static ITokenizer Get(string name) => name switch
    {
        "llama2-model" => TestTokenizers.Llama2Model,
        "llama2-bin" => TestTokenizers.Llama2Bin,
        "llama3" => TestTokenizers.Llama3,
        "llama3-gpt2" => TestTokenizers.Llama3Gpt2Layout,
        _ => TestTokenizers.Qwen2,
    };

    static IEnumerable<string> Inputs() =>
        VocabTestVectors.Load("tokenizers", "llama3", "ggml-vocab-llama-bpe.gguf").Select(c => c.Input).Concat(MultiByteInputs);

    // CJK, emoji (4-byte, ZWJ sequences, variation selectors), combining marks, astral letters: characters
    // that byte fallback and byte-level BPE spread over several tokens.
    static readonly string[] MultiByteInputs =
    [
        "我想在apple工作1314151天～",
        "🦙🦙 llamas 🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅",
        "𝐀𝐁𝐂 𠀋𠀌 𝟙𝟚𝟛",
        "Việt Nam, ẞ, ǅ, Ω, é vs e\u0301",
        "ភាសាខ្មែរ हिन्दी العربية",
    ];

    [Theory]
    [MemberData(nameof(Vocabularies))]
    public void DecodeInvertsEncode(string vocabulary)
    {
        var tok = Get(vocabulary);
        foreach (var text in Inputs())
        {
            // Qwen2 normalizes to NFC first, so only NFC text comes back unchanged; "e\u0301" does not.
            if (vocabulary == "qwen2" && text.Contains('\u0301'))
                continue;
            var ids = tok.Encode(text, addBos: false, parseSpecial: false);
            Assert.Equal(text, tok.Decode(ids));
            // With BOS the text is the same: control tokens decode to nothing.
            Assert.Equal(text, tok.Decode(tok.Encode(text, addBos: true, parseSpecial: false)));
        }
    }

    [Theory]
    [MemberData(nameof(Vocabularies))]
    public void StreamingEqualsFullDecodeAndNeverSplitsACharacter(string vocabulary)
    {
        var tok = Get(vocabulary);
        int heldBack = 0;
        foreach (var text in Inputs())
        {
            var ids = tok.Encode(text, addBos: true, parseSpecial: false);
            var full = tok.Decode(ids);
            var decoder = tok.CreateStreamingDecoder();
            var streamed = new StringBuilder();
            foreach (var id in ids)
            {
                var piece = decoder.Append(id);
                AssertWholeCharacters(piece);
                streamed.Append(piece);
                // What has been returned is always a prefix of the final text.
                Assert.StartsWith(streamed.ToString(), full, StringComparison.Ordinal);
                if (piece.Length == 0 && tok.GetKind(id) != TokenKind.Control)
                    heldBack++;
            }
            streamed.Append(decoder.Flush());
            Assert.Equal(full, streamed.ToString());
        }
        // The multi-byte inputs must actually have exercised holding back a partial character.
        Assert.True(heldBack > 0);
    }

    [Fact]
    public void StreamingHoldsBackAByteFallbackCharacterUntilItsLastByte()
    {
        var tok = TestTokenizers.Llama2Model;
        // 🦙 is not in the Llama 2 vocabulary: ▁ then <0xF0> <0x9F> <0xA6> <0x99> (llama.cpp's vector: 29871 243 162 169 156).
        var ids = tok.Encode("🦙", addBos: false, parseSpecial: false);
        Assert.Equal([29871, 243, 162, 169, 156], ids);
        var decoder = tok.CreateStreamingDecoder();
        Assert.Equal("", decoder.Append(ids[0])); // the dummy-prefix space is stripped at the start
        Assert.Equal("", decoder.Append(ids[1]));
        Assert.Equal("", decoder.Append(ids[2]));
        Assert.Equal("", decoder.Append(ids[3]));
        Assert.Equal("🦙", decoder.Append(ids[4]));
    }

    [Fact]
    public void FlushTurnsAnUnfinishedCharacterIntoReplacementCharacter()
    {
        var tok = TestTokenizers.Llama2Model;
        var decoder = tok.CreateStreamingDecoder();
        Assert.Equal("", decoder.Append(243)); // <0xF0>, the lead byte of a 4-byte character
        Assert.Equal("", decoder.Append(162)); // <0x9F>
        Assert.Equal("\uFFFD", decoder.Flush());
        Assert.Equal("\uFFFD", tok.Decode([243, 162]));
    }

    [Fact]
    public void PrimeContinuesAfterThePrompt()
    {
        var tok = TestTokenizers.Llama2Model;
        var prompt = tok.Encode("Hello", addBos: true, parseSpecial: false);
        var reply = tok.Encode(" world", addBos: false, parseSpecial: false)[1..]; // drop the dummy-prefix ▁ piece: [▁world]
        var fresh = tok.CreateStreamingDecoder();
        Assert.Equal("world", fresh.Append(reply[0])); // at the start of text the leading space is stripped ...
        var continuing = tok.CreateStreamingDecoder();
        continuing.Prime(prompt);
        Assert.Equal(" world", continuing.Append(reply[0])); // ... but not after the prompt
    }

    [Fact]
    public void RenderSpecialShowsControlTokens()
    {
        var tok = TestTokenizers.Llama3;
        int[] ids = [128000, 9906, 128009];
        Assert.Equal("Hello", tok.Decode(ids));
        Assert.Equal("<|begin_of_text|>Hello<|eot_id|>", tok.Decode(ids, renderSpecial: true));
        var decoder = tok.CreateStreamingDecoder(renderSpecial: true);
        Assert.Equal("<|begin_of_text|>", decoder.Append(128000));
    }

    [Theory]
    [MemberData(nameof(Vocabularies))]
    public void UnknownIdsAreRejectedClearly(string vocabulary)
    {
        var tok = Get(vocabulary);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => tok.Decode([1, tok.VocabSize]));
        Assert.Contains($"token id {tok.VocabSize} is not in this vocabulary", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.Decode([-1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.GetPiece(tok.VocabSize));
        var decoder = tok.CreateStreamingDecoder();
        Assert.Throws<ArgumentOutOfRangeException>(() => decoder.Append(-5));
        Assert.Equal("Hi", string.Concat(tok.Encode("Hi", false, false).Select(decoder.Append)) + decoder.Flush());
    }

    static void AssertWholeCharacters(string piece)
    {
        for (int i = 0; i < piece.Length; i++)
        {
            if (char.IsHighSurrogate(piece[i]))
                Assert.True(i + 1 < piece.Length && char.IsLowSurrogate(piece[++i]), $"a lone high surrogate in \"{piece}\"");
            else
                Assert.False(char.IsLowSurrogate(piece[i]), $"a lone low surrogate in \"{piece}\"");
            Assert.NotEqual('\uFFFD', piece[i]);
        }
    }
}
