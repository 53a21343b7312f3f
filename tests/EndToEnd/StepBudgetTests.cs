using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Runtime.Generation;
using IlgpuLlm.Tests.Support;
using Xunit.Abstractions;

namespace IlgpuLlm.Tests.EndToEnd;

/// <summary>
/// What one decoded token costs the device, counted by the backends where it happens (launches,
/// host waits, allocations, copies; see <see cref="DeviceCounters"/>), for a model with Llama
/// 3.2 1B's op structure (GQA, llama3 rope scaling, tied embeddings) at toy width, so it runs on
/// ILGPU's CPU accelerator. A decode step uploads its step batch once and downloads the sampled
/// ids and problem flags once, and allocates nothing, whatever the layer count.
/// </summary>
[Collection(BackendCollection.Name)]
public class StepBudgetTests(ITestOutputHelper output)
{
    public static IEnumerable<object[]> Cases() =>
        from backend in new[] { "ilgpu-cpu", $"simd-{SimdLevels.Best.Name()}-t2" }
        from layers in new[] { 2, 5 }
        select new object[] { backend, layers };

    /// <summary>Counts of each decode step of a generation (prompt of 5 tokens, then greedy steps).</summary>
    public static List<DeviceCounts> DecodeSteps(string backendName, int layers, int slots, int steps)
    {
        var backend = TestBackends.Get(backendName);
        var llama3 = RandomModel.GetPreset(ModelFamily.Llama, "llama-3.2-1b").Config.RopeScaling.Llama3;
        var config = RandomModel.Shape(ModelFamily.Llama, hidden: 32, layers: layers, heads: 4, kvHeads: 2, headDim: 16,
            intermediate: 48, vocab: 300, context: 64, epsilon: 1e-5f, theta: 500_000f, tied: true, llama3: llama3);
        using var checkpoint = RandomModel.Create(config, StorageType.F16, 1).ToCheckpoint();
        using var model = new Transformer(checkpoint, backend, new TransformerOptions { Slots = slots, MaxRowsPerForward = 16 });
        var requests = Enumerable.Range(0, slots)
            .Select(i => new GenerationRequest([1, 5, 6 + i, 7, 8], steps + 1, SamplerSettings.Greedy) { Sequence = i }).ToArray();
        var marks = new List<DeviceCounts>();
        int seen = 0;
        new Generator(model, stopTokens: []).Run(requests, slots, onToken: (_, _) =>
        {
            // The last sequence's token of a step arrives after everything that step did on the device.
            if (++seen % slots == 0)
                marks.Add(backend.Counters.Snapshot());
        });
        return [.. marks.Zip(marks.Skip(1), (before, after) => after - before)];
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void A_decode_step_uploads_once_downloads_once_waits_once_and_allocates_nothing(string backendName, int layers)
    {
        var launches = new HashSet<long>();
        foreach (int slots in new[] { 1, 2 })
        {
            var steps = DecodeSteps(backendName, layers, slots, steps: 3);
            Assert.Equal(3, steps.Count);
            foreach (var step in steps)
            {
                output.WriteLine($"{backendName}, {layers} layers, {slots} sequences: {step}");
                Assert.True(step.Allocations == 0 && step.Frees == 0, $"{backendName}, {layers} layers, {slots} sequences: {step}");
                Assert.True(step.Waits <= 1, $"{backendName}, {layers} layers, {slots} sequences: {step}");
                Assert.True(step.Uploads <= 1 && step.Downloads <= 1, $"{backendName}, {layers} layers, {slots} sequences: {step}");
                launches.Add(step.Launches);
            }
        }
        // No op is launched per row or per sequence: every decode step of this model launches the same.
        Assert.Single(launches);
    }
}
