using ILGPU;
using ILGPU.Runtime;
using IlgpuLlm.Kernels;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Kernels;

[Collection(BackendCollection.Name)]
public class SamplingTests
{
    [Theory]
    [InlineData(0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u)]
    [InlineData(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu)]
    [InlineData(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u, 0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u)]
    public void Philox_matches_the_Random123_known_answers(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1,
        uint x0, uint x1, uint x2, uint x3)
    {
        // Random123's kat_vectors, "philox4x32 10": counter, key, expected output.
        var block = Philox.Generate(c0, c1, c2, c3, k0, k1);
        Assert.Equal((x0, x1, x2, x3), (block.X0, block.X1, block.X2, block.X3));
    }

    [Fact]
    public void Uniform_numbers_are_24_bit_fractions_below_one_keyed_by_seed_sequence_and_step()
    {
        var seen = new HashSet<float>();
        for (int step = 0; step < 1000; step++)
        {
            float u = Philox.Uniform(42, 3, step);
            Assert.InRange(u, 0f, 0.99999994f);
            Assert.Equal(u, MathF.Round(u * 16777216f) / 16777216f);
            seen.Add(u);
        }
        Assert.True(seen.Count > 990, $"only {seen.Count} distinct numbers in 1000 steps");
        Assert.NotEqual(Philox.Uniform(42, 3, 7), Philox.Uniform(43, 3, 7));
        Assert.NotEqual(Philox.Uniform(42, 3, 7), Philox.Uniform(42, 4, 7));
        Assert.NotEqual(Philox.Uniform(1UL << 32, 3, 7), Philox.Uniform(0, 3, 7));
    }

    // ---- every backend against the reference ----

    public static IEnumerable<object[]> Cases()
    {
        foreach (var backend in TestBackends.All)
            foreach (int vocabulary in TraceVocabularies)
                // The trace test runs the ILGPU kernel at every width; through the backend a few suffice.
                if (!TestBackends.IsCpuAccelerator((string)backend[0]) || vocabulary is 3 or 32 or 1000)
                    yield return [backend[0], vocabulary];
    }

    /// <summary>Ids previously seen, for the penalty: rows 1, 12 and 13 take overlapping ranges of this list.</summary>
    static int[] PenalizedList(int vocabulary) =>
        new[] { 2, 0, 5, 16, 9, 30, 31, 32, 100, 126, 999, 1 }.Where(id => id < vocabulary).ToArray();

    /// <summary>One row per parameter combination the sampler distinguishes.</summary>
    static SamplingRow[] ParameterRows(int vocabulary, int listLength)
    {
        int half = listLength / 2;
        return
        [
            SamplingRow.Greedy(0, 0),
            new(0f, 0, 1f, 0f, 1.3f, 0, 1, 0, 0, listLength),
            new(1f, 0, 1f, 0f, 1f, 11, 2, 5, 0, 0),
            new(0.1f, 0, 1f, 0f, 1f, 12, 3, 6, 0, 0),
            new(2.5f, 0, 1f, 0f, 1f, 13, 4, 7, 0, 0),
            new(1f, 1, 1f, 0f, 1f, 14, 5, 8, 0, 0),
            new(0.7f, 3, 1f, 0f, 1f, 15, 6, 9, 0, 0),
            new(1f, vocabulary, 1f, 0f, 1f, 16, 7, 10, 0, 0),
            new(1f, 0, 0.1f, 0f, 1f, 17, 8, 11, 0, 0),
            new(1f, 0, 0.9f, 0f, 1f, 18, 9, 12, 0, 0),
            new(1f, 0, 1f, 0.05f, 1f, 19, 10, 13, 0, 0),
            new(1.5f, 0, 0.9f, 0.05f, 1f, 20, 11, 14, 0, 0),
            new(0.8f, 3, 0.9f, 0.05f, 1.3f, 21, 12, 15, half, listLength - half),
            new(1f, 0, 1f, 0f, 1.3f, 22, 13, 16, 0, listLength),
            new(1f, 0, 1f, 0f, 1f, ulong.MaxValue, 1 << 30, int.MaxValue, 0, 0),
            new(2.5f, Math.Max(1, vocabulary - 1), 0.5f, 0f, 0.7f, 0x1234_5678_9ABC_DEF0, 14, 17, 1, Math.Max(0, listLength - 1)),
        ];
    }

