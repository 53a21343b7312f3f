using IlgpuLlm.Model.Formats;

namespace IlgpuLlm.Model.Tokenizers;

public static partial class TokenizerFactory
{
    /// <summary>
    /// The tokenizer stored in a GGUF's <c>tokenizer.ggml.*</c> metadata, read as llama.cpp's vocabulary
    /// loader reads it: model <c>llama</c> is SentencePiece BPE (tokens, scores, token_type;
    /// add_space_prefix, default true), model <c>gpt2</c> is byte-level BPE (tokens, token_type, merges;
    /// <c>tokenizer.ggml.pre</c> picks the split pattern). Special ids come from the *_token_id keys,
    /// <c>add_bos_token</c> overrides the default (SentencePiece: yes; BPE: only the Llama 3 family).
    /// </summary>
    /// <exception cref="ModelFormatException">A key is missing or of the wrong type (from <see cref="GgufFile"/>).</exception>
    /// <exception cref="TokenizerLoadException">The vocabulary is inconsistent or of a kind this engine does not run.</exception>
    public static ITokenizer FromGguf(GgufFile gguf) => TokenizerChecks.EnsureUsable(ReadGguf(gguf), gguf.Path);

    static ITokenizer ReadGguf(GgufFile gguf)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        var model = gguf.GetString("tokenizer.ggml.model");
        var tokens = gguf.GetStringArray("tokenizer.ggml.tokens");
        var types = gguf.Contains("tokenizer.ggml.token_type") ? gguf.GetInt32Array("tokenizer.ggml.token_type") : null;
        if (types is not null && types.Length != tokens.Length)
            throw new TokenizerLoadException(gguf.Path, $"tokenizer.ggml.token_type has {types.Length} entries for {tokens.Length} tokens");

        int? Id(string key)
        {
            if (!gguf.TryGetUInt32(key, out uint id))
                return null;
            return id < tokens.Length ? (int)id : throw new TokenizerLoadException(gguf.Path, $"{key} = {id} is outside the vocabulary of {tokens.Length} tokens");
        }
        bool? Flag(string key) => gguf.TryGetBool(key, out bool value) ? value : null;

        try
        {
            switch (model)
            {
                case "llama":
                {
                    var scores = gguf.Contains("tokenizer.ggml.scores") ? gguf.GetFloat32Array("tokenizer.ggml.scores") : new float[tokens.Length];
                    if (scores.Length != tokens.Length)
                        throw new TokenizerLoadException(gguf.Path, $"tokenizer.ggml.scores has {scores.Length} entries for {tokens.Length} tokens");
                    return new SentencePieceBpeTokenizer(tokens, scores, SentencePieceKinds(tokens, types), new SentencePieceOptions
                    {
                        AddDummyPrefix = Flag("tokenizer.ggml.add_space_prefix") ?? true,
                        RemoveExtraWhitespaces = Flag("tokenizer.ggml.remove_extra_whitespaces") ?? false,
                        AddBos = Flag("tokenizer.ggml.add_bos_token") ?? true,
                        BosId = Id("tokenizer.ggml.bos_token_id"),
                        EosId = Id("tokenizer.ggml.eos_token_id"),
                        EotId = Id("tokenizer.ggml.eot_token_id"),
                        PadId = Id("tokenizer.ggml.padding_token_id"),
                        UnkId = Id("tokenizer.ggml.unknown_token_id"),
                    });
                }
                case "gpt2":
                {
                    var pre = gguf.TryGetString("tokenizer.ggml.pre", out var name) ? name : "default";
                    if (PreTokenizer.FromGgufName(pre, out bool llama3Family) is null)
                        throw new TokenizerLoadException(gguf.Path, $"tokenizer.ggml.pre '{pre}' is not supported (known: llama-bpe, llama3, qwen2, gpt2, default)");
                    return ByteLevelBpeTokenizer.FromGgufVocabulary(
                        tokens, types?.Select(t => t == 0 ? (int)TokenKind.Normal : t).ToArray(), gguf.GetStringArray("tokenizer.ggml.merges"), pre,
                        Id("tokenizer.ggml.bos_token_id"), Id("tokenizer.ggml.eos_token_id"), Id("tokenizer.ggml.eot_token_id"),
                        Id("tokenizer.ggml.padding_token_id"), addBos: Flag("tokenizer.ggml.add_bos_token") ?? llama3Family);
                }
                default:
                    throw new TokenizerLoadException(gguf.Path, $"tokenizer.ggml.model '{model}' is not supported (llama and gpt2 are)");
            }
        }
        catch (ArgumentException e)
        {
            throw new TokenizerLoadException(gguf.Path, e.Message, e);
        }
    }

    /// <summary>
    /// token_type as SentencePiece kinds. Type 0 (UNDEFINED) counts as normal. A BYTE token whose text is
    /// not &lt;0xXX&gt; stands for no byte; it is kept as an ordinary piece, as llama.cpp loads such files
    /// (the random-weight family models in the test data carry them). Without token_type the kinds are
    /// told by spelling, as llama2.c's files need.
    /// </summary>
    static TokenKind[] SentencePieceKinds(string[] tokens, int[]? types)
    {
        var kinds = new TokenKind[tokens.Length];
        for (int id = 0; id < tokens.Length; id++)
        {
            if (types is null)
            {
                kinds[id] = SentencePieceBpeTokenizer.TryParseBytePiece(tokens[id], out _) ? TokenKind.Byte
                    : tokens[id] is "<s>" or "</s>" ? TokenKind.Control
                    : tokens[id] == "<unk>" ? TokenKind.Unknown
                    : TokenKind.Normal;
                continue;
            }
            var kind = types[id] == 0 ? TokenKind.Normal : (TokenKind)types[id];
            if (!Enum.IsDefined(kind))
                throw new ArgumentException($"token {id} ('{tokens[id]}') has unknown token_type {types[id]}");
            if (kind == TokenKind.Byte && !SentencePieceBpeTokenizer.TryParseBytePiece(tokens[id], out _))
                kind = TokenKind.Normal;
            kinds[id] = kind;
        }
        return kinds;
    }
}
