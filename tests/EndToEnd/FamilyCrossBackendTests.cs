using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Runtime.Generation;
using IlgpuLlm.Tests.Formats;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.EndToEnd;

/// <summary>
/// The numerics contract end to end at the families' real shapes: every family model (main and
/// stress sets), with f32, f16 and bf16 KV caches, gives the ILGPU CPU accelerator's bits
/// (<see cref="FamilyOracle"/>) at every prompt position on every SIMD level with 1 and 2 threads
/// (and on CUDA where a device exists) — from each of the model's three files (F32 GGUF, F32 and
/// BF16 safetensors hold the same values, so the BF16 weights' widening path must give the same
/// bits too), with the prompt fed whole (17 rows: the SIMD backend's tiled linear), packed beside
/// another prompt, or in chunks of 9, 5, 2 and 1 rows (its streaming and one-row linear paths).
/// </summary>
[Collection(BackendCollection.Name)]
public class FamilyCrossBackendTests
{
    public static IEnumerable<object[]> Cases() =>
        from c in FamilyOracle.Cases()
        from backend in ComparedBackends()
        select new object[] { c.Set, c.Family, c.Kv, backend };

    /// <summary>Every SIMD configuration, and CUDA where a device exists.</summary>
    internal static IEnumerable<string> ComparedBackends() =>
        TestBackends.All.Select(b => (string)b[0]).Where(name => name.StartsWith("simd-", StringComparison.Ordinal) || name == "cuda");

    internal static readonly int[] Chunks = [9, 5, 2, 1];

    [Theory]
    [MemberData(nameof(Cases))]
    public void Every_position_matches_the_ilgpu_cpu_accelerator_bit_for_bit(string set, string family, StorageType kvType, string backendName)
    {
        var oracle = FamilyOracle.Logits(set, family, kvType);
        int[] longPrompt = FamilyOracle.Long(set, family), shortPrompt = FamilyOracle.Short(set, family);
        foreach (var form in new[] { "model.gguf", "hf", "hf-bf16" })
        {
            string context = $"{set}/{family} {form}, {kvType.Name()} KV cache, {backendName} vs ilgpu-cpu";
            // The rows a forward pass takes set the sliding rings' capacity, which must not matter either.
            using (var model = Open(set, family, form, kvType, backendName, maxRows: longPrompt.Length + shortPrompt.Length))
            {
                var packed = Scoring.PackedLogits(model.Transformer, [longPrompt, shortPrompt]);
                AssertPositions(oracle[0], packed[0], model.Config.VocabSize, $"{context}: long prompt packed with the short one");
                AssertPositions(oracle[1], packed[1], model.Config.VocabSize, $"{context}: short prompt packed with the long one");
            }
            using (var model = Open(set, family, form, kvType, backendName, maxRows: longPrompt.Length))
            {
                AssertPositions(oracle[0], Scoring.Logits(model.Transformer, longPrompt, allPositions: true, slot: 1),
                    model.Config.VocabSize, $"{context}: long prompt alone in one pass");
                AssertPositions(oracle[1], Scoring.Logits(model.Transformer, shortPrompt, allPositions: true, slot: 0),
                    model.Config.VocabSize, $"{context}: short prompt alone");
            }
            using (var model = Open(set, family, form, kvType, backendName, maxRows: Chunks.Max()))
                AssertPositions(oracle[0], InChunks(model, longPrompt, Chunks), model.Config.VocabSize,
                    $"{context}: long prompt in chunks of {string.Join(", ", Chunks)}");
        }
    }

    static LoadedModel Open(string set, string family, string form, StorageType kvType, string backendName, int maxRows) =>
        ModelLoader.Open(SharedModels.Family(set, family, form), TestBackends.Get(backendName),
            new TransformerOptions { Slots = 2, KvType = kvType, ContextLength = 64, MaxRowsPerForward = maxRows });

    /// <summary>Every position's logits, feeding the prompt through the cache in chunks of the given sizes (the last repeated).</summary>
    internal static float[] InChunks(LoadedModel model, int[] tokens, int[] chunks)
    {
        int vocabulary = model.Config.VocabSize;
        var logits = new float[tokens.Length * vocabulary];
        for (int start = 0, c = 0; start < tokens.Length; c = Math.Min(c + 1, chunks.Length - 1))
        {
            int count = Math.Min(chunks[c], tokens.Length - start);
            var rows = Enumerable.Range(start, count).Select(p => new TokenRow(0, p, tokens[p])).ToArray();
            var forward = model.Transformer.Forward(rows, Enumerable.Range(0, count).ToArray());
            Assert.Empty(forward.Problems);
            model.Transformer.Backend.DownloadFloats(forward.Logits).CopyTo(logits, start * vocabulary);
            start += count;
        }
        return logits;
    }

    internal static void AssertPositions(float[] expected, float[] actual, int vocabulary, string context)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int p = 0; p < expected.Length / vocabulary; p++)
            Bits.Equal(expected.AsSpan(p * vocabulary, vocabulary), actual.AsSpan(p * vocabulary, vocabulary), $"{context}, position {p}");
    }
}
