using System.Runtime.InteropServices;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Formats;

namespace IlgpuLlm.Tests.Formats;

/// <summary>Asserts that two checkpoints are the same model: same config, bit-identical tensors.</summary>
public static class ModelComparison
{
    /// <summary>
    /// Compares the parts of two configs that both sources state: token ids one format lacks
    /// (GGUF carries no pad id for these models) and the Llama 3 parameters a GGUF only carries
    /// as factors are blanked on both sides; everything else must be equal.
    /// </summary>
    public static void AssertSameConfig(ModelConfig expected, ModelConfig actual)
    {
        var a = CommonPart(expected, actual);
        var b = CommonPart(actual, expected);
        Assert.Equal(Describe(a), Describe(b));
        Assert.Equal(a, b);
    }

    static ModelConfig CommonPart(ModelConfig c, ModelConfig other) => c with
    {
        RopeScaling = other.RopeScaling.Llama3 is null ? c.RopeScaling with { Llama3 = null } : c.RopeScaling,
        BosTokenId = other.BosTokenId is null ? null : c.BosTokenId,
        EosTokenId = other.EosTokenId is null ? null : c.EosTokenId,
        EotTokenId = other.EotTokenId is null ? null : c.EotTokenId,
        PadTokenId = other.PadTokenId is null ? null : c.PadTokenId,
        StopTokenIds = other.StopTokenIds.IsEmpty ? [] : c.StopTokenIds,
    };

    /// <summary>A readable dump so a failing comparison shows which field differs.</summary>
    public static string Describe(ModelConfig c) =>
        string.Join("\n", typeof(ModelConfig).GetProperties().Select(p => $"{p.Name} = {Format(p.GetValue(c))}"));

    static string Format(object? value) => value switch
    {
        null => "null",
        System.Collections.IEnumerable e and not string => "[" + string.Join(", ", e.Cast<object>()) + "]",
        _ => value.ToString() ?? "",
    };

    /// <summary>Same canonical tensor set, same shapes, and element values equal bit for bit as f32.</summary>
    public static void AssertSameTensors(ModelCheckpoint expected, ModelCheckpoint actual)
    {
        Assert.Equal(expected.Tensors.Select(t => t.Name), actual.Tensors.Select(t => t.Name));
        foreach (var e in expected.Tensors)
        {
            var a = actual.GetTensor(e.Name);
            Assert.True(e.Shape.SequenceEqual(a.Shape), $"{e.Name}: shape [{string.Join(", ", e.Shape)}] vs [{string.Join(", ", a.Shape)}]");
            var ev = e.ToFloat32Array();
            var av = a.ToFloat32Array();
            if (!MemoryMarshal.AsBytes(ev.AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(av.AsSpan())))
            {
                int i = Enumerable.Range(0, ev.Length).First(k => BitConverter.SingleToInt32Bits(ev[k]) != BitConverter.SingleToInt32Bits(av[k]));
                Assert.Fail($"{e.Name}: element {i} differs: {ev[i]:R} ({expected.Format}) vs {av[i]:R} ({actual.Format})");
            }
        }
    }
}
