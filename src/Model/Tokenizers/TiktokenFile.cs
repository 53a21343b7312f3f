
namespace IlgpuLlm.Model.Tokenizers;

/// <summary>
/// Reads a tiktoken BPE file, Llama 3's <c>tokenizer.model</c>: one "base64-token rank" line per
/// token. The file carries neither the split pattern nor the special tokens; Meta's llama3
/// tokenizer.py supplies them, and so does this loader.
/// </summary>
public static class TiktokenFile
{
    /// <summary>
    /// Meta's Llama 3 special tokens in id order, starting right after the last rank (tokenizer.py's
    /// <c>special_tokens</c> list: ten named ones, then reserved tokens 5..250; 256 in all).
    /// </summary>
    public static IReadOnlyList<string> Llama3SpecialTokens { get; } = BuildLlama3SpecialTokens();

    static string[] BuildLlama3SpecialTokens()
    {
        const int reserved = 256;
        var names = new List<string>
        {
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|reserved_special_token_0|>",
            "<|reserved_special_token_1|>",
            "<|reserved_special_token_2|>",
            "<|reserved_special_token_3|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|reserved_special_token_4|>",
            "<|eot_id|>",
        };
        for (int i = 5; i < reserved - 5; i++)
            names.Add($"<|reserved_special_token_{i}|>");
        return names.ToArray();
    }

    /// <summary>Loads a Llama 3 tiktoken file with Meta's special tokens and split pattern.</summary>
    /// <exception cref="TokenizerLoadException">The file is missing or a line is not "base64 rank", or ranks repeat or leave gaps.</exception>
    public static ByteLevelBpeTokenizer Load(string path)
    {
        var ranks = ReadRanks(path);
        try
        {
            return ForLlama3(ranks);
        }
        catch (ArgumentException e)
        {
            throw new TokenizerLoadException(path, e.Message, e);
        }
    }

    /// <summary>
    /// A Llama 3 tokenizer over the given base vocabulary (index = rank = id): Meta's special tokens follow
    /// the last rank, BOS is &lt;|begin_of_text|&gt; and added by default, EOS &lt;|end_of_text|&gt;, end of turn
    /// &lt;|eot_id|&gt;, and pieces that are whole tokens skip the merges, as tiktoken does.
    /// </summary>
    internal static ByteLevelBpeTokenizer ForLlama3(IReadOnlyList<byte[]> ranks)
    {
        int first = ranks.Count;
        var specials = Llama3SpecialTokens.Select((text, i) => (first + i, text)).ToList();
        return ByteLevelBpeTokenizer.FromRanks(ranks, specials, new ByteLevelBpeOptions
        {
            PreTokenizer = PreTokenizer.Llama3,
            IgnoreMerges = true,
            AddBos = true,
            BosId = first,
            EosId = first + 1,
            EotId = first + 9,
        });
    }

    static byte[][] ReadRanks(string path)
    {
        var lines = TokenizerFiles.ReadAllLines(path);
        var byRank = new Dictionary<int, byte[]>(lines.Length);
        for (int i = 0; i < lines.Length; i++)
        {
            var line = lines[i];
            if (line.Length == 0)
                continue;
            int space = line.IndexOf(' ');
            byte[] token;
            if (space <= 0 || !int.TryParse(line.AsSpan(space + 1), out int rank) || rank < 0)
                throw new TokenizerLoadException(path, $"line {i + 1} is not \"base64-token rank\": '{Shorten(line)}'");
            try
            {
                token = Convert.FromBase64String(line[..space]);
            }
            catch (FormatException e)
            {
                throw new TokenizerLoadException(path, $"line {i + 1}: '{Shorten(line[..space])}' is not base64", e);
            }
            if (!byRank.TryAdd(rank, token))
                throw new TokenizerLoadException(path, $"line {i + 1}: rank {rank} appears twice");
        }
        if (byRank.Count == 0)
            throw new TokenizerLoadException(path, "the tiktoken file has no tokens");
        var ranks = new byte[byRank.Count][];
        for (int rank = 0; rank < ranks.Length; rank++)
            ranks[rank] = byRank.TryGetValue(rank, out var token)
                ? token
                : throw new TokenizerLoadException(path, $"ranks are not 0..{ranks.Length - 1}: rank {rank} is missing");
        return ranks;
    }

    /// <summary>Whether the file's first line looks like tiktoken's "base64 rank".</summary>
    internal static bool LooksLikeTiktoken(ReadOnlySpan<byte> head)
    {
        int end = head.IndexOf((byte)'\n');
        var line = end < 0 ? head : head[..end];
        int space = line.IndexOf((byte)' ');
        if (space <= 0 || space == line.Length - 1)
            return false;
        foreach (var b in line[..space])
            if (!(char.IsAsciiLetterOrDigit((char)b) || b is (byte)'+' or (byte)'/' or (byte)'='))
                return false;
        foreach (var b in line[(space + 1)..].TrimEnd((byte)'\r'))
            if (!char.IsAsciiDigit((char)b))
                return false;
        return true;
    }

    static string Shorten(string s) => s.Length > 60 ? s[..60] + "…" : s;
}
