using System.Buffers;
using System.Collections.Concurrent;
using System.Text;
using IlgpuLlm.Model.Tokenizers.Unicode;

namespace IlgpuLlm.Model.Tokenizers;

/// <summary>How a byte-level BPE vocabulary is applied to text, and which ids are special.</summary>
public sealed record ByteLevelBpeOptions
{
    /// <summary>How text is cut into pieces before BPE (the model family's split pattern).</summary>
    public PreTokenizer PreTokenizer { get; init; } = PreTokenizer.Gpt2;

    /// <summary>
    /// Hugging Face's <c>ignore_merges</c>, tiktoken's rule: a piece that is itself in the vocabulary is
    /// emitted as that one token without running merges (Llama 3; merges alone split " Việt", one token, into three).
    /// </summary>
    public bool IgnoreMerges { get; init; }

    /// <summary>Unicode NFC normalization before splitting (Qwen2's tokenizer applies it).</summary>
    public bool NormalizeNfc { get; init; }

    /// <summary>ByteLevel <c>add_prefix_space</c>: a space is put before text that does not start with one.</summary>
    public bool AddPrefixSpace { get; init; }

    /// <summary>Whether the model's sequences start with BOS (Llama 3 yes, Qwen2 has none).</summary>
    public bool AddBos { get; init; }

    public int? BosId { get; init; }
    public int? EosId { get; init; }
    /// <summary>End-of-turn id; when null, found by the usual spellings (&lt;|eot_id|&gt;, &lt;|im_end|&gt;, …).</summary>
    public int? EotId { get; init; }
    public int? PadId { get; init; }
    public int? UnkId { get; init; }

    /// <summary>Hugging Face added-token <c>lstrip</c>/<c>rstrip</c> flags by id.</summary>
    public IReadOnlyDictionary<int, (bool LStrip, bool RStrip)>? StripFlags { get; init; }
}

/// <summary>
/// Byte-level BPE as GPT-2, tiktoken and Hugging Face tokenizers run it: text (NFC-normalized for
/// Qwen2) is cut by the family's split pattern, each piece's UTF-8 bytes start as one symbol each, and the
/// adjacent pair with the lowest merge rank is merged, leftmost first on ties, until no pair has a rank.
/// Merge ranks come from merges.txt order, or for a tiktoken file from the rank of the merged bytes.
/// </summary>
/// <remarks>
/// Own code rather than Microsoft.ML.Tokenizers, after running both on llama.cpp's vectors: ML's
/// BpeTokenizer has no ignore_merges, so the Llama 3 vocabulary in GPT-2 layout (and so a GGUF
/// "llama-bpe" vocabulary) fails "Cửa Việt" (34 91163 11655 26298 83 instead of 34 91163 101798). Its
/// TiktokenTokenizer (Llama 3) and BpeTokenizer (Qwen2, with NFC done beforehand) pass all 46 vectors and
/// give the same ids as this code on the whole War and Peace corpus, at a similar speed, but they run the
/// split pattern on .NET's Regex, which misreads letters and digits outside the BMP (see
/// <see cref="PreTokenizer"/>): for " 𝟙𝟚𝟛𝟜" (mathematical digits, Nd) ML's TiktokenTokenizer gives
/// 82350 253 247 …, one punctuation-like piece, where the pattern read per code point gives " ", "𝟙𝟚𝟛",
/// "𝟜" and so 220 57352 253 247 …. One engine for every byte-level vocabulary also guarantees that the
/// tiktoken file, its GPT-2-layout twin and a GGUF give the same ids.
/// </remarks>
public sealed class ByteLevelBpeTokenizer : TokenizerBase
{
    const int LinearMergeLimit = 256;       // longer pieces use the heap so that merging stays O(n log n)
    const int MaxCachedPieceLength = 64;
    const int CacheCapacity = 1 << 16;

    readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> encoder;
    readonly Dictionary<long, (int Rank, int Merged)>? merges; // null: tiktoken ranks, looked up by the merged bytes
    readonly string?[] spellings;
    readonly ConcurrentDictionary<long, int>? rankMemo;
    const int RankMemoCapacity = 1 << 20;
    readonly int[] byteIds;
    readonly ByteLevelBpeOptions options;
    readonly ConcurrentDictionary<string, int[]> cache = new(StringComparer.Ordinal);
    readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> cacheLookup;
    int cacheCount;

    /// <summary>
    /// Builds the tokenizer from a vocabulary spelled in GPT-2's byte alphabet and its merges, as in
    /// vocab.json + merges.txt, tokenizer.json, or a GGUF with model <c>gpt2</c>. Control and user-defined
    /// tokens are spelled as their literal text; null pieces are unused ids.
    /// </summary>
    /// <param name="pieces">Spelling of each id.</param>
    /// <param name="kinds">Kind of each id (Normal for ordinary tokens).</param>
    /// <param name="mergePairs">The merges, best first.</param>
    /// <param name="options">Split pattern, normalization and special ids.</param>
    /// <exception cref="ArgumentException">The arrays disagree, or a merge names a token that is not in the vocabulary.</exception>
    public ByteLevelBpeTokenizer(
        IReadOnlyList<string?> pieces, IReadOnlyList<TokenKind> kinds, IReadOnlyList<(string Left, string Right)> mergePairs, ByteLevelBpeOptions options)
        : this(Tables.Build(pieces, kinds, mergePairs ?? throw new ArgumentNullException(nameof(mergePairs)), options))
    {
    }

    ByteLevelBpeTokenizer(Tables t)
        : base(t.Pieces, t.Kinds, t.Plain, t.Rendered, t.PartitionTokens, t.Special, t.Options.AddBos, stripLeadingSpace: false)
    {
        encoder = t.Encoder.GetAlternateLookup<ReadOnlySpan<char>>();
        merges = t.Merges;
        spellings = t.Pieces;
        rankMemo = merges is null ? new ConcurrentDictionary<long, int>(PairKeyComparer.Instance) : null;
        byteIds = t.ByteIds;
        options = t.Options;
        cacheLookup = cache.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>
    /// Builds the tokenizer from tiktoken ranks (index = rank = id), as in Llama 3's tokenizer.model, plus
    /// special tokens at ids of their own. tiktoken merges the pair whose concatenation has the lowest rank.
    /// </summary>
    public static ByteLevelBpeTokenizer FromRanks(
        IReadOnlyList<byte[]> ranks, IReadOnlyList<(int Id, string Text)> controlTokens, ByteLevelBpeOptions options)
    {
        ArgumentNullException.ThrowIfNull(ranks);
        ArgumentNullException.ThrowIfNull(controlTokens);
        int size = Math.Max(ranks.Count, controlTokens.Count == 0 ? 0 : controlTokens.Max(t => t.Id) + 1);
        var pieces = new string?[size];
        var kinds = new TokenKind[size];
        for (int id = 0; id < ranks.Count; id++)
        {
            pieces[id] = ByteLevelAlphabet.Spell(ranks[id] ?? throw new ArgumentException($"rank {id} is missing", nameof(ranks)));
            kinds[id] = TokenKind.Normal;
        }
        foreach (var (id, text) in controlTokens)
        {
            if (id < 0 || pieces[id] is not null)
                throw new ArgumentException($"special token {text} has id {id}, which is negative or already taken", nameof(controlTokens));
            pieces[id] = text;
            kinds[id] = TokenKind.Control;
        }
        return new ByteLevelBpeTokenizer(Tables.Build(pieces, kinds, mergePairs: null, options));
    }

    /// <summary>
    /// Builds the tokenizer from a GGUF vocabulary with <c>tokenizer.ggml.model = gpt2</c>: the tokens,
    /// token_type and merges arrays and the <c>tokenizer.ggml.pre</c> name, which selects the split pattern
    /// as llama.cpp does.
    /// </summary>
    /// <exception cref="NotSupportedException">The pre-tokenizer name is not one this engine implements.</exception>
    public static ByteLevelBpeTokenizer FromGgufVocabulary(
        IReadOnlyList<string> tokens, IReadOnlyList<int>? tokenTypes, IReadOnlyList<string> merges, string preTokenizerName,
        int? bosId, int? eosId, int? eotId, int? padId, bool addBos)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(merges);
        var pre = PreTokenizer.FromGgufName(preTokenizerName ?? "default", out bool ignoreMerges)
            ?? throw new NotSupportedException($"GGUF pre-tokenizer '{preTokenizerName}' is not supported (known: llama-bpe, llama3, qwen2, gpt2, default)");
        var kinds = new TokenKind[tokens.Count];
        for (int id = 0; id < kinds.Length; id++)
        {
            kinds[id] = tokenTypes is null ? TokenKind.Normal : (TokenKind)tokenTypes[id];
            if (!Enum.IsDefined(kinds[id]))
                throw new ArgumentException($"token {id} has unknown token type {tokenTypes![id]}", nameof(tokenTypes));
        }
        var pairs = new (string, string)[merges.Count];
        for (int i = 0; i < merges.Count; i++)
            pairs[i] = SplitMerge(merges[i]) ?? throw new ArgumentException($"merge {i} '{merges[i]}' is not two tokens separated by a space", nameof(merges));
        return new ByteLevelBpeTokenizer(tokens, kinds, pairs, new ByteLevelBpeOptions
        {
            PreTokenizer = pre,
            IgnoreMerges = ignoreMerges,
            // llama.cpp normalizes nothing for BPE vocabularies; Qwen2's NFC is kept, as its own tokenizer does it.
            NormalizeNfc = preTokenizerName == "qwen2",
            AddBos = addBos,
            BosId = bosId,
            EosId = eosId,
            EotId = eotId,
            PadId = padId,
        });
    }