    /// <summary>Logits of a few kinds: plain, with ties and masked (−inf) entries, with edge values, and with one NaN per row.</summary>
    static float[] Logits(string kind, int rows, int vocabulary)
    {
        var values = TestValues.Random(rows * vocabulary, seed: vocabulary * 7 + kind.Length, scale: 6f);
        var random = new Random(vocabulary + kind.Length);
        switch (kind)
        {
            case "ties-and-masks":
                for (int i = 0; i < values.Length; i++)
                {
                    int choice = random.Next(6);
                    values[i] = choice switch
                    {
                        0 => float.NegativeInfinity,
                        1 => 2f,
                        2 => 0f,
                        3 => -0f,
                        _ => MathF.Round(values[i]),
                    };
                }
                // One row with every entry masked: the sampler falls back to the argmax (token 0).
                if (rows > 3)
                    values.AsSpan(3 * vocabulary, vocabulary).Fill(float.NegativeInfinity);
                break;
            case "edges":
                values = TestValues.WithEdges(rows * vocabulary, seed: vocabulary + 3, nonFinite: true);
                break;
            case "lone-nan":
                // One NaN per row, near the end (in the SIMD tail when the width leaves one): the
                // maximum is NaN, so a maximum that dropped it anywhere would change the path.
                for (int r = 0; r < rows; r++)
                    values[r * vocabulary + vocabulary - 1 - r % Math.Min(3, vocabulary)] = float.NaN;
                break;
        }
        return values;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Draws_the_reference_tokens(string backendName, int vocabulary)
    {
        var backend = TestBackends.Get(backendName);
        int[] list = PenalizedList(vocabulary);
        foreach (var kind in new[] { "plain", "ties-and-masks", "edges", "lone-nan" })
        {
            var rows = TraceRows(vocabulary, kind, list.Length);
            var logits = Logits(kind, rows.Length, vocabulary);
            var expected = new int[rows.Length];
            Sampling.Reference(logits, vocabulary, rows, list, expected);
            var tensor = backend.Upload(logits, "logits");
            var actual = new int[rows.Length];
            backend.Sample(tensor, vocabulary, rows, list, actual);
            backend.Free(tensor);
            for (int r = 0; r < rows.Length; r++)
                Assert.True(expected[r] == actual[r],
                    $"{backend.Name} vocabulary {vocabulary} {kind} row {r} {rows[r]}: token {actual[r]}, expected {expected[r]}");
        }
    }

    [Theory]
    [MemberData(nameof(TestBackends.All), MemberType = typeof(TestBackends))]
    public void A_draw_depends_on_seed_sequence_and_step_not_on_the_batch(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        const int vocabulary = 40;
        var rows = Enumerable.Range(0, 6).Select(r => new SamplingRow(1f, 0, 0.95f, 0f, 1f, 99, Sequence: 10 + r % 2, Step: r, 0, 0)).ToArray();
        var logits = TestValues.Random(vocabulary, seed: 5, scale: 2f);
        var tensor = backend.Upload(logits, "logits");
        var alone = new int[rows.Length];
        for (int r = 0; r < rows.Length; r++)
        {
            var token = new int[1];
            backend.Sample(tensor, vocabulary, [rows[r]], [], token);
            alone[r] = token[0];
        }
        backend.Free(tensor);

        // The same rows in a batch, in reverse order, each behind a different other row.
        var batch = rows.Reverse().ToArray();
        var batchLogits = Enumerable.Repeat(logits, batch.Length).SelectMany(l => l).ToArray();
        var batchTensor = backend.Upload(batchLogits, "batch logits");
        var batched = new int[batch.Length];
        backend.Sample(batchTensor, vocabulary, batch, [], batched);
        backend.Free(batchTensor);
        for (int r = 0; r < rows.Length; r++)
            Assert.Equal(alone[r], batched[rows.Length - 1 - r]);
        Assert.True(alone.Distinct().Count() > 1, "different steps should not all draw the same token");
    }

    [Fact]
    public void Four_warps_per_row_give_the_same_tokens_as_one_on_the_ilgpu_cpu_accelerator()
    {
        // CUDA runs four warps per row; this machine may have no GPU, so run that shape on the CPU accelerator.
        const int vocabulary = 127; // thread 127 of the four warps has no element
        int[] list = PenalizedList(vocabulary);
        var rows = ParameterRows(vocabulary, list.Length).Where((_, r) => r is 0 or 6 or 9 or 12 or 15).ToArray();
        var logits = Logits("plain", rows.Length, vocabulary);
        var expected = new int[rows.Length];
        Sampling.Reference(logits, vocabulary, rows, list, expected);

        var library = IlgpuCpuLibrary.Library;
        var accelerator = library.Accelerator;
        var packed = new int[rows.Length * Sampling.ParameterInts];
        Sampling.PackParameters(rows, packed);
        using var logitBuffer = accelerator.Allocate1D(logits);
        using var weights = accelerator.Allocate1D<float>(logits.Length);
        using var parameters = accelerator.Allocate1D(packed);
        using var penalized = accelerator.Allocate1D(list);
        using var tokens = accelerator.Allocate1D<int>(rows.Length);
        Sampling.Run(library, logitBuffer.View, weights.View, parameters.View, penalized.View, tokens.View, vocabulary, rows.Length,
            warpsPerRow: Sampling.GpuWarps);
        accelerator.Synchronize();
        Assert.Equal(expected, tokens.GetAsArray1D());
    }

    // ---- the values each draw passes through, bit for bit on every evaluation ----

    /// <summary>
    /// Every evaluation of the sampler that can report its trace: the SIMD twin at each level with
    /// 1 and 2 threads, and the ILGPU kernel with the CPU's launch shapes (one warp per row) and
    /// CUDA's (four), and on CUDA where a device exists.
    /// </summary>
    static IEnumerable<string> TraceRunners() =>
        SimdLevels.Available.SelectMany(level => new[] { $"simd-{level.Name()}-t1", $"simd-{level.Name()}-t2" })
            .Concat(KernelLibraries.Names);

    /// <summary>
    /// Widths around the 32 canonical lanes (one term per lane, whole blocks, a tail), the vector
    /// widths, several blocks, and a real vocabulary (Llama 3's 128256), where sums have thousands
    /// of terms per lane.
    /// </summary>
    static readonly int[] TraceVocabularies = [1, 3, 17, 31, 32, 33, 64, 127, 512, 1000, 128256];

    public static IEnumerable<object[]> TraceCases() =>
        from runner in TraceRunners()
        from vocabulary in TraceVocabularies
        select new object[] { runner, vocabulary };

    const uint Unwritten = 0xDEADBEEF;

    static readonly Dictionary<string, (CpuWorkers Workers, SamplingSimd.Job Job)> SimdRunners = [];

    /// <summary>Draws with one evaluation, returning its trace (slots it does not reach keep <see cref="Unwritten"/>).</summary>
    static unsafe float[] Traced(string runner, float[] logits, int vocabulary, SamplingRow[] rows, int[] penalized, int[] tokens)
    {
        var trace = new float[rows.Length * SamplingTrace.Slots];
        Array.Fill(trace, BitConverter.UInt32BitsToSingle(Unwritten));
        if (runner == "reference")
        {
            Sampling.Reference(logits, vocabulary, rows, penalized, tokens, trace);
            return trace;
        }
        Sampling.Validate(logits.Length, vocabulary, rows, penalized, tokens.Length);
        if (runner.StartsWith("simd-", StringComparison.Ordinal))
        {
            (CpuWorkers Workers, SamplingSimd.Job Job) simd;
            lock (SimdRunners)
                if (!SimdRunners.TryGetValue(runner, out simd))
                    SimdRunners[runner] = simd = (new CpuWorkers(runner.EndsWith("-t2", StringComparison.Ordinal) ? 2 : 1), new SamplingSimd.Job());
            var level = SimdLevels.Available.Single(l => runner.StartsWith($"simd-{l.Name()}-", StringComparison.Ordinal));
            var packedRows = new int[rows.Length * Sampling.ParameterInts];
            Sampling.PackParameters(rows, packedRows);
            fixed (float* logitPointer = logits)
            fixed (int* parameterPointer = packedRows)
            fixed (int* penalizedPointer = penalized)
            fixed (int* tokenPointer = tokens)
            fixed (float* tracePointer = trace)
                SamplingSimd.Run(simd.Workers, level, simd.Job, logitPointer, vocabulary, parameterPointer, rows.Length,
                    penalizedPointer, tokenPointer, skip: null, tracePointer);
            return trace;
        }
        var library = KernelLibraries.Get(runner);
        var accelerator = library.Accelerator;
        var packed = new int[rows.Length * Sampling.ParameterInts];
        Sampling.PackParameters(rows, packed);
        using var logitBuffer = accelerator.Allocate1D(logits);
        using var weights = accelerator.Allocate1D<float>(logits.Length);
        using var parameters = accelerator.Allocate1D(packed);
        using var penalizedBuffer = accelerator.Allocate1D(penalized.Length == 0 ? [0] : penalized);
        using var tokenBuffer = accelerator.Allocate1D<int>(rows.Length);
        using var traceBuffer = accelerator.Allocate1D(trace);
        Sampling.Run(library, logitBuffer.View, weights.View, parameters.View, penalizedBuffer.View, tokenBuffer.View, vocabulary,
            rows.Length, trace: traceBuffer.View);
        accelerator.Synchronize();
        tokenBuffer.GetAsArray1D().CopyTo(tokens, 0);
        return traceBuffer.GetAsArray1D();
    }

    static readonly Dictionary<(int, string), (int[] Tokens, float[] Trace)> ReferenceTraces = [];

    /// <summary>
    /// The rows a trace case draws: on the ordinary logits every parameter combination; on the
    /// special ones those whose paths differ there; at a real vocabulary a few that reach every
    /// slot (the ILGPU CPU accelerator's cost grows with the vocabulary).
    /// </summary>
    static SamplingRow[] TraceRows(int vocabulary, string kind, int listLength)
    {
        var all = ParameterRows(vocabulary, listLength);
        if (vocabulary > 1000)
            return kind == "plain" ? all.Where((_, r) => r is 0 or 6 or 9 or 12 or 15).ToArray() : all.Where((_, r) => r is 9 or 12).ToArray();
        return kind == "plain" ? all : all.Where((_, r) => r is 0 or 1 or 5 or 6 or 9 or 12 or 15).ToArray();
    }

    /// <summary>
    /// Top-k's threshold, the maximum, top-p's target and τ, the filtered total, the draw's target
    /// and the prefix sums on either side of the drawn token are the reference's bits on every
    /// evaluation: a sum or a search in another order shows here even when the token stays.
    /// </summary>
    [Theory]
    [MemberData(nameof(TraceCases))]
    public void The_trace_of_every_draw_matches_the_reference_bit_for_bit(string runner, int vocabulary)
    {
        int[] list = PenalizedList(vocabulary);
        foreach (var kind in new[] { "plain", "ties-and-masks", "edges", "lone-nan" })
        {
            var rows = TraceRows(vocabulary, kind, list.Length);
            var logits = Logits(kind, rows.Length, vocabulary);
            (int[] Tokens, float[] Trace) expected;
            lock (ReferenceTraces)
                if (!ReferenceTraces.TryGetValue((vocabulary, kind), out expected))
                {
                    var referenceTokens = new int[rows.Length];
                    ReferenceTraces[(vocabulary, kind)] = expected = (referenceTokens, Traced("reference", logits, vocabulary, rows, list, referenceTokens));
                }
            var tokens = new int[rows.Length];
            var trace = Traced(runner, logits, vocabulary, rows, list, tokens);
            for (int r = 0; r < rows.Length; r++)
            {
                string context = $"{runner} vocabulary {vocabulary} {kind} row {r} {rows[r]}";
                Assert.True(expected.Tokens[r] == tokens[r], $"{context}: token {tokens[r]}, expected {expected.Tokens[r]}");
                Bits.Equal(expected.Trace.AsSpan(r * SamplingTrace.Slots, SamplingTrace.Slots), trace.AsSpan(r * SamplingTrace.Slots, SamplingTrace.Slots),
                    $"{context}: trace (slots: top-k key, max, top-p target, tau, total, target, prefix before, prefix through)");
            }
        }
    }

    static readonly Dictionary<int, (float[] Logits, SamplingRow[] Rows)> NearTieRows = [];

    /// <summary>
    /// Rows whose decisions are near ties, for one row of logits: top-p values whose target p·Σe
    /// equals the canonical mass of the j largest weights exactly, and (sequence, step) pairs whose
    /// draw target lies within an ulp of a canonical prefix sum (half of them at a whole block of
    /// 32 terms). A search that sums in another order decides these differently although random
    /// draws would almost never notice. Found once per vocabulary (a scan of a few million steps).
    /// </summary>
    static (float[] Logits, SamplingRow[] Rows) NearTies(int vocabulary)
    {
        lock (NearTieRows)
        {
            if (!NearTieRows.TryGetValue(vocabulary, out var found))
                NearTieRows[vocabulary] = found = FindNearTies(vocabulary);
            return found;
        }
    }

    static (float[] Logits, SamplingRow[] Rows) FindNearTies(int vocabulary)
    {
        var x = TestValues.Random(vocabulary, seed: vocabulary + 77, scale: 4f);
        float max = Canonical.Max(x);
        var e = x.Select(v => CanonicalMath.Exp(v - max)).ToArray();
        float total = Canonical.Sum(e);
        var rows = new List<SamplingRow>();
        const ulong seed = 4242;

        var descending = e.OrderByDescending(v => v).ToArray();
        // Small sets, and sets of a large share of the vocabulary, where each lane's masked sum has
        // many terms and an order change rounds differently.
        var sizes = new[] { 2, 3 }.Concat(new[] { 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9 }.Select(f => (int)(f * vocabulary)));
        foreach (int j in sizes.Where(j => j >= 2 && j < vocabulary).Distinct())
        {
            float mass = Canonical.Sum(e.Select(v => v >= descending[j - 1] ? v : 0f).ToArray());
            float p = mass / total;
            for (int step = 0; step < 8 && p * total != mass; step++)
                p = p * total < mass ? MathF.BitIncrement(p) : MathF.BitDecrement(p);
            if (p * total == mass && p > 0f && p < 1f)
                rows.Add(new SamplingRow(1f, 0, p, 0f, 1f, seed, 1, j, 0, 0));
        }

        var prefix = new float[vocabulary];
        var lanes = new float[Canonical.Lanes];
        for (int k = 0; k < vocabulary; k++)
        {
            lanes[k % Canonical.Lanes] += e[k];
            prefix[k] = Canonical.SumTree(lanes.ToArray());
        }
        int atBlocks = 0, elsewhere = 0;
        for (int step = 0; step < 16_000_000 && (atBlocks < 8 || elsewhere < 8); step++)
        {
            float target = Philox.Uniform(seed, 0, step) * total;
            int k = Array.BinarySearch(prefix, target);
            k = k < 0 ? Math.Min(~k, vocabulary - 1) : k;
            foreach (int near in new[] { k - 1, k })
            {
                // The target equals the prefix sum or is one ulp below it: one ulp the other way
                // in that sum flips whether it exceeds the target.
                if (near < 0 || !(target == prefix[near] || MathF.BitIncrement(target) == prefix[near]))
                    continue;
                bool block = (near + 1) % Canonical.Lanes == 0;
                if (block ? atBlocks++ < 8 : elsewhere++ < 8)
                    rows.Add(new SamplingRow(1f, 0, 1f, 0f, 1f, seed, 0, step, 0, 0));
                break;
            }
        }
        return (Enumerable.Repeat(x, rows.Count).SelectMany(v => v).ToArray(), rows.ToArray());
    }

    public static IEnumerable<object[]> NearTieCases() =>
        from runner in TraceRunners()
        from vocabulary in new[] { 256, 1000 }
        select new object[] { runner, vocabulary };

    [Theory]
    [MemberData(nameof(NearTieCases))]
    public void Near_ties_in_top_p_and_the_draw_are_decided_as_the_reference_decides(string runner, int vocabulary)
    {
        var (logits, rows) = NearTies(vocabulary);
        Assert.True(rows.Count(r => r.TopP < 1f) >= 4 && rows.Count(r => r.TopP == 1f) >= 12, $"only {rows.Length} near ties found");
        var expectedTokens = new int[rows.Length];
        var expected = Traced("reference", logits, vocabulary, rows, [], expectedTokens);
        var tokens = new int[rows.Length];
        var trace = Traced(runner, logits, vocabulary, rows, [], tokens);
        for (int r = 0; r < rows.Length; r++)
        {
            string context = $"{runner} vocabulary {vocabulary} row {r} {rows[r]}";
            Assert.True(expectedTokens[r] == tokens[r], $"{context}: token {tokens[r]}, expected {expectedTokens[r]}");
            Bits.Equal(expected.AsSpan(r * SamplingTrace.Slots, SamplingTrace.Slots), trace.AsSpan(r * SamplingTrace.Slots, SamplingTrace.Slots), $"{context}: trace");
        }
    }

    /// <summary>
    /// Min-p keeps a weight equal to its floor (e ≥ min-p): rows whose min-p is exactly the weight
    /// of the 1st (min-p 1: only the maximum stays), 2nd, 3rd, 5th and 10th largest logit, so the
    /// kept set ends at a tie with the floor, in the vector part of a row and in its tail (the
    /// largest logits are moved to indices 5, 40, 250, vocabulary − 3 and vocabulary − 1). A
    /// strict comparison drops that weight and changes the total the draw scales.
    /// </summary>
    [Theory]
    [MemberData(nameof(NearTieCases))]
    public void Min_p_keeps_weights_equal_to_its_floor(string runner, int vocabulary)
    {
        var x = TestValues.Random(vocabulary, seed: vocabulary + 5, scale: 4f);
        var byValue = Enumerable.Range(0, vocabulary).OrderByDescending(i => x[i]).ToArray();
        int[] places = [5, 40, 250, vocabulary - 3, vocabulary - 1];
        for (int j = 0; j < places.Length; j++)
            (x[places[j]], x[byValue[j]]) = (x[byValue[j]], x[places[j]]);
        float max = Canonical.Max(x);
        var descending = x.Select(v => CanonicalMath.Exp(v - max)).OrderByDescending(v => v).ToArray();
        var rows = new[] { 0, 1, 2, 4, 9 }
            .Select((rank, r) => new SamplingRow(1f, 0, 1f, descending[rank], 1f, 99, r, rank, 0, 0)).ToArray();
        var logits = Enumerable.Repeat(x, rows.Length).SelectMany(v => v).ToArray();
        var expectedTokens = new int[rows.Length];
        var expected = Traced("reference", logits, vocabulary, rows, [], expectedTokens);
        var tokens = new int[rows.Length];
        var trace = Traced(runner, logits, vocabulary, rows, [], tokens);
        for (int r = 0; r < rows.Length; r++)
        {
            string context = $"{runner} vocabulary {vocabulary} row {r} {rows[r]}";
            Assert.True(expectedTokens[r] == tokens[r], $"{context}: token {tokens[r]}, expected {expectedTokens[r]}");
            Bits.Equal(expected.AsSpan(r * SamplingTrace.Slots, SamplingTrace.Slots), trace.AsSpan(r * SamplingTrace.Slots, SamplingTrace.Slots), $"{context}: trace");
        }
        // Min-p 1 keeps exactly the maximum: its total is the maximum's weight, 1.
        Assert.Equal(1f, expected[SamplingTrace.Total]);
    }

    [Fact]
    public void The_trace_cases_reach_every_slot_and_every_prefix_block()
    {
        // A test that never fills a slot cannot see it change: every slot must be written by some
        // row, and the drawn tokens must lie in more than one block of 32 at the real vocabulary.
        const int vocabulary = 1000;
        int[] list = PenalizedList(vocabulary);
        var rows = TraceRows(vocabulary, "plain", list.Length);
        var tokens = new int[rows.Length];
        var trace = Traced("reference", Logits("plain", rows.Length, vocabulary), vocabulary, rows, list, tokens);
        for (int slot = 0; slot < SamplingTrace.Slots; slot++)
            Assert.Contains(Enumerable.Range(0, rows.Length), r => BitConverter.SingleToUInt32Bits(trace[r * SamplingTrace.Slots + slot]) != Unwritten);
        Assert.True(tokens.Select(t => t / Canonical.Lanes).Distinct().Count() > 3, $"tokens {string.Join(", ", tokens)}");
    }

    // ---- what the sampler means ----

    static int[] Draws(IBackend backend, float[] logits, SamplingRow row, int count, ReadOnlySpan<int> penalized = default)
    {
        int vocabulary = logits.Length;
        var rows = Enumerable.Range(0, count).Select(i => row with { Sequence = i % 97, Step = i / 97 }).ToArray();
        var tensor = backend.Upload(Enumerable.Repeat(logits, count).SelectMany(l => l).ToArray(), "logits");
        var tokens = new int[count];
        backend.Sample(tensor, vocabulary, rows, penalized, tokens);
        backend.Free(tensor);
        return tokens;
    }

    /// <summary>
    /// Σ (observed − expected)² / expected over the tokens with non-zero expected probability, and
    /// no draw of a token whose expected probability is zero. The bound is the chi-square quantile
    /// with tail 10⁻⁶ for the degrees of freedom used: a correct sampler essentially never exceeds
    /// it, and since the draws are deterministic the outcome is fixed anyway.
    /// </summary>
    static void AssertFrequencies(int[] tokens, double[] probabilities, string context)
    {
        var counts = new int[probabilities.Length];
        foreach (int token in tokens)
            counts[token]++;
        double chiSquare = 0;
        int degrees = -1;
        for (int t = 0; t < probabilities.Length; t++)
        {
            if (probabilities[t] == 0)
            {
                Assert.True(counts[t] == 0, $"{context}: filtered token {t} drawn {counts[t]} times");
                continue;
            }
            double expected = probabilities[t] * tokens.Length;
            chiSquare += (counts[t] - expected) * (counts[t] - expected) / expected;
            degrees++;
        }
        double[] bound = [0, 23.93, 27.63, 30.66, 33.38, 35.89, 38.32, 40.52];
        Assert.True(chiSquare < bound[degrees],
            $"{context}: chi-square {chiSquare:F2} ≥ {bound[degrees]} with {degrees} degrees of freedom; counts {string.Join(", ", counts)}");
    }

    static readonly double[] Known = [0.4, 0.25, 0.2, 0.1, 0.05];
    static float[] KnownLogits => Known.Select(p => (float)Math.Log(p)).ToArray();

    static double[] Renormalised(params int[] kept)
    {
        var p = new double[Known.Length];
        double mass = kept.Sum(k => Known[k]);
        foreach (int k in kept)
            p[k] = Known[k] / mass;
        return p;
    }

    public static IEnumerable<object[]> FastBackends() =>
        TestBackends.All.Where(b => ((string)b[0]).StartsWith("simd-", StringComparison.Ordinal) && ((string)b[0]).EndsWith("-t2", StringComparison.Ordinal));

    [Theory]
    [MemberData(nameof(FastBackends))]
    public void Frequencies_match_the_distribution_and_filtered_tokens_never_appear(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        const int draws = 20000;
        var logits = KnownLogits;
        var plain = new SamplingRow(1f, 0, 1f, 0f, 1f, 2024, 0, 0, 0, 0);
        AssertFrequencies(Draws(backend, logits, plain, draws), Known, "temperature 1");
        // Temperature 2 flattens: p ∝ p^(1/2).
        var flat = Known.Select(Math.Sqrt).ToArray();
        AssertFrequencies(Draws(backend, logits, plain with { Temperature = 2f }, draws), flat.Select(p => p / flat.Sum()).ToArray(), "temperature 2");
        AssertFrequencies(Draws(backend, logits, plain with { TopK = 3 }, draws), Renormalised(0, 1, 2), "top-k 3");
        // Top-p keeps the smallest set of top tokens reaching p, the crossing token included:
        // 0.4 < 0.5 so token 1 joins; 0.65 ≥ 0.6 so token 2 does not.
        AssertFrequencies(Draws(backend, logits, plain with { TopP = 0.5f }, draws), Renormalised(0, 1), "top-p 0.5");
        AssertFrequencies(Draws(backend, logits, plain with { TopP = 0.6f }, draws), Renormalised(0, 1), "top-p 0.6");
        AssertFrequencies(Draws(backend, logits, plain with { TopP = 0.7f }, draws), Renormalised(0, 1, 2), "top-p 0.7");
        // Min-p is relative to the top token: 0.3 · 0.4 = 0.12 removes 0.1 and 0.05.
        AssertFrequencies(Draws(backend, logits, plain with { MinP = 0.3f }, draws), Renormalised(0, 1, 2), "min-p 0.3");
        AssertFrequencies(Draws(backend, logits, plain with { TopK = 4, TopP = 0.8f, MinP = 0.3f }, draws), Renormalised(0, 1, 2), "top-k 4, top-p 0.8, min-p 0.3");
    }

    [Fact]
    public void The_reference_matches_the_known_distribution_too()
    {
        const int draws = 20000;
        var rows = Enumerable.Range(0, draws).Select(i => new SamplingRow(1f, 0, 1f, 0f, 1f, 7, i % 101, i / 101, 0, 0)).ToArray();
        var logits = Enumerable.Repeat(KnownLogits, draws).SelectMany(l => l).ToArray();
        var tokens = new int[draws];
        Sampling.Reference(logits, Known.Length, rows, [], tokens);
        AssertFrequencies(tokens, Known, "reference, temperature 1");
    }

    [Fact]
    public void Greedy_takes_the_lowest_id_among_ties_and_skips_NaN()
    {
        var backend = TestBackends.Get("simd-scalar-t1");
        Assert.Equal([2], Draws(backend, [1f, 0f, 3f, 3f, -1f], SamplingRow.Greedy(), 1));
        Assert.Equal([1], Draws(backend, [float.NaN, 0f, -0f, float.NaN], SamplingRow.Greedy(), 1));
        Assert.Equal([0], Draws(backend, [-0f, 0f], SamplingRow.Greedy(), 1));
        Assert.Equal([0], Draws(backend, [float.NegativeInfinity, float.NegativeInfinity], SamplingRow.Greedy(), 1));
        // Top-k 1 keeps every token tied for the top, so sampling chooses among them.
        var tied = Draws(backend, [3f, 1f, 3f, 3f], new SamplingRow(1f, 1, 1f, 0f, 1f, 5, 0, 0, 0, 0), 3000);
        Assert.Equal([0, 2, 3], tied.Distinct().Order().ToArray());
    }

    [Fact]
    public void Top_k_keeps_values_tied_with_the_kth_largest_including_signed_zeros()
    {
        var backend = TestBackends.Get("simd-scalar-t1");
        var row = new SamplingRow(1f, 2, 1f, 0f, 1f, 5, 0, 0, 0, 0);
        Assert.Equal([0, 1, 3], Draws(backend, [1f, 0f, -1f, -0f, -2f], row, 3000).Distinct().Order().ToArray());
        Assert.Equal([0, 2, 3], Draws(backend, [5f, -1f, 4f, 4f, 3f], row, 3000).Distinct().Order().ToArray());
    }

    [Fact]
    public void The_repetition_penalty_divides_positive_logits_and_multiplies_negative_ones()
    {
        Assert.Equal(2f, Sampling.Penalize(2.6f, 1.3f));
        Assert.Equal(-2.6f, Sampling.Penalize(-2f, 1.3f));
        Assert.Equal(0f, Sampling.Penalize(0f, 1.3f));
        var backend = TestBackends.Get("simd-scalar-t1");
        float[] logits = [2.5f, 2.2f, -1f, -1.1f];
        var greedy = SamplingRow.Greedy() with { RepetitionPenalty = 1.3f, PenaltyCount = 1 };
        Assert.Equal([1], Draws(backend, logits, greedy, 1, [0]));  // 2.5 / 1.3 < 2.2
        Assert.Equal([0], Draws(backend, logits, greedy, 1, [2]));
        float[] negative = [-1f, -1.2f];
        Assert.Equal([1], Draws(backend, negative, greedy, 1, [0])); // −1 · 1.3 < −1.2
    }

    // ---- validation ----

    public static IEnumerable<object[]> InvalidRows()
    {
        var good = new SamplingRow(1f, 0, 1f, 0f, 1f, 0, 0, 0, 0, 1);
        yield return [good with { Temperature = -1f }, "sampling row 1: temperature -1"];
        yield return [good with { Temperature = float.NaN }, "sampling row 1: temperature NaN"];
        yield return [good with { Temperature = float.PositiveInfinity }, "sampling row 1: temperature Infinity"];
        yield return [good with { TopK = -1 }, "sampling row 1: top-k -1"];
        yield return [good with { TopP = 0f }, "sampling row 1: top-p 0"];
        yield return [good with { TopP = 1.5f }, "sampling row 1: top-p 1.5"];
        yield return [good with { TopP = float.NaN }, "sampling row 1: top-p NaN"];
        yield return [good with { MinP = -0.1f }, "sampling row 1: min-p -0.1"];
        yield return [good with { MinP = 1.5f }, "sampling row 1: min-p 1.5"];
        yield return [good with { RepetitionPenalty = 0f }, "sampling row 1: repetition penalty 0"];
        yield return [good with { RepetitionPenalty = float.PositiveInfinity }, "sampling row 1: repetition penalty Infinity"];
        yield return [good with { Sequence = -1 }, "sampling row 1: sequence -1"];
        yield return [good with { Step = -2 }, "sampling row 1: sequence 0 and step -2"];
        yield return [good with { PenaltyOffset = 5, PenaltyCount = 3 }, "sampling row 1: penalized tokens [5, 8) lie outside the list of 7"];
        yield return [good with { PenaltyOffset = -1 }, "sampling row 1: penalized tokens [-1, 0) lie outside the list of 7"];
        yield return [good with { PenaltyOffset = 6, PenaltyCount = 1 }, "sampling row 1: penalized token 9 is outside the vocabulary of 5"];
        yield return [good with { PenaltyOffset = 3, PenaltyCount = 1 }, "sampling row 1: penalized token -1 is outside the vocabulary of 5"];
        yield return [good with { PenaltyOffset = 0, PenaltyCount = 3 }, "sampling row 1: penalized token 2 is listed twice"];
        yield return [good with { RepetitionPenalty = 1.3f, PenaltyOffset = 4, PenaltyCount = 2 }, "sampling row 1: penalized token 3 is listed twice"];
    }

    public static IEnumerable<object[]> InvalidCases() =>
        from backend in TestBackends.All.Where(b => (string)b[0] is "ilgpu-cpu" or "simd-scalar-t1")
        from invalid in InvalidRows()
        select new[] { backend[0], invalid[0], invalid[1] };

    [Theory]
    [MemberData(nameof(InvalidCases))]
    public void Rejects_invalid_rows_naming_the_row_and_the_field(string backendName, SamplingRow row, string message)
    {
        var backend = TestBackends.Get(backendName);
        int[] list = [2, 0, 2, -1, 3, 3, 9];
        var logits = backend.Upload(new float[10], "logits");
        var error = Assert.ThrowsAny<ArgumentException>(() =>
            backend.Sample(logits, 5, [SamplingRow.Greedy(), row], list, new int[2]));
        Assert.Contains(message, error.Message);
        Assert.ThrowsAny<ArgumentException>(() => Sampling.Reference(new float[10], 5, [SamplingRow.Greedy(), row], list, new int[2]));
        backend.Free(logits);
    }

    [Theory]
    [MemberData(nameof(TestBackends.All), MemberType = typeof(TestBackends))]
    public void Rejects_mismatched_shapes(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        var logits = backend.Upload(new float[10], "logits");
        var error = Assert.Throws<ArgumentException>(() => backend.Sample(logits, 4, [SamplingRow.Greedy(), SamplingRow.Greedy()], [], new int[2]));
        Assert.Contains("sampling: logits holds 10 values; expected 8 (rows 2 × vocabulary 4)", error.Message);
        error = Assert.Throws<ArgumentException>(() => backend.Sample(logits, 5, [SamplingRow.Greedy(), SamplingRow.Greedy()], [], new int[3]));
        Assert.Contains("sampling: tokens holds 3 values; expected 2", error.Message);
        error = Assert.Throws<ArgumentException>(() => backend.Sample(logits, 0, [], [], []));
        Assert.Contains("sampling: vocabulary is 0", error.Message);
        backend.Free(logits);
    }
}
