using System.Runtime.InteropServices;
using IlgpuLlm.Kernels;
using IlgpuLlm.Runtime.Backends;

namespace IlgpuLlm.Runtime.Generation;

/// <summary>What one forward step of a model can hold, fixed when its <see cref="StepBatch"/> is made.</summary>
public sealed record StepBatchLayout
{
    /// <summary>Rows (tokens) one step takes.</summary>
    public required int MaxRows { get; init; }

    /// <summary>Sequences in flight (cache slots): a step draws at most one token for each.</summary>
    public required int Slots { get; init; }

    public required int ContextLength { get; init; }

    public required int Vocabulary { get; init; }

    /// <summary>Query heads: attention reports fully masked rows per (row, head).</summary>
    public int Heads { get; init; } = 1;

    /// <summary>The cache the step writes, whose kinds of layers get their own destinations and key ranges; null for none.</summary>
    public KvCacheLayout? Cache { get; init; }

    /// <summary>The rotary tables whose angles each row needs at its position.</summary>
    public IReadOnlyList<RotaryTable> RotaryTables { get; init; } = [];

    /// <summary>Rows the step's rows-per-slot check allows: a sliding ring holds window + this − 1 positions.</summary>
    public int MaxRowsPerSlot => Cache?.MaxRowsPerForward ?? MaxRows;
}

/// <summary>
/// Everything per-row one forward step needs, built by the scheduler on the host, validated there
/// (the API boundary: slots, positions, ids, logit rows, sampling parameters, penalized tokens,
/// unique cache rows), and uploaded as one transfer: token ids, logit rows, each kind of cache
/// layer's destinations and key ranges (<see cref="CacheKind"/>), the (cos, sin) angles of each
/// rotary table, and the draws' packed <see cref="SamplingRow"/>s and penalized tokens. The ops of
/// the step read views into that one device buffer, and raise problem flags there (f16 overflow
/// and fully masked rows, marked by layer; non-finite logits); the sampled ids and every flag come
/// back in one download at the end. Every device buffer is allocated when the batch is made, for
/// the most rows and draws a step takes, so a decode step allocates nothing. One batch serves one
/// step at a time.
/// </summary>
public sealed class StepBatch : IDisposable
{
    const int SectionAlignment = 16; // ints: 64 bytes

    readonly IBackend backend;
    readonly StepBatchLayout layout;
    readonly CacheKind[] kinds;
    readonly int layers;
    readonly int penalizedCapacity;
    readonly TokenRow[] rows;
    readonly int[] positions, logitRows, penalized, rowsPerSlot, sorted;
    readonly SamplingRow[] draws;
    readonly byte[] blob;
    readonly Tensor device;
    readonly List<RowProblem> reported = [];
    readonly int[] maxKeys;
    Tensor attentionWorkspace;
    int rowCount, logitCount, drawCount, penalizedCount;
    bool uploaded, downloaded;

    // Section offsets of the current step, in ints from the start of the buffer.
    int sampledAt, nonFiniteAt, overflowAt, maskedAt, outputEnd, tokensAt, logitRowsAt, parametersAt, penalizedAt, end;
    readonly int[] destinationsAt, rangesAt, anglesAt;

    // Views of the current step's sections, made once per step.
    Tensor? tokens, logitRowsView, parameters, penalizedView, sampled, nonFinite, overflow, masked;
    readonly Tensor?[] destinations, ranges, angles;

