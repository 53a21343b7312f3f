using IlgpuLlm.Tests.Support;
using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Evaluation;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Runtime.Generation;

namespace IlgpuLlm.Tests.Bench;

public class PerplexityTests
{
    /// <summary>
    /// A model whose logits are known in closed form: after token t, logit A for t + 1 (mod V) and 0
    /// for every other token, so p(t + 1) = e^A / (e^A + V − 1) and p(other) = 1 / (e^A + V − 1).
    /// It records the rows it is fed.
    /// </summary>
    sealed class BigramModel(int vocabulary, double a, int context, int rowsPerForward) : ILanguageModel, IDisposable
    {
        readonly SimdBackend backend = new(1);
        Tensor? logits;

        public List<TokenRow> Fed { get; } = [];
        public IBackend Backend => backend;
        public int VocabSize => vocabulary;
        public int ContextLength => context;
        public int Slots => 1;
        public int MaxRowsPerForward => rowsPerForward;

        public ForwardResult Forward(ReadOnlySpan<TokenRow> rows, ReadOnlySpan<int> logitRows, ForwardChecks checks = ForwardChecks.None)
        {
            Assert.InRange(rows.Length, 1, rowsPerForward);
            Fed.AddRange(rows.ToArray());
            logits ??= backend.Allocate(TensorType.F32, (long)rowsPerForward * vocabulary, "logits");
            var values = new float[logitRows.Length * vocabulary];
            for (int i = 0; i < logitRows.Length; i++)
                values[i * vocabulary + (rows[logitRows[i]].Token + 1) % vocabulary] = (float)a;
            var result = logits.Slice(0, values.Length);
            backend.Upload(result, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
            return new ForwardResult(result, []);
        }

        public void Dispose() => backend.Dispose();
    }

    [Fact]
    public void MatchesLlamaCppsDefinitionOnAModelWithKnownProbabilities()
    {
        const int V = 10, C = 12, Bos = 9;
        const double A = 2.0;
        using var model = new BigramModel(V, A, context: C, rowsPerForward: 5);
        var random = new Random(3);
        // Mostly the predicted successor, sometimes not: 4 windows of 12 and a remainder of 7 that is dropped.
        var tokens = new List<int> { 4 };
        while (tokens.Count < 4 * C + 7)
            tokens.Add(random.Next(4) == 0 ? random.Next(V) : (tokens[^1] + 1) % V);

        var progress = new List<PerplexityProgress>();
        var result = Perplexity.Evaluate(model, tokens, C, Bos, progress: progress.Add);

        // llama.cpp: the logits at positions c/2 … c−2 of each window score the next token.
        double z = Math.Exp(A) + V - 1, hit = -Math.Log(Math.Exp(A) / z), miss = Math.Log(z);
        var nlls = new List<double>();
        for (int w = 0; w < 4; w++)
            for (int j = C / 2; j <= C - 2; j++)
                nlls.Add(tokens[w * C + j + 1] == (tokens[w * C + j] + 1) % V ? hit : miss);
        double mean = nlls.Average();
        double standardError = Math.Sqrt((nlls.Average(v => v * v) - mean * mean) / (nlls.Count - 1)) * Math.Exp(mean);

        Assert.Equal(4, result.Windows);
        Assert.Equal(4 * 5, result.Scored);
        Assert.Equal(nlls.Count, result.Scored);
        Assert.Equal(mean, result.MeanNegativeLogLikelihood, 12);
        Assert.Equal(Math.Exp(mean), result.Perplexity, 10);
        Assert.Equal(standardError, result.StandardError, 10);

        // Each window is a fresh sequence from position 0 whose first token became BOS; nothing else changed.
        Assert.Equal(4 * C, model.Fed.Count);
        for (int i = 0; i < model.Fed.Count; i++)
        {
            Assert.Equal(i % C, model.Fed[i].Position);
            Assert.Equal(i % C == 0 ? Bos : tokens[i], model.Fed[i].Token);
        }

        // Progress after every window; the last one is the final estimate.
        Assert.Equal([1, 2, 3, 4], progress.Select(p => p.Window));
        Assert.Equal(result.Perplexity, progress[^1].Perplexity);
        Assert.Equal(result.StandardError, progress[^1].StandardError);
    }

    [Fact]
    public void UniformPredictionsGiveTheVocabularySizeWithNoSpread()
    {
        using var model = new BigramModel(7, 0.0, context: 8, rowsPerForward: 8);
        var result = Perplexity.Evaluate(model, Enumerable.Range(0, 40).Select(i => i % 7).ToArray(), 8, bos: null, maxWindows: 3);
        Assert.Equal(3, result.Windows);
        Assert.Equal(3 * 3, result.Scored);
        Assert.Equal(7.0, result.Perplexity, 12);
        Assert.Equal(0.0, result.StandardError);
        Assert.Equal(Enumerable.Range(0, 24).Select(i => i % 7), model.Fed.Select(r => r.Token)); // no BOS put in
    }

