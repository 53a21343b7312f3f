using IlgpuLlm.Model.Tokenizers;

namespace IlgpuLlm.Tests.Tokenizers;

/// <summary>llama.cpp's test-tokenizer-0 vectors: every input, no BOS, special tokens not parsed.</summary>
public class TestVectorTests
{
    static void AssertAllPass(ITokenizer tokenizer, params string[] stem)
    {
        var cases = VocabTestVectors.Load(stem);
        Assert.Equal(46, cases.Count);
        var failures = VocabTestVectors.Failures(cases, text => tokenizer.Encode(text, addBos: false, parseSpecial: false));
        Assert.True(failures.Length == 0, failures);
    }

    [Fact]
    public void Llama2SentencePieceModel() =>
        AssertAllPass(TestTokenizers.Llama2Model, "tokenizers", "llama2-spm", "ggml-vocab-llama-spm.gguf");

    [Fact]
    public void Llama2Llama2cTokenizerBin() =>
        AssertAllPass(TestTokenizers.Llama2Bin, "tokenizers", "llama2-spm", "ggml-vocab-llama-spm.gguf");

    [Fact]
    public void Llama3Tiktoken() =>
        AssertAllPass(TestTokenizers.Llama3, "tokenizers", "llama3", "ggml-vocab-llama-bpe.gguf");

    [Fact]
    public void Llama3Gpt2Layout() =>
        AssertAllPass(TestTokenizers.Llama3Gpt2Layout, "tokenizers", "llama3", "ggml-vocab-llama-bpe.gguf");

    [Fact]
    public void Qwen2VocabAndMerges() =>
        AssertAllPass(TestTokenizers.Qwen2, "tokenizers", "qwen2", "ggml-vocab-qwen2.gguf");
}