    /// <summary>The split pattern in use.</summary>
    public PreTokenizer PreTokenizer => options.PreTokenizer;

    /// <summary>Whether whole-token pieces skip the merges.</summary>
    public bool IgnoreMerges => options.IgnoreMerges;

    /// <summary>Whether text is NFC-normalized first.</summary>
    public bool NormalizesNfc => options.NormalizeNfc;

    /// <summary>Splits a merges.txt line "a b" into its two tokens.</summary>
    internal static (string, string)? SplitMerge(string line)
    {
        int space = line.IndexOf(' ');
        if (space <= 0 || space == line.Length - 1 || line.IndexOf(' ', space + 1) >= 0)
            return null;
        return (line[..space], line[(space + 1)..]);
    }

    private protected override void EncodeText(ReadOnlySpan<char> text, bool followsSpecial, List<int> ids)
    {
        string? owned = null;
        if (options.NormalizeNfc)
            owned = Nfc.Normalize(text);
        if (options.AddPrefixSpace && (owned ?? text).Length > 0 && (owned ?? text)[0] != ' ')
            owned = " " + (owned ?? text.ToString());
        ReadOnlySpan<char> s = owned ?? text;

        var pieces = new List<(int Start, int Length)>(s.Length / 4 + 1);
        options.PreTokenizer.Split(s, pieces);
        foreach (var (start, length) in pieces)
            EncodePiece(s.Slice(start, length), ids);
    }

    void EncodePiece(ReadOnlySpan<char> piece, List<int> ids)
    {
        if (cacheLookup.TryGetValue(piece, out var cached))
        {
            ids.AddRange(cached);
            return;
        }
        var result = EncodeUncached(piece);
        if (piece.Length <= MaxCachedPieceLength && Volatile.Read(ref cacheCount) < CacheCapacity && cacheLookup.TryAdd(piece, result))
            Interlocked.Increment(ref cacheCount);
        ids.AddRange(result);
    }

