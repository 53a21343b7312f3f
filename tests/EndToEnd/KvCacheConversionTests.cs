using System.Runtime.InteropServices;
using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Runtime;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Runtime.Generation;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.EndToEnd;

/// <summary>
/// A KV cache converted between storage types keeps its sequences (issue 5): converting narrows the
/// stored f32 values exactly as storing them in the new type would have, so decoding continues as
/// from a cache of that type holding the same bits; widening is exact, so f16 → f32 → f16 changes
/// nothing; every slot survives (sliding rings included); f16 overflows are counted per slot.
/// </summary>
[Collection(BackendCollection.Name)]
public class KvCacheConversionTests
{
    /// <summary>(backend, model): stories260K and Gemma 3 (sliding rings that wrap) on SIMD, the micro Llama on ILGPU's CPU accelerator.</summary>
    public static IEnumerable<object[]> Cases()
    {
        foreach (var backend in TestModels.Backends().Select(b => (string)b[0]))
        {
            if (backend == "ilgpu-cpu")
                yield return [backend, "micro"];
            else
            {
                yield return [backend, "stories"];
                yield return [backend, "gemma3"];
            }
        }
    }

    public static IEnumerable<object[]> CasesByType() =>
        Cases().SelectMany(c => new[] { StorageType.F16, StorageType.BF16 }.Select(t => new object[] { c[0], c[1], t }));

    /// <summary>Rows per forward pass: small, so Gemma 3's sliding rings (window + rows − 1 = 11) wrap within a test.</summary>
    const int Rows = 4;

    static LoadedModel Open(string backend, string model, StorageType kvType, int slots = 1)
    {
        string path = model switch
        {
            "stories" => References.Stories("stories260K-f32.gguf"),
            "gemma3" => References.Family("main", "gemma3", "model.gguf"),
            _ => TestModels.PathFor("ilgpu-cpu"),
        };
        return ModelLoader.Open(path, TestBackends.Get(backend), new TransformerOptions { Slots = slots, MaxRowsPerForward = Rows, KvType = kvType });
    }

    static int[][] Prompts(LoadedModel model, params int[] lengths) => TestModels.Prompts(model.Config.VocabSize, lengths);

    /// <summary>The logits after feeding one token to each (slot, position) in one forward pass, per row.</summary>
    static float[][] Step(LoadedModel model, params TokenRow[] rows)
    {
        var forward = model.Transformer.Forward(rows, Enumerable.Range(0, rows.Length).ToArray());
        Assert.Empty(forward.Problems);
        var values = model.Transformer.Backend.DownloadFloats(forward.Logits);
        int vocabulary = model.Config.VocabSize;
        return Enumerable.Range(0, rows.Length).Select(r => values.AsSpan(r * vocabulary, vocabulary).ToArray()).ToArray();
    }

    /// <summary>Greedy decoding of one slot from the logits after its prompt: the logits of every step.</summary>
    static List<float[]> Greedy(LoadedModel model, float[] last, int position, int steps, int slot = 0)
    {
        var all = new List<float[]>();
        for (int i = 0; i < steps; i++)
        {
            last = Step(model, new TokenRow(slot, position + i, Sampling.Argmax(last)))[0];
            all.Add(last);
        }
        return all;
    }

