using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Formats;
using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Tests.EndToEnd;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Formats;

/// <summary>
/// Files made to hurt: tensors whose data were swapped, lying lengths that would pour a file into
/// an error line, invalid UTF-8, regular expressions that backtrack for ever, token ids that
/// would size gigabyte arrays, vocabularies that parse but cannot work. Each is refused with a
/// message that names the file and the place, quickly.
/// </summary>
public class HostileFileTests
{
    [Fact]
    public void A_gguf_whose_tensor_offsets_were_swapped_is_refused_as_llama_cpp_refuses_it()
    {
        var writer = TinyLlama.Gguf();
        using (var gguf = GgufFile.FromBytes("probe", writer.Build()))
        {
            // attn_k and attn_v have the same shape: swapping their offsets keeps every range inside the file.
            var k = gguf.Tensors.Single(t => t.Name == "blk.0.attn_k.weight");
            var v = gguf.Tensors.Single(t => t.Name == "blk.0.attn_v.weight");
            writer.OffsetOverrides[k.Name] = (ulong)v.RelativeOffset;
            writer.OffsetOverrides[v.Name] = (ulong)k.RelativeOffset;
        }
        var e = Assert.Throws<ModelFormatException>(() => GgufFile.FromBytes("swapped.gguf", writer.Build()));
        Assert.Contains("tensor 'blk.0.attn_k.weight': data at offset", e.Message);
        Assert.Contains("expected", e.Message);
    }

    [Fact]
    public void A_gguf_with_a_gap_between_tensors_is_refused()
    {
        var writer = TinyLlama.Gguf();
        long last;
        using (var gguf = GgufFile.FromBytes("probe", writer.Build()))
            last = gguf.Tensors[^1].RelativeOffset;
        writer.OffsetOverrides[writer.Tensors[^1].Name] = (ulong)(last + 32);
        writer.Tensors[^1] = writer.Tensors[^1] with { Data = [.. new byte[32], .. writer.Tensors[^1].Data] };
        Assert.Throws<ModelFormatException>(() => GgufFile.FromBytes("gap.gguf", writer.Build()));
    }

    [Fact]
    public void A_key_of_a_lying_length_is_quoted_as_a_short_escaped_excerpt()
    {
        var writer = TinyLlama.Gguf().Raw(new string('\0', 1600), 99, _ => { });
        var e = Assert.Throws<ModelFormatException>(() => GgufFile.FromBytes("lying.gguf", writer.Build()));
        Assert.True(e.Message.Length < 400, e.Message);
        Assert.DoesNotContain('\0', e.Message);
        Assert.Contains("\\0\\0", e.Message);
    }

    [Fact]
    public void Invalid_utf8_in_config_json_names_the_file_and_the_byte()
    {
        using var temp = new TempFolder();
        string folder = TinyLlama.WriteHfFolder(temp.Root, "bad-utf8");
        var bytes = File.ReadAllBytes(Path.Combine(folder, "config.json"));
        int at = Encoding.ASCII.GetString(bytes).IndexOf("llama", StringComparison.Ordinal);
        bytes[at + 1] = 0xFF;
        File.WriteAllBytes(Path.Combine(folder, "config.json"), bytes);
        var e = Assert.Throws<ModelFormatException>(() => ModelCheckpoint.Open(folder));
        Assert.Contains("config.json", e.Message);
        Assert.Contains($"invalid UTF-8 at byte {at + 1} (0xFF)", e.Message);
    }

    [Fact]
    public void Invalid_utf8_in_a_safetensors_header_names_the_file_and_the_byte()
    {
        using var temp = new TempFolder();
        string folder = TinyLlama.WriteHfFolder(temp.Root, "bad-header");
        string path = Path.Combine(folder, "model.safetensors");
        var bytes = File.ReadAllBytes(path);
        int at = Encoding.Latin1.GetString(bytes).IndexOf("embed_tokens", StringComparison.Ordinal);
        bytes[at] = 0xC3; // a lead byte followed by ASCII
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<ModelFormatException>(() => ModelCheckpoint.Open(folder));
        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains($"invalid UTF-8 at byte {at}", e.Message);
    }

