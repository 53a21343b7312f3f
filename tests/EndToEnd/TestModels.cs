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

    public static string PathFor(string backendName) =>
        TestBackends.IsSlow(backendName) ? MicroPath.Value : References.Stories("stories260K-f32.gguf");

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
