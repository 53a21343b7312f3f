using IlgpuLlm.Tests.Support;
using System.Runtime.InteropServices;
using IlgpuLlm.Cli;
using IlgpuLlm.Model.Evaluation;
using IlgpuLlm.Tests.Create;
using IlgpuLlm.Tests.Formats;

namespace IlgpuLlm.Tests.Bench;

public class CompareTests
{
    /// <summary>Logits on a 1/64 grid in [−8, 8): adding 0.5 to them is exact in f32.</summary>
    static float[] GridLogits(int rows, int vocabulary, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, rows * vocabulary).Select(_ => random.Next(-512, 512) / 64f).ToArray();
    }

    /// <summary>KL(p ‖ q) straight from the definition, softmaxes without any shift.</summary>
    static double Kl(ReadOnlySpan<float> p, ReadOnlySpan<float> q)
    {
        double zp = 0, zq = 0;
        foreach (float x in p) zp += Math.Exp(x);
        foreach (float x in q) zq += Math.Exp(x);
        double kl = 0;
        for (int i = 0; i < p.Length; i++)
        {
            double pi = Math.Exp(p[i]) / zp, qi = Math.Exp(q[i]) / zq;
            kl += pi * Math.Log(pi / qi);
        }
        return kl;
    }

    [Fact]
    public void IdenticalLogitsGiveZerosAndFullAgreement()
    {
        var logits = GridLogits(3, 50, 1);
        var positions = LogitComparison.Compare(logits, logits, 50);
        Assert.Equal(3, positions.Count);
        Assert.All(positions, p =>
        {
            Assert.Equal(0.0, p.MaxAbsDiff);
            Assert.Equal(0.0, p.MeanAbsDiff);
            Assert.Equal(0.0, p.KlDivergence);
            Assert.True(p.Top1Agrees);
        });
        var summary = LogitComparison.Summarize(positions);
        Assert.Equal((3, 0.0, 0.0, 0.0, 0.0, 3, 1.0),
            (summary.Positions, summary.MaxAbsDiff, summary.MeanAbsDiff, summary.MeanKlDivergence, summary.MaxKlDivergence,
                summary.Top1Agreements, summary.Top1Rate));
    }

    [Fact]
    public void AShiftedReferenceDiffersByTheShiftWithNoDivergence()
    {
        var model = GridLogits(2, 40, 2);
        var reference = model.Select(x => x + 0.5f).ToArray();
        foreach (var p in LogitComparison.Compare(reference, model, 40))
        {
            Assert.Equal(0.5, p.MaxAbsDiff);
            Assert.Equal(0.5, p.MeanAbsDiff, 15);
            Assert.InRange(p.KlDivergence, -1e-15, 1e-15); // softmax ignores a shift
            Assert.True(p.Top1Agrees);
        }
    }

    [Fact]
    public void APerturbedReferenceGivesTheExpectedDiffsAndDivergence()
    {
        const int V = 64;
        var model = GridLogits(4, V, 3);
        var reference = (float[])model.Clone();
        // Row 0: one logit raised by 2; row 1: every logit scaled by 1.5; row 2: the top token moved; row 3 untouched.
        reference[5] += 2f;
        for (int i = V; i < 2 * V; i++)
            reference[i] *= 1.5f;
        int top = LogProbabilities.ArgMax(model.AsSpan(2 * V, V));
        int other = (top + 1) % V;
        reference[2 * V + other] = model[2 * V + top] + 1f;

        var positions = LogitComparison.Compare(reference, model, V);

        Assert.Equal(2.0, positions[0].MaxAbsDiff);
        Assert.Equal(2.0 / V, positions[0].MeanAbsDiff, 15);
        var rowOne = Enumerable.Range(V, V).Select(i => Math.Abs((double)reference[i] - model[i])).ToArray();
        Assert.Equal(rowOne.Max(), positions[1].MaxAbsDiff);
        Assert.Equal(rowOne.Average(), positions[1].MeanAbsDiff, 14);
        for (int p = 0; p < 4; p++)
            Assert.Equal(Kl(reference.AsSpan(p * V, V), model.AsSpan(p * V, V)), positions[p].KlDivergence, 12);
        Assert.True(positions[0].KlDivergence > 0 && positions[1].KlDivergence > 0);
        Assert.Equal(0.0, positions[3].KlDivergence);

        Assert.False(positions[2].Top1Agrees);
        Assert.Equal((other, top), (positions[2].ReferenceTop1, positions[2].ModelTop1));
        var summary = LogitComparison.Summarize(positions);
        Assert.Equal(3, summary.Top1Agreements);
        Assert.Equal(0.75, summary.Top1Rate);
        Assert.Equal(positions.Max(p => p.KlDivergence), summary.MaxKlDivergence);
        Assert.Equal(positions.Average(p => p.KlDivergence), summary.MeanKlDivergence, 15);
    }

    [Fact]
    public void AZeroProbabilityWhereTheReferenceHasMassIsAnInfiniteDivergence()
    {
        var positions = LogitComparison.Compare([0f, 0f], [0f, float.NegativeInfinity], 2);
        Assert.True(double.IsPositiveInfinity(positions[0].KlDivergence));
        // The other way round the reference's zero-probability token contributes nothing.
        Assert.Equal(Math.Log(2), LogitComparison.Compare([0f, float.NegativeInfinity], [0f, 0f], 2)[0].KlDivergence, 15);
    }
}

