using System.Collections.Concurrent;
using System.Globalization;
using System.Text;

namespace IlgpuLlm.Model.Tokenizers;

/// <summary>How a SentencePiece model normalizes text and which ids are special.</summary>
public sealed record SentencePieceOptions
{
    /// <summary>NormalizerSpec.add_dummy_prefix: a "▁" is put in front of the text (true for Llama 2, false for Gemma).</summary>
    public bool AddDummyPrefix { get; init; } = true;

    /// <summary>NormalizerSpec.remove_extra_whitespaces: leading, trailing and repeated spaces are dropped (false for Llama 2 and Gemma).</summary>
    public bool RemoveExtraWhitespaces { get; init; }

    /// <summary>NormalizerSpec.escape_whitespaces: spaces become "▁" before segmentation.</summary>
    public bool EscapeWhitespaces { get; init; } = true;

    /// <summary>Whether sequences start with BOS by convention (llama.cpp's add_bos default for SentencePiece vocabularies is true).</summary>
    public bool AddBos { get; init; } = true;

    /// <summary>Special ids; null ones are found by their usual spelling (&lt;s&gt;, &lt;bos&gt;, &lt;/s&gt;, &lt;eos&gt;, &lt;pad&gt;, &lt;end_of_turn&gt;).</summary>
    public int? BosId { get; init; }
    public int? EosId { get; init; }
    public int? EotId { get; init; }
    public int? PadId { get; init; }
    public int? UnkId { get; init; }

    /// <summary>What the unknown token decodes to: TrainerSpec.unk_surface, by default " ⁇ ".</summary>
    public string UnknownSurface { get; init; } = " \u2047 ";
}

/// <summary>
/// SentencePiece's BPE model (bpe_model.cc) with byte fallback, as Llama 2 and Gemma use it: text is
/// split into characters (user-defined symbols kept whole), then the adjacent pair whose merged piece
/// has the highest score is merged, leftmost first on ties, until no merged piece is in the vocabulary;
/// characters still unknown become their UTF-8 bytes as &lt;0xXX&gt; tokens. Merges that produce an unused
/// piece are undone afterwards, as SentencePiece's resegmentation does.
/// </summary>
/// <remarks>
/// Own code rather than Microsoft.ML.Tokenizers' LlamaTokenizer: measured on llama.cpp's Llama 2 SPM
/// vectors it got 44 of 46 right; it fails "!!!!!!" (1738 21004 6824 instead of 1738 6824 21004) and the
/// long mixed line, because its merge order differs from SentencePiece's score-then-leftmost agenda.
/// It also cannot be built from GGUF arrays or llama2.c's tokenizer.bin.
/// </remarks>
public sealed class SentencePieceBpeTokenizer : TokenizerBase
{
    const char SpaceSymbol = '\u2581';

    readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> mergeable;
    readonly float[] scores;
    readonly TokenKind[] kinds;
    readonly int[]? byteIds;
    readonly Dictionary<char, string[]> userDefinedByFirstChar;
    readonly SentencePieceOptions options;
    readonly HashSet<int> bigrams = [];
    readonly ConcurrentDictionary<string, int[]> cache = new(StringComparer.Ordinal);
    readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> cacheLookup;
    int cacheCount;
    const int MaxCachedRunLength = 64;
    const int CacheCapacity = 1 << 16;

    /// <summary>
    /// Builds the tokenizer from parallel arrays: the GGUF <c>tokenizer.ggml.tokens</c>, <c>scores</c> and
    /// <c>token_type</c> arrays (model <c>llama</c>), or a parsed tokenizer.model.
    /// </summary>
    public SentencePieceBpeTokenizer(
        IReadOnlyList<string> pieces, IReadOnlyList<float> scores, IReadOnlyList<TokenKind> kinds, SentencePieceOptions? options = null)
        : this(Tables.Build(pieces, scores, kinds, options ?? new SentencePieceOptions()))
    {
    }

