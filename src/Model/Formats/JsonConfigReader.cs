using System.Text.Json;

namespace IlgpuLlm.Model.Formats;

/// <summary>
/// Typed reads from a transformers JSON config object. An absent key and a JSON null both mean
/// "not set" (transformers treats them alike); a value of the wrong type is an error that names
/// the file, the key, what was expected and what was found.
/// </summary>
internal readonly struct JsonConfigReader(string path, JsonElement element, string keyPrefix = "")
{
    public string Path => path;

    public JsonElement Element => element;

    public static JsonDocument Parse(string path)
    {
        if (FileKind.WhyNotRegularFile(path) is string why)
            throw new ModelFormatException(path, why);
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(path, $"cannot read the file ({e.Message})", e);
        }
        if (Utf8Text.Problem(bytes) is string invalid)
            throw new ModelFormatException(path, $"not a UTF-8 JSON file: {invalid}");
        try
        {
            var document = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 32, CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                var kind = document.RootElement.ValueKind;
                document.Dispose();
                throw new ModelFormatException(path, $"expected a JSON object, found {kind}");
            }
            return document;
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, $"not valid JSON ({e.Message})", e);
        }
    }

    string Name(string key) => keyPrefix + key;

    ModelFormatException Wrong(string key, string expected, JsonElement found) =>
        new(path, $"key '{Name(key)}': expected {expected}, found {Describe(found)}");

    static string Describe(JsonElement e)
    {
        string raw = e.GetRawText();
        return $"{e.ValueKind.ToString().ToLowerInvariant()} {(raw.Length > 60 ? raw[..60] + "…" : raw)}";
    }

    public bool Has(string key) => TryGet(key, out _);

    public bool TryGet(string key, out JsonElement value)
    {
        if (element.TryGetProperty(key, out value) && value.ValueKind != JsonValueKind.Null)
            return true;
        value = default;
        return false;
    }

    /// <summary>True when the key is present with an explicit JSON null (transformers: "disabled").</summary>
    public bool IsExplicitNull(string key) =>
        element.TryGetProperty(key, out var value) && value.ValueKind == JsonValueKind.Null;

    public int? OptionalInt(string key)
    {
        if (!TryGet(key, out var value)) return null;
        if (value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int i)) return i;
        // Integral values written as 2048.0 are still integers.
        if (value.ValueKind == JsonValueKind.Number && value.TryGetDouble(out double d) && d == Math.Floor(d) && d is >= int.MinValue and <= int.MaxValue)
            return (int)d;
        throw Wrong(key, "an int32", value);
    }

    public int RequiredPositiveInt(string key) =>
        OptionalPositiveInt(key) ?? throw new ModelFormatException(path, $"key '{Name(key)}' is missing");

    public int? OptionalPositiveInt(string key)
    {
        int? value = OptionalInt(key);
        if (value is <= 0)
            throw new ModelFormatException(path, $"key '{Name(key)}': expected a positive integer, found {value}");
        return value;
    }

    public double? OptionalDouble(string key)
    {
        if (!TryGet(key, out var value)) return null;
        if (value.ValueKind == JsonValueKind.Number && value.TryGetDouble(out double d) && double.IsFinite(d)) return d;
        throw Wrong(key, "a finite number", value);
    }

    public float? OptionalFloat(string key)
    {
        double? value = OptionalDouble(key);
        if (value is { } d && !float.IsFinite((float)d))
            throw new ModelFormatException(path, $"key '{Name(key)}': {d} is out of float32 range");
        return value is { } v ? (float)v : null;
    }

    public double RequiredDouble(string key) =>
        OptionalDouble(key) ?? throw new ModelFormatException(path, $"key '{Name(key)}' is missing");

    public string? OptionalString(string key)
    {
        if (!TryGet(key, out var value)) return null;
        return value.ValueKind == JsonValueKind.String ? value.GetString() : throw Wrong(key, "a string", value);
    }

    public bool? OptionalBool(string key)
    {
        if (!TryGet(key, out var value)) return null;
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Wrong(key, "true or false", value),
        };
    }

    public JsonConfigReader? OptionalObject(string key)
    {
        if (!TryGet(key, out var value)) return null;
        return value.ValueKind == JsonValueKind.Object
            ? new JsonConfigReader(path, value, $"{Name(key)}.")
            : throw Wrong(key, "an object", value);
    }

    /// <summary>An int or an array of ints (transformers' <c>eos_token_id</c>); empty when absent.</summary>
    public int[] IntOrIntArray(string key)
    {
        if (!TryGet(key, out var value)) return [];
        if (value.ValueKind == JsonValueKind.Number)
            return [OptionalInt(key)!.Value];
        if (value.ValueKind != JsonValueKind.Array)
            throw Wrong(key, "an int or an array of ints", value);
        var result = new List<int>();
        foreach (var item in value.EnumerateArray())
            result.Add(item.ValueKind == JsonValueKind.Number && item.TryGetInt32(out int i)
                ? i
                : throw Wrong(key, "an array of ints", value));
        return [.. result];
    }

    public string[]? OptionalStringArray(string key)
    {
        if (!TryGet(key, out var value)) return null;
        if (value.ValueKind != JsonValueKind.Array)
            throw Wrong(key, "an array of strings", value);
        var result = new List<string>();
        foreach (var item in value.EnumerateArray())
            result.Add(item.ValueKind == JsonValueKind.String ? item.GetString()! : throw Wrong(key, "an array of strings", value));
        return [.. result];
    }
}
