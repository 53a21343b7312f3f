using IlgpuLlm.Kernels;
using IlgpuLlm.Model.Formats;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Kernels;

/// <summary>
/// The reference quantizers on their own. Q8_0 and Q4_0 round so simply that llama-quantize's
/// blocks are fixed points: quantizing their exact dequantization gives the same bytes again, for
/// every block of the shared models (made by llama-quantize from f32 weights). (The K-quants are
/// compared with llama-quantize's output byte for byte in QuantizeTests.)
/// </summary>
public class BlockQuantizerTests
{
    public static IEnumerable<object[]> Files() =>
        from family in new[] { "llama3", "qwen2" } from type in new[] { "Q8_0", "Q4_0" } select new object[] { family, type };

    [Theory]
    [MemberData(nameof(Files))]
    public void Requantizing_llama_quantize_blocks_gives_them_back(string family, string type)
    {
        using var gguf = GgufFile.Open(SharedData.Path("models", "quant", family, $"model-{type}.gguf"));
        int tensors = 0;
        foreach (var info in gguf.Tensors)
        {
            if (GgmlTypeLayout.ToQuantFormat(info.Type) is not QuantFormat format || format is QuantFormat.Q6_K)
                continue; // the output of a Q4_0 file is Q6_K, whose search is not a fixed point
            var blocks = gguf.GetTensorBytes(info).ToArray();
            var values = new float[info.ElementCount];
            QuantizedBlocks.Dequantize(format, blocks, values);
            var again = new byte[blocks.Length];
            BlockQuantizer.Quantize(format, values, again);
            Bits.Equal(blocks, again, $"{family} {type} {info.Name}");
            tensors++;
        }
        Assert.True(tensors >= 14, $"{tensors} tensors compared");
    }

    public static IEnumerable<object[]> WritableFormats() =>
        Enum.GetValues<QuantFormat>().Where(BlockQuantizer.CanWrite).Select(f => new object[] { f });

    /// <summary>Random weights come back within the format's step: half a code step, or a search's optimum close to it.</summary>
    [Theory]
    [MemberData(nameof(WritableFormats))]
    public void Quantized_weights_come_back_close_to_the_originals(QuantFormat format)
    {
        var values = TestValues.Random(8 * QuantFormats.SuperBlock, seed: 5, scale: 0.05f);
        values[7] = 0f;
        Array.Fill(values, 0f, QuantFormats.SuperBlock, 64); // a block (or two) of zeros
        var blocks = new byte[values.Length / format.BlockSize() * format.BlockBytes()];
        BlockQuantizer.Quantize(format, values, blocks);
        var back = new float[values.Length];
        QuantizedBlocks.Dequantize(format, blocks, back);
        double bits = format switch
        {
            QuantFormat.Q8_0 => 8, QuantFormat.Q6_K => 6, QuantFormat.Q5_0 or QuantFormat.Q5_1 or QuantFormat.Q5_K => 5, _ => 4,
        };
        // Values lie in ±0.05: a b-bit code spaces them about 0.1 / 2^b apart.
        double tolerance = 0.1 / Math.Pow(2, bits) * 1.01;
        for (int i = 0; i < values.Length; i++)
            Assert.True(Math.Abs(values[i] - back[i]) <= tolerance, $"{format.Name()} weight {i}: {values[i]} came back as {back[i]}");
        for (int i = QuantFormats.SuperBlock; i < QuantFormats.SuperBlock + 32; i++)
            Assert.Equal(0f, Math.Abs(back[i]));
    }

    [Fact]
    public void Refuses_partial_blocks_and_the_read_only_formats()
    {
        var error = Assert.Throws<ArgumentException>(() => BlockQuantizer.Quantize(QuantFormat.Q4_K, new float[300], new byte[144]));
        Assert.Contains("300 values is not a whole number of 256-weight Q4_K blocks", error.Message);
        Assert.Throws<NotSupportedException>(() => BlockQuantizer.Quantize(QuantFormat.Q3_K, new float[256], new byte[110]));
    }
}
