using IlgpuLlm.Model.Tokenizers;
using System.Collections.Immutable;

namespace IlgpuLlm.Model.Formats;

/// <summary>
/// A vocabulary as a GGUF states it in its <c>tokenizer.ggml.*</c> keys, for the writers: the
/// tokenizer model (<c>gpt2</c> for byte-level BPE, <c>llama</c> for SentencePiece), the token
/// spellings, their kinds, merges and scores. Which ids are BOS/EOS/EOT/pad is the
/// <see cref="ModelConfig"/>'s business, not the vocabulary's.
/// </summary>
public sealed record TokenizerVocabulary
{
    /// <summary><c>tokenizer.ggml.model</c>: <c>gpt2</c> (byte-level BPE) or <c>llama</c> (SentencePiece).</summary>
    public required string Model { get; init; }

    /// <summary><c>tokenizer.ggml.pre</c>, the pre-tokenizer name llama.cpp selects the split pattern by.</summary>
    public string? PreTokenizer { get; init; }

    /// <summary>Every token's spelling, by id (GPT-2 byte alphabet for byte-level BPE).</summary>
    public required ImmutableArray<string> Tokens { get; init; }

    /// <summary>Every token's kind, by id (GGUF's token_type values).</summary>
    public required ImmutableArray<TokenKind> Kinds { get; init; }

    /// <summary>Byte-level BPE merges, best first, each "left right" in the byte alphabet.</summary>
    public ImmutableArray<string> Merges { get; init; } = [];

    /// <summary>SentencePiece scores by id; empty when the model has none.</summary>
    public ImmutableArray<float> Scores { get; init; } = [];

    /// <summary>Whether prompts start with BOS (<c>tokenizer.ggml.add_bos_token</c>).</summary>
    public bool AddBos { get; init; }

    /// <summary>Checks the arrays agree with each other and with a model's vocabulary size.</summary>
    public void Validate(int vocabSize)
    {
        if (Tokens.Length != vocabSize)
            throw new ArgumentException($"the vocabulary has {Tokens.Length} tokens but the model's embedding has {vocabSize} rows");
        if (Kinds.Length != Tokens.Length)
            throw new ArgumentException($"the vocabulary has {Tokens.Length} tokens but {Kinds.Length} token kinds");
        if (!Scores.IsEmpty && Scores.Length != Tokens.Length)
            throw new ArgumentException($"the vocabulary has {Tokens.Length} tokens but {Scores.Length} scores");
        // llama.cpp refuses a vocabulary that spells two ids the same way.
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int id = 0; id < Tokens.Length; id++)
            if (!seen.Add(Tokens[id] ?? throw new ArgumentException($"token {id} has no spelling")))
                throw new ArgumentException($"token {id} '{Tokens[id]}' duplicates an earlier token");
        foreach (var merge in Merges)
        {
            int space = merge.IndexOf(' ', 1);
            if (space < 0 || space == merge.Length - 1 || merge.IndexOf(' ', space + 1) >= 0)
                throw new ArgumentException($"merge '{merge}' is not two tokens separated by one space");
        }
    }
}