    SentencePieceBpeTokenizer(Tables t)
        : base(t.Pieces, t.Kinds, t.Plain, t.Rendered, t.PartitionTokens, t.Special, t.Options.AddBos,
            stripLeadingSpace: t.Options.AddDummyPrefix || t.Options.RemoveExtraWhitespaces)
    {
        options = t.Options;
        scores = t.Scores;
        kinds = t.Kinds;
        byteIds = t.ByteIds;
        var lookup = new Dictionary<string, int>(t.Pieces.Length, StringComparer.Ordinal);
        for (int id = 0; id < t.Pieces.Length; id++)
            if (t.Kinds[id] is TokenKind.Normal or TokenKind.UserDefined or TokenKind.Unused)
                lookup.TryAdd(t.Pieces[id]!, id);
        mergeable = lookup.GetAlternateLookup<ReadOnlySpan<char>>();
        foreach (var piece in lookup.Keys)
            for (int i = 0; i + 1 < piece.Length; i++)
                bigrams.Add((piece[i] << 16) | piece[i + 1]);
        cacheLookup = cache.GetAlternateLookup<ReadOnlySpan<char>>();
        userDefinedByFirstChar = Enumerable.Range(0, t.Pieces.Length)
            .Where(id => t.Kinds[id] == TokenKind.UserDefined && t.Pieces[id]!.Length > 0)
            .Select(id => t.Pieces[id]!)
            .GroupBy(p => p[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(p => p.Length).ToArray());
    }

    /// <summary>Whether unknown characters fall back to &lt;0xXX&gt; byte tokens (all 256 are in the vocabulary).</summary>
    public bool ByteFallback => byteIds is not null;

    /// <summary>The normalization and special-id settings in force.</summary>
    public SentencePieceOptions Options => options;

    /// <summary>A piece's merge score (higher merges first).</summary>
    public float GetScore(int id) => scores[(uint)id < (uint)scores.Length ? id : throw new ArgumentOutOfRangeException(nameof(id), id, $"token id {id} is not in this vocabulary (ids 0..{scores.Length - 1})")];

    private protected override void EncodeText(ReadOnlySpan<char> text, bool followsSpecial, List<int> ids)
    {
        // llama.cpp adds the dummy prefix to the first text run and to every run after a special token,
        // which is what encoding each piece of a chat prompt separately with SentencePiece gives.
        var normalized = Normalize(text, addPrefix: options.AddDummyPrefix && followsSpecial);
        if (normalized.Length > 0)
            Segment(normalized, ids);
    }

    string Normalize(ReadOnlySpan<char> text, bool addPrefix)
    {
        var sb = new StringBuilder(text.Length + 1);
        if (options.RemoveExtraWhitespaces)
        {
            text = text.Trim(' ');
            bool previousSpace = false;
            foreach (var c in text)
            {
                if (c == ' ' && previousSpace)
                    continue;
                previousSpace = c == ' ';
                sb.Append(c);
            }
        }
        else
        {
            sb.Append(text);
        }
        if (sb.Length == 0)
            return string.Empty;
        if (addPrefix)
            sb.Insert(0, ' ');
        if (options.EscapeWhitespaces)
            sb.Replace(' ', SpaceSymbol);
        return sb.ToString();
    }

    void Segment(string s, List<int> ids)
    {
        // Cut the text where no merge can ever join the two sides: next to a user-defined symbol, or
        // between two characters that are adjacent in no vocabulary piece. Merges on either side of such
        // a cut never interact, so segmenting word-sized runs gives the ids of one global agenda, fast,
        // and lets repeated runs come from the cache.
        bool previousUnknown = false;
        int runStart = 0;
        for (int i = 0; i < s.Length;)
        {
            int userDefined = MatchUserDefined(s.AsSpan(i));
            if (userDefined > 0)
            {
                if (i > runStart)
                    EncodeRun(s.AsSpan(runStart, i - runStart), ids, ref previousUnknown);
                Emit(s.AsSpan(i, userDefined), ids, null, ref previousUnknown);
                i += userDefined;
                runStart = i;
                continue;
            }
            int width = char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]) ? 2 : 1;
            int next = i + width;
            if (next < s.Length && !bigrams.Contains((s[next - 1] << 16) | s[next]))
            {
                EncodeRun(s.AsSpan(runStart, next - runStart), ids, ref previousUnknown);
                runStart = next;
            }
            i = next;
        }
        if (runStart < s.Length)
            EncodeRun(s.AsSpan(runStart), ids, ref previousUnknown);
    }

    void EncodeRun(ReadOnlySpan<char> run, List<int> ids, ref bool previousUnknown)
    {
        // Without byte fallback a run may end in <unk> that the next run's <unk> must join, so no caching then.
        bool cacheable = byteIds is not null && run.Length <= MaxCachedRunLength;
        if (cacheable && cacheLookup.TryGetValue(run, out var cached))
        {
            ids.AddRange(cached);
            return;
        }
        int before = ids.Count;
        MergeRun(run, ids, ref previousUnknown);
        if (cacheable && Volatile.Read(ref cacheCount) < CacheCapacity && cacheLookup.TryAdd(run, ids.GetRange(before, ids.Count - before).ToArray()))
            Interlocked.Increment(ref cacheCount);
    }

    /// <summary>SentencePiece's BPE over one run of characters (no user-defined symbols inside).</summary>
    void MergeRun(ReadOnlySpan<char> s, List<int> ids, ref bool previousUnknown)
    {
        // Symbols are spans of s in a doubly linked list; a merge grows the left symbol and empties the right.
        var start = new int[s.Length];
        var length = new int[s.Length];
        var prev = new int[s.Length];
        var next = new int[s.Length];
        int n = 0;
        for (int i = 0; i < s.Length;)
        {
            int len = char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]) ? 2 : 1;
            start[n] = i;
            length[n] = len;
            prev[n] = n - 1;
            next[n] = i + len < s.Length ? n + 1 : -1;
            n++;
            i += len;
        }

        // SentencePiece's agenda: highest score first, then the leftmost pair.
        var agenda = new PriorityQueue<(int Left, int Right, int Size), (float NegScore, int Left)>();
        Dictionary<string, (string Left, string Right)>? undo = null;
        void TryAddPair(ReadOnlySpan<char> s, int left, int right)
        {
            if (left < 0 || right < 0)
                return;
            var merged = s.Slice(start[left], length[left] + length[right]);
            if (!mergeable.TryGetValue(merged, out int id))
                return;
            agenda.Enqueue((left, right, merged.Length), (-scores[id], left));
            if (kinds[id] == TokenKind.Unused)
            {
                undo ??= new Dictionary<string, (string, string)>(StringComparer.Ordinal);
                undo[merged.ToString()] = (s.Slice(start[left], length[left]).ToString(), s.Slice(start[right], length[right]).ToString());
            }
        }

        for (int i = 0; i + 1 < n; i++)
            TryAddPair(s, i, i + 1);
        while (agenda.TryDequeue(out var pair, out _))
        {
            var (left, right, size) = pair;
            if (length[left] == 0 || length[right] == 0 || length[left] + length[right] != size)
                continue; // stale: one side has changed since this pair was queued
            length[left] += length[right];
            length[right] = 0;
            next[left] = next[right];
            if (next[right] >= 0)
                prev[next[right]] = left;
            TryAddPair(s, prev[left], left);
            TryAddPair(s, left, next[left]);
        }

        for (int i = 0; i >= 0; i = next[i])
            Emit(s.Slice(start[i], length[i]), ids, undo, ref previousUnknown);
    }

    void Emit(ReadOnlySpan<char> piece, List<int> ids, Dictionary<string, (string Left, string Right)>? undo, ref bool previousUnknown)
    {
        if (mergeable.TryGetValue(piece, out int id))
        {
            if (kinds[id] == TokenKind.Unused && undo is not null && undo.TryGetValue(piece.ToString(), out var parts))
            {
                Emit(parts.Left, ids, undo, ref previousUnknown);
                Emit(parts.Right, ids, undo, ref previousUnknown);
                return;
            }
            ids.Add(id);
            previousUnknown = false;
        }
        else if (byteIds is not null)
        {
            Span<byte> utf8 = stackalloc byte[16];
            int count = Encoding.UTF8.GetBytes(piece, utf8);
            foreach (var b in utf8[..count])
                ids.Add(byteIds[b]);
            previousUnknown = false;
        }
        else
        {
            // Without byte fallback SentencePiece merges a run of unknown characters into one <unk>.
            if (!previousUnknown)
                ids.Add(Special.Unk ?? throw new InvalidOperationException("the vocabulary has neither byte fallback nor an unknown token"));
            previousUnknown = true;
        }
    }

    int MatchUserDefined(ReadOnlySpan<char> rest)
    {
        if (userDefinedByFirstChar.Count == 0 || !userDefinedByFirstChar.TryGetValue(rest[0], out var candidates))
            return 0;
        foreach (var candidate in candidates) // longest first, as SentencePiece's PrefixMatcher
            if (rest.StartsWith(candidate, StringComparison.Ordinal))
                return candidate.Length;
        return 0;
    }

    sealed class Tables
    {
        public required string?[] Pieces;
        public required float[] Scores;
        public required TokenKind[] Kinds;
        public required byte[]?[] Plain;
        public required byte[]?[] Rendered;
        public required int[]? ByteIds;
        public required List<SpecialToken> PartitionTokens;
        public required SpecialTokenIds Special;
        public required SentencePieceOptions Options;

        public static Tables Build(IReadOnlyList<string> pieces, IReadOnlyList<float> scores, IReadOnlyList<TokenKind> kinds, SentencePieceOptions options)
        {
            ArgumentNullException.ThrowIfNull(pieces);
            ArgumentNullException.ThrowIfNull(scores);
            ArgumentNullException.ThrowIfNull(kinds);
            int n = pieces.Count;
            if (n == 0)
                throw new ArgumentException("the vocabulary is empty", nameof(pieces));
            if (scores.Count != n || kinds.Count != n)
                throw new ArgumentException($"{n} pieces but {scores.Count} scores and {kinds.Count} token types");

            var pieceArray = new string?[n];
            var kindArray = new TokenKind[n];
            var plain = new byte[]?[n];
            var rendered = new byte[]?[n];
            var byteIds = new int[256];
            Array.Fill(byteIds, -1);
            var partition = new List<SpecialToken>();
            var unknownSurface = Encoding.UTF8.GetBytes(options.UnknownSurface);
            for (int id = 0; id < n; id++)
            {
                var piece = pieces[id] ?? throw new ArgumentException($"piece {id} is null", nameof(pieces));
                var kind = kinds[id];
                if (!Enum.IsDefined(kind))
                    throw new ArgumentException($"piece {id} ({piece}) has unknown token type {(int)kind}", nameof(kinds));
                pieceArray[id] = piece;
                kindArray[id] = kind;
                var text = Encoding.UTF8.GetBytes(piece);
                switch (kind)
                {
                    case TokenKind.Byte:
                        if (!TryParseBytePiece(piece, out byte value))
                            throw new ArgumentException($"byte token {id} is spelled '{piece}', not <0xXX>", nameof(pieces));
                        if (byteIds[value] < 0)
                            byteIds[value] = id;
                        plain[id] = rendered[id] = [value];
                        break;
                    case TokenKind.Control:
                        plain[id] = [];
                        rendered[id] = text;
                        partition.Add(new SpecialToken(piece, id, AlwaysMatched: false));
                        break;
                    case TokenKind.Unknown:
                        plain[id] = unknownSurface;
                        rendered[id] = text;
                        partition.Add(new SpecialToken(piece, id, AlwaysMatched: false));
                        break;
                    default:
                        plain[id] = rendered[id] = Encoding.UTF8.GetBytes(piece.Replace(SpaceSymbol, ' '));
                        break;
                }
            }

            int? Check(int? id, string name) =>
                id is null || (uint)id.Value < (uint)n ? id : throw new ArgumentException($"{name} id {id} is outside the vocabulary of {n}");
            int? Find(TokenKind kind, params string[] spellings)
            {
                foreach (var spelling in spellings)
                    for (int id = 0; id < n; id++)
                        if (kindArray[id] == kind && pieceArray[id] == spelling)
                            return id;
                return null;
            }
            int? FindSpecial(params string[] spellings) => Find(TokenKind.Control, spellings) ?? Find(TokenKind.UserDefined, spellings);

            var special = new SpecialTokenIds(
                Bos: Check(options.BosId, "BOS") ?? FindSpecial("<s>", "<bos>"),
                Eos: Check(options.EosId, "EOS") ?? FindSpecial("</s>", "<eos>"),
                Eot: Check(options.EotId, "EOT") ?? FindSpecial(KnownSpellings.EndOfTurn),
                Pad: Check(options.PadId, "pad") ?? FindSpecial("<pad>"),
                Unk: Check(options.UnkId, "unknown") ?? Enumerable.Range(0, n).Cast<int?>().FirstOrDefault(id => kindArray[id!.Value] == TokenKind.Unknown));

            return new Tables
            {
                Pieces = pieceArray,
                Scores = scores.ToArray(),
                Kinds = kindArray,
                Plain = plain,
                Rendered = rendered,
                ByteIds = byteIds.All(id => id >= 0) ? byteIds : null,
                PartitionTokens = partition,
                Special = special,
                Options = options,
            };
        }
    }

    /// <summary>Parses SentencePiece's byte piece spelling &lt;0xXX&gt;.</summary>
    internal static bool TryParseBytePiece(string piece, out byte value)
    {
        value = 0;
        return piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
            && byte.TryParse(piece.AsSpan(3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
    }
}

/// <summary>Spellings by which well-known special tokens are recognised when a file does not name their ids.</summary>
internal static class KnownSpellings
{
    /// <summary>
    /// End-of-turn tokens of chat models, the list llama.cpp's vocabulary loader also searches when a GGUF
    /// has no <c>tokenizer.ggml.eot_token_id</c>.
    /// </summary>
    public static readonly string[] EndOfTurn = ["<|eot_id|>", "<|im_end|>", "<end_of_turn>", "<|end|>", "<EOT>"];
}
