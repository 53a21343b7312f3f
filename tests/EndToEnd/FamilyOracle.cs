using System.Collections.Concurrent;
using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Runtime.Generation;
using IlgpuLlm.Tests.Formats;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.EndToEnd;

/// <summary>
/// Every family model's logits from ILGPU's CPU accelerator, the bit-exact oracle, computed once
/// per test run and per KV-cache type and shared by every test that compares a backend with it:
/// the accelerator runs every GPU thread and barrier in software, so each model costs seconds.
/// <para>
/// One forward pass packs two prompts in two cache slots: <see cref="Long"/> (the first 17 tokens
/// of the family's prompt B: longer than every sliding window, more than 16 keys, 16 rows and more
/// for the SIMD backend's tiled linear) and <see cref="Short"/> (the first 3 of prompt A). A
/// backend run of either prompt alone, in any chunks, must give these bits at every position —
/// which checks the backends against each other and batch invariance on the oracle at once. The
/// accelerator's cost grows with the rows (every row is a group of 32 software threads meeting at
/// barriers in each norm and attention), so the prompts are no longer than that.
/// </para>
/// </summary>
public static class FamilyOracle
{
    /// <summary>Tokens of the long prompt: 16 + 1 rows in one pass reach the SIMD backend's tiled linear and its leftover row.</summary>
    public const int LongLength = 17;

    /// <summary>Tokens of the short prompt.</summary>
    public const int ShortLength = 3;

    static readonly ConcurrentDictionary<(string Model, StorageType Kv), Lazy<float[][]>> Results = new();

    public static int[] Long(string set, string family) =>
        References.Tokens(References.Family(set, family, "ref", "promptB.tokens"))[..LongLength];

    public static int[] Short(string set, string family) =>
        References.Tokens(References.Family(set, family, "ref", "promptA.tokens"))[..ShortLength];

    /// <summary>[long, short]: every position's logits ([tokens × vocabulary]) of each prompt, from one packed forward pass.</summary>
    public static float[][] Logits(string set, string family, StorageType kvType) =>
        Logits(SharedModels.Family(set, family, "model.gguf"), Long(set, family), Short(set, family), kvType);

    /// <summary>
    /// The same for any model file and its two prompts (a model's prompts are always the same, so
    /// the file and the KV type name the result).
    /// </summary>
    public static float[][] Logits(string modelPath, int[] longPrompt, int[] shortPrompt, StorageType kvType) =>
        Results.GetOrAdd((modelPath, kvType), key => new Lazy<float[][]>(() =>
        {
            using var model = ModelLoader.Open(key.Model, TestBackends.Get("ilgpu-cpu"),
                new TransformerOptions { Slots = 2, KvType = key.Kv, ContextLength = 64 });
            return Scoring.PackedLogits(model.Transformer, [longPrompt, shortPrompt]);
        })).Value;

    /// <summary>(set, family, KV type) of every family model, as xunit theory data.</summary>
    public static IEnumerable<(string Set, string Family, StorageType Kv)> Cases() =>
        from set in SharedModels.FamilySets
        from family in SharedModels.Families
        from kv in new[] { StorageType.F32, StorageType.F16, StorageType.BF16 }
        select (set, family, kv);
}
