using IlgpuLlm.Tests.Support;
using System.Runtime.InteropServices;
using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Formats;

namespace IlgpuLlm.Tests.Create;

/// <summary>The GGUF and safetensors containers, and the model writers' refusals.</summary>
public class CreateWriterTests
{
    [Fact]
    public void GgufWriterRoundTripsEveryValueTypeAndAlignsTensors()
    {
        using var temp = new TempFolder();
        var w = new GgufWriter()
            .AddString("s", "héllo")
            .AddUInt8("u8", 200).AddInt8("i8", -100).AddUInt16("u16", 60000).AddInt16("i16", -30000)
            .AddUInt32("u32", 4_000_000_000).AddInt32("i32", -2_000_000_000).AddUInt64("u64", ulong.MaxValue)
            .AddInt64("i64", long.MinValue).AddFloat32("f32", 1.5e-7f).AddFloat64("f64", Math.PI).AddBool("b", true)
            .AddStringArray("sa", ["a", "", "日本"]).AddFloat32Array("fa", [1f, -2.5f]).AddInt32Array("ia", [3, -4])
            .AddUInt32Array("ua", [7u]).AddInt64Array("la", [long.MaxValue]).AddBoolArray("ba", [true, false])
            .AddStringArray("empty", []);
        var f32 = new float[] { 1, 2, 3, 4, 5, 6 };
        w.AddTensor("matrix", GgmlType.F32, [2, 3], s => s.Write(MemoryMarshal.AsBytes(f32.AsSpan())));
        w.AddTensor("vector", GgmlType.F16, [5], s => s.Write(new byte[10]));
        w.AddTensor("cube", GgmlType.BF16, [2, 1, 3], s => { s.Write(new byte[4]); s.Write(new byte[8]); });
        string path = temp.File("x.gguf");
        var reported = new List<long>();
        w.WriteTo(path, new Recorder(reported));

        Assert.Equal(w.Length, new FileInfo(path).Length);
        Assert.Equal(w.Length, reported[^1]);
        using var file = GgufFile.Open(path);
        Assert.Equal(3u, file.Version);
        Assert.Equal("héllo", file.GetString("s"));
        Assert.Equal((byte)200, file.GetEntry("u8").Value);
        Assert.Equal((sbyte)-100, file.GetEntry("i8").Value);
        Assert.Equal((ushort)60000, file.GetEntry("u16").Value);
        Assert.Equal((short)-30000, file.GetEntry("i16").Value);
        Assert.Equal(4_000_000_000u, file.GetUInt32("u32"));
        Assert.Equal(-2_000_000_000, file.GetInt32("i32"));
        Assert.Equal(ulong.MaxValue, file.GetUInt64("u64"));
        Assert.Equal(long.MinValue, file.GetEntry("i64").Value);
        Assert.Equal(1.5e-7f, file.GetFloat32("f32"));
        Assert.Equal(Math.PI, file.GetEntry("f64").Value);
        Assert.True(file.GetBool("b"));
        Assert.Equal(["a", "", "日本"], file.GetStringArray("sa"));
        Assert.Equal([1f, -2.5f], file.GetFloat32Array("fa"));
        Assert.Equal([3, -4], file.GetInt32Array("ia"));
        Assert.Equal([7], file.GetInt32Array("ua"));
        Assert.Equal([true, false], file.GetBoolArray("ba"));
        Assert.Empty(file.GetStringArray("empty"));
        Assert.Equal(32u, file.GetUInt32(GgufFile.AlignmentKey));
        Assert.Equal(["matrix", "vector", "cube"], file.Tensors.Select(t => t.Name));
        Assert.Equal([2L, 3], file.GetTensor("matrix").Shape.ToArray());
        Assert.Equal([3L, 2], file.GetTensor("matrix").Dimensions.ToArray());
        Assert.Equal([2L, 1, 3], file.GetTensor("cube").Shape.ToArray());
        Assert.Equal(f32, MemoryMarshal.Cast<byte, float>(file.GetTensorBytes(file.GetTensor("matrix"))).ToArray());
        Assert.All(file.Tensors, t => Assert.Equal(0, t.FileOffset % 32));
    }