    static void AssertSameLogits(IReadOnlyList<float[]> expected, IReadOnlyList<float[]> actual, string context)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
            Bits.Equal(expected[i], actual[i], $"{context}, step {i}");
    }

    /// <summary>Every layer's key and value cache as raw bytes (keys of layer l at 2l, values at 2l + 1).</summary>
    static byte[][] Snapshot(LoadedModel model)
    {
        var cache = model.Transformer.Cache;
        var backend = model.Transformer.Backend;
        return Enumerable.Range(0, cache.Layout.Layers)
            .SelectMany(l => new[] { backend.DownloadBytes(cache.Keys(l)), backend.DownloadBytes(cache.Values(l)) }).ToArray();
    }

    static void Restore(LoadedModel model, byte[][] snapshot)
    {
        var cache = model.Transformer.Cache;
        for (int l = 0; l < cache.Layout.Layers; l++)
        {
            model.Transformer.Backend.Upload(cache.Keys(l), snapshot[2 * l]);
            model.Transformer.Backend.Upload(cache.Values(l), snapshot[2 * l + 1]);
        }
    }

    static float[] Widen(byte[] stored, StorageType type) => type switch
    {
        StorageType.F32 => MemoryMarshal.Cast<byte, float>(stored).ToArray(),
        StorageType.F16 => MemoryMarshal.Cast<byte, ushort>(stored).ToArray().Select(HalfBits.F16ToF32).ToArray(),
        _ => MemoryMarshal.Cast<byte, ushort>(stored).ToArray().Select(HalfBits.Bf16ToF32).ToArray(),
    };

    [Theory]
    [MemberData(nameof(CasesByType))]
    public void Converting_an_f32_cache_narrows_it_and_decoding_continues_as_from_a_cache_of_that_type(string backend, string modelName, StorageType type)
    {
        using var model = Open(backend, modelName, StorageType.F32);
        var prompt = Prompts(model, 13)[0];
        var last = Scoring.Logits(model.Transformer, prompt, allPositions: false);
        var stored = Snapshot(model);

        Assert.Equal(0, model.Transformer.Cache.ConvertTo(type));
        Assert.Equal(type, model.Transformer.Cache.Type);
        var converted = Snapshot(model);
        for (int i = 0; i < stored.Length; i++)
        {
            Assert.Equal(type, (i % 2 == 0 ? model.Transformer.Cache.Keys(i / 2) : model.Transformer.Cache.Values(i / 2)).Type);
            Bits.Equal(TestValues.Stored(Widen(stored[i], StorageType.F32), type), converted[i], $"layer {i / 2} {(i % 2 == 0 ? "keys" : "values")}");
        }
        var continued = Greedy(model, last, prompt.Length, 6);

        // A model whose cache was of that type from the start, holding the same bits, continues the same way.
        using var native = Open(backend, modelName, type);
        var nativeLast = Scoring.Logits(native.Transformer, prompt, allPositions: false);
        // Layer 0's keys and values come from the embeddings alone, so the native prefill stored exactly
        // the converted bits there. Later layers differ: the native prefill's attention already read narrowed
        // values, so its hidden states (and the keys made from them) are not the f32 run's.
        Bits.Equal(converted[0], Snapshot(native)[0], "layer 0 keys of a cache of that type from the start");
        Restore(native, converted);
        AssertSameLogits(continued, Greedy(native, last, prompt.Length, 6), $"{type.Name()} cache from the start holding the converted bits");
        _ = nativeLast;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void An_f16_cache_widened_to_f32_and_narrowed_back_decodes_bit_identically(string backend, string modelName)
    {
        using var converted = Open(backend, modelName, StorageType.F16);
        using var untouched = Open(backend, modelName, StorageType.F16);
        var prompt = Prompts(converted, 9)[0];
        var last = Scoring.Logits(converted.Transformer, prompt, allPositions: false);
        Bits.Equal(Scoring.Logits(untouched.Transformer, prompt, allPositions: false), last, "prefill");
        var before = Snapshot(converted);

        // Widening is exact: the f32 cache holds the f16 values themselves.
        Assert.Equal(0, converted.Transformer.Cache.ConvertTo(StorageType.F32));
        var widened = Snapshot(converted);
        for (int i = 0; i < before.Length; i++)
            Bits.Equal(MemoryMarshal.AsBytes(Widen(before[i], StorageType.F16).AsSpan()), widened[i], $"widened array {i}");

        // Back to f16: the same bytes, so decoding continues exactly as in a cache that never left f16.
        // (Decoding while the cache is f32 would not: a step attends to its own new key, stored unrounded.)
        Assert.Equal(0, converted.Transformer.Cache.ConvertTo(StorageType.F16));
        var narrowed = Snapshot(converted);
        for (int i = 0; i < before.Length; i++)
            Bits.Equal(before[i], narrowed[i], $"array {i} after the round trip");
        AssertSameLogits(Greedy(untouched, last, prompt.Length, 6), Greedy(converted, last, prompt.Length, 6), "f16 → f32 → f16");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Conversion_keeps_the_sequences_of_every_slot(string backend, string modelName)
    {
        var lengths = new[] { 5, 14, 3 };
        using var batch = Open(backend, modelName, StorageType.F32, slots: 3);
        var prompts = Prompts(batch, lengths);
        var lasts = prompts.Select((p, slot) => Scoring.Logits(batch.Transformer, p, allPositions: false, slot)).ToArray();

        var perSlot = new long[3];
        Assert.Equal(0, batch.Transformer.Cache.ConvertTo(StorageType.BF16, perSlot));
        Assert.Equal(new long[3], perSlot);

        // All three continue together, one row each per forward pass.
        var batched = new List<float[]>[3];
        for (int s = 0; s < 3; s++)
            batched[s] = [];
        var current = lasts;
        for (int step = 0; step < 5; step++)
        {
            current = Step(batch, Enumerable.Range(0, 3).Select(s => new TokenRow(s, lengths[s] + step, Sampling.Argmax(current[s]))).ToArray());
            for (int s = 0; s < 3; s++)
                batched[s].Add(current[s]);
        }

        // Each alone: prefill in f32, convert, decode — the same logits bit for bit.
        for (int s = 0; s < 3; s++)
        {
            using var alone = Open(backend, modelName, StorageType.F32);
            var last = Scoring.Logits(alone.Transformer, prompts[s], allPositions: false);
            Bits.Equal(lasts[s], last, $"slot {s} prefill");
            Assert.Equal(0, alone.Transformer.Cache.ConvertTo(StorageType.BF16));
            AssertSameLogits(Greedy(alone, last, lengths[s], 5), batched[s], $"slot {s}");
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void An_f16_conversion_that_overflows_reports_it_per_slot(string backend, string modelName)
    {
        using var model = Open(backend, modelName, StorageType.F32, slots: 3);
        var prompts = Prompts(model, 4, 6, 2);
        for (int s = 0; s < 3; s++)
            Scoring.Logits(model.Transformer, prompts[s], allPositions: false, s);

        // Plant values in slot 1: two that pass the largest half and one that rounds to it; and one in slot 2.
        var cache = model.Transformer.Cache;
        var backendInstance = model.Transformer.Backend;
        int width = cache.Layout.RowWidth;
        int last = cache.Layout.Layers - 1;
        long Offset(int layer, int slot, int position) => ((long)slot * cache.Layout.Capacity(layer) + position) * width;
        var keys = MemoryMarshal.Cast<byte, float>(backendInstance.DownloadBytes(cache.Keys(0))).ToArray();
        keys[Offset(0, 1, 0) + 1] = 70000f;
        keys[Offset(0, 1, 5)] = -65520f;
        keys[Offset(0, 1, 3)] = 65519f;
        backendInstance.Upload(cache.Keys(0), MemoryMarshal.AsBytes(keys.AsSpan()));
        var values = MemoryMarshal.Cast<byte, float>(backendInstance.DownloadBytes(cache.Values(last))).ToArray();
        values[Offset(last, 2, 1) + width - 1] = 1e9f;
        backendInstance.Upload(cache.Values(last), MemoryMarshal.AsBytes(values.AsSpan()));

        var perSlot = new long[3];
        Assert.Equal(3, cache.ConvertTo(StorageType.F16, perSlot));
        Assert.Equal(new long[] { 0, 2, 1 }, perSlot);
        var halves = MemoryMarshal.Cast<byte, ushort>(backendInstance.DownloadBytes(cache.Keys(0)));
        Assert.Equal(0x7C00, halves[(int)Offset(0, 1, 0) + 1]);
        Assert.Equal(0xFC00, halves[(int)Offset(0, 1, 5)]);
        Assert.Equal(0x7BFF, halves[(int)Offset(0, 1, 3)]);
        Assert.Equal(0x7C00, MemoryMarshal.Cast<byte, ushort>(backendInstance.DownloadBytes(cache.Values(last)))[(int)Offset(last, 2, 1) + width - 1]);

        // Converting to the type it has is nothing; a wrong-sized count span is refused.
        Assert.Equal(0, cache.ConvertTo(StorageType.F16, perSlot));
        Assert.Equal(new long[3], perSlot);
        Assert.Throws<ArgumentException>(() => cache.ConvertTo(StorageType.F32, new long[2]));
    }

    [Theory]
    [MemberData(nameof(TestModels.Backends), MemberType = typeof(TestModels))]
    public void A_new_cache_holds_zeros_so_converting_its_unused_positions_reports_no_overflow(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        var layout = new KvCacheLayout(2, 2, 8, 2, 16, 4, [null, 4]);
        // Leave large values in memory the cache may be given next.
        var dirty = Enumerable.Range(0, 2 * 16 * 16).Select(i => 1e9f + i).ToArray();
        for (int i = 0; i < 4; i++)
        {
            var tensor = backend.Allocate(TensorType.F32, dirty.Length, "dirty");
            backend.Upload(tensor, MemoryMarshal.AsBytes(dirty.AsSpan()));
            backend.Free(tensor);
        }
        using var cache = new KvCache(backend, layout, StorageType.F32);
        for (int l = 0; l < 2; l++)
            Assert.All(backend.DownloadBytes(cache.Keys(l)).Concat(backend.DownloadBytes(cache.Values(l))), b => Assert.Equal(0, b));
        Assert.Equal(0, cache.ConvertTo(StorageType.F16));
    }
}
