using System.Text;
using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Tokenizers;

/// <summary>
/// The SentencePiece tokenizer cuts text where no merge can cross and caches runs; this checks it against
/// llama2.c run.c's plain algorithm (rescan every pair, merge the best score, leftmost on ties, over the
/// whole text) written out here from the public vocabulary.
/// </summary>
public class SentencePieceOracleTests
{
    [Fact]
    public void AgreesWithRunCsAlgorithm()
    {
        var tok = Assert.IsType<SentencePieceBpeTokenizer>(TestTokenizers.Llama2Model);
        var book = File.ReadAllText(SharedData.Path("corpus", "war-and-peace.txt"));
        var samples = new List<string> { book[10_000..11_200], book[1_500_000..1_501_000], "!!!!!! ------======= ''''''```````\"\"\"\"......" };
        samples.AddRange(VocabTestVectors.Load("tokenizers", "llama2-spm", "ggml-vocab-llama-spm.gguf").Select(c => c.Input).Where(s => s.Length > 0));
        foreach (var text in samples)
            Assert.Equal(RunC(tok, text), tok.Encode(text, addBos: false, parseSpecial: false));
    }

    static int[] RunC(SentencePieceBpeTokenizer tok, string text)
    {
        var symbols = new List<string>();
        var normalized = "▁" + text.Replace(' ', '▁');
        for (int i = 0; i < normalized.Length; i += char.IsSurrogatePair(normalized, i) ? 2 : 1)
            symbols.Add(normalized.Substring(i, char.IsSurrogatePair(normalized, i) ? 2 : 1));
        while (true)
        {
            int best = -1;
            float bestScore = float.NegativeInfinity;
            for (int i = 0; i + 1 < symbols.Count; i++)
                if (tok.TryGetId(symbols[i] + symbols[i + 1], out int id) && tok.GetKind(id) == TokenKind.Normal && tok.GetScore(id) > bestScore)
                    (best, bestScore) = (i, tok.GetScore(id));
            if (best < 0)
                break;
            symbols[best] += symbols[best + 1];
            symbols.RemoveAt(best + 1);
        }
        var ids = new List<int>();
        foreach (var symbol in symbols)
        {
            if (tok.TryGetId(symbol, out int id) && tok.GetKind(id) == TokenKind.Normal)
                ids.Add(id);
            else
                foreach (var b in Encoding.UTF8.GetBytes(symbol))
                    ids.Add(b + 3); // <0x00> is id 3 in Llama's vocabulary, as run.c assumes
        }
        return ids.ToArray();
    }
}