[Collection("ConsoleCollection")]
public class CompareCommandTests
{
    const string Tokens = "1 403 407 261 378";

    [Fact]
    public void AgainstItsOwnLogitsEverythingAgrees()
    {
        using var temp = new TempFolder();
        string reference = temp.File("ref.f32");
        var (code, _, error) = CommandRunner.Run("logits", "-m", SharedModels.StoriesBin, "--device", "cpu", "--tokens", Tokens,
            "--all-positions", "-o", reference);
        Assert.True(code == 0, error);

        (code, var output, error) = CommandRunner.Run("compare", "-m", SharedModels.StoriesGguf, "--device", "cpu", "--tokens", Tokens,
            "--all-positions", "--reference", reference);
        Assert.True(code == 0, error);
        Assert.Contains("5 positions of 512 logits: max abs diff 0, mean abs diff 0, KL mean 0 max 0, top-1 agreement 5/5 (100.0 %)", output);
        Assert.Equal(5 + 2, output.Split('\n').Count(line => line.StartsWith('|')));
    }

    [Fact]
    public void APerturbedLastRowShowsItsDifference()
    {
        using var temp = new TempFolder();
        string reference = temp.File("last.f32");
        Assert.Equal(0, CommandRunner.Run("logits", "-m", SharedModels.StoriesBin, "--device", "cpu", "--tokens", Tokens, "-o", reference).ExitCode);
        var values = MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(reference)).ToArray();
        values[7] += 0.25f;
        File.WriteAllBytes(reference, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());

        var (code, output, error) = CommandRunner.Run("compare", "-m", SharedModels.StoriesBin, "--device", "cpu", "--tokens", Tokens,
            "--reference", reference);
        Assert.True(code == 0, error);
        Assert.Contains("1 position of 512 logits: max abs diff 2.500E-01", output);
        Assert.Contains("|        4 |   378 |", output); // the last position, by its index in the prompt
    }

    [Theory]
    [InlineData(false, "it has a row per token: pass --all-positions")]
    [InlineData(true, "expected 5 × 512")]
    public void AShapeMismatchFailsWithOneClearLine(bool allPositions, string expected)
    {
        using var temp = new TempFolder();
        string reference = temp.File("ref.f32");
        // Five rows for the no-flag case; seven rows for the --all-positions case.
        File.WriteAllBytes(reference, new byte[(allPositions ? 7 : 5) * 512 * 4]);
        string[] args = ["compare", "-m", SharedModels.StoriesBin, "--device", "cpu", "--tokens", Tokens, "--reference", reference];
        var (code, output, error) = CommandRunner.Run(allPositions ? [.. args, "--all-positions"] : args);
        Assert.Equal(CliRunner.Failure, code);
        Assert.Equal("", output);
        Assert.StartsWith("error: shape mismatch: the reference", error);
        Assert.Contains(expected, error);
        Assert.Single(error.Trim().Split('\n'));
    }
}
