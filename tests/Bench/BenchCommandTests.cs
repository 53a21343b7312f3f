using System.Buffers.Binary;
using System.Text.Json;
using IlgpuLlm.Cli;
using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Evaluation;
using IlgpuLlm.Tests.Create;
using IlgpuLlm.Tests.Formats;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Bench;

/// <summary>The bench command end to end on small models. Speed is never asserted: only shapes and sense.</summary>
[Collection("ConsoleCollection")]
public class BenchCommandTests
{
    static readonly byte[] PngSignature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    [Fact]
    public void PrintsTheTableWritesJsonAndAPlot()
    {
        using var temp = new TempFolder();
        string json = temp.File("bench.json"), png = temp.File("bench.png");
        var (code, output, error) = CommandRunner.Run("bench", "-m", SharedModels.StoriesBin, "--device", "cpu", "-t", "2",
            "-p", "8", "-n", "4", "-r", "1", "--warmup-seconds", "0", "--baseline-mib", "8", "--json", json, "--plot", png, "--plot-context", "16");
        Assert.True(code == 0, error);

        var lines = output.Split('\n');
        Assert.Equal(["model", "size", "params", "backend", "threads", "test", "t/s", "weights GB/s", "vs memory"],
            lines[0].Trim().Trim('|').Split('|').Select(c => c.Trim()));
        Assert.Matches(@"^\| llama 260\.0K F32 +\| +1015\.75 KiB \| +260\.0K \| simd-cpu +\| +2 \| +pp8 \| +[0-9.]+ ± 0\.00 \| +- \| +- \|", lines[2]);
        Assert.Matches(@"^\| llama 260\.0K F32 .*\| +tg4 \| +[0-9.]+ ± 0\.00 \| +[0-9.]+ \| +[0-9.]+ % \|", lines[3]);
        Assert.Contains("memory baseline: ", output);
        Assert.Matches(@"\| +tg4 @ d16 \|", output); // the sweep table

        using var document = JsonDocument.Parse(File.ReadAllText(json));
        var root = document.RootElement;
        Assert.Equal(260032, root.GetProperty("model").GetProperty("parameters").GetInt64());
        Assert.Equal("simd-cpu", root.GetProperty("backend_kind").GetString());
        Assert.Equal(2, root.GetProperty("threads").GetInt32());
        Assert.Equal(8L << 20, root.GetProperty("memory_baseline_bytes").GetInt64());
        var results = root.GetProperty("results").EnumerateArray().ToArray();
        Assert.Equal(["pp8", "tg4"], results.Select(r => r.GetProperty("test").GetString()));
        Assert.All(results, r =>
        {
            Assert.Single(r.GetProperty("samples_ns").EnumerateArray());
            Assert.True(r.GetProperty("avg_ts").GetDouble() > 0);
            Assert.Equal(0, r.GetProperty("stddev_ts").GetDouble());
        });
        // Decode streams the weights and is compared with the memory bandwidth measured just before it.
        Assert.Equal(JsonValueKind.Null, results[0].GetProperty("weight_gbps").ValueKind);
        Assert.Equal(JsonValueKind.Null, results[0].GetProperty("memory_baseline_gbps").ValueKind);
        Assert.True(results[1].GetProperty("weight_gbps").GetDouble() > 0);
        Assert.True(results[1].GetProperty("memory_baseline_gbps").GetDouble() > 0);
        Assert.Equal(results[1].GetProperty("weight_gbps").GetDouble() / results[1].GetProperty("memory_baseline_gbps").GetDouble(),
            results[1].GetProperty("vs_memory").GetDouble(), 12);
        // The sweep: prefill at 2, 4, 8 and 16 tokens, then decode at those depths.
        Assert.Equal(["pp2", "pp4", "pp8", "pp16", "tg4 @ d2", "tg4 @ d4", "tg4 @ d8", "tg4 @ d16"],
            root.GetProperty("sweep").EnumerateArray().Select(r => r.GetProperty("test").GetString()));

        AssertPng(png, expectedWidth: 2 * 560, expectedHeight: 480);
    }

