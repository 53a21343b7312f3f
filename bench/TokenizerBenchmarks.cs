using System.Text;
using BenchmarkDotNet.Attributes;
using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Bench;

/// <summary>
/// Encoding War and Peace (3.2 MB, ../shared/corpus) with the Llama 3 (tiktoken) and Qwen2
/// (byte-level BPE) tokenizers, in MB of UTF-8 text per second.
/// </summary>
[Config(typeof(BenchConfig))]
public class TokenizerEncode : IWorkload
{
    ITokenizer tokenizer = null!;
    string text = "";

    [Params("llama3", "qwen2")]
    public string Tokenizer { get; set; } = "";

    static string BookPath => SharedData.Path("corpus", "war-and-peace.txt");

    public void PrepareShape() => TextBytes = new FileInfo(BookPath).Length;

    [GlobalSetup]
    public void Setup()
    {
        tokenizer = Tokenizer switch
        {
            "llama3" => TokenizerFactory.Open(SharedData.Path("tokenizers", "llama3", "tokenizer.model")),
            _ => TokenizerFactory.Open(SharedData.Path("tokenizers", "qwen2")),
        };
        text = File.ReadAllText(BookPath, Encoding.UTF8);
    }

    [Benchmark]
    public int Encode() => tokenizer.Encode(text, addBos: false, parseSpecial: false).Length;

    public double? TextBytes { get; private set; }
}
