using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Tokenizers;

public class SpecialTokenTests
{
    [Fact]
    public void Llama3SentenceWithBosAndEos()
    {
        var tok = TestTokenizers.Llama3;
        int[] ids = [.. tok.Encode("This is a test sentence.", addBos: true, parseSpecial: false), tok.Special.Eos!.Value];
        Assert.Equal([128000, 2028, 374, 264, 1296, 11914, 13, 128001], ids);
        // The same ids when BOS and EOS are written in the text and special parsing is on.
        Assert.Equal(ids, tok.Encode("<|begin_of_text|>This is a test sentence.<|end_of_text|>", addBos: false, parseSpecial: true));
    }

    [Fact]
    public void Llama3SpecialIdsFollowMetasList()
    {
        var tok = TestTokenizers.Llama3;
        Assert.Equal(128256, tok.VocabSize);
        Assert.Equal(new SpecialTokenIds(128000, 128001, 128009, null, null), tok.Special);
        Assert.True(tok.AddBosByDefault);
        Assert.Equal([128001, 128009], tok.Special.EndOfGeneration);
        foreach (var (text, id) in new[] { ("<|start_header_id|>", 128006), ("<|end_header_id|>", 128007), ("<|reserved_special_token_0|>", 128002),
                     ("<|reserved_special_token_4|>", 128008), ("<|reserved_special_token_5|>", 128010), ("<|reserved_special_token_250|>", 128255) })
        {
            Assert.True(tok.TryGetSpecialTokenId(text, out int found), text);
            Assert.Equal(id, found);
            Assert.Equal(text, tok.GetPiece(id));
            Assert.Equal(TokenKind.Control, tok.GetKind(id));
        }
        Assert.False(tok.TryGetSpecialTokenId("<|reserved_special_token_251|>", out _));
    }

    [Fact]
    public void Llama3GptLayoutGetsTheSameSpecialTokens()
    {
        var a = TestTokenizers.Llama3;
        var b = TestTokenizers.Llama3Gpt2Layout;
        Assert.Equal(a.VocabSize, b.VocabSize);
        Assert.Equal(a.Special, b.Special);
        for (int id = 0; id < a.VocabSize; id += 97)
        {
            Assert.Equal(a.GetPiece(id), b.GetPiece(id));
            Assert.Equal(a.GetKind(id), b.GetKind(id));
        }
    }

    [Fact]
    public void UserTextCannotInjectControlTokens()
    {
        var tok = TestTokenizers.Llama3;
        var plain = tok.Encode("<|eot_id|>", addBos: false, parseSpecial: false);
        Assert.DoesNotContain(128009, plain);
        Assert.Equal("<|eot_id|>", tok.Decode(plain));
        Assert.Equal([128009], tok.Encode("<|eot_id|>", addBos: false, parseSpecial: true));
    }

    [Fact]
    public void Qwen2ImStartOnlyWhenAsked()
    {
        var tok = TestTokenizers.Qwen2;
        Assert.Equal([151644, 14990, 151645], tok.Encode("<|im_start|>hello<|im_end|>", addBos: false, parseSpecial: true));
        var plain = tok.Encode("<|im_start|>hello<|im_end|>", addBos: false, parseSpecial: false);
        Assert.DoesNotContain(151644, plain);
        Assert.DoesNotContain(151645, plain);
        Assert.Equal("<|im_start|>hello<|im_end|>", tok.Decode(plain));
    }

    [Fact]
    public void Qwen2HasNoBos()
    {
        var tok = TestTokenizers.Qwen2;
        Assert.Equal(new SpecialTokenIds(null, 151643, 151645, 151643, null), tok.Special);
        Assert.False(tok.AddBosByDefault);
        Assert.Equal(tok.Encode("hello", addBos: false, parseSpecial: false), tok.Encode("hello", addBos: true, parseSpecial: false));
        Assert.Equal(151646, tok.VocabSize);
    }

    [Fact]
    public void Llama2ControlTokensAndDummyPrefixAfterThem()
    {
        var tok = TestTokenizers.Llama2Model;
        Assert.Equal(new SpecialTokenIds(1, 2, null, null, 0), tok.Special);
        Assert.True(tok.AddBosByDefault);
        // Hello = 15043 (▁Hello) at the start of text and again right after a special token, as llama.cpp encodes it.
        Assert.Equal([1, 15043, 2, 15043], tok.Encode("<s>Hello</s>Hello", addBos: false, parseSpecial: true));
        Assert.DoesNotContain(1, tok.Encode("<s>Hello", addBos: false, parseSpecial: false));
        Assert.Equal([1, 15043], tok.Encode("Hello", addBos: true, parseSpecial: false));
        Assert.Equal(TokenKind.Byte, tok.GetKind(3));
        Assert.Equal("<0x00>", tok.GetPiece(3));
        Assert.Equal(TokenKind.Unknown, tok.GetKind(0));
        Assert.True(tok.TryGetId("▁Hello", out int hello));
        Assert.Equal(15043, hello);
    }

    [Fact]
    public void Stories260kPromptMatchesRunC()
    {
        // run.c: BOS, then the prompt, as in the reference file's first line "prompt_tokens(5): 1 403 407 261 378".
        var reference = File.ReadLines(SharedData.Path("models", "stories260K", "expected", "ref_tokens_logits_prompt_Once_upon_a_time.txt")).First();
        var expected = reference[(reference.IndexOf(':') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();
        var tok = TokenizerFactory.Open(SharedData.Path("models", "stories260K", "tok512.bin"));
        Assert.Equal(512, tok.VocabSize);
        Assert.Equal([1, 403, 407, 261, 378], expected);
        Assert.Equal(expected, tok.Encode("Once upon a time", addBos: true, parseSpecial: false));
        Assert.Equal("Once upon a time", tok.Decode(expected));
    }

    [Fact]
    public void Llama2BinAndModelAgreeOnEveryPiece()
    {
        var model = TestTokenizers.Llama2Model;
        var bin = TestTokenizers.Llama2Bin;
        Assert.Equal(model.VocabSize, bin.VocabSize);
        Assert.Equal(model.Special, bin.Special);
        for (int id = 0; id < model.VocabSize; id++)
        {
            Assert.Equal(model.GetPiece(id), bin.GetPiece(id));
            Assert.Equal(model.GetKind(id), bin.GetKind(id));
        }
    }
}