    public StepBatch(IBackend backend, StepBatchLayout layout)
    {
        Shapes.Positive("step batch: rows", layout.MaxRows);
        Shapes.Positive("step batch: slots", layout.Slots);
        Shapes.Positive("step batch: context length", layout.ContextLength);
        Shapes.Positive("step batch: vocabulary", layout.Vocabulary);
        Shapes.Positive("step batch: heads", layout.Heads);
        if (layout.Cache is { } cache && (cache.Slots != layout.Slots || cache.ContextLength != layout.ContextLength))
            throw new ArgumentException($"step batch: the cache has {cache.Slots} slots of {cache.ContextLength} positions; the batch {layout.Slots} of {layout.ContextLength}");
        foreach (var table in layout.RotaryTables)
            Shapes.Positive("step batch: rotary head_dim", table.HeadDim);
        this.backend = backend;
        this.layout = layout;
        kinds = [.. layout.Cache?.Kinds() ?? []];
        layers = layout.Cache?.Layers ?? 1;
        int maxRows = layout.MaxRows, slots = layout.Slots;
        penalizedCapacity = checked(slots * Math.Min(layout.ContextLength, layout.Vocabulary));
        rows = new TokenRow[maxRows];
        positions = new int[maxRows];
        logitRows = new int[maxRows];
        draws = new SamplingRow[slots];
        penalized = new int[penalizedCapacity];
        rowsPerSlot = new int[slots];
        sorted = new int[maxRows];
        maxKeys = new int[kinds.Length];
        destinationsAt = new int[kinds.Length];
        rangesAt = new int[kinds.Length];
        anglesAt = new int[layout.RotaryTables.Count];
        destinations = new Tensor?[kinds.Length];
        ranges = new Tensor?[kinds.Length];
        angles = new Tensor?[layout.RotaryTables.Count];

        long ints = Align(slots) + Align(maxRows) + Align(maxRows) + Align((long)maxRows * layout.Heads)
            + Align(maxRows) + Align(maxRows) + Align((long)slots * Sampling.ParameterInts) + Align(penalizedCapacity)
            + kinds.Length * (Align(maxRows) + Align(3L * maxRows))
            + layout.RotaryTables.Sum(t => Align((long)maxRows * t.HeadDim));
        blob = new byte[checked(ints * sizeof(int))];
        device = backend.Allocate(TensorType.I32, ints, "step batch");
        // Decode (one row per sequence) at any depth fits; a longer prefill step grows it.
        long decodeScores = (long)slots * layout.Heads * (kinds.Length > 0 ? kinds.Max(k => k.Capacity) : 1);
        attentionWorkspace = backend.Allocate(TensorType.F32, decodeScores, "attention scores");
        SamplingWorkspace = backend.Allocate(TensorType.F32, (long)slots * layout.Vocabulary, "sampling weights");
    }

    static long Align(long ints) => (ints + SectionAlignment - 1) / SectionAlignment * SectionAlignment;

    public StepBatchLayout Layout => layout;

    /// <summary>The kinds of cache layers, in <see cref="KvCacheLayout.Kinds"/> order.</summary>
    public IReadOnlyList<CacheKind> Kinds => kinds;

    // ---------------------------------------------------------------- building, on the host

    /// <summary>Starts a new step.</summary>
    public void Clear()
    {
        rowCount = logitCount = drawCount = penalizedCount = 0;
        reported.Clear();
        uploaded = downloaded = false;
    }

    /// <summary>Adds a row (a token at a position of a slot); returns its index.</summary>
    public int Add(TokenRow row)
    {
        if (rowCount == layout.MaxRows)
            throw new ArgumentOutOfRangeException(nameof(row), $"a forward pass takes 1 to {layout.MaxRows} rows; got more");
        rows[rowCount] = row;
        return rowCount++;
    }

    /// <summary>
    /// Asks for the logits of row <paramref name="row"/> (the next logits row of the step), and,
    /// with <paramref name="draw"/>, for a token drawn from them. Either every logits row of a step
    /// draws or none does; <paramref name="penalizedTokens"/> become the draw's penalty list (its
    /// offset and count are set here).
    /// </summary>
    public void AddLogitRow(int row, SamplingRow? draw = null, ReadOnlySpan<int> penalizedTokens = default)
    {
        if (logitCount == layout.MaxRows)
            throw new ArgumentOutOfRangeException(nameof(row), $"a step gives at most {layout.MaxRows} logits rows");
        if (draw is SamplingRow sampling)
        {
            if (drawCount != logitCount)
                throw new ArgumentException("a step draws from every logits row or from none");
            if (drawCount == layout.Slots)
                throw new ArgumentOutOfRangeException(nameof(draw), $"a step draws at most {layout.Slots} tokens (one per slot)");
            if (penalizedTokens.Length > penalizedCapacity - penalizedCount)
                throw new ArgumentOutOfRangeException(nameof(penalizedTokens),
                    $"a step penalizes at most {penalizedCapacity} tokens; {penalizedCount + penalizedTokens.Length} were given");
            penalizedTokens.CopyTo(penalized.AsSpan(penalizedCount));
            draws[drawCount++] = sampling with { PenaltyOffset = penalizedCount, PenaltyCount = penalizedTokens.Length };
            penalizedCount += penalizedTokens.Length;
        }
        else if (drawCount > 0)
            throw new ArgumentException("a step draws from every logits row or from none");
        logitRows[logitCount++] = row;
    }

