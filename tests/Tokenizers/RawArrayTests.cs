using IlgpuLlm.Model.Tokenizers;

namespace IlgpuLlm.Tests.Tokenizers;

/// <summary>
/// The constructors the GGUF path uses (tokenizer.ggml.tokens / scores / token_type / merges / pre), fed
/// here with the same vocabularies taken apart through the public API.
/// </summary>
public class RawArrayTests
{
    [Fact]
    public void SentencePieceFromArrays()
    {
        var source = (SentencePieceBpeTokenizer)TestTokenizers.Llama2Model;
        var ids = Enumerable.Range(0, source.VocabSize).ToArray();
        var tok = new SentencePieceBpeTokenizer(
            ids.Select(source.GetPiece).ToArray(), ids.Select(source.GetScore).ToArray(), ids.Select(source.GetKind).ToArray(),
            new SentencePieceOptions { BosId = 1, EosId = 2, UnkId = 0 });
        Assert.Equal(source.Special, tok.Special);
        var failures = VocabTestVectors.Failures(VocabTestVectors.Load("tokenizers", "llama2-spm", "ggml-vocab-llama-spm.gguf"), s => tok.Encode(s, false, false));
        Assert.True(failures.Length == 0, failures);
    }

    [Fact]
    public void ByteLevelFromGgufArraysQwen2()
    {
        var source = TestTokenizers.Qwen2;
        var tokens = Enumerable.Range(0, source.VocabSize).Select(source.GetPiece).ToArray();
        var types = Enumerable.Range(0, source.VocabSize).Select(id => (int)source.GetKind(id)).ToArray();
        var merges = File.ReadAllLines(IlgpuLlm.Tests.Support.SharedData.Path("tokenizers", "qwen2", "merges.txt")).Where(l => l.Length > 0).ToArray();
        var tok = ByteLevelBpeTokenizer.FromGgufVocabulary(tokens, types, merges, "qwen2", bosId: null, eosId: 151643, eotId: null, padId: 151643, addBos: false);
        Assert.Equal(source.Special, tok.Special);
        var failures = VocabTestVectors.Failures(VocabTestVectors.Load("tokenizers", "qwen2", "ggml-vocab-qwen2.gguf"), s => tok.Encode(s, false, false));
        Assert.True(failures.Length == 0, failures);
    }

    [Fact]
    public void ByteLevelFromGgufArraysLlamaBpe()
    {
        var source = TestTokenizers.Llama3;
        var tokens = Enumerable.Range(0, source.VocabSize).Select(source.GetPiece).ToArray();
        var types = Enumerable.Range(0, source.VocabSize).Select(id => (int)source.GetKind(id)).ToArray();
        var merges = File.ReadAllLines(IlgpuLlm.Tests.Support.SharedData.Path("tokenizers", "llama3-gpt2-layout", "vocab.bpe")).Where(l => l.Length > 0).ToArray();
        var tok = ByteLevelBpeTokenizer.FromGgufVocabulary(tokens, types, merges, "llama-bpe", bosId: 128000, eosId: 128001, eotId: 128009, padId: null, addBos: true);
        Assert.True(tok.IgnoreMerges); // llama.cpp sets ignore_merges for llama-bpe
        Assert.Equal(source.Special, tok.Special);
        var failures = VocabTestVectors.Failures(VocabTestVectors.Load("tokenizers", "llama3", "ggml-vocab-llama-bpe.gguf"), s => tok.Encode(s, false, false));
        Assert.True(failures.Length == 0, failures);
    }

    [Fact]
    public void UnknownGgufPreTokenizerIsRefused()
    {
        var e = Assert.Throws<NotSupportedException>(() =>
            ByteLevelBpeTokenizer.FromGgufVocabulary(["a"], null, [], "deepseek-coder", null, null, null, null, false));
        Assert.Contains("deepseek-coder", e.Message);
    }
}
