using System.Text;

namespace IlgpuLlm.Model.Tokenizers;

/// <summary>
/// The tokenizer of the built-in demo model: every UTF-8 byte is its own token (ids 0–255), then
/// BOS (256) and EOS (257), the layout of <see cref="SyntheticVocabulary"/> at its minimum size.
/// Text of any script round-trips; a character whose bytes arrive as separate tokens is held back
/// by the shared <see cref="StreamingDecoder"/> until it is complete.
/// </summary>
public sealed class ByteTokenizer : TokenizerBase
{
    public const int Size = SyntheticVocabulary.MinimumSize;

    public ByteTokenizer()
        : this(Tables.Build())
    {
    }

    ByteTokenizer(Tables t)
        : base(t.Pieces, t.Kinds, t.Plain, t.Rendered, t.PartitionTokens,
            new SpecialTokenIds(Bos: SyntheticVocabulary.BosId, Eos: SyntheticVocabulary.EosId, Eot: null, Pad: null, Unk: null),
            addBosByDefault: true, stripLeadingSpace: false)
    {
    }

    private protected override void EncodeText(ReadOnlySpan<char> text, bool followsSpecial, List<int> ids)
    {
        var bytes = new byte[Encoding.UTF8.GetMaxByteCount(text.Length)];
        int count = Encoding.UTF8.GetBytes(text, bytes);
        for (int i = 0; i < count; i++)
            ids.Add(bytes[i]);
    }

    sealed class Tables
    {
        public required string?[] Pieces;
        public required TokenKind[] Kinds;
        public required byte[]?[] Plain;
        public required byte[]?[] Rendered;
        public required SpecialToken[] PartitionTokens;

        public static Tables Build()
        {
            var pieces = new string?[Size];
            var kinds = new TokenKind[Size];
            var plain = new byte[]?[Size];
            var rendered = new byte[]?[Size];
            for (int b = 0; b < SyntheticVocabulary.ByteTokenCount; b++)
            {
                // Spelled as byte-level vocabularies spell bytes, so a piece reads the same here as
                // in the GGUF of a random model.
                pieces[b] = ByteLevelAlphabet.ByteToChar[b].ToString();
                kinds[b] = TokenKind.Byte;
                plain[b] = rendered[b] = [(byte)b];
            }
            foreach (var (id, text) in new[] { (SyntheticVocabulary.BosId, SyntheticVocabulary.BosText), (SyntheticVocabulary.EosId, SyntheticVocabulary.EosText) })
            {
                pieces[id] = text;
                kinds[id] = TokenKind.Control;
                plain[id] = [];
                rendered[id] = Encoding.UTF8.GetBytes(text);
            }
            return new Tables
            {
                Pieces = pieces,
                Kinds = kinds,
                Plain = plain,
                Rendered = rendered,
                PartitionTokens =
                [
                    new SpecialToken(SyntheticVocabulary.BosText, SyntheticVocabulary.BosId, AlwaysMatched: false),
                    new SpecialToken(SyntheticVocabulary.EosText, SyntheticVocabulary.EosId, AlwaysMatched: false),
                ],
            };
        }
    }
}