    public int RowCount => rowCount;
    public ReadOnlySpan<TokenRow> Rows => rows.AsSpan(0, rowCount);

    public int LogitRowCount => logitCount;
    public ReadOnlySpan<int> LogitRowIndices => logitRows.AsSpan(0, logitCount);

    /// <summary>Draws of the step: 0, or one per logits row.</summary>
    public int DrawCount => drawCount;

    /// <summary>
    /// Validates the step and uploads it: one transfer, which also clears the flags and sampled
    /// ids of the step before any op raises them.
    /// </summary>
    public void Upload()
    {
        int n = rowCount, m = logitCount, d = drawCount;
        if (n < 1)
            throw new ArgumentOutOfRangeException(nameof(Rows), $"a forward pass takes 1 to {layout.MaxRows} rows; got 0");
        ValidateRows();
        for (int i = 0; i < m; i++)
            if ((uint)logitRows[i] >= (uint)n)
                throw new ArgumentOutOfRangeException(nameof(LogitRowIndices), $"logit row {logitRows[i]} is not one of the {n} rows");
        var penalties = penalized.AsSpan(0, penalizedCount);
        for (int i = 0; i < d; i++)
            draws[i].Validate(i, layout.Vocabulary, penalties);

        // Sections, outputs first so that one download brings them all back.
        int at = 0;
        int Section(long count)
        {
            int start = at;
            at = checked((int)(at + Align(count)));
            return start;
        }
        sampledAt = Section(d);
        nonFiniteAt = Section(m);
        overflowAt = Section(n);
        maskedAt = Section((long)n * layout.Heads);
        outputEnd = at;
        tokensAt = Section(n);
        logitRowsAt = Section(m);
        parametersAt = Section((long)d * Sampling.ParameterInts);
        penalizedAt = Section(penalizedCount);
        for (int k = 0; k < kinds.Length; k++)
        {
            destinationsAt[k] = Section(n);
            rangesAt[k] = Section(3L * n);
        }
        for (int t = 0; t < anglesAt.Length; t++)
            anglesAt[t] = Section((long)n * layout.RotaryTables[t].HeadDim);
        end = at;

        var ints = MemoryMarshal.Cast<byte, int>(blob.AsSpan(0, end * sizeof(int)));
        ints[..outputEnd].Clear();
        for (int r = 0; r < n; r++)
        {
            ints[tokensAt + r] = rows[r].Token;
            positions[r] = rows[r].Position;
        }
        logitRows.AsSpan(0, m).CopyTo(ints[logitRowsAt..]);
        Sampling.PackParameters(draws.AsSpan(0, d), ints.Slice(parametersAt, d * Sampling.ParameterInts));
        penalties.CopyTo(ints[penalizedAt..]);
        for (int k = 0; k < kinds.Length; k++)
            FillKind(k, ints);
        for (int t = 0; t < anglesAt.Length; t++)
            layout.RotaryTables[t].Fill(positions.AsSpan(0, n),
                MemoryMarshal.Cast<int, float>(ints.Slice(anglesAt[t], n * layout.RotaryTables[t].HeadDim)));

        long scores = (long)n * layout.Heads * (maxKeys.Length > 0 ? maxKeys.Max() : 1);
        if (scores > attentionWorkspace.Length)
        {
            backend.Free(attentionWorkspace);
            attentionWorkspace = backend.Allocate(TensorType.F32, scores, "attention scores");
        }
        backend.Upload(device.Slice(0, end), blob.AsSpan(0, end * sizeof(int)));
        MakeViews();
        uploaded = true;
        downloaded = false;
    }