    /// <summary>A minimal byte-level tokenizer.json whose Split pattern is <paramref name="pattern"/>.</summary>
    static string TokenizerJson(TempFolder temp, string pattern, Action<JsonObject>? edit = null)
    {
        // Every byte of GPT-2's byte-to-character alphabet, as a byte-level vocabulary must have.
        var vocab = new JsonObject();
        int shifted = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            vocab[((char)(printable ? b : 256 + shifted++)).ToString()] = b;
        }
        var json = new JsonObject
        {
            ["model"] = new JsonObject { ["type"] = "BPE", ["vocab"] = vocab, ["merges"] = new JsonArray() },
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = pattern }, ["behavior"] = "Isolated" },
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["use_regex"] = false }),
            },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel" },
        };
        edit?.Invoke(json);
        return temp.Write("tokenizer.json", json.ToJsonString());
    }

    [Fact]
    public void A_catastrophically_backtracking_split_pattern_runs_in_linear_time()
    {
        using var temp = new TempFolder();
        var tokenizer = TokenizerFactory.Open(TokenizerJson(temp, "(a+)+$"));
        var clock = Stopwatch.StartNew();
        var ids = tokenizer.Encode(new string('a', 40) + "!", addBos: false, parseSpecial: false);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"{clock.Elapsed}");
        Assert.Equal(41, ids.Length);
    }

    [Fact]
    public void A_backtracking_pattern_the_linear_engine_cannot_run_fails_clearly_within_its_timeout()
    {
        using var temp = new TempFolder();
        string path = TokenizerJson(temp, "(?=(a+)+$)a");
        var tokenizer = TokenizerFactory.Open(path);
        var e = Assert.Throws<InvalidOperationException>(() => tokenizer.Encode(new string('a', 40) + "!", addBos: false, parseSpecial: false));
        Assert.Contains(path, e.Message);
        Assert.Contains("(?=(a+)+$)a", e.Message);
        Assert.Contains("backtracks", e.Message);
    }

    [Theory]
    [InlineData("-1")]
    [InlineData("2147483647")]
    [InlineData("2e9")]
    [InlineData("\"seven\"")]
    public void A_token_id_outside_any_vocabulary_names_the_file_and_the_entry(string id)
    {
        using var temp = new TempFolder();
        string path = TokenizerJson(temp, "a", json => json["model"]!["vocab"]!["bb"] = JsonNode.Parse(id));
        var e = Assert.Throws<TokenizerLoadException>(() => TokenizerFactory.Open(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("token 'bb' has id", e.Message);

        path = TokenizerJson(temp, "a", json => json["added_tokens"] = new JsonArray(
            new JsonObject { ["id"] = JsonNode.Parse(id), ["content"] = "<s>", ["special"] = true }));
        e = Assert.Throws<TokenizerLoadException>(() => TokenizerFactory.Open(path));
        Assert.Contains("added token '<s>' has id", e.Message);
    }

    static byte[] Llama2cTokenizer(IEnumerable<string> pieces)
    {
        using var stream = new MemoryStream();
        using var w = new BinaryWriter(stream);
        var list = pieces.ToList();
        w.Write(Math.Max(1, list.Max(p => Encoding.UTF8.GetByteCount(p))));
        foreach (var piece in list)
        {
            var bytes = Encoding.UTF8.GetBytes(piece);
            w.Write(0f);
            w.Write(bytes.Length);
            w.Write(bytes);
        }
        w.Flush();
        return stream.ToArray();
    }

    [Fact]
    public void A_vocabulary_of_only_empty_tokens_is_refused()
    {
        using var temp = new TempFolder();
        string path = temp.Write("tokenizer.bin", Llama2cTokenizer(Enumerable.Repeat("", 300)));
        var e = Assert.Throws<TokenizerLoadException>(() => TokenizerFactory.Open(path));
        Assert.Contains("none of its 300 tokens has any text", e.Message);
    }

    [Fact]
    public void A_vocabulary_of_only_control_tokens_is_refused()
    {
        using var temp = new TempFolder();
        var writer = TinyLlama.Gguf().String("tokenizer.ggml.model", "llama")
            .Int32Array("tokenizer.ggml.token_type", Enumerable.Repeat(3, TinyLlama.Vocab).ToArray());
        string path = temp.Write("control.gguf", writer.Build());
        var e = Assert.ThrowsAny<Exception>(() => ModelLoader.OpenTokenizer(path));
        Assert.Contains("every one of its 16 tokens is a control token", e.Message);
    }

    [Fact]
    public void A_llama2c_tokenizer_shorter_than_the_models_vocabulary_is_refused()
    {
        using var temp = new TempFolder();
        File.Copy(References.Stories("stories260K.bin"), temp.File("stories260K.bin"));
        var original = TokenizerFactory.Open(References.Stories("tok512.bin"));
        string shorter = temp.Write("tokenizer.bin", Llama2cTokenizer(Enumerable.Range(0, 300).Select(i => original.GetPiece(i))));
        using var backend = new SimdBackend(1);
        var e = Assert.Throws<InvalidOperationException>(() => ModelLoader.Open(temp.File("stories260K.bin"), backend, new TransformerOptions(), shorter));
        Assert.Contains("has 300 tokens but the llama2.c checkpoint", e.Message);
    }
}
