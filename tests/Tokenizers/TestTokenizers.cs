using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Tokenizers;

/// <summary>The shared vocabularies, each loaded once per test run (loading Llama 3 or Qwen2 takes a few hundred ms).</summary>
public static class TestTokenizers
{
    static readonly Lazy<ITokenizer> llama2Model = new(() => TokenizerFactory.Open(SharedData.Path("tokenizers", "llama2-spm", "tokenizer.model")));
    static readonly Lazy<ITokenizer> llama2Bin = new(() => TokenizerFactory.Open(SharedData.Path("tokenizers", "llama2-spm", "tokenizer.bin")));
    static readonly Lazy<ITokenizer> llama3 = new(() => TokenizerFactory.Open(SharedData.Path("tokenizers", "llama3", "tokenizer.model")));
    static readonly Lazy<ITokenizer> llama3Gpt2 = new(() => TokenizerFactory.Open(SharedData.Path("tokenizers", "llama3-gpt2-layout")));
    static readonly Lazy<ITokenizer> qwen2 = new(() => TokenizerFactory.Open(SharedData.Path("tokenizers", "qwen2")));

    public static ITokenizer Llama2Model => llama2Model.Value;
    public static ITokenizer Llama2Bin => llama2Bin.Value;
    public static ITokenizer Llama3 => llama3.Value;
    public static ITokenizer Llama3Gpt2Layout => llama3Gpt2.Value;
    public static ITokenizer Qwen2 => qwen2.Value;
}