    /// <summary>Slots, positions and tokens in range; no slot with more rows than its sliding rings hold.</summary>
    void ValidateRows()
    {
        Array.Clear(rowsPerSlot);
        for (int r = 0; r < rowCount; r++)
        {
            var row = rows[r];
            if ((uint)row.Slot >= (uint)layout.Slots)
                throw new ArgumentOutOfRangeException(nameof(Rows), $"row {r} uses cache slot {row.Slot}; the cache has {layout.Slots} slots");
            if (row.Position < 0)
                throw new ArgumentOutOfRangeException(nameof(Rows), $"row {r} has negative position {row.Position}");
            if (row.Position >= layout.ContextLength)
                throw new ContextOverflowException(row.Slot, row.Position + 1, layout.ContextLength);
            if (++rowsPerSlot[row.Slot] > layout.MaxRowsPerSlot)
                throw new ArgumentException(
                    $"slot {row.Slot} has more than {layout.MaxRowsPerSlot} rows in one forward pass; split the prompt into chunks");
            if ((uint)row.Token >= (uint)layout.Vocabulary)
                throw new ArgumentOutOfRangeException(nameof(Rows),
                    $"embedding: id {row.Token} at row {r} is outside the table's {layout.Vocabulary} rows");
        }
    }

    /// <summary>The cache rows and key ranges of one kind of layer; two rows may not write one cache row.</summary>
    void FillKind(int k, Span<int> ints)
    {
        var kind = kinds[k];
        int n = rowCount;
        var destinations = ints.Slice(destinationsAt[k], n);
        var ranges = MemoryMarshal.Cast<int, KeyRange>(ints.Slice(rangesAt[k], 3 * n));
        int longest = 0;
        for (int r = 0; r < n; r++)
        {
            destinations[r] = kind.Destination(rows[r].Slot, rows[r].Position);
            ranges[r] = kind.Range(rows[r].Slot, rows[r].Position);
            longest = Math.Max(longest, ranges[r].Length);
        }
        maxKeys[k] = longest;
        if (n == 1)
            return;
        destinations.CopyTo(sorted);
        Array.Sort(sorted, 0, n);
        for (int i = 1; i < n; i++)
            if (sorted[i] == sorted[i - 1])
            {
                int first = destinations.IndexOf(sorted[i]);
                int second = first + 1 + destinations[(first + 1)..].IndexOf(sorted[i]);
                throw new ArgumentException(
                    $"rows {first} and {second} (slot {rows[first].Slot}, positions {rows[first].Position} and {rows[second].Position}) would write the same cache row of a layer with {kind.Capacity} positions");
            }
    }

    // ---------------------------------------------------------------- device views for the ops

    Tensor Ints(int at, long count, string name) => device.View(TensorType.I32, at * sizeof(int), count, name);

    void MakeViews()
    {
        int n = rowCount;
        tokens = Ints(tokensAt, n, "token ids");
        logitRowsView = Ints(logitRowsAt, logitCount, "logit rows");
        parameters = Ints(parametersAt, (long)drawCount * Sampling.ParameterInts, "sampling parameters");
        penalizedView = Ints(penalizedAt, penalizedCount, "penalized tokens");
        sampled = Ints(sampledAt, drawCount, "sampled tokens");
        nonFinite = Ints(nonFiniteAt, logitCount, "non-finite logits");
        overflow = Ints(overflowAt, n, "f16 overflows");
        masked = Ints(maskedAt, (long)n * layout.Heads, "fully masked heads");
        for (int k = 0; k < kinds.Length; k++)
        {
            destinations[k] = Ints(destinationsAt[k], n, "cache destinations");
            ranges[k] = Ints(rangesAt[k], 3L * n, "key ranges");
        }
        for (int t = 0; t < angles.Length; t++)
            angles[t] = device.View(TensorType.F32, anglesAt[t] * sizeof(int), (long)n * layout.RotaryTables[t].HeadDim, "rotary angles");
    }

    Tensor Uploaded(Tensor? view) =>
        uploaded ? view! : throw new InvalidOperationException("the step batch has not been uploaded (call Upload after adding its rows)");

    void ExpectUploaded() => Uploaded(device);

    /// <summary>Token ids, one per row (i32).</summary>
    public Tensor Tokens => Uploaded(tokens);

    /// <summary>The rows whose logits are wanted (i32).</summary>
    public Tensor LogitRows => Uploaded(logitRowsView);

    /// <summary>The cache row each row writes in the layers of kind <paramref name="kind"/> (i32).</summary>
    public Tensor Destinations(int kind) => Uploaded(destinations[kind]);

    /// <summary>The keys each row attends to in the layers of kind <paramref name="kind"/> (i32 triples of <see cref="KeyRange"/>).</summary>
    public Tensor Ranges(int kind) => Uploaded(ranges[kind]);

