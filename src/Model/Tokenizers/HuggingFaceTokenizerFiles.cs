using IlgpuLlm.Model.Formats;
using System.Text.Json;

namespace IlgpuLlm.Model.Tokenizers;

/// <summary>
/// Reads Hugging Face byte-level BPE tokenizers: <c>tokenizer.json</c> (model BPE with its added tokens,
/// normalizer, pre-tokenizer and post-processor), or the slow-tokenizer pair <c>vocab.json</c> +
/// <c>merges.txt</c> (GPT-2's <c>encoder.json</c> + <c>vocab.bpe</c>), with <c>tokenizer_config.json</c>
/// for special tokens, BOS/EOS and the chat template.
/// </summary>
public static class HuggingFaceTokenizerFiles
{
    /// <summary>Loads a <c>tokenizer.json</c>; <paramref name="configPath"/> (tokenizer_config.json) is optional.</summary>
    /// <exception cref="TokenizerLoadException">A file is missing, is not valid JSON, or describes a tokenizer this engine does not run.</exception>
    public static ByteLevelBpeTokenizer LoadTokenizerJson(string path, string? configPath = null)
    {
        using var doc = ParseJson(path);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
            throw new TokenizerLoadException(path, "not a Hugging Face tokenizer.json (no \"model\" object)");
        var type = model.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : "BPE";
        if (type != "BPE")
            throw new TokenizerLoadException(path, $"tokenizer model type '{type}' is not supported; only byte-level BPE is");
        if (!IsByteLevel(root))
            throw new TokenizerLoadException(path, "this tokenizer.json is not byte-level BPE (SentencePiece-style BPE with byte fallback); open the tokenizer.model beside it instead");

        try
        {
            var vocab = ReadVocabulary(model.TryGetProperty("vocab", out var v) ? v : throw new FormatException("model has no \"vocab\""));
            var merges = ReadMerges(model.TryGetProperty("merges", out var m) ? m : throw new FormatException("model has no \"merges\""));
            var added = new List<AddedToken>();
            if (root.TryGetProperty("added_tokens", out var addedTokens) && addedTokens.ValueKind == JsonValueKind.Array)
                foreach (var token in addedTokens.EnumerateArray())
                    added.Add(AddedToken.FromJson(token, TokenIds.FromJson(token.GetProperty("id"), $"added token {AddedTokenName(token)}")));

            bool nfc = ReadNormalizer(root.TryGetProperty("normalizer", out var n) ? n : default);
            var (preTokenizer, addPrefixSpace) = ReadPreTokenizer(root.GetProperty("pre_tokenizer"), path);
            var (templateBos, templateAddsBos) = ReadPostProcessor(root.TryGetProperty("post_processor", out var p) ? p : default);
            var config = configPath is null ? null : TokenizerConfig.Load(configPath);
            if (config is not null)
                added.AddRange(config.AddedTokens);

            return Build(vocab, merges, added, config, new ByteLevelBpeOptions
            {
                PreTokenizer = preTokenizer,
                AddPrefixSpace = addPrefixSpace,
                NormalizeNfc = nfc,
                IgnoreMerges = model.TryGetProperty("ignore_merges", out var im) && im.ValueKind == JsonValueKind.True,
            }, templateBos, templateAddsBos, applyLlama3Conventions: false);
        }
        catch (Exception e) when (e is FormatException or KeyNotFoundException or InvalidOperationException or ArgumentException or NotSupportedException)
        {
            throw new TokenizerLoadException(path, e.Message, e);
        }
    }