    int[] EncodeUncached(ReadOnlySpan<char> piece)
    {
        int maxBytes = piece.Length * 3; // a UTF-16 unit never needs more than 3 UTF-8 bytes
        byte[]? rented = null;
        Span<byte> bytes = maxBytes <= 512 ? stackalloc byte[512] : (rented = ArrayPool<byte>.Shared.Rent(maxBytes));
        try
        {
            bytes = bytes[..Encoding.UTF8.GetBytes(piece, bytes)];
            if (bytes.Length == 1)
                return [byteIds[bytes[0]]];
            if (options.IgnoreMerges && TryWholeToken(bytes, out int whole))
                return [whole];
            return bytes.Length <= LinearMergeLimit ? MergeLinear(bytes) : MergeWithHeap(bytes);
        }
        finally
        {
            if (rented is not null)
                ArrayPool<byte>.Shared.Return(rented);
        }
    }

    bool TryWholeToken(ReadOnlySpan<byte> bytes, out int id)
    {
        char[]? rented = null;
        Span<char> spelled = bytes.Length <= 256 ? stackalloc char[256] : (rented = ArrayPool<char>.Shared.Rent(bytes.Length));
        try
        {
            for (int i = 0; i < bytes.Length; i++)
                spelled[i] = ByteLevelAlphabet.ByteToChar[bytes[i]];
            return encoder.TryGetValue(spelled[..bytes.Length], out id);
        }
        finally
        {
            if (rented is not null)
                ArrayPool<char>.Shared.Return(rented);
        }
    }

    (int Rank, int Merged) Pair(int left, int right)
    {
        long key = ((long)left << 32) | (uint)right;
        if (merges is not null)
            return merges.TryGetValue(key, out var m) ? m : (int.MaxValue, -1);
        // tiktoken: any two parts whose concatenation is a token merge, ranked by that token (rank = id).
        // Found by looking the joined bytes up, and remembered: a text meets few distinct pairs.
        if (!rankMemo!.TryGetValue(key, out int rank))
        {
            rank = JoinedRank(spellings[left]!, spellings[right]!);
            if (rankMemo.Count < RankMemoCapacity)
                rankMemo.TryAdd(key, rank);
        }
        return rank < 0 ? (int.MaxValue, -1) : (rank, rank);
    }

    int JoinedRank(string a, string b)
    {
        int length = a.Length + b.Length;
        char[]? rented = null;
        Span<char> joined = length <= 256 ? stackalloc char[256] : (rented = ArrayPool<char>.Shared.Rent(length));
        a.CopyTo(joined);
        b.CopyTo(joined[a.Length..]);
        bool found = encoder.TryGetValue(joined[..length], out int id);
        if (rented is not null)
            ArrayPool<char>.Shared.Return(rented);
        return found ? id : -1;
    }

    /// <summary>tiktoken's byte_pair_merge: rescan for the lowest rank after each merge; fast for short pieces.</summary>
    int[] MergeLinear(ReadOnlySpan<byte> bytes)
    {
        int n = bytes.Length;
        Span<int> symbols = stackalloc int[n];
        Span<int> rank = stackalloc int[n];
        Span<int> merged = stackalloc int[n];
        for (int i = 0; i < n; i++)
            symbols[i] = byteIds[bytes[i]];
        for (int i = 0; i + 1 < n; i++)
            (rank[i], merged[i]) = Pair(symbols[i], symbols[i + 1]);

        while (n > 1)
        {
            int best = -1, bestRank = int.MaxValue;
            for (int i = 0; i + 1 < n; i++)
                if (rank[i] < bestRank)
                    (best, bestRank) = (i, rank[i]);
            if (best < 0)
                break;
            symbols[best] = merged[best];
            symbols.Slice(best + 2, n - best - 2).CopyTo(symbols[(best + 1)..]);
            rank.Slice(best + 1, n - best - 2).CopyTo(rank[best..]);
            merged.Slice(best + 1, n - best - 2).CopyTo(merged[best..]);
            n--;
            if (best > 0)
                (rank[best - 1], merged[best - 1]) = Pair(symbols[best - 1], symbols[best]);
            if (best + 1 < n)
                (rank[best], merged[best]) = Pair(symbols[best], symbols[best + 1]);
        }
        return symbols[..n].ToArray();
    }

