using System.Globalization;
using System.Text.Json;
using IlgpuLlm.Model.Formats;

namespace IlgpuLlm.Model.Tokenizers;

/// <summary>
/// Token ids read from tokenizer files. A vocabulary is an array indexed by id, so an id from a
/// file sizes an allocation: −1 would index outside it and 2^31 − 1 would ask for gigabytes. Every
/// id a tokenizer file states passes through here and must lie in [0, <see cref="Limit"/>).
/// </summary>
internal static class TokenIds
{
    /// <summary>16 times the largest real vocabulary (Gemma 3's 262,144 tokens).</summary>
    public const int Limit = 1 << 22;

    /// <summary>The id a JSON value states for <paramref name="entry"/> ("token 'x'", "added token 'y'").</summary>
    public static int FromJson(JsonElement value, string entry)
    {
        if (value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out long id))
            return Check(id, entry);
        string text = value.ValueKind == JsonValueKind.Number ? value.GetRawText() : value.ValueKind.ToString().ToLowerInvariant();
        throw new FormatException($"{entry} has id {Excerpt.Of(text, 40)}, which is not a token id (a whole number from 0 to {Limit - 1})");
    }

    /// <summary>An id written as text (a key of added_tokens_decoder).</summary>
    public static int FromText(string text, string entry) =>
        long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long id)
            ? Check(id, entry)
            : throw new FormatException($"{entry} has id '{Excerpt.Of(text, 40)}', which is not a token id (a whole number from 0 to {Limit - 1})");

    public static int Check(long id, string entry) => id is >= 0 and < Limit
        ? (int)id
        : throw new FormatException($"{entry} has id {id}; token ids run from 0 to {Limit - 1}");
}