    [Fact]
    public void GgufWriterRefusesWhatGgmlRefuses()
    {
        var w = new GgufWriter().AddUInt32("k", 1);
        Assert.Throws<ArgumentException>(() => w.AddUInt32("k", 2));
        Assert.Throws<ArgumentException>(() => w.AddUInt64(GgufFile.AlignmentKey, 32));
        Assert.Throws<ArgumentException>(() => w.AddTensor(new string('x', 64), GgmlType.F32, [1], _ => { }));
        Assert.Throws<ArgumentException>(() => w.AddTensor("t", GgmlType.F32, [1, 1, 1, 1, 1], _ => { }));
        Assert.Throws<ArgumentException>(() => w.AddTensor("q", GgmlType.Q8_0, [3, 30], _ => { }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GgufWriter(48));
        w.AddTensor("t", GgmlType.F32, [4], _ => { });
        Assert.Throws<ArgumentException>(() => w.AddTensor("t", GgmlType.F32, [4], _ => { }));
    }

    [Fact]
    public void AShortTensorFailsNamingItAndLeavesNoFile()
    {
        using var temp = new TempFolder();
        string path = temp.File("bad.gguf");
        var w = new GgufWriter();
        w.AddTensor("short", GgmlType.F32, [4], s => s.Write(new byte[12]));
        var e = Assert.Throws<InvalidOperationException>(() => w.WriteTo(path));
        Assert.Contains("'short'", e.Message);
        Assert.Empty(Directory.EnumerateFileSystemEntries(temp.Root));

        var s = new SafetensorsWriter();
        s.AddTensor("long", StorageType.F16, [2], stream => stream.Write(new byte[6]));
        Assert.Contains("'long'", Assert.Throws<InvalidOperationException>(() => s.WriteTo(temp.File("bad.safetensors"))).Message);
        Assert.Empty(Directory.EnumerateFileSystemEntries(temp.Root));
    }

    [Fact]
    public void SafetensorsWriterRoundTrips()
    {
        using var temp = new TempFolder();
        var a = new float[] { 1, -2, 3.5f };
        var w = new SafetensorsWriter().AddMetadata("format", "pt");
        w.AddTensor("model.a", StorageType.F32, [3], s => s.Write(MemoryMarshal.AsBytes(a.AsSpan())));
        w.AddTensor("model.b", "BF16", [2, 2], s => s.Write(new byte[] { 0, 0x3F, 0x80, 0x3F, 0, 0x40, 0x40, 0x40 }));
        w.AddTensor("model.empty", StorageType.F16, [0, 4], _ => { });
        string path = temp.File("m.safetensors");
        w.WriteTo(path);
        Assert.Equal(w.Length, new FileInfo(path).Length);
        using var file = SafetensorsFile.Open(path);
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal(["model.a", "model.b", "model.empty"], file.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
        var b = file.TensorsByName["model.b"];
        Assert.Equal("BF16", b.DType);
        Assert.Equal([2L, 2], b.Shape.ToArray());
        Assert.Equal(0, (file.TensorsByName["model.a"].FileOffset) % 8);
    }

    [Fact]
    public void ModelWritersRefuseWhatTheirFormatCannotState()
    {
        var gemma3 = RandomModel.GetPreset(ModelFamily.Gemma3, "tiny").Config;
        // llama.cpp hard-codes Gemma 3's local rope base and layer pattern.
        Assert.Contains("local rope base", Assert.Throws<NotSupportedException>(() =>
            GgufModelWriter.EnsureRepresentable(gemma3 with { RopeLocalTheta = 20_000f })).Message);
        Assert.Throws<NotSupportedException>(() => GgufModelWriter.EnsureRepresentable(
            gemma3 with { SlidingWindowLayers = [.. Enumerable.Repeat(true, gemma3.LayerCount)] }));
        HuggingFaceModelWriter.EnsureRepresentable(gemma3 with { RopeLocalTheta = 20_000f }); // config.json states it
        Assert.Throws<NotSupportedException>(() => GgufModelWriter.EnsureRepresentable(gemma3 with { QueryPreAttentionScalar = 64 }));

        var llama = RandomModel.GetPreset(ModelFamily.Llama, "tiny").Config;
        Assert.Contains("o_proj", Assert.Throws<NotSupportedException>(() =>
            HuggingFaceModelWriter.EnsureRepresentable(llama with { HasQkvBias = true })).Message);
        Assert.Throws<NotSupportedException>(() =>
            HuggingFaceModelWriter.EnsureRepresentable(llama with { RopeScaling = llama.RopeScaling with { Llama3 = null } }));
        Assert.Throws<NotSupportedException>(() => GgufModelWriter.EnsureRepresentable(llama with { Activation = Activation.GeluTanh }));
        Assert.Throws<NotSupportedException>(() => GgufModelWriter.EnsureRepresentable(llama with { StopTokenIds = [5, 257] }));

        var model = RandomModel.Create(ModelFamily.Llama, "tiny", StorageType.F32, 0);
        Assert.Contains("blk.1.ffn_up.weight", Assert.Throws<ArgumentException>(() =>
            GgufModelWriter.Prepare(model.Config, model.Tensors.Where(t => t.Name != TensorNames.FeedForwardUp(1)))).Message);
        Assert.Throws<ArgumentException>(() => GgufModelWriter.Prepare(model.Config, model.Tensors,
            Model.Tokenizers.SyntheticVocabulary.Create(600)));
    }

    [Fact]
    public void ConfigJsonFloatsReadBackAsTheSameF32()
    {
        foreach (float value in new[] { 1e-5f, 1e-6f, 500_000f, 0.1f, 1f / 3, 1.0000001f, 3.4e38f, 1.17549435E-38f })
            Assert.Equal(value, (float)double.Parse(IlgpuLlmJson(value), System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal("1e-05", IlgpuLlmJson(1e-5f));
        Assert.Equal("500000.0", IlgpuLlmJson(500_000f));
    }

    /// <summary>The number config.json gets for a float (through the public config writer).</summary>
    static string IlgpuLlmJson(float epsilon)
    {
        var config = RandomModel.GetPreset(ModelFamily.Llama, "tiny").Config with { RmsNormEpsilon = epsilon };
        using var document = System.Text.Json.JsonDocument.Parse(HuggingFaceModelWriter.ConfigJson(config, StorageType.F32));
        return document.RootElement.GetProperty("rms_norm_eps").GetRawText();
    }

    [Fact]
    public void VectorisedNarrowingGivesHalfBitsExactly()
    {
        // Random bit patterns (every exponent, subnormals, infinities), ties, overflow boundaries.
        ulong state = 12345;
        uint Next() { state = state * 6364136223846793005 + 1442695040888963407; return (uint)(state >> 32); }
        var values = new List<float>();
        for (int i = 0; i < 1 << 20; i++) values.Add(BitConverter.UInt32BitsToSingle(Next()));
        foreach (uint bits in new uint[] { 0, 0x80000000, 0x7F800000, 0xFF800000, 0x477FEFFF, 0x477FF000, 0x33000000, 0x33000001, 0x38800000, 0x387FFFFF, 0x3F808000, 0x3F818000, 0x7F7FFFFF })
            values.Add(BitConverter.UInt32BitsToSingle(bits));
        var finite = values.Where(float.IsFinite).ToArray();
        var noNaN = values.Where(v => !float.IsNaN(v)).ToArray();
        var withNaN = values.Where(v => !float.IsInfinity(v)).ToArray();
        foreach (var sample in new[] { finite, noNaN, withNaN, finite[..37] })
        {
            var f16 = new byte[sample.Length * 2];
            StorageType.F16.Format().Narrow(sample, f16);
            var bf16 = new byte[sample.Length * 2];
            StorageType.BF16.Format().Narrow(sample, bf16);
            var halves = MemoryMarshal.Cast<byte, ushort>(f16);
            var brains = MemoryMarshal.Cast<byte, ushort>(bf16);
            for (int i = 0; i < sample.Length; i++)
            {
                Assert.True(HalfBits.F32ToF16(sample[i]) == halves[i], $"f16 of {BitConverter.SingleToUInt32Bits(sample[i]):X8}");
                Assert.True(HalfBits.F32ToBf16(sample[i]) == brains[i], $"bf16 of {BitConverter.SingleToUInt32Bits(sample[i]):X8}");
            }
        }
    }

    sealed class Recorder(List<long> values) : IProgress<long>
    {
        public void Report(long value) => values.Add(value);
    }
}