    /// <summary>The longest key range of the step in the layers of kind <paramref name="kind"/>.</summary>
    public int MaxKeys(int kind) => maxKeys[kind];

    /// <summary>(cos, sin) of each pair at each row's position, of rotary table <paramref name="table"/> (f32).</summary>
    public Tensor Angles(int table) => Uploaded(angles[table]);

    /// <summary>The draws' <see cref="Sampling.PackParameters"/> (i32).</summary>
    public Tensor SamplingParameters => Uploaded(parameters);

    /// <summary>Every draw's penalized tokens, one list after another (i32).</summary>
    public Tensor Penalized => Uploaded(penalizedView);

    /// <summary>Where the sampler writes each draw's token (i32).</summary>
    public Tensor Sampled => Uploaded(sampled);

    /// <summary>Scores work space of attention for this step (f32).</summary>
    public Tensor AttentionWorkspace => attentionWorkspace;

    /// <summary>Filtered-weights work space of the sampler (f32, draws × vocabulary).</summary>
    public Tensor SamplingWorkspace { get; }

    /// <summary>The flags of logits rows holding NaN or ±inf; the sampler skips the rows they raise.</summary>
    public ProblemFlags NonFiniteLogits => new(Uploaded(nonFinite), 1);

    /// <summary>The rows whose keys or values overflow f16 in layer <paramref name="layer"/>'s cache store.</summary>
    public ProblemFlags Overflow(int layer) => new(Uploaded(overflow), layers - layer);

    /// <summary>The (row, head)s of layer <paramref name="layer"/>'s attention with no finite score.</summary>
    public ProblemFlags FullyMasked(int layer) => new(Uploaded(masked), layers - layer);

    // ---------------------------------------------------------------- results, on the host

    /// <summary>Waits for the step and brings its sampled ids and problem flags back: one transfer.</summary>
    public void Download()
    {
        ExpectUploaded();
        backend.Download(device.Slice(0, outputEnd), blob.AsSpan(0, outputEnd * sizeof(int)));
        downloaded = true;
    }

    ReadOnlySpan<int> Outputs
    {
        get
        {
            if (!downloaded)
                throw new InvalidOperationException("the step's results have not been downloaded (call Download after its ops)");
            return MemoryMarshal.Cast<byte, int>(blob.AsSpan(0, outputEnd * sizeof(int)));
        }
    }

    /// <summary>The token drawn for draw <paramref name="draw"/>; −1 where its logits were not finite.</summary>
    public int SampledToken(int draw) => Outputs[sampledAt + draw];

    /// <summary>Whether logits row <paramref name="logitRow"/> holds NaN or ±inf.</summary>
    public bool LogitsNonFinite(int logitRow) => Outputs[nonFiniteAt + logitRow] != 0;

    /// <summary>A problem a model found on the host for a row (the first one reported for a row wins).</summary>
    public void Report(RowProblem problem) => reported.Add(problem);

    /// <summary>
    /// The rows that must stop, one problem each: what the model reported, else the first layer
    /// whose cache store overflowed f16 or whose attention found no finite score for some head
    /// (the store comes first within a layer).
    /// </summary>
    public IReadOnlyList<RowProblem> Problems()
    {
        var outputs = Outputs;
        var found = new List<RowProblem>();
        for (int r = 0; r < rowCount; r++)
        {
            if (FirstReported(r) is RowProblem problem)
            {
                found.Add(problem);
                continue;
            }
            int overflow = outputs[overflowAt + r];
            int masked = 0;
            for (int h = 0; h < layout.Heads; h++)
                masked = Math.Max(masked, outputs[maskedAt + r * layout.Heads + h]);
            if (overflow > 0 && overflow >= masked)
                found.Add(new RowProblem(r,
                    $"layer {layers - overflow}: a key or value at position {rows[r].Position} overflows the f16 KV cache (|x| > 65504); use --kv-dtype f32 or bf16"));
            else if (masked > 0)
                found.Add(new RowProblem(r,
                    $"layer {layers - masked}: attention at position {rows[r].Position} found no finite score for a head (every key masked)"));
        }
        return found;
    }

    RowProblem? FirstReported(int row)
    {
        foreach (var problem in reported)
            if (problem.Row == row)
                return problem;
        return null;
    }

    public void Dispose()
    {
        backend.Free(device);
        backend.Free(attentionWorkspace);
        backend.Free(SamplingWorkspace);
    }
}
