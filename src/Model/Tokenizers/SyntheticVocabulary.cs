using IlgpuLlm.Model.Formats;
using System.Collections.Immutable;

namespace IlgpuLlm.Model.Tokenizers;

/// <summary>
/// The vocabulary of random-weight and demo models: a minimal valid byte-level BPE that both this
/// engine and llama.cpp load (GGUF <c>tokenizer.ggml.model = gpt2</c>). Ids 0–255 are the 256
/// bytes spelled in GPT-2's byte alphabet, 256 is BOS and 257 EOS, and every further id is a
/// filler word of lowercase letters (" a", "aa", …, " ab", "aab", …: shortest first, space-led
/// first) with the merge that builds it from its prefix and last letter, so every token is
/// reachable and decodes to readable text. Models of 258 tokens (the demo) are exactly
/// <see cref="ByteTokenizer"/>'s vocabulary.
/// </summary>
public static class SyntheticVocabulary
{
    public const int ByteTokenCount = 256;
    public const int BosId = 256;
    public const int EosId = 257;
    public const string BosText = "<|bos|>";
    public const string EosText = "<|eos|>";

    /// <summary>The smallest vocabulary: the bytes, BOS and EOS.</summary>
    public const int MinimumSize = 258;

    /// <summary>llama.cpp's name for GPT-2's split pattern, which both engines map to the same regex.</summary>
    public const string PreTokenizerName = "gpt-2";

    /// <summary>The vocabulary of <paramref name="size"/> tokens.</summary>
    public static TokenizerVocabulary Create(int size)
    {
        if (size < MinimumSize)
            throw new ArgumentOutOfRangeException(nameof(size), size, $"a byte-level vocabulary needs at least {MinimumSize} tokens (256 bytes, BOS, EOS)");
        var tokens = ImmutableArray.CreateBuilder<string>(size);
        var kinds = ImmutableArray.CreateBuilder<TokenKind>(size);
        for (int b = 0; b < ByteTokenCount; b++)
        {
            tokens.Add(ByteLevelAlphabet.ByteToChar[b].ToString());
            kinds.Add(TokenKind.Normal);
        }
        tokens.Add(BosText);
        kinds.Add(TokenKind.Control);
        tokens.Add(EosText);
        kinds.Add(TokenKind.Control);

        var merges = ImmutableArray.CreateBuilder<string>(size - MinimumSize);
        foreach (var (prefix, letter) in FillerWords().Take(size - MinimumSize))
        {
            tokens.Add(prefix + letter);
            kinds.Add(TokenKind.Normal);
            merges.Add($"{prefix} {letter}");
        }
        return new TokenizerVocabulary
        {
            Model = "gpt2",
            PreTokenizer = PreTokenizerName,
            Tokens = tokens.MoveToImmutable(),
            Kinds = kinds.MoveToImmutable(),
            Merges = merges.MoveToImmutable(),
            AddBos = true,
        };
    }

    /// <summary>
    /// Filler words as (prefix, last letter), spelled in the byte alphabet (a leading space is 'Ġ'):
    /// by length, the space-led words before the plain ones, each in alphabetical order. Every
    /// prefix is an earlier token (a byte, or a shorter word), so each merge is valid BPE.
    /// </summary>
    static IEnumerable<(string Prefix, char Letter)> FillerWords()
    {
        string space = ByteLevelAlphabet.ByteToChar[' '].ToString();
        var letters = Enumerable.Range('a', 26).Select(c => (char)c).ToArray();
        List<string> spaced = [space], plain = [.. letters.Select(c => c.ToString())];
        while (true)
        {
            var nextSpaced = new List<string>(spaced.Count * letters.Length);
            foreach (var prefix in spaced)
                foreach (char letter in letters)
                {
                    yield return (prefix, letter);
                    nextSpaced.Add(prefix + letter);
                }
            var nextPlain = new List<string>(plain.Count * letters.Length);
            foreach (var prefix in plain)
                foreach (char letter in letters)
                {
                    yield return (prefix, letter);
                    nextPlain.Add(prefix + letter);
                }
            (spaced, plain) = (nextSpaced, nextPlain);
        }
    }
}
