using System.Runtime.InteropServices;
using IlgpuLlm.Model.Formats;

namespace IlgpuLlm.Tests.Formats;

public class WeightFinitenessTests
{
    static byte[] Encode(TensorDataType type, float[] values) => type switch
    {
        TensorDataType.F32 => MemoryMarshal.AsBytes(values.AsSpan()).ToArray(),
        TensorDataType.F16 => MemoryMarshal.AsBytes(values.Select(v => (Half)v).ToArray().AsSpan()).ToArray(),
        _ => MemoryMarshal.AsBytes(values.Select(v => (ushort)(BitConverter.SingleToInt32Bits(v) >> 16)).ToArray().AsSpan()).ToArray(),
    };

    /// <summary>Every vector width's main loop and scalar tail, every dtype, NaN and both infinities.</summary>
    [Theory]
    [InlineData(TensorDataType.F32)]
    [InlineData(TensorDataType.F16)]
    [InlineData(TensorDataType.BF16)]
    public void Finds_the_first_non_finite_element_at_any_position(TensorDataType type)
    {
        foreach (int length in new[] { 1, 7, 31, 32, 33, 64, 100, 257, 1000 })
        {
            // Finite extremes of each type must pass: the largest finite value, subnormals, -0.
            float largest = type switch { TensorDataType.F32 => float.MaxValue, TensorDataType.F16 => 65504f, _ => BitConverter.Int32BitsToSingle(0x7F7F0000) };
            var values = Enumerable.Range(0, length).Select(i => (i % 5) switch
            {
                0 => largest, 1 => -largest, 2 => -0f, 3 => type == TensorDataType.F16 ? 6e-8f : 1e-39f, _ => i * 0.5f,
            }).ToArray();
            Assert.Equal(-1, WeightFiniteness.IndexOfNonFinite(Encode(type, values), type));
            foreach (int position in new[] { 0, length / 2, length - 1 }.Distinct())
                foreach (float special in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity })
                {
                    var copy = (float[])values.Clone();
                    copy[position] = special;
                    if (position + 1 < length) copy[length - 1] = float.NaN; // a later one must not win
                    Assert.Equal(position, WeightFiniteness.IndexOfNonFinite(Encode(type, copy), type));
                }
        }
    }

    [Fact]
    public void Every_shared_model_is_finite()
    {
        foreach (var path in new[] { SharedModels.StoriesBin, SharedModels.StoriesGguf, SharedModels.StoriesHf, SharedModels.TinyRandomF16Gguf })
        {
            using var model = ModelCheckpoint.Open(path);
            model.EnsureAllFinite();
        }
    }
}
