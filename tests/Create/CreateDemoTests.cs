using IlgpuLlm.Tests.Support;
using System.Text;
using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Formats;
using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Runtime.Generation;
using IlgpuLlm.Tests.Formats;

namespace IlgpuLlm.Tests.Create;

/// <summary>The built-in demo model (in memory, no file) and its byte tokenizer.</summary>
public class CreateDemoTests
{
    [Fact]
    public void DemoOpensInMemoryAsTheDemoConfig()
    {
        using var demo = RandomModel.Demo();
        Assert.Equal(ModelSourceFormat.InMemory, demo.Format);
        Assert.Equal(RandomModel.DemoConfig, demo.Config);
        Assert.Equal((ModelFamily.Llama, 64, 2, 258, 512), (demo.Config.Family, demo.Config.HiddenSize, demo.Config.LayerCount, demo.Config.VocabSize, demo.Config.ContextLength));
        Assert.Equal(ByteTokenizer.Size, demo.Config.VocabSize);
        Assert.True(demo.TryGetTensor(TensorNames.Output, out _));
        demo.EnsureAllFinite();
        Assert.All(demo.Tensors, t => Assert.False(t.IsTransformed));

        // Same weights as writing the model out and reading it back.
        using var temp = new TempFolder();
        var model = RandomModel.Create(RandomModel.DemoConfig, StorageType.F32, RandomModel.DemoSeed, "demo", RandomWeightScale.FanIn);
        model.PlanGguf(temp.File("demo.gguf")).Write();
        using var file = ModelCheckpoint.Open(temp.File("demo.gguf"));
        Assert.Equal(demo.Config, file.Config);
        ModelComparison.AssertSameTensors(demo, file);
    }

    [Fact]
    public void InMemoryCheckpointsAreValidatedLikeFiles()
    {
        var model = RandomModel.Create(RandomModel.DemoConfig, StorageType.F16, 1);
        var missing = Assert.Throws<ModelFormatException>(() =>
            ModelCheckpoint.FromTensors(model.Config, model.Tensors.Where(t => t.Name != TensorNames.AttentionValue(1)), "test model"));
        Assert.Contains("blk.1.attn_v.weight", missing.Message);
        Assert.Contains("test model", missing.Message);

        var wrongShape = model.Tensors.Select(t => t.Name == TensorNames.OutputNorm
            ? TensorSource.FromArray(t.Name, StorageType.F32, [63], new float[63]) : t);
        Assert.Contains("expected shape [64]", Assert.Throws<ModelFormatException>(() => ModelCheckpoint.FromTensors(model.Config, wrongShape)).Message);

        var extra = model.Tensors.Append(TensorSource.FromArray("blk.9.attn_norm.weight", StorageType.F32, [64], new float[64]));
        Assert.Contains("unexpected tensor", Assert.Throws<ModelFormatException>(() => ModelCheckpoint.FromTensors(model.Config, extra)).Message);

        var badConfig = model.Config with { HeadDim = 15 };
        Assert.Contains("HeadDim", Assert.Throws<ModelFormatException>(() => ModelCheckpoint.FromTensors(badConfig, model.Tensors)).Message);
    }

    [Fact]
    public void DemoGeneratesVariedTokensInAPlainForwardPass()
    {
        using var demo = RandomModel.Demo();
        var tokenizer = RandomModel.DemoTokenizer();
        var reference = new ReferenceLlama(demo);
        var tokens = new List<int>(tokenizer.Encode("Once upon a time", addBos: true, parseSpecial: false));
        int promptLength = tokens.Count;
        float[] logits = [];
        for (int position = 0; tokens.Count < promptLength + 32; position++)
        {
            logits = reference.Forward(tokens[position], position);
            if (position >= promptLength - 1)
                tokens.Add(Array.IndexOf(logits, logits.Max()));
        }
        var generated = tokens.Skip(promptLength).ToList();
        Assert.True(generated.Distinct().Count() >= 4, $"greedy output repeats: {string.Join(" ", generated)}");
        // Logits of order one: sampling has something to choose between, and nothing overflows.
        double mean = logits.Average(v => (double)v);
        double std = Math.Sqrt(logits.Average(v => (v - mean) * (v - mean)));
        Assert.InRange(std, 0.3, 10);
    }

