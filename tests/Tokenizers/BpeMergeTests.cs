using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Tokenizers;

public class BpeMergeTests
{
    [Fact]
    public void HeapAndLinearMergesAgree()
    {
        var book = File.ReadAllText(SharedData.Path("corpus", "war-and-peace.txt"));
        string[] pieces =
        [
            new string(book[5000..7000].Where(char.IsLetter).ToArray()),     // a 1000+ letter "word"
            string.Concat(Enumerable.Repeat("ab", 400)),                     // many equal-rank ties
            new string(' ', 700),
            string.Concat(Enumerable.Repeat("我想在apple工作", 40)),
            "hello", "Việt",
        ];
        foreach (var tokenizer in new[] { TestTokenizers.Llama3, TestTokenizers.Qwen2, TestTokenizers.Llama3Gpt2Layout })
        {
            var bpe = Assert.IsType<ByteLevelBpeTokenizer>(tokenizer);
            foreach (var piece in pieces)
            {
                var (linear, heap) = bpe.MergeBothWays(piece);
                Assert.Equal(linear, heap);
                Assert.Equal(piece, tokenizer.Decode(heap));
            }
        }
    }

    [Fact]
    public void TiktokenRanksAndGpt2MergesGiveTheSameIdsOnTheBook()
    {
        var text = File.ReadAllText(SharedData.Path("corpus", "war-and-peace.txt"))[..200_000];
        Assert.Equal(TestTokenizers.Llama3.Encode(text, true, false), TestTokenizers.Llama3Gpt2Layout.Encode(text, true, false));
    }

    [Fact]
    public void IgnoreMergesKeepsWholeTokens()
    {
        // " Việt" is one Llama 3 token; merges alone give 11655 26298 83 (what a BPE without ignore_merges outputs).
        Assert.Equal([101798], TestTokenizers.Llama3Gpt2Layout.Encode(" Việt", false, false));
        Assert.True(((ByteLevelBpeTokenizer)TestTokenizers.Llama3Gpt2Layout).IgnoreMerges);
        Assert.False(((ByteLevelBpeTokenizer)TestTokenizers.Qwen2).IgnoreMerges);
        Assert.True(((ByteLevelBpeTokenizer)TestTokenizers.Qwen2).NormalizesNfc);
    }
}
