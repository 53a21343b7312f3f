using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Formats;
using IlgpuLlm.Runtime;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Tests.Formats;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Cli;

/// <summary>Requests sized by an option or a file: refused with numbers before anything is allocated.</summary>
[Collection(nameof(ConsoleCollection))]
public class ResourceLimitTests
{
    [Fact]
    public void A_context_beyond_the_machines_memory_is_refused_with_both_numbers()
    {
        using var temp = new TempFolder();
        string model = temp.Write("long.gguf", TinyLlama.Gguf().UInt32("llama.context_length", int.MaxValue).Build());
        foreach (var args in new[]
        {
            new[] { "generate", "-m", model, "-c", "2000000000", "--prompt", "t1", "--device", "cpu" },
            ["logits", "-m", model, "-c", "2000000000", "--tokens", "1 2", "-o", temp.File("l.bin"), "--device", "cpu"],
        })
        {
            var result = InProcessCli.Run(args);
            InProcessCli.AssertOneLineError(result, 1, "needs");
            Assert.Matches(@"needs [\d.]+ GiB of memory \(KV cache [\d.]+ GiB for 1 sequence of 2,000,000,000 positions.*available", result.ErrorLines[0]);
        }
    }

    [Fact]
    public void A_sliding_window_of_two_to_the_31_does_not_overflow_the_ring()
    {
        var layout = new KvCacheLayout(2, 1, 4, 1, 64, 512, [int.MaxValue, null]);
        Assert.Equal(64, layout.Capacity(0));
        Assert.Equal(64, layout.Capacity(1));
    }

    [Fact]
    public void A_gemma2_whose_sliding_window_is_two_to_the_31_minus_one_generates()
    {
        using var temp = new TempFolder();
        var bytes = File.ReadAllBytes(IlgpuLlm.Tests.EndToEnd.References.Family("main", "gemma2", "model.gguf"));
        var key = System.Text.Encoding.ASCII.GetBytes("gemma2.attention.sliding_window");
        int at = bytes.AsSpan().IndexOf(key) + key.Length;
        Assert.Equal(4u, BitConverter.ToUInt32(bytes, at)); // uint32 value type
        BitConverter.TryWriteBytes(bytes.AsSpan(at + 4), int.MaxValue);
        string model = temp.Write("window.gguf", bytes);
        var result = InProcessCli.Run("generate", "-m", model, "--prompt", "hi", "-n", "3", "--temp", "0", "--device", "cpu", "-c", "100000000");
        Assert.True(result.ExitCode == 0, result.ToString());
    }

    [Fact]
    public void The_memory_plan_counts_every_layer_in_long_arithmetic()
    {
        using var checkpoint = ModelCheckpoint.OpenGguf("tiny", TinyLlama.Gguf().UInt32("llama.context_length", int.MaxValue).Build());
        using var backend = new SimdBackend(1);
        var plan = MemoryPlan.For(checkpoint, backend, slots: 4, context: int.MaxValue, rowsPerForward: 512, StorageType.F32);
        // 2 (K, V) × 4 slots × 2^31−1 positions × 1 kv head × 4 dims × 4 bytes, one layer.
        Assert.Equal(2L * 4 * int.MaxValue * 4 * 4, plan.CacheBytes);
        Assert.Throws<InsufficientMemoryException>(() => plan.EnsureFits("tiny"));
    }

    [Theory]
    [InlineData(1e-38f, 1f, "temperature")]
    [InlineData(0.009f, 1f, "temperature")]
    [InlineData(0.8f, 1e-39f, "repetition penalty")]
    [InlineData(0.8f, 0.001f, "repetition penalty")]
    public void Temperatures_and_penalties_that_would_overflow_the_logits_are_refused(float temperature, float penalty, string what)
    {
        var row = new SamplingRow(temperature, 0, 1f, 0f, penalty, 0, 0, 0, 0, 0);
        var e = Assert.Throws<ArgumentException>(() => row.Validate(0, 16, []));
        Assert.Contains(what, e.Message);
        new SamplingRow(SamplingRow.MinTemperature, 0, 1f, 0f, SamplingRow.MinRepetitionPenalty, 0, 0, 0, 0, 0).Validate(0, 16, []);
    }

    [Fact]
    public void At_the_smallest_temperature_and_penalty_real_logits_stay_finite_and_sampling_agrees_with_greedy()
    {
        // Logits of a real size, all penalized: amplified 10^4 times they stay far below float's range.
        var logits = Enumerable.Range(0, 64).Select(i => (float)Math.Sin(i) * 40f).ToArray();
        int[] penalized = [.. Enumerable.Range(0, 64)];
        var row = new SamplingRow(SamplingRow.MinTemperature, 0, 1f, 0f, SamplingRow.MinRepetitionPenalty, 7, 0, 0, 0, 64);
        var tokens = new int[1];
        Sampling.Reference(logits, 64, [row], penalized, tokens);
        var penalizedLogits = logits.Select(x => Sampling.Penalize(x, SamplingRow.MinRepetitionPenalty)).ToArray();
        Assert.Equal(Sampling.Argmax(penalizedLogits), tokens[0]);
    }

    [SkippableFact]
    public void A_named_pipe_is_refused_without_being_opened()
    {
        Skip.IfNot(NamedPipes.Supported);
        using var temp = new TempFolder();
        string pipe = NamedPipes.Create(temp.File("model.gguf"));
        Assert.Equal("a named pipe, not a regular file", FileKind.WhyNotRegularFile(pipe));
        Assert.Null(FileKind.WhyNotRegularFile(TinyLlamaFile(temp)));
        Assert.Contains("a named pipe", Assert.Throws<ModelFormatException>(() => ModelCheckpoint.Open(pipe)).Message);
        Assert.Contains("a named pipe", Assert.ThrowsAny<Exception>(() => ModelLoader.OpenTokenizer(pipe)).Message);
        string tokenizer = NamedPipes.Create(temp.File("tokenizer.json"));
        Assert.Contains("a named pipe", Assert.ThrowsAny<Exception>(() => IlgpuLlm.Model.Tokenizers.TokenizerFactory.Open(tokenizer)).Message);
    }

    static string TinyLlamaFile(TempFolder temp) => temp.Write("tiny.gguf", TinyLlama.Gguf().Build());
}