    [Fact]
    public void DemoRunsOnTheEngine()
    {
        using var model = LanguageModel.LoadDemo(new LanguageModelOptions { Threads = 2 });
        var prompt = model.Encode("Once upon a time");
        var result = model.Generate(["Once upon a time"], new GenerationOptions { MaxNewTokens = 32, Sampling = SamplerSettings.Greedy })[0];
        using var demo = RandomModel.Demo();
        var reference = new ReferenceLlama(demo);
        var expected = new List<int>(prompt);
        for (int position = 0; expected.Count < prompt.Length + result.Tokens.Count; position++)
        {
            var logits = reference.Forward(expected[position], position);
            if (position >= prompt.Length - 1)
                expected.Add(Array.IndexOf(logits, logits.Max()));
        }
        Assert.Equal(expected.Skip(prompt.Length), result.Tokens);
    }

    [Fact]
    public void ByteTokenizerRoundTripsUtf8()
    {
        var tokenizer = new ByteTokenizer();
        const string text = "héllo wörld — 日本語 🎉 \u0000 end";
        var ids = tokenizer.Encode(text, addBos: true, parseSpecial: false);
        Assert.Equal([SyntheticVocabulary.BosId, .. Encoding.UTF8.GetBytes(text).Select(b => (int)b)], ids);
        Assert.Equal(text, tokenizer.Decode(ids));
        Assert.Equal(SyntheticVocabulary.BosText + text, tokenizer.Decode(ids, renderSpecial: true));
        Assert.True(tokenizer.AddBosByDefault);
        Assert.Equal(258, tokenizer.VocabSize);
        Assert.Equal(new SpecialTokenIds(256, 257, null, null, null), tokenizer.Special);
        Assert.Equal("Ġ", tokenizer.GetPiece(' '));
        Assert.Equal(TokenKind.Byte, tokenizer.GetKind(0xE6));
        Assert.Equal(TokenKind.Control, tokenizer.GetKind(257));
        Assert.True(tokenizer.TryGetSpecialTokenId("<|eos|>", out int eos) && eos == 257);
        Assert.Equal("\uFFFDa", tokenizer.Decode([0xFF, 'a']));
        Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.Decode([258]));
    }

    [Fact]
    public void ByteTokenizerParsesSpecialTokensOnlyWhenAsked()
    {
        var tokenizer = new ByteTokenizer();
        Assert.Equal([SyntheticVocabulary.EosId, 'h', 'i'], tokenizer.Encode("<|eos|>hi", addBos: false, parseSpecial: true));
        Assert.Equal(Encoding.UTF8.GetBytes("<|eos|>hi").Select(b => (int)b), tokenizer.Encode("<|eos|>hi", addBos: false, parseSpecial: false));
    }

    [Fact]
    public void ByteTokenizerStreamsWholeCharactersOnly()
    {
        var tokenizer = new ByteTokenizer();
        const string text = "aé日🎉b";
        var ids = tokenizer.Encode(text, addBos: true, parseSpecial: false);
        var decoder = tokenizer.CreateStreamingDecoder();
        var pieces = ids.Select(decoder.Append).ToList();
        pieces.Add(decoder.Flush());
        Assert.Equal(text, string.Concat(pieces));
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD'));
        // BOS, a, é (2 bytes), 日 (3 bytes), 🎉 (4 bytes), b: a character appears with its last byte.
        Assert.Equal(["", "a", "", "é", "", "", "日", "", "", "", "🎉", "b", ""], pieces);

        // A character cut off at the end of the stream comes out as U+FFFD on Flush.
        var cut = tokenizer.CreateStreamingDecoder();
        Assert.Equal("", cut.Append(0xE6));
        Assert.Equal("\uFFFD", cut.Flush());
    }

    /// <summary>
    /// A Llama forward pass written plainly from transformers' semantics in f64 (RMSNorm, half-split
    /// rope, grouped-query causal attention, SwiGLU), one token at a time with a growing cache: an
    /// independent check of the demo model that does not need the engine's kernels.
    /// </summary>
    sealed class ReferenceLlama(ModelCheckpoint checkpoint)
    {
        readonly ModelConfig c = checkpoint.Config;
        readonly Dictionary<string, float[]> w = checkpoint.Tensors.ToDictionary(t => t.Name, t => t.ToFloat32Array());
        readonly List<double[]>[] keys = [.. Enumerable.Range(0, checkpoint.Config.LayerCount).Select(_ => new List<double[]>())];
        readonly List<double[]>[] values = [.. Enumerable.Range(0, checkpoint.Config.LayerCount).Select(_ => new List<double[]>())];

        public float[] Forward(int token, int position)
        {
            int hidden = c.HiddenSize, hd = c.HeadDim;
            var x = w[TensorNames.TokenEmbedding].AsSpan(token * hidden, hidden).ToArray().Select(v => (double)v).ToArray();
            for (int l = 0; l < c.LayerCount; l++)
            {
                var h = Norm(x, w[TensorNames.AttentionNorm(l)]);
                var q = Rope(MatVec(w[TensorNames.AttentionQuery(l)], h), position, c.HeadCount);
                keys[l].Add(Rope(MatVec(w[TensorNames.AttentionKey(l)], h), position, c.KeyValueHeadCount));
                values[l].Add(MatVec(w[TensorNames.AttentionValue(l)], h));
                var attended = new double[c.HeadCount * hd];
                for (int head = 0; head < c.HeadCount; head++)
                {
                    int kv = head / (c.HeadCount / c.KeyValueHeadCount);
                    var scores = keys[l].Select(k => Enumerable.Range(0, hd).Sum(i => q[head * hd + i] * k[kv * hd + i]) / Math.Sqrt(hd)).ToArray();
                    double max = scores.Max();
                    var p = scores.Select(s => Math.Exp(s - max)).ToArray();
                    double sum = p.Sum();
                    for (int t = 0; t < p.Length; t++)
                        for (int i = 0; i < hd; i++)
                            attended[head * hd + i] += p[t] / sum * values[l][t][kv * hd + i];
                }
                Add(x, MatVec(w[TensorNames.AttentionOutput(l)], attended));
                h = Norm(x, w[TensorNames.FeedForwardNorm(l)]);
                var gate = MatVec(w[TensorNames.FeedForwardGate(l)], h);
                var up = MatVec(w[TensorNames.FeedForwardUp(l)], h);
                Add(x, MatVec(w[TensorNames.FeedForwardDown(l)], gate.Select((g, i) => g / (1 + Math.Exp(-g)) * up[i]).ToArray()));
            }
            var final = Norm(x, w[TensorNames.OutputNorm]);
            return MatVec(w[c.TiedEmbeddings ? TensorNames.TokenEmbedding : TensorNames.Output], final).Select(v => (float)v).ToArray();
        }

        double[] Norm(double[] x, float[] weight)
        {
            double rms = Math.Sqrt(x.Average(v => v * v) + c.RmsNormEpsilon);
            return x.Select((v, i) => v / rms * weight[i]).ToArray();
        }

        double[] Rope(double[] x, int position, int heads)
        {
            int hd = c.HeadDim, half = hd / 2;
            for (int head = 0; head < heads; head++)
                for (int i = 0; i < half; i++)
                {
                    double angle = position * Math.Pow(c.RopeTheta, -2.0 * i / hd);
                    double a = x[head * hd + i], b = x[head * hd + half + i];
                    x[head * hd + i] = a * Math.Cos(angle) - b * Math.Sin(angle);
                    x[head * hd + half + i] = b * Math.Cos(angle) + a * Math.Sin(angle);
                }
            return x;
        }

        static double[] MatVec(float[] matrix, double[] x)
        {
            var y = new double[matrix.Length / x.Length];
            for (int r = 0; r < y.Length; r++)
            {
                double sum = 0;
                for (int i = 0; i < x.Length; i++)
                    sum += matrix[r * x.Length + i] * x[i];
                y[r] = sum;
            }
            return y;
        }

        static void Add(double[] x, double[] y)
        {
            for (int i = 0; i < x.Length; i++) x[i] += y[i];
        }
    }
}