    /// <summary>
    /// Loads a vocab.json + merges.txt pair (or GPT-2's encoder.json + vocab.bpe). Which split pattern
    /// applies is not in these files: Qwen2's tokenizer_config.json names its class (Qwen2Tokenizer:
    /// Qwen2 pattern and NFC), the Llama 3 vocabulary is recognised by its fingerprint (Llama 3 pattern,
    /// ignore_merges and Meta's special tokens), and anything else gets GPT-2's pattern.
    /// </summary>
    public static ByteLevelBpeTokenizer LoadVocabAndMerges(string vocabPath, string mergesPath, string? configPath = null)
    {
        Dictionary<string, int> vocab;
        using (var doc = ParseJson(vocabPath))
        {
            try
            {
                vocab = ReadVocabulary(doc.RootElement);
            }
            catch (Exception e) when (e is FormatException or InvalidOperationException)
            {
                throw new TokenizerLoadException(vocabPath, e.Message, e);
            }
        }

        var lines = TokenizerFiles.ReadAllLines(mergesPath);
        var merges = new List<(string, string)>(lines.Length);
        for (int i = 0; i < lines.Length; i++)
        {
            var line = lines[i];
            if (line.Length == 0 || i == 0 && line.StartsWith("#version", StringComparison.Ordinal))
                continue;
            merges.Add(ByteLevelBpeTokenizer.SplitMerge(line)
                ?? throw new TokenizerLoadException(mergesPath, $"line {i + 1} is not two tokens separated by one space: '{line}'"));
        }

        var config = configPath is null ? null : TokenizerConfig.Load(configPath);
        var added = new List<AddedToken>(config?.AddedTokens ?? []);
        // Slow tokenizers keep extra tokens in added_tokens.json ({"<|endoftext|>": 151643, …}).
        var addedTokensJson = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(vocabPath))!, "added_tokens.json");
        if (File.Exists(addedTokensJson))
        {
            using var doc = ParseJson(addedTokensJson);
            try
            {
                foreach (var entry in doc.RootElement.EnumerateObject())
                {
                    int id = TokenIds.FromJson(entry.Value, $"token '{Excerpt.Of(entry.Name, 40)}'");
                    if (added.All(a => a.Id != id))
                        added.Add(new AddedToken(id, entry.Name, Special: true, false, false));
                }
            }
            catch (Exception e) when (e is FormatException or InvalidOperationException)
            {
                throw new TokenizerLoadException(addedTokensJson, $"not a JSON object of token → id: {e.Message}", e);
            }
        }

        var cls = config?.TokenizerClass ?? "";
        bool qwen2 = cls.StartsWith("Qwen2Tokenizer", StringComparison.Ordinal);
        bool llama3 = !qwen2 && IsLlama3Base(vocab);
        try
        {
            return Build(vocab, merges, added, config, new ByteLevelBpeOptions
            {
                PreTokenizer = qwen2 ? PreTokenizer.Qwen2 : llama3 ? PreTokenizer.Llama3 : PreTokenizer.Gpt2,
                NormalizeNfc = qwen2,
                IgnoreMerges = llama3,
            }, templateBos: null, templateAddsBos: null, applyLlama3Conventions: llama3);
        }
        catch (FormatException e)
        {
            throw new TokenizerLoadException(vocabPath, e.Message, e);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            throw new TokenizerLoadException(mergesPath, $"vocabulary {vocabPath} and merges do not fit together: {e.Message}", e);
        }
    }

    /// <summary>The chat template stored in a tokenizer_config.json, or null.</summary>
    public static string? ReadChatTemplate(string configPath) => TokenizerConfig.Load(configPath).ChatTemplate;

    static ByteLevelBpeTokenizer Build(
        Dictionary<string, int> vocab, List<(string, string)> merges, List<AddedToken> added, TokenizerConfig? config,
        ByteLevelBpeOptions options, string? templateBos, bool? templateAddsBos, bool applyLlama3Conventions)
    {
        if (applyLlama3Conventions && added.Count == 0)
        {
            int first = vocab.Values.Max() + 1;
            added.AddRange(TiktokenFile.Llama3SpecialTokens.Select((text, i) => new AddedToken(first + i, text, Special: true, false, false)));
        }

        int size = Math.Max(vocab.Count == 0 ? 0 : vocab.Values.Max() + 1, added.Count == 0 ? 0 : added.Max(a => a.Id) + 1);
        var pieces = new string?[size];
        var kinds = new TokenKind[size];
        foreach (var (piece, id) in vocab)
        {
            if (id < 0)
                throw new FormatException($"token '{piece}' has negative id {id}");
            if (pieces[id] is not null)
                throw new FormatException($"id {id} is given to both '{pieces[id]}' and '{piece}'");
            pieces[id] = piece;
            kinds[id] = TokenKind.Normal;
        }
        var strip = new Dictionary<int, (bool, bool)>();
        foreach (var token in added)
        {
            // An added token may restate a vocabulary entry; it then takes the added token's role.
            pieces[token.Id] = token.Content;
            kinds[token.Id] = token.Special ? TokenKind.Control : TokenKind.UserDefined;
            if (token.LStrip || token.RStrip)
                strip[token.Id] = (token.LStrip, token.RStrip);
        }

        int? IdOf(string? text)
        {
            if (text is null)
                return null;
            for (int id = 0; id < size; id++)
                if (pieces[id] == text && kinds[id] != TokenKind.Normal)
                    return id;
            return vocab.TryGetValue(text, out int normal) ? normal : null;
        }

        var bosText = config is not null && config.HasBos ? config.BosToken : templateBos ?? (applyLlama3Conventions ? "<|begin_of_text|>" : null);
        var eosText = config?.EosToken ?? (applyLlama3Conventions ? "<|end_of_text|>" : null);
        int? bos = IdOf(bosText);
        return new ByteLevelBpeTokenizer(pieces, kinds, merges, options with
        {
            BosId = bos,
            EosId = IdOf(eosText),
            PadId = IdOf(config?.PadToken),
            UnkId = IdOf(config?.UnkToken),
            AddBos = bos.HasValue && (config?.AddBosToken ?? templateAddsBos ?? applyLlama3Conventions),
            StripFlags = strip,
        });
    }

    static bool IsLlama3Base(Dictionary<string, int> vocab)
    {
        if (vocab.Count != 128000)
            return false;
        var byId = new byte[vocab.Count][];
        foreach (var (piece, id) in vocab)
        {
            if ((uint)id >= (uint)byId.Length)
                return false;
            byId[id] = ByteLevelAlphabet.TryUnspell(piece) ?? [];
        }
        return KnownVocabularies.Fingerprint(byId) == KnownVocabularies.Llama3Base;
    }

    /// <summary>Whether a tokenizer.json is byte-level BPE (as opposed to SentencePiece-style BPE with byte fallback).</summary>
    internal static bool IsByteLevelTokenizerJson(string path)
    {
        using var doc = ParseJson(path);
        return doc.RootElement.ValueKind == JsonValueKind.Object && IsByteLevel(doc.RootElement);
    }

    static bool IsByteLevel(JsonElement root)
    {
        static bool HasByteLevel(JsonElement e) => e.ValueKind == JsonValueKind.Object && (
            e.TryGetProperty("type", out var t) && t.GetString() == "ByteLevel" ||
            e.TryGetProperty("pretokenizers", out var list) && list.ValueKind == JsonValueKind.Array && list.EnumerateArray().Any(HasByteLevel) ||
            e.TryGetProperty("decoders", out var decoders) && decoders.ValueKind == JsonValueKind.Array && decoders.EnumerateArray().Any(HasByteLevel));
        return root.TryGetProperty("pre_tokenizer", out var pre) && HasByteLevel(pre)
            || root.TryGetProperty("decoder", out var decoder) && HasByteLevel(decoder);
    }

    static Dictionary<string, int> ReadVocabulary(JsonElement vocab)
    {
        if (vocab.ValueKind != JsonValueKind.Object)
            throw new FormatException("the vocabulary is not a JSON object of token → id");
        var result = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in vocab.EnumerateObject())
        {
            result[entry.Name] = TokenIds.FromJson(entry.Value, $"token '{Excerpt.Of(entry.Name, 40)}'");
        }
        return result;
    }

    static List<(string, string)> ReadMerges(JsonElement merges)
    {
        var result = new List<(string, string)>(merges.GetArrayLength());
        int i = 0;
        foreach (var merge in merges.EnumerateArray())
        {
            // Older files write "a b", newer ones ["a", "b"].
            if (merge.ValueKind == JsonValueKind.String)
                result.Add(ByteLevelBpeTokenizer.SplitMerge(merge.GetString()!) ?? throw new FormatException($"merge {i} '{merge.GetString()}' is not two tokens separated by a space"));
            else if (merge.ValueKind == JsonValueKind.Array && merge.GetArrayLength() == 2)
                result.Add((merge[0].GetString()!, merge[1].GetString()!));
            else
                throw new FormatException($"merge {i} is neither \"a b\" nor [\"a\", \"b\"]");
            i++;
        }
        return result;
    }

    /// <summary>True for NFC; no normalizer is false; anything else is not supported.</summary>
    static bool ReadNormalizer(JsonElement normalizer)
    {
        if (normalizer.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null)
            return false;
        var type = normalizer.GetProperty("type").GetString();
        if (type == "NFC")
            return true;
        if (type == "Sequence")
        {
            bool nfc = false;
            foreach (var inner in normalizer.GetProperty("normalizers").EnumerateArray())
                nfc |= ReadNormalizer(inner);
            return nfc;
        }
        throw new NotSupportedException($"normalizer '{type}' is not supported (only NFC)");
    }

    static string AddedTokenName(JsonElement token) =>
        token.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String ? $"'{Excerpt.Of(content.GetString()!, 40)}'" : "(no content)";

    static (PreTokenizer PreTokenizer, bool AddPrefixSpace) ReadPreTokenizer(JsonElement pre, string path)
    {
        var stages = new List<PreTokenizer>();
        bool addPrefixSpace = false;
        void Visit(JsonElement e)
        {
            var type = e.GetProperty("type").GetString();
            switch (type)
            {
                case "Sequence":
                    foreach (var inner in e.GetProperty("pretokenizers").EnumerateArray())
                        Visit(inner);
                    break;
                case "ByteLevel":
                    addPrefixSpace |= e.TryGetProperty("add_prefix_space", out var aps) && aps.ValueKind == JsonValueKind.True;
                    if (!e.TryGetProperty("use_regex", out var useRegex) || useRegex.ValueKind == JsonValueKind.True)
                        stages.Add(PreTokenizer.Gpt2);
                    break;
                case "Split":
                    var behavior = e.TryGetProperty("behavior", out var b) ? b.GetString() : "Isolated";
                    if (behavior != "Isolated" || e.TryGetProperty("invert", out var inv) && inv.ValueKind == JsonValueKind.True)
                        throw new NotSupportedException($"Split pre-tokenizer with behavior '{behavior}' (or invert) is not supported; only Isolated");
                    var pattern = e.GetProperty("pattern");
                    stages.Add(pattern.TryGetProperty("Regex", out var regex)
                        ? PreTokenizer.FromRegex(regex.GetString()!, path)
                        : PreTokenizer.FromRegex(System.Text.RegularExpressions.Regex.Escape(pattern.GetProperty("String").GetString()!), path));
                    break;
                default:
                    throw new NotSupportedException($"pre-tokenizer '{type}' is not supported (Sequence, Split and ByteLevel are)");
            }
        }
        if (pre.ValueKind == JsonValueKind.Object)
            Visit(pre);
        return (stages.Count == 0 ? PreTokenizer.None : PreTokenizer.Sequence(stages.ToArray()), addPrefixSpace);
    }

    /// <summary>A TemplateProcessing that starts single sequences with a special token names BOS and adds it.</summary>
    static (string? Bos, bool? AddsBos) ReadPostProcessor(JsonElement post)
    {
        if (post.ValueKind != JsonValueKind.Object)
            return (null, null);
        var type = post.GetProperty("type").GetString();
        if (type == "Sequence")
        {
            foreach (var inner in post.GetProperty("processors").EnumerateArray())
            {
                var found = ReadPostProcessor(inner);
                if (found.AddsBos.HasValue)
                    return found;
            }
            return (null, null);
        }
        if (type != "TemplateProcessing" || !post.TryGetProperty("single", out var single) || single.GetArrayLength() == 0)
            return (null, null);
        var first = single[0];
        return first.TryGetProperty("SpecialToken", out var specialToken)
            ? (specialToken.GetProperty("id").GetString(), true)
            : (null, false);
    }

    static JsonDocument ParseJson(string path)
    {
        var bytes = TokenizerFiles.ReadAllBytes(path);
        if (Formats.Utf8Text.Problem(bytes) is string invalid)
            throw new TokenizerLoadException(path, $"not a UTF-8 JSON file: {invalid}");
        try
        {
            return JsonDocument.Parse(bytes);
        }
        catch (JsonException e)
        {
            throw new TokenizerLoadException(path, $"not valid JSON: {e.Message}", e);
        }
    }

    internal sealed record AddedToken(int Id, string Content, bool Special, bool LStrip, bool RStrip)
    {
        public static AddedToken FromJson(JsonElement e, int id)
        {
            bool Flag(string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.True;
            return new AddedToken(id, e.GetProperty("content").GetString()!, Flag("special"), Flag("lstrip"), Flag("rstrip"));
        }
    }

    /// <summary>The parts of tokenizer_config.json a tokenizer needs.</summary>
    internal sealed class TokenizerConfig
    {
        public List<AddedToken> AddedTokens { get; } = [];
        public string? TokenizerClass { get; private set; }
        public bool HasBos { get; private set; }
        public string? BosToken { get; private set; }
        public string? EosToken { get; private set; }
        public string? PadToken { get; private set; }
        public string? UnkToken { get; private set; }
        public bool? AddBosToken { get; private set; }
        public string? ChatTemplate { get; private set; }

        public static TokenizerConfig Load(string path)
        {
            using var doc = ParseJson(path);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new TokenizerLoadException(path, "tokenizer_config.json is not a JSON object");
            try
            {
                var config = new TokenizerConfig();
                if (root.TryGetProperty("added_tokens_decoder", out var decoder))
                    foreach (var entry in decoder.EnumerateObject())
                        config.AddedTokens.Add(AddedToken.FromJson(entry.Value, TokenIds.FromText(entry.Name, $"added token {AddedTokenName(entry.Value)}")));
                config.TokenizerClass = root.TryGetProperty("tokenizer_class", out var cls) ? cls.GetString() : null;
                config.HasBos = root.TryGetProperty("bos_token", out _);
                config.BosToken = TokenText(root, "bos_token");
                config.EosToken = TokenText(root, "eos_token");
                config.PadToken = TokenText(root, "pad_token");
                config.UnkToken = TokenText(root, "unk_token");
                if (root.TryGetProperty("add_bos_token", out var addBos) && addBos.ValueKind is JsonValueKind.True or JsonValueKind.False)
                    config.AddBosToken = addBos.GetBoolean();
                config.ChatTemplate = ReadTemplate(root);
                return config;
            }
            catch (Exception e) when (e is FormatException or KeyNotFoundException or InvalidOperationException)
            {
                throw new TokenizerLoadException(path, e.Message, e);
            }
        }

        // A special token is written either as its text or as an AddedToken object with "content".
        static string? TokenText(JsonElement root, string name) =>
            !root.TryGetProperty(name, out var v) ? null
            : v.ValueKind == JsonValueKind.String ? v.GetString()
            : v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var content) ? content.GetString()
            : null;

        // chat_template is a string, or a list of {name, template} where "default" is the chat one.
        static string? ReadTemplate(JsonElement root)
        {
            if (!root.TryGetProperty("chat_template", out var template))
                return null;
            if (template.ValueKind == JsonValueKind.String)
                return template.GetString();
            if (template.ValueKind == JsonValueKind.Array)
                foreach (var named in template.EnumerateArray())
                    if (named.TryGetProperty("name", out var name) && name.GetString() == "default")
                        return named.GetProperty("template").GetString();
            return null;
        }
    }
}