    [Fact]
    public void MeasuresBatchedDecodeOnTheTinyPreset()
    {
        using var temp = new TempFolder();
        string model = temp.File("tiny.gguf"), png = temp.File("batch.png");
        RandomModel.Create(ModelFamily.Qwen2, "tiny", StorageType.BF16, 1).PlanGguf(model).Write(null, default);
        var (code, output, error) = CommandRunner.Run("bench", "-m", model, "--device", "cpu", "-t", "1", "-p", "0", "-n", "4",
            "-r", "2", "-np", "1,3", "--kv-dtype", "f16", "--warmup-seconds", "0", "--baseline-mib", "8", "--plot", png, "--plot-context", "8");
        Assert.True(code == 0, error);
        Assert.Contains("| type_kv |", output);
        Assert.Contains("qwen2 ", output);
        Assert.Contains(" BF16 ", output);
        Assert.Matches(@"\| f16 +\| +tg4 \| +[0-9.]+ ± [0-9.]+ \|", output);
        Assert.Matches(@"\| f16 +\| +tg4 x3 \| +[0-9.]+ ± [0-9.]+ \|", output);
        Assert.DoesNotContain("| pp", output);
        AssertPng(png, expectedWidth: 3 * 560, expectedHeight: 480); // depth, prefill and batch panels
    }

    [Theory]
    [InlineData("-r", "0", "--repetitions 0 is out of range")]
    [InlineData("-np", "0", "--parallel: '0' is not a positive whole number")]
    [InlineData("--batch-size", "x", "--parallel: 'x' is not a positive whole number")]
    [InlineData("-n", "x", "--n-gen: 'x' is not a non-negative whole number")]
    public void WrongUsageExitsWithTwo(string option, string value, string message)
    {
        var options = new Dictionary<string, string> { ["-n"] = "1", ["-p"] = "1", [option] = value };
        var (code, output, error) = CommandRunner.Run(["bench", "-m", SharedModels.StoriesBin, "--device", "cpu", "--baseline-mib", "8",
            .. options.SelectMany(o => new[] { o.Key, o.Value })]);
        Assert.Equal(CliRunner.Usage, code);
        Assert.Equal("", output);
        Assert.Equal($"error: {message}", error.Split('\n')[0].Split(';')[0].Trim());
    }

    [Fact]
    public void TestsLongerThanTheModelsContextFailWithOne()
    {
        var (code, output, error) = CommandRunner.Run("bench", "-m", SharedModels.StoriesBin, "--device", "cpu", "--baseline-mib", "8",
            "-n", "1", "-p", "600");
        Assert.Equal(CliRunner.Failure, code);
        Assert.Equal("", output);
        Assert.Contains("the tests need 600 positions", error);
    }

    [Fact]
    public void CountsTheWeightsAForwardPassStreams()
    {
        // Tied: the embedding is the classifier and is read whole; untied: only its looked-up rows.
        using var tied = RandomModel.Create(ModelFamily.Qwen2, "tiny", StorageType.F16, 1).ToCheckpoint();
        var footprint = ModelFootprint.Of(tied);
        Assert.Equal(footprint.Bytes, footprint.BytesPerForward);
        Assert.Equal("F16", footprint.WeightType);
        using var untied = RandomModel.Create(ModelFamily.Llama, "tiny", StorageType.BF16, 1).ToCheckpoint();
        var split = ModelFootprint.Of(untied);
        var config = untied.Config;
        Assert.Equal(split.Bytes - (long)config.VocabSize * config.HiddenSize * 2, split.BytesPerForward);
        Assert.Equal(RandomModel.GetPreset(ModelFamily.Llama, "tiny").ParameterCount, split.Parameters);
    }

    static void AssertPng(string path, int expectedWidth, int expectedHeight)
    {
        var bytes = File.ReadAllBytes(path);
        Assert.Equal(PngSignature, bytes[..8]);
        Assert.Equal("IHDR", System.Text.Encoding.ASCII.GetString(bytes, 12, 4));
        Assert.Equal(expectedWidth, BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16)));
        Assert.Equal(expectedHeight, BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(20)));
        Assert.Equal("IEND", System.Text.Encoding.ASCII.GetString(bytes, bytes.Length - 8, 4));
        Assert.True(bytes.Length > 10_000, "a plot with axes, labels and curves is more than a few bytes");
    }
}
