using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Tokenizers;

/// <summary>A broken or missing tokenizer file gives an exception that names the file and the problem.</summary>
public class LoadErrorTests
{
    static TokenizerLoadException Fails(string path, string expectedProblem)
    {
        var e = Assert.Throws<TokenizerLoadException>(() => TokenizerFactory.Open(path));
        Assert.Equal(path, e.FilePath);
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains(expectedProblem, e.Message);
        return e;
    }

    [Fact]
    public void MissingPath()
    {
        using var temp = new TempFolder();
        Fails(temp.File("nothing-here.model"), "no such file or folder");
    }

    [Fact]
    public void EmptyFolder()
    {
        using var temp = new TempFolder();
        Fails(temp.Root, "no tokenizer here");
    }

    [Fact]
    public void TruncatedSentencePieceModel()
    {
        using var temp = new TempFolder();
        var bytes = File.ReadAllBytes(SharedData.Path("tokenizers", "llama2-spm", "tokenizer.model"));
        Fails(temp.Write("tokenizer.model", bytes[..1001]), "not a SentencePiece model");
    }

    [Fact]
    public void SentencePieceModelWithGarbage()
    {
        using var temp = new TempFolder();
        Fails(temp.Write("tokenizer.model", [0x0A, 0x05, 0x0A, 0x03, 0x41, 0x42, 0x43, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]), "not a SentencePiece model");
    }

    [Fact]
    public void TiktokenWithABadLine()
    {
        using var temp = new TempFolder();
        Fails(temp.Write("tokenizer.model", "IQ== 0\nIg== 1\nnot*base64 2\n"), "line 3");
    }

    [Fact]
    public void TiktokenWithAGapInTheRanks()
    {
        using var temp = new TempFolder();
        Fails(temp.Write("tokenizer.model", "IQ== 0\nIg== 2\n"), "rank 1 is missing");
    }

    [Fact]
    public void TruncatedLlama2cTokenizer()
    {
        using var temp = new TempFolder();
        var bytes = File.ReadAllBytes(SharedData.Path("models", "stories260K", "tok512.bin"));
        Fails(temp.Write("tokenizer.bin", bytes[..(bytes.Length - 3)]), "token 511");
    }

    [Fact]
    public void VocabularyThatIsNotJson()
    {
        using var temp = new TempFolder();
        temp.Write("merges.txt", "a b\n");
        Fails(temp.Write("vocab.json", "{\"a\": 0, \"b\": "), "not valid JSON");
    }

    [Fact]
    public void MergeOfUnknownTokens()
    {
        using var temp = new TempFolder();
        var vocab = temp.Write("vocab.json", File.ReadAllText(SharedData.Path("tokenizers", "qwen2", "vocab.json")));
        var merges = temp.Write("merges.txt", "Ġ t\nzzqq xx\n");
        var e = Assert.Throws<TokenizerLoadException>(() => TokenizerFactory.Open(temp.Root));
        Assert.Equal(merges, e.FilePath);
        Assert.Contains("'zzqq' is not in the vocabulary", e.Message);
        Assert.Contains(vocab, e.Message);
    }

    [Fact]
    public void VocabularyGivingOneIdTwice()
    {
        using var temp = new TempFolder();
        temp.Write("merges.txt", "a b\n");
        var vocab = temp.Write("vocab.json", "{\"a\": 0, \"b\": 0}");
        var e = Assert.Throws<TokenizerLoadException>(() => TokenizerFactory.Open(temp.Root));
        Assert.Equal(vocab, e.FilePath);
        Assert.Contains("id 0 is given to both", e.Message);
    }

    [Fact]
    public void TokenizerJsonOfAnotherModelType()
    {
        using var temp = new TempFolder();
        Fails(temp.Write("tokenizer.json", "{\"version\": \"1.0\", \"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}"), "'WordPiece' is not supported");
    }

    [Fact]
    public void UnrecognisedFile()
    {
        using var temp = new TempFolder();
        Fails(temp.Write("tokenizer.model", "hello, I am not a tokenizer\n"), "not a tokenizer this engine recognises");
    }
}