    /// <summary>The same merge order with a priority queue keyed by (rank, position), as Hugging Face's BPE word merge.</summary>
    int[] MergeWithHeap(ReadOnlySpan<byte> bytes)
    {
        int n = bytes.Length;
        var symbols = new int[n];
        var prev = new int[n];
        var next = new int[n];
        for (int i = 0; i < n; i++)
        {
            symbols[i] = byteIds[bytes[i]];
            prev[i] = i - 1;
            next[i] = i + 1 < n ? i + 1 : -1;
        }
        var queue = new PriorityQueue<int, long>();
        void Push(int left)
        {
            int rank = Pair(symbols[left], symbols[next[left]]).Rank;
            if (rank != int.MaxValue)
                queue.Enqueue(left, ((long)rank << 32) | (uint)left);
        }
        for (int i = 0; i + 1 < n; i++)
            Push(i);

        while (queue.TryDequeue(out int left, out long key))
        {
            int right = next[left];
            if (symbols[left] < 0 || right < 0)
                continue;
            var (rank, mergedId) = Pair(symbols[left], symbols[right]);
            if (rank != (int)(key >> 32))
                continue; // stale entry: a neighbour changed since it was queued
            symbols[left] = mergedId;
            symbols[right] = -1;
            next[left] = next[right];
            if (next[right] >= 0)
                prev[next[right]] = left;
            if (prev[left] >= 0)
                Push(prev[left]);
            if (next[left] >= 0)
                Push(left);
        }

        var result = new List<int>();
        for (int i = 0; i >= 0; i = next[i])
            result.Add(symbols[i]);
        return result.ToArray();
    }

    /// <summary>Test hook: both merge strategies must give the same ids for any piece.</summary>
    internal (int[] Linear, int[] Heap) MergeBothWays(string piece)
    {
        var bytes = Encoding.UTF8.GetBytes(piece);
        return (MergeLinear(bytes), MergeWithHeap(bytes));
    }

    sealed class Tables
    {
        public required string?[] Pieces;
        public required TokenKind[] Kinds;
        public required byte[]?[] Plain;
        public required byte[]?[] Rendered;
        public required List<SpecialToken> PartitionTokens;
        public required SpecialTokenIds Special;
        public required ByteLevelBpeOptions Options;
        public required Dictionary<string, int> Encoder;
        public required Dictionary<long, (int Rank, int Merged)>? Merges;
        public required int[] ByteIds;

