using System.Text;

namespace IlgpuLlm.Model.Tokenizers;

/// <summary>
/// What every tokenizer shares: the id ↔ piece tables, special-token partitioning and decoding to
/// bytes. Subclasses supply the subword algorithm for runs of ordinary text and say what bytes each
/// token stands for. Instances are immutable apart from thread-safe caches, so one tokenizer may serve
/// several threads; a <see cref="StreamingDecoder"/> belongs to one stream.
/// </summary>
public abstract class TokenizerBase : ITokenizer
{
    readonly string?[] pieces;
    readonly TokenKind[] kinds;
    readonly byte[]?[] plainBytes;
    readonly byte[]?[] renderedBytes;
    readonly Dictionary<string, int> idByPiece;
    readonly Dictionary<string, int> specialIdByText;
    readonly SpecialTokenMatcher matcher;
    readonly bool stripLeadingSpace;

    /// <param name="pieces">The spelling of each id; null where an id has no token (gaps in Hugging Face added-token ids).</param>
    /// <param name="kinds">The kind of each id.</param>
    /// <param name="plainBytes">The bytes each id decodes to by default (empty for control tokens).</param>
    /// <param name="renderedBytes">The bytes each id decodes to when special tokens are rendered.</param>
    /// <param name="partitionTokens">The tokens recognised in raw text before subword encoding.</param>
    /// <param name="special">BOS/EOS/EOT/pad/unk.</param>
    /// <param name="addBosByDefault">The model's add_bos convention.</param>
    /// <param name="stripLeadingSpace">
    /// SentencePiece with add_dummy_prefix: the space the encoder prepended is removed again from the
    /// first decoded piece (SentencePieceProcessor::Decode's "bos whitespace").
    /// </param>
    private protected TokenizerBase(
        string?[] pieces, TokenKind[] kinds, byte[]?[] plainBytes, byte[]?[] renderedBytes,
        IEnumerable<SpecialToken> partitionTokens, SpecialTokenIds special, bool addBosByDefault, bool stripLeadingSpace)
    {
        this.pieces = pieces;
        this.kinds = kinds;
        this.plainBytes = plainBytes;
        this.renderedBytes = renderedBytes;
        this.stripLeadingSpace = stripLeadingSpace;
        Special = special;
        AddBosByDefault = addBosByDefault && special.Bos.HasValue;

        idByPiece = new Dictionary<string, int>(pieces.Length, StringComparer.Ordinal);
        specialIdByText = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int id = 0; id < pieces.Length; id++)
        {
            var piece = pieces[id];
            if (piece is null)
                continue;
            idByPiece.TryAdd(piece, id);
            if (kinds[id] is TokenKind.Control or TokenKind.UserDefined or TokenKind.Unknown)
                specialIdByText.TryAdd(piece, id);
        }
        matcher = new SpecialTokenMatcher(partitionTokens);
    }

    public int VocabSize => pieces.Length;

    public SpecialTokenIds Special { get; }

    public bool AddBosByDefault { get; }

    public int[] Encode(string text, bool addBos, bool parseSpecial) => Encode(text, addBos, parseSpecial, trusted: null);

    public int[] Encode(string text, bool addBos, IReadOnlyList<Range> specialTokenRanges)
    {
        ArgumentNullException.ThrowIfNull(specialTokenRanges);
        return Encode(text, addBos, parseSpecial: true, specialTokenRanges);
    }

    int[] Encode(string text, bool addBos, bool parseSpecial, IReadOnlyList<Range>? trusted)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 2);
        if (addBos && Special.Bos is int bos)
            ids.Add(bos);

        var fragments = new List<Fragment>();
        matcher.Partition(text, parseSpecial, trusted, fragments);
        // llama.cpp's is_prev_special: the start of the input counts as following a special token.
        bool followsSpecial = true;
        foreach (var fragment in fragments)
        {
            if (fragment.IsText)
            {
                EncodeText(text.AsSpan(fragment.Start, fragment.Length), followsSpecial, ids);
                followsSpecial = false;
            }
            else
            {
                ids.Add(fragment.TokenId);
                followsSpecial = true;
            }
        }
        return ids.ToArray();
    }

    /// <summary>
    /// Encodes one run of ordinary text (no special tokens in it) and appends the ids.
    /// <paramref name="followsSpecial"/> is true at the start of the input and right after a special token.
    /// </summary>
    private protected abstract void EncodeText(ReadOnlySpan<char> text, bool followsSpecial, List<int> ids);

    public string Decode(ReadOnlySpan<int> ids, bool renderSpecial = false)
    {
        // Concatenate the bytes and decode once; the streaming decoder must reach the same text.
        var bytes = new List<byte>(ids.Length * 4);
        bool atStart = true;
        foreach (var id in ids)
            bytes.AddRange(TokenBytes(id, renderSpecial, ref atStart));
        return Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes));
    }

    public StreamingDecoder CreateStreamingDecoder(bool renderSpecial = false) => new(this, renderSpecial);

    public string GetPiece(int id) => pieces[CheckId(id)]!;

    public TokenKind GetKind(int id) => kinds[CheckId(id)];

    public bool TryGetId(string piece, out int id) => idByPiece.TryGetValue(piece, out id);

    public bool TryGetSpecialTokenId(string text, out int id) => specialIdByText.TryGetValue(text, out id);

    /// <summary>
    /// The bytes one token adds to the decoded text. <paramref name="atStart"/> tracks whether any
    /// visible token has been decoded yet (control tokens do not count), for the dummy-prefix strip.
    /// </summary>
    internal ReadOnlySpan<byte> TokenBytes(int id, bool renderSpecial, ref bool atStart)
    {
        CheckId(id);
        var kind = kinds[id];
        ReadOnlySpan<byte> bytes = renderSpecial ? renderedBytes[id] : plainBytes[id];
        if (kind == TokenKind.Control)
            return bytes;
        if (atStart)
        {
            // Only a piece can carry the encoder's dummy-prefix "▁"; the first visible token of any kind
            // ends the chance (Hugging Face's Strip decoder likewise looks at the first character only).
            atStart = false;
            if (stripLeadingSpace && kind is TokenKind.Normal or TokenKind.UserDefined or TokenKind.Unused && bytes.Length > 0 && bytes[0] == (byte)' ')
                bytes = bytes[1..];
        }
        return bytes;
    }

    int CheckId(int id)
    {
        if ((uint)id >= (uint)pieces.Length || pieces[id] is null)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token id {id} is not in this vocabulary (ids 0..{pieces.Length - 1})");
        return id;
    }
}
