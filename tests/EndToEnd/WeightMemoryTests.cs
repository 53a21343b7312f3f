using System.Runtime.InteropServices;
using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Runtime.Generation;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.EndToEnd;

/// <summary>
/// The SIMD backend's two places for weights — the mapped file in place, or a copy in memory
/// advised for 2 MiB pages — give the same bits, the copy owns its bytes, and it is all returned
/// when the model is disposed.
/// </summary>
[Collection(BackendCollection.Name)]
public class WeightMemoryTests
{
    [Theory]
    [InlineData("llama3", 1)]
    [InlineData("gemma2", 2)]
    [InlineData("qwen2", 2)]
    public void Copied_and_mapped_weights_give_the_same_logits_bits(string family, int threads)
    {
        string path = References.Family("stress", family, "model.gguf");
        var tokens = References.Tokens(References.Family("stress", family, "ref", "promptB.tokens"));
        float[] Logits(WeightMemory memory)
        {
            using var backend = new SimdBackend(threads, weightMemory: memory);
            using var model = ModelLoader.Open(path, backend, new TransformerOptions());
            var prompt = Scoring.Logits(model.Transformer, tokens, allPositions: true);
            var step = model.Transformer.Forward([new TokenRow(0, tokens.Length, 7)], [0]);
            return [.. prompt, .. backend.DownloadFloats(step.Logits)];
        }
        Bits.Equal(Logits(WeightMemory.Mapped), Logits(WeightMemory.HugePages), $"{family}, {threads} threads");
    }

    [Fact]
    public unsafe void A_copy_holds_its_own_bytes_across_regions_and_everything_is_freed()
    {
        using var backend = new SimdBackend(1, weightMemory: WeightMemory.HugePages);
        var before = backend.Counters.Snapshot();
        // Larger than one region of the arena (64 MiB), then small ones that share the next region.
        long[] lengths = [(70L << 20) / 2 + 17, 3, 4096, 1 << 20];
        var sources = lengths.Select(n => Enumerable.Range(0, (int)n).Select(i => (Half)(i % 2048 - 1024)).ToArray()).ToArray();
        var tensors = new List<Tensor>();
        for (int i = 0; i < lengths.Length; i++)
            fixed (Half* source = sources[i])
                tensors.Add(backend.Weights(TensorType.F16, lengths[i], (byte*)source, $"weight {i}"));
        for (int i = 0; i < lengths.Length; i++)
        {
            var expected = MemoryMarshal.AsBytes(sources[i].AsSpan()).ToArray();
            Array.Clear(sources[i]); // the copy must not depend on the caller's memory any more
            var copied = new byte[tensors[i].ByteLength];
            backend.Download(tensors[i], copied);
            Assert.True(expected.AsSpan().SequenceEqual(copied), $"weight {i} of {lengths[i]} values");
        }
        foreach (var tensor in tensors)
            backend.Free(tensor);
        var used = backend.Counters.Snapshot() - before;
        Assert.Equal(lengths.Length, used.Allocations);
        Assert.Equal(used.Allocations, used.Frees);
        Assert.Throws<ObjectDisposedException>(() => backend.Download(tensors[1], new byte[6]));
    }

    [Fact]
    public void The_memory_plan_counts_copied_weights_and_not_mapped_ones()
    {
        using var checkpoint = Model.Formats.ModelCheckpoint.Open(References.Family("main", "llama3", "model.gguf"));
        long weights = checkpoint.Tensors.Sum(t => t.ByteLength);
        using var mapped = new SimdBackend(1, weightMemory: WeightMemory.Mapped);
        using var copied = new SimdBackend(1, weightMemory: WeightMemory.HugePages);
        // Mapped, only the tensors the loader transformed (a GGUF's permuted q and k rows) are copies.
        Assert.Equal(checkpoint.Tensors.Where(t => t.IsTransformed).Sum(t => t.ByteLength),
            MemoryPlan.For(checkpoint, mapped, 1, 64, 16, StorageType.F32).WeightBytes);
        Assert.Equal(weights, MemoryPlan.For(checkpoint, copied, 1, 64, 16, StorageType.F32).WeightBytes);
    }
}
