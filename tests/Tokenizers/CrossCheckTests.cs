using System.Text.RegularExpressions;
using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Tests.Support;
using Ml = Microsoft.ML.Tokenizers;

namespace IlgpuLlm.Tests.Tokenizers;

/// <summary>
/// Microsoft.ML.Tokenizers as an independent implementation: on BMP-only text, where its regex split
/// is exact, its TiktokenTokenizer (Llama 3) and byte-level BpeTokenizer (Qwen2) must give our ids.
/// </summary>
public class CrossCheckTests
{
    static readonly string Book = File.ReadAllText(SharedData.Path("corpus", "war-and-peace.txt"))[300_000..400_000];

    [Fact]
    public void Llama3AgreesWithMlTiktoken()
    {
        var ml = Ml.TiktokenTokenizer.Create(SharedData.Path("tokenizers", "llama3", "tokenizer.model"),
            new Ml.RegexPreTokenizer(new Regex(PreTokenizer.Llama3Pattern), null), null, new Dictionary<string, int>());
        Assert.Equal(ml.EncodeToIds(Book), TestTokenizers.Llama3.Encode(Book, addBos: false, parseSpecial: false));
    }

    [Fact]
    public void Qwen2AgreesWithMlBpe()
    {
        var ml = Ml.BpeTokenizer.Create(new Ml.BpeOptions(SharedData.Path("tokenizers", "qwen2", "vocab.json"), SharedData.Path("tokenizers", "qwen2", "merges.txt"))
        {
            ByteLevel = true,
            PreTokenizer = new Ml.RegexPreTokenizer(new Regex(PreTokenizer.Qwen2Pattern), null),
        });
        Assert.Equal(ml.EncodeToIds(Book), TestTokenizers.Qwen2.Encode(Book, addBos: false, parseSpecial: false));
    }
}