    [Fact]
    public void AgreesWithADirectComputationOnARealModel()
    {
        using var backend = new SimdBackend(2);
        using var checkpoint = RandomModel.Create(ModelFamily.Llama, "tiny", StorageType.F32, 7).ToCheckpoint();
        using var model = new Transformer(checkpoint, backend, new TransformerOptions { ContextLength = 16, MaxRowsPerForward = 6 });
        const int C = 16, Bos = 1;
        var random = new Random(11);
        var tokens = Enumerable.Range(0, 5 * C + 3).Select(_ => random.Next(2, model.VocabSize)).ToArray();

        var result = Perplexity.Evaluate(model, tokens, C, Bos);

        // Directly: every position's logits of each window, a plain double softmax of the scored ones.
        double sum = 0;
        int count = 0;
        for (int w = 0; w < 5; w++)
        {
            var window = tokens.Skip(w * C).Take(C).ToArray();
            window[0] = Bos;
            var logits = Scoring.Logits(model, window, allPositions: true);
            for (int j = C / 2; j < C - 1; j++)
            {
                var row = logits.AsSpan(j * model.VocabSize, model.VocabSize);
                double z = 0;
                foreach (float x in row)
                    z += Math.Exp(x);
                sum += -Math.Log(Math.Exp(row[window[j + 1]]) / z);
                count++;
            }
        }
        Assert.Equal(count, result.Scored);
        Assert.Equal(sum / count, result.MeanNegativeLogLikelihood, 10);
        Assert.Equal(Math.Exp(sum / count), result.Perplexity, 8);
        Assert.True(result.StandardError > 0);
    }

    [Fact]
    public void RejectsTextShorterThanAWindow()
    {
        using var model = new BigramModel(5, 1, context: 8, rowsPerForward: 8);
        var error = Assert.Throws<ArgumentException>(() => Perplexity.Evaluate(model, [1, 2, 3], 8, null));
        Assert.Contains("fewer than one window", error.Message);
    }

    [Fact]
    public void LogSoftmaxStaysFiniteForExtremeLogits()
    {
        float[] logits = [3e38f, -3e38f, 3e38f - 1e32f, 0f];
        double nll = LogProbabilities.NegativeLogLikelihood(logits, 0);
        Assert.True(double.IsFinite(nll));
        Assert.InRange(nll, 0, 1e-9); // tokens 0 and 2 differ by 1e32·(1 − ulp rounding): p(0) ≈ 1
        Assert.Equal(Math.Log(4), LogProbabilities.NegativeLogLikelihood([1e6f, 1e6f, 1e6f, 1e6f], 2), 14);
        Assert.True(double.IsNaN(LogProbabilities.NegativeLogLikelihood([1f, float.NaN], 0)));
    }
}

[Collection("ConsoleCollection")]
public class PerplexityCommandTests
{
    [Fact]
    public void PrintsEachWindowAndTheFinalEstimate()
    {
        using var temp = new TempFolder();
        string text = temp.File("story.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Repeat(
            "Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine. ", 6)));
        var (code, output, error) = CommandRunner.Run("perplexity", "-m", IlgpuLlm.Tests.Formats.SharedModels.StoriesBin,
            "--device", "cpu", "-f", text, "-c", "32", "--chunks", "3");
        Assert.True(code == 0, error);
        var lines = output.Trim().Split('\n');
        Assert.Equal(4, lines.Length);
        for (int i = 0; i < 3; i++)
            Assert.Matches($@"^\[{i + 1}/3\] window [0-9.]+, running [0-9.]+ ± [0-9.]+$", lines[i]);
        Assert.Matches(@"^Final estimate: PPL = [0-9.]+ \+/- [0-9.]+ \(45 tokens scored in 3 windows of 32; mean nll [0-9.]+\)$", lines[3]);
        Assert.Contains("3 windows of 32, 15 tokens scored in each", error);
    }

    [Fact]
    public void AWindowLongerThanTheModelsContextFailsNamingTheModelsContext()
    {
        using var temp = new TempFolder();
        string text = temp.File("t.txt");
        File.WriteAllText(text, "hello");
        var (code, _, error) = CommandRunner.Run("perplexity", "-m", IlgpuLlm.Tests.Formats.SharedModels.StoriesBin,
            "--device", "cpu", "-f", text, "-c", "1024");
        Assert.Equal(IlgpuLlm.Cli.CliRunner.Failure, code);
        Assert.Contains("--ctx-size 1024 exceeds the model's context of 512", error);
    }
}
