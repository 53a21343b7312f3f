using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Runtime.Generation;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.EndToEnd;

/// <summary>
/// The quantized models of ../shared/models/quant (Llama 3 and Qwen2 shapes in every quantized
/// type) give the ILGPU CPU accelerator's bits (<see cref="FamilyOracle"/>, f32 KV cache) at every
/// prompt position on every SIMD level with 1 and 2 threads (and on CUDA where a device exists),
/// with the prompt fed whole, packed beside another prompt, or in chunks of 9, 5, 2 and 1 rows:
/// quantization changes the weights, never the order (docs/NUMERICS.md, "Quantized weights"), so
/// a quantized model is bound by the same cross-backend and batch-invariance promise as any other.
/// </summary>
[Collection(BackendCollection.Name)]
public class QuantizedCrossBackendTests
{
    public static IEnumerable<object[]> Cases() =>
        from family in new[] { "llama3", "qwen2" }
        from type in QuantizedModelTests.Types
        from backend in FamilyCrossBackendTests.ComparedBackends()
        select new object[] { family, type, backend };

    static string ModelPath(string family, string type) => QuantizedModelTests.Quant(family, $"model-{type}.gguf");

    static int[] Long(string family) => References.Tokens(QuantizedModelTests.Quant(family, "ref", "F32", "promptB.tokens"))[..FamilyOracle.LongLength];

    static int[] Short(string family) => References.Tokens(QuantizedModelTests.Quant(family, "ref", "F32", "promptA.tokens"))[..FamilyOracle.ShortLength];

    [Theory]
    [MemberData(nameof(Cases))]
    public void Every_position_matches_the_ilgpu_cpu_accelerator_bit_for_bit(string family, string type, string backendName)
    {
        int[] longPrompt = Long(family), shortPrompt = Short(family);
        var oracle = FamilyOracle.Logits(ModelPath(family, type), longPrompt, shortPrompt, StorageType.F32);
        string context = $"quant/{family} {type}, {backendName} vs ilgpu-cpu";
        using (var model = Open(family, type, backendName, maxRows: longPrompt.Length + shortPrompt.Length))
        {
            var packed = Scoring.PackedLogits(model.Transformer, [longPrompt, shortPrompt]);
            FamilyCrossBackendTests.AssertPositions(oracle[0], packed[0], model.Config.VocabSize, $"{context}: long prompt packed with the short one");
            FamilyCrossBackendTests.AssertPositions(oracle[1], packed[1], model.Config.VocabSize, $"{context}: short prompt packed with the long one");
        }
        using (var model = Open(family, type, backendName, maxRows: longPrompt.Length))
        {
            FamilyCrossBackendTests.AssertPositions(oracle[0], Scoring.Logits(model.Transformer, longPrompt, allPositions: true, slot: 1),
                model.Config.VocabSize, $"{context}: long prompt alone in one pass");
            FamilyCrossBackendTests.AssertPositions(oracle[1], Scoring.Logits(model.Transformer, shortPrompt, allPositions: true, slot: 0),
                model.Config.VocabSize, $"{context}: short prompt alone");
        }
        var chunks = FamilyCrossBackendTests.Chunks;
        using (var model = Open(family, type, backendName, maxRows: chunks.Max()))
            FamilyCrossBackendTests.AssertPositions(oracle[0], FamilyCrossBackendTests.InChunks(model, longPrompt, chunks), model.Config.VocabSize,
                $"{context}: long prompt in chunks of {string.Join(", ", chunks)}");
    }

    static LoadedModel Open(string family, string type, string backendName, int maxRows) =>
        ModelLoader.Open(ModelPath(family, type), TestBackends.Get(backendName),
            new TransformerOptions { Slots = 2, ContextLength = 64, MaxRowsPerForward = maxRows });
}