        /// <param name="mergePairs">Explicit merges, or null for tiktoken semantics (the rank of a merge is the id of the merged bytes).</param>
        public static Tables Build(
            IReadOnlyList<string?> pieces, IReadOnlyList<TokenKind> kinds, IReadOnlyList<(string Left, string Right)>? mergePairs, ByteLevelBpeOptions options)
        {
            ArgumentNullException.ThrowIfNull(pieces);
            ArgumentNullException.ThrowIfNull(kinds);
            ArgumentNullException.ThrowIfNull(options);
            int n = pieces.Count;
            if (kinds.Count != n)
                throw new ArgumentException($"{n} tokens but {kinds.Count} token types");

            var pieceArray = new string?[n];
            var kindArray = new TokenKind[n];
            var plain = new byte[]?[n];
            var rendered = new byte[]?[n];
            var encoder = new Dictionary<string, int>(n, StringComparer.Ordinal);
            var partition = new List<SpecialToken>();
            for (int id = 0; id < n; id++)
            {
                var piece = pieces[id];
                if (piece is null)
                    continue;
                var kind = kinds[id];
                pieceArray[id] = piece;
                kindArray[id] = kind;
                var strip = options.StripFlags is not null && options.StripFlags.TryGetValue(id, out var flags) ? flags : default;
                switch (kind)
                {
                    case TokenKind.Control or TokenKind.Unknown:
                        plain[id] = kind == TokenKind.Unknown ? Encoding.UTF8.GetBytes(piece) : [];
                        rendered[id] = Encoding.UTF8.GetBytes(piece);
                        partition.Add(new SpecialToken(piece, id, AlwaysMatched: false, strip.LStrip, strip.RStrip));
                        break;
                    case TokenKind.UserDefined:
                        plain[id] = rendered[id] = Encoding.UTF8.GetBytes(piece);
                        partition.Add(new SpecialToken(piece, id, AlwaysMatched: true, strip.LStrip, strip.RStrip));
                        break;
                    default:
                        var bytes = ByteLevelAlphabet.TryUnspell(piece);
                        if (bytes is not null)
                            encoder.TryAdd(piece, id);
                        // A token outside the byte alphabet cannot come out of BPE; it decodes as its spelling.
                        plain[id] = rendered[id] = bytes ?? Encoding.UTF8.GetBytes(piece);
                        break;
                }
            }

            var byteIds = new int[256];
            for (int b = 0; b < 256; b++)
                if (!encoder.TryGetValue(ByteLevelAlphabet.ByteToChar[b].ToString(), out byteIds[b]))
                    throw new ArgumentException($"the byte-level vocabulary has no token for byte 0x{b:X2} ('{ByteLevelAlphabet.ByteToChar[b]}')");

            var merges = mergePairs is null ? null : ExplicitMerges(mergePairs, encoder);

            int? Check(int? id, string name) =>
                id is null || (uint)id.Value < (uint)n && pieceArray[id.Value] is not null ? id : throw new ArgumentException($"{name} id {id} is not in the vocabulary");
            int? Find(string[] spellings)
            {
                foreach (var spelling in spellings)
                    for (int id = 0; id < n; id++)
                        if (kindArray[id] is TokenKind.Control or TokenKind.UserDefined && pieceArray[id] == spelling)
                            return id;
                return null;
            }
            var special = new SpecialTokenIds(
                Bos: Check(options.BosId, "BOS"),
                Eos: Check(options.EosId, "EOS"),
                Eot: Check(options.EotId, "EOT") ?? Find(KnownSpellings.EndOfTurn),
                Pad: Check(options.PadId, "pad"),
                Unk: Check(options.UnkId, "unknown"));

            return new Tables
            {
                Pieces = pieceArray,
                Kinds = kindArray,
                Plain = plain,
                Rendered = rendered,
                PartitionTokens = partition,
                Special = special,
                Options = options,
                Encoder = encoder,
                Merges = merges,
                ByteIds = byteIds,
            };
        }

        static Dictionary<long, (int Rank, int Merged)> ExplicitMerges(IReadOnlyList<(string Left, string Right)> pairs, Dictionary<string, int> encoder)
        {
            var lookup = encoder.GetAlternateLookup<ReadOnlySpan<char>>();
            var merges = new Dictionary<long, (int, int)>(pairs.Count, PairKeyComparer.Instance);
            var joined = new char[256];
            for (int rank = 0; rank < pairs.Count; rank++)
            {
                var (left, right) = pairs[rank];
                if (!encoder.TryGetValue(left, out int a))
                    throw new ArgumentException($"merge {rank} '{left} {right}': '{left}' is not in the vocabulary");
                if (!encoder.TryGetValue(right, out int b))
                    throw new ArgumentException($"merge {rank} '{left} {right}': '{right}' is not in the vocabulary");
                int length = left.Length + right.Length;
                if (joined.Length < length)
                    joined = new char[length * 2];
                left.CopyTo(joined);
                right.CopyTo(joined.AsSpan(left.Length));
                if (!lookup.TryGetValue(joined.AsSpan(0, length), out int m))
                    throw new ArgumentException($"merge {rank} '{left} {right}': the merged '{left + right}' is not in the vocabulary");
                merges[((long)a << 32) | (uint)b] = (rank, m); // a repeated pair takes its last rank, as Hugging Face's map does
            }
            return merges;
        }
    }

    /// <summary>
    /// Hashes a (left id, right id) key. long's own hash XORs the halves, which for two ids below 2^17
    /// leaves 17 bits and chains hundreds of thousands of merges into the same buckets.
    /// </summary>
    sealed class PairKeyComparer : IEqualityComparer<long>
    {
        public static readonly PairKeyComparer Instance = new();

        public bool Equals(long x, long y) => x == y;

        public int GetHashCode(long key) => (int)(((ulong)key * 0x9E3779B97F4A7C15UL) >> 32);
    }
}
