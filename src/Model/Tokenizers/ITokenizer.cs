namespace IlgpuLlm.Model.Tokenizers;

/// <summary>
/// What a vocabulary entry is. The numeric values are SentencePiece's <c>ModelProto.SentencePiece.Type</c>,
/// which GGUF's <c>tokenizer.ggml.token_type</c> array reuses, so both load without translation.
/// </summary>
public enum TokenKind
{
    /// <summary>An ordinary piece produced by the subword algorithm.</summary>
    Normal = 1,
    /// <summary>The unknown token (<c>&lt;unk&gt;</c>), emitted for text the vocabulary cannot cover.</summary>
    Unknown = 2,
    /// <summary>
    /// A special token (BOS, EOS, chat markers). Matched in text only when the caller asks for special
    /// parsing, so user text cannot inject it; rendered as nothing when decoding unless asked.
    /// </summary>
    Control = 3,
    /// <summary>
    /// A token the vocabulary's author forced to stay whole (SentencePiece user-defined symbols,
    /// Hugging Face added tokens with <c>special: false</c>). Matched in text always, decoded as its text.
    /// </summary>
    UserDefined = 4,
    /// <summary>A SentencePiece piece that exists but is never produced (merges through it are re-split).</summary>
    Unused = 5,
    /// <summary>A byte-fallback token <c>&lt;0xXX&gt;</c> standing for one raw UTF-8 byte.</summary>
    Byte = 6,
}

/// <summary>
/// The ids a decoder loop and a prompt builder need. A null id means the vocabulary has no such token
/// (Qwen2 has no BOS; Llama 2 has no separate end-of-turn token).
/// </summary>
public sealed record SpecialTokenIds(int? Bos, int? Eos, int? Eot, int? Pad, int? Unk)
{
    /// <summary>
    /// The ids after which generation stops: EOS and, for chat models, the end-of-turn token, which
    /// instruct models emit instead of EOS (Llama 3's <c>&lt;|eot_id|&gt;</c>, Gemma's <c>&lt;end_of_turn&gt;</c>,
    /// ChatML's <c>&lt;|im_end|&gt;</c>).
    /// </summary>
    public IReadOnlyList<int> EndOfGeneration =>
        new[] { Eos, Eot }.Where(id => id.HasValue).Select(id => id!.Value).Distinct().ToArray();
}

/// <summary>
/// A tokenizer that reproduces the ids of the model's original tokenizer (SentencePiece, tiktoken,
/// Hugging Face tokenizers), as llama.cpp's tokenizer tests check them.
/// </summary>
public interface ITokenizer
{
    /// <summary>One more than the largest token id (the embedding table may be larger).</summary>
    int VocabSize { get; }

    /// <summary>BOS, EOS, end-of-turn, padding and unknown ids.</summary>
    SpecialTokenIds Special { get; }

    /// <summary>
    /// Whether this model's convention is to start every sequence with BOS (SentencePiece Llama and
    /// Gemma, Llama 3: yes; Qwen2: no BOS at all). Pass it as <c>addBos</c> when encoding a raw prompt.
    /// </summary>
    bool AddBosByDefault { get; }

    /// <summary>
    /// Encodes text. <paramref name="addBos"/> prepends BOS when the vocabulary has one.
    /// <paramref name="parseSpecial"/> lets control tokens written in the text (<c>&lt;|eot_id|&gt;</c>,
    /// <c>&lt;start_of_turn&gt;</c>) become their ids; leave it false for user text, so that such text is
    /// tokenized as ordinary characters and cannot forge turn boundaries.
    /// </summary>
    int[] Encode(string text, bool addBos, bool parseSpecial);

    /// <summary>
    /// Encodes text in which control tokens count only inside <paramref name="specialTokenRanges"/>: a chat
    /// prompt whose template text may hold &lt;|im_start|&gt; and the like while the messages spliced into it
    /// may not. Everything else is as <see cref="Encode(string, bool, bool)"/> with special parsing on, so
    /// the ids equal those of the whole rendered string wherever the messages contain no special-token text.
    /// </summary>
    int[] Encode(string text, bool addBos, IReadOnlyList<Range> specialTokenRanges);

    /// <summary>
    /// Decodes ids to text. Control tokens produce nothing unless <paramref name="renderSpecial"/>;
    /// byte sequences that are not valid UTF-8 become U+FFFD, as Hugging Face's <c>errors="replace"</c> does.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is outside the vocabulary.</exception>
    string Decode(ReadOnlySpan<int> ids, bool renderSpecial = false);

    /// <summary>A decoder that takes ids one at a time and only ever returns whole characters.</summary>
    StreamingDecoder CreateStreamingDecoder(bool renderSpecial = false);

    /// <summary>The vocabulary entry for an id, as the original tokenizer spells it (▁ for SentencePiece spaces, Ġ-style bytes for byte-level BPE).</summary>
    string GetPiece(int id);

    /// <summary>What kind of token an id is.</summary>
    TokenKind GetKind(int id);

    /// <summary>Looks a vocabulary entry up by its spelling (the inverse of <see cref="GetPiece"/>).</summary>
    bool TryGetId(string piece, out int id);

    /// <summary>Looks a special (control or user-defined) token up by the text that stands for it, e.g. <c>&lt;|im_end|&gt;</c>.</summary>
    bool TryGetSpecialTokenId(string text, out int id);
}
