using System.Text.Json;
using System.Text.Json.Nodes;
using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Tokenizers;

public class FactoryTests
{
    static string Shared(params string[] parts) => SharedData.Path(["tokenizers", .. parts]);

    [Fact]
    public void OpensEachFileKindByContentAndName()
    {
        Assert.IsType<SentencePieceBpeTokenizer>(TokenizerFactory.Open(Shared("llama2-spm", "tokenizer.model")));
        Assert.IsType<SentencePieceBpeTokenizer>(TokenizerFactory.Open(Shared("llama2-spm", "tokenizer.bin")));
        Assert.IsType<SentencePieceBpeTokenizer>(TokenizerFactory.Open(Shared("llama2-spm"))); // folder: tokenizer.model first
        Assert.IsType<ByteLevelBpeTokenizer>(TokenizerFactory.Open(Shared("llama3", "tokenizer.model")));
        // Naming either file of a pair finds the other (one of each kind, to keep the test quick).
        Assert.Equal(151646, TokenizerFactory.Open(Shared("qwen2", "merges.txt")).VocabSize);
        var llama3 = TokenizerFactory.Open(Shared("llama3-gpt2-layout", "encoder.json"));
        Assert.Equal(128256, llama3.VocabSize);
        Assert.Same(PreTokenizer.Llama3, ((ByteLevelBpeTokenizer)llama3).PreTokenizer);
    }

    [Fact]
    public void Qwen2TokenizerJsonGivesTheSameIds()
    {
        using var temp = new TempFolder();
        var added = new JsonArray(
            AddedToken(151643, "<|endoftext|>"), AddedToken(151644, "<|im_start|>"), AddedToken(151645, "<|im_end|>"));
        // The shape of Qwen2's tokenizer.json: NFC, the Qwen2 Split regex, then ByteLevel without its own regex.
        var json = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = added,
            ["normalizer"] = new JsonObject { ["type"] = "NFC" },
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = PreTokenizer.Qwen2Pattern }, ["behavior"] = "Isolated", ["invert"] = false },
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = false, ["use_regex"] = false }),
            },
            ["post_processor"] = new JsonObject { ["type"] = "ByteLevel" },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel" },
            ["model"] = new JsonObject { ["type"] = "BPE", ["ignore_merges"] = false, ["vocab"] = "VOCAB", ["merges"] = "MERGES" },
        };
        var merges = File.ReadAllLines(Shared("qwen2", "merges.txt")).Where(l => l.Length > 0).Select(l => JsonSerializer.Serialize(l));
        temp.Write("tokenizer.json", Splice(json, File.ReadAllText(Shared("qwen2", "vocab.json")), merges));
        temp.Write("tokenizer_config.json", File.ReadAllText(Shared("qwen2", "tokenizer_config.json")));

        var tok = TokenizerFactory.Open(temp.Root);
        var bpe = Assert.IsType<ByteLevelBpeTokenizer>(tok);
        Assert.Same(PreTokenizer.Qwen2, bpe.PreTokenizer);
        Assert.True(bpe.NormalizesNfc);
        Assert.Equal(TestTokenizers.Qwen2.Special, tok.Special);
        var failures = VocabTestVectors.Failures(VocabTestVectors.Load("tokenizers", "qwen2", "ggml-vocab-qwen2.gguf"), s => tok.Encode(s, false, false));
        Assert.True(failures.Length == 0, failures);
        Assert.Equal([151644, 14990, 151645], tok.Encode("<|im_start|>hello<|im_end|>", false, true));
    }

    [Fact]
    public void Llama3TokenizerJsonGivesTheSameIds()
    {
        using var temp = new TempFolder();
        var added = new JsonArray(TiktokenFile.Llama3SpecialTokens.Select((t, i) => (JsonNode)AddedToken(128000 + i, t)).ToArray());
        // The shape of Meta-Llama-3's tokenizer.json: Split regex + ByteLevel, ignore_merges, BOS from TemplateProcessing.
        var json = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = PreTokenizer.Llama3Pattern }, ["behavior"] = "Isolated", ["invert"] = false },
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = false }),
            },
            ["post_processor"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["processors"] = new JsonArray(
                    new JsonObject { ["type"] = "ByteLevel" },
                    new JsonObject
                    {
                        ["type"] = "TemplateProcessing",
                        ["single"] = new JsonArray(
                            new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<|begin_of_text|>", ["type_id"] = 0 } },
                            new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
                    }),
            },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel" },
            ["model"] = new JsonObject { ["type"] = "BPE", ["ignore_merges"] = true, ["vocab"] = "VOCAB", ["merges"] = "MERGES" },
        };
        var merges = File.ReadAllLines(Shared("llama3-gpt2-layout", "vocab.bpe")).Where(l => l.Length > 0)
            .Select(l => JsonSerializer.Serialize(l.Split(' '))); // the newer ["a", "b"] form
        var path = temp.Write("tokenizer.json", Splice(json, File.ReadAllText(Shared("llama3-gpt2-layout", "encoder.json")), merges));

        var tok = TokenizerFactory.Open(path);
        Assert.True(tok.AddBosByDefault);
        Assert.Equal(128000, tok.Special.Bos);
        Assert.Equal(128009, tok.Special.Eot);
        var failures = VocabTestVectors.Failures(VocabTestVectors.Load("tokenizers", "llama3", "ggml-vocab-llama-bpe.gguf"), s => tok.Encode(s, false, false));
        Assert.True(failures.Length == 0, failures);
    }

    [Fact]
    public void ReadsTheChatTemplateFromTokenizerConfig()
    {
        var template = HuggingFaceTokenizerFiles.ReadChatTemplate(Shared("qwen2", "tokenizer_config.json"));
        Assert.NotNull(template);
        Assert.StartsWith("{% for message in messages %}", template);
        Assert.Equal(ChatFormat.ChatML, ChatTemplate.Detect(template)!.Format);
    }

    // Puts the (large) vocabulary and merges in as raw JSON text: building them as nodes is slow.
    static string Splice(JsonObject json, string vocabJson, IEnumerable<string> mergesJson) =>
        json.ToJsonString()
            .Replace("\"VOCAB\"", vocabJson, StringComparison.Ordinal)
            .Replace("\"MERGES\"", "[" + string.Join(",", mergesJson) + "]", StringComparison.Ordinal);

    static JsonObject AddedToken(int id, string content) => new()
    {
        ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
    };
}
