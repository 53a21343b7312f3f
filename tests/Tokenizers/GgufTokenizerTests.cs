using IlgpuLlm.Model.Formats;
using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Tokenizers;

/// <summary>The vocabularies inside GGUF files, through <see cref="TokenizerFactory.FromGguf"/>.</summary>
public class GgufTokenizerTests
{
    static ITokenizer Load(params string[] path)
    {
        using var gguf = GgufFile.Open(SharedData.Path(path));
        return TokenizerFactory.FromGguf(gguf);
    }

    [Fact]
    public void VocabOnlyLlamaSpmPassesTheVectors()
    {
        var tok = Load("tokenizers", "llama2-spm", "ggml-vocab-llama-spm.gguf");
        Assert.IsType<SentencePieceBpeTokenizer>(tok);
        Assert.Equal(new SpecialTokenIds(1, 2, null, null, 0), tok.Special);
        Assert.True(tok.AddBosByDefault);
        var cases = VocabTestVectors.Load("tokenizers", "llama2-spm", "ggml-vocab-llama-spm.gguf");
        var failures = VocabTestVectors.Failures(cases, s => tok.Encode(s, addBos: false, parseSpecial: false));
        Assert.True(failures.Length == 0, failures);
    }

    [Fact]
    public void TinyRandomLlama2CarriesTheLlama2Vocabulary()
    {
        var tok = Load("models", "llama2-tiny-random", "llama-2-tiny-random.gguf");
        var reference = TestTokenizers.Llama2Model;
        Assert.Equal(reference.VocabSize, tok.VocabSize);
        for (int id = 0; id < tok.VocabSize; id++)
        {
            Assert.Equal(reference.GetPiece(id), tok.GetPiece(id));
            Assert.Equal(reference.GetKind(id), tok.GetKind(id));
        }
        var cases = VocabTestVectors.Load("tokenizers", "llama2-spm", "ggml-vocab-llama-spm.gguf");
        var failures = VocabTestVectors.Failures(cases, s => tok.Encode(s, addBos: false, parseSpecial: false));
        Assert.True(failures.Length == 0, failures);
    }

    [Fact]
    public void Stories260kGgufMatchesItsTokenizerBin()
    {
        var tok = Load("models", "stories260K", "stories260K-f32.gguf");
        var bin = TokenizerFactory.Open(SharedData.Path("models", "stories260K", "tok512.bin"));
        Assert.Equal(512, tok.VocabSize);
        for (int id = 0; id < tok.VocabSize; id++)
            Assert.Equal(bin.GetPiece(id), tok.GetPiece(id));
        Assert.Equal([1, 403, 407, 261, 378], tok.Encode("Once upon a time", addBos: true, parseSpecial: false));

        using var gguf = GgufFile.Open(SharedData.Path("models", "stories260K", "stories260K-f32.gguf"));
        Assert.Equal(ChatFormat.Llama2, ChatTemplate.FromGguf(gguf, userChoice: null, tok).Format); // no stored template, llama family
    }

    [Theory]
    [InlineData("gemma", false)]
    [InlineData("gemma3", false)]
    [InlineData("llama3", true)]
    [InlineData("qwen2", true)]
    public void FamilyTestModelsLoad(string family, bool spacePrefix)
    {
        var tok = Assert.IsType<SentencePieceBpeTokenizer>(Load("models", "families", "main", family, "model.gguf"));
        Assert.Equal(spacePrefix, tok.Options.AddDummyPrefix);
        Assert.Equal(1, tok.Special.Bos);
        Assert.Equal("ab", tok.Decode(tok.Encode("ab", addBos: true, parseSpecial: false)));
    }
}
