using IlgpuLlm.Tests.Support;
using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Formats;

namespace IlgpuLlm.Tests.Create;

/// <summary>A seed names one model: the same bytes on every run and machine, a different model for another seed.</summary>
public class CreateDeterminismTests
{
    [Theory]
    [InlineData(ModelSourceFormat.Gguf)]
    [InlineData(ModelSourceFormat.HuggingFace)]
    public void SameSeedWritesIdenticalBytesAndAnotherSeedDoes(ModelSourceFormat format)
    {
        using var temp = new TempFolder();
        byte[] Write(string name, ulong seed)
        {
            var plan = RandomModel.Create(ModelFamily.Gemma3, "tiny", StorageType.BF16, seed).Plan(format, temp.File(name));
            plan.Write();
            return format == ModelSourceFormat.Gguf
                ? File.ReadAllBytes(plan.Path)
                : File.ReadAllBytes(Path.Combine(plan.Path, "model.safetensors"));
        }
        var first = Write("a", 11);
        var again = Write("b", 11);
        var other = Write("c", 12);
        Assert.True(first.AsSpan().SequenceEqual(again), "the same seed wrote different bytes");
        Assert.Equal(first.Length, other.Length);
        Assert.False(first.AsSpan().SequenceEqual(other), "different seeds wrote the same bytes");
    }

    [Fact]
    public void ValuesArePinnedAcrossMachinesAndRuns()
    {
        // Integer arithmetic and one f32 multiply per element: these bits must never change, or
        // every model made with a seed so far silently becomes a different model.
        var model = RandomModel.Create(ModelFamily.Llama, "tiny", StorageType.F32, seed: 1);
        var embedding = new float[4];
        model.Tensors[0].ReadFloat32(0, embedding);
        var norm = new float[4];
        model.Tensors.Single(t => t.Name == TensorNames.AttentionNorm(1)).ReadFloat32(10, norm);
        Assert.Equal(PinnedEmbedding, embedding.Select(BitConverter.SingleToInt32Bits).ToArray());
        Assert.Equal(PinnedNorm, norm);
    }

    static readonly int[] PinnedEmbedding = [1007077264, 982845073, -1145703502, 1013266488];
    static readonly float[] PinnedNorm = [0.9609375f, 1.03125f, 0.9375f, 0.984375f];

    [Fact]
    public void RangesAreTheSameWhateverTheReadOrder()
    {
        var tensor = RandomModel.Create(ModelFamily.Llama, "tiny", StorageType.BF16, seed: 9).Tensors[0];
        var whole = tensor.ToFloat32Array();
        var pieces = new float[whole.Length];
        for (int start = whole.Length; start > 0;)
        {
            int length = Math.Min(start, 1000 + start % 77);
            start -= length;
            tensor.ReadFloat32(start, pieces.AsSpan(start, length));
        }
        Assert.Equal(whole, pieces);
    }

    [Fact]
    public void WeightsHaveTheIntendedScale()
    {
        var model = RandomModel.Create(ModelFamily.Qwen2, "tiny", StorageType.F32, seed: 4);
        var embedding = model.Tensors[0].ToFloat32Array();
        double mean = embedding.Average(v => (double)v);
        double std = Math.Sqrt(embedding.Average(v => (v - mean) * (v - mean)));
        Assert.InRange(mean, -0.002, 0.002);
        Assert.InRange(std, 0.019, 0.021);
        Assert.All(embedding, v => Assert.InRange(v, -0.0701f, 0.0701f));
        var norm = model.Tensors.Single(t => t.Name == TensorNames.OutputNorm).ToFloat32Array();
        Assert.All(norm, v => Assert.InRange(v, 1 - 8 / 128f, 1 + 8 / 128f));
        Assert.True(norm.Distinct().Count() > 10);
    }
}
