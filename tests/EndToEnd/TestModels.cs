using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Tests.Formats;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.EndToEnd;

/// <summary>
/// Models for end-to-end tests: stories260K (trained) on the SIMD backends, and a micro Llama
/// (hidden 8, one layer, vocabulary 16) that ILGPU's CPU accelerator runs in reasonable time.
/// </summary>
public static class TestModels
{
    static readonly Lazy<string> MicroPath = new(() =>
    {
        var path = Path.Combine(Path.GetTempPath(), $"ilgpullm-micro-{Environment.ProcessId}.gguf");
        File.WriteAllBytes(path, TinyLlama.Gguf().UInt32("llama.context_length", 64).Build());
        AppDomain.CurrentDomain.ProcessExit += (_, _) => File.Delete(path);
        return path;
    });

    /// <summary>The backend's model: the micro model on ILGPU's CPU accelerator (slow per op), stories260K elsewhere.</summary>
    public static LoadedModel Open(string backendName, int slots, int maxRowsPerForward = 512) =>
        ModelLoader.Open(PathFor(backendName), TestBackends.Get(backendName),
            new TransformerOptions { Slots = slots, MaxRowsPerForward = maxRowsPerForward });

    /// <summary>
    /// A model by name: "default" is <see cref="PathFor"/>'s model for the backend, "set/family" a
    /// family model's GGUF (../shared/models/families), "quant/family/type" a quantized model
    /// (../shared/models/quant).
    /// </summary>
    public static LoadedModel Open(string backendName, string model, int slots, StorageType kvType = StorageType.F32) =>
        ModelLoader.Open(ModelPath(backendName, model), TestBackends.Get(backendName), new TransformerOptions { Slots = slots, KvType = kvType });

    static string ModelPath(string backendName, string model) => model.Split('/') switch
    {
        ["default"] => PathFor(backendName),
        ["quant", var family, var type] => QuantizedModelTests.Quant(family, $"model-{type}.gguf"),
        [var set, var family] => References.Family(set, family, "model.gguf"),
        _ => throw new ArgumentException($"no test model named {model}"),
    };

    /// <summary>"set/family" of every family model.</summary>
    public static IEnumerable<string> Families() =>
        SharedModels.FamilySets.SelectMany(set => SharedModels.Families.Select(family => $"{set}/{family}"));

    /// <summary>"quant/family/type" of every quantized model.</summary>
    public static IEnumerable<string> QuantizedModels() =>
        from family in new[] { "llama3", "qwen2" } from type in QuantizedModelTests.Types select $"quant/{family}/{type}";

    /// <summary>Backends that run the family models in batch-invariance checks: SIMD (best level) with 1 and 2 threads, and CUDA where a device exists.</summary>
    public static IEnumerable<string> FamilyBackends() => Backends().Select(b => (string)b[0]).Where(name => !TestBackends.IsCpuAccelerator(name));

    public static string PathFor(string backendName) =>
        TestBackends.IsCpuAccelerator(backendName) ? MicroPath.Value : References.Stories("stories260K-f32.gguf");

    /// <summary>Prompts of the given lengths with ids drawn from a fixed seed, BOS first.</summary>
    public static int[][] Prompts(int vocabulary, params int[] lengths)
    {
        var random = new Random(42);
        return lengths.Select(n => Enumerable.Range(0, n).Select(i => i == 0 ? 1 : random.Next(3, vocabulary)).ToArray()).ToArray();
    }

    /// <summary>
    /// Backends for end-to-end bit-identity checks: SIMD (best level) with 1 and 2 threads, ILGPU's
    /// CPU accelerator, and CUDA where a device exists.
    /// </summary>
    public static IEnumerable<object[]> Backends()
    {
        string best = IlgpuLlm.Kernels.SimdLevels.Name(IlgpuLlm.Kernels.SimdLevels.Best);
        yield return [$"simd-{best}-t1"];
        yield return [$"simd-{best}-t2"];
        yield return ["ilgpu-cpu"];
        if (TestBackends.HasCuda)
            yield return ["cuda"];
    }
}
