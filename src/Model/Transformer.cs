using IlgpuLlm.Kernels;
using IlgpuLlm.Model.Formats;
using IlgpuLlm.Runtime;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Runtime.Generation;

namespace IlgpuLlm.Model;

/// <summary>How a <see cref="Transformer"/> is set up on a backend.</summary>
public sealed record TransformerOptions
{
    /// <summary>Sequences in flight at once (KV cache slots).</summary>
    public int Slots { get; init; } = 1;

    /// <summary>Rows (tokens) one forward pass takes; longer prompts are fed in chunks (llama.cpp's n_ubatch).</summary>
    public int MaxRowsPerForward { get; init; } = 512;

    /// <summary>Positions the cache holds per sequence; 0 = the model's context, at most <see cref="DefaultContextCap"/>.</summary>
    public int ContextLength { get; init; }

    public StorageType KvType { get; init; } = StorageType.F32;

    /// <summary>The default cache context: long-context checkpoints would otherwise claim gigabytes per slot.</summary>
    public const int DefaultContextCap = 4096;
}

/// <summary>
/// The decoder-only transformer of every supported family, one forward pass parameterised by the
/// <see cref="ModelConfig"/>: the families differ only in data (norm placement, activation,
/// biases, q/k norms, soft-caps, sliding layers, rope bases, embedding scale, tying, GQA).
/// It reads like the math, in the manner of llama2.c's forward(); every step is one backend op.
/// </summary>
public sealed class Transformer : ILanguageModel, IDisposable
{
    readonly IBackend backend;
    readonly ModelConfig config;
    readonly Layer[] layers;
    readonly Tensor tokenEmbedding;  // (vocab, hidden)
    readonly Tensor outputNorm;      // (hidden)
    readonly Tensor classifier;      // (vocab, hidden): output.weight, or token_embd.weight when tied
    readonly RotaryTable[] rotaryTables;
    readonly KvCache cache;
    readonly WorkBuffers work;
    readonly List<Tensor> owned = [];
    readonly int[] rowTokens, rowSlots, rowPositions;
    readonly KeyRange[] rowRanges;
    readonly bool[] rowOverflowed, rowMasked;
    readonly float[] angleHost;
    readonly Tensor[] angleTensors;
    readonly Problems problems;

    /// <summary>One decoder block's weights; shapes as transformers stores them, (out, in).</summary>
    sealed class Layer
    {
        public required Tensor AttentionNorm;            // (hidden)
        public required Tensor Query, Key, Value;        // (heads·head_dim | kv_heads·head_dim, hidden)
        public Tensor? QueryBias, KeyBias, ValueBias;    // Qwen2
        public Tensor? QueryNorm, KeyNorm;               // (head_dim), Gemma 3
        public required Tensor AttentionOutput;          // (hidden, heads·head_dim)
        public Tensor? PostAttentionNorm;                // (hidden), Gemma 2/3
        public required Tensor FeedForwardNorm;          // (hidden)
        public required Tensor Gate, Up;                 // (intermediate, hidden)
        public required Tensor Down;                     // (hidden, intermediate)
        public Tensor? PostFeedForwardNorm;              // (hidden), Gemma 2/3
        public required int RotaryTable;                 // index into rotaryTables
    }

    /// <summary>Work buffers for the most rows a forward pass takes, allocated once.</summary>
    sealed class WorkBuffers
    {
        public required Tensor X, Normed, Q, K, V, QNormed, KNormed, Attended, Projected, Gate, Up, Angles;
        public Tensor? Last, LastNormed, Logits;
        public int LogitCapacity;
    }

    public Transformer(ModelCheckpoint checkpoint, IBackend backend, TransformerOptions? options = null)
    {
        options ??= new TransformerOptions();
        this.backend = backend;
        config = checkpoint.Config;
        Shapes.Positive("slots", options.Slots);
        Shapes.Positive("rows per forward", options.MaxRowsPerForward);
        ContextLength = options.ContextLength > 0
            ? Math.Min(options.ContextLength, config.ContextLength)
            : Math.Min(config.ContextLength, TransformerOptions.DefaultContextCap);
        MaxRowsPerForward = options.MaxRowsPerForward;
        Slots = options.Slots;

        // The SIMD backend widens f16 weights with an integer sequence exact only for finite values.
        checkpoint.EnsureAllFinite();
        tokenEmbedding = Weight(checkpoint, TensorNames.TokenEmbedding);
        outputNorm = Weight(checkpoint, TensorNames.OutputNorm);
        classifier = config.TiedEmbeddings ? tokenEmbedding : Weight(checkpoint, TensorNames.Output);

        var tables = new List<RotaryTable>();
        var tableKeys = new List<(double, bool)>();
        layers = new Layer[config.LayerCount];
        for (int l = 0; l < config.LayerCount; l++)
        {
            layers[l] = new Layer
            {
                AttentionNorm = Weight(checkpoint, TensorNames.AttentionNorm(l)),
                Query = Weight(checkpoint, TensorNames.AttentionQuery(l)),
                Key = Weight(checkpoint, TensorNames.AttentionKey(l)),
                Value = Weight(checkpoint, TensorNames.AttentionValue(l)),
                QueryBias = config.HasQkvBias ? Weight(checkpoint, TensorNames.AttentionQueryBias(l), asF32: true) : null,
                KeyBias = config.HasQkvBias ? Weight(checkpoint, TensorNames.AttentionKeyBias(l), asF32: true) : null,
                ValueBias = config.HasQkvBias ? Weight(checkpoint, TensorNames.AttentionValueBias(l), asF32: true) : null,
                QueryNorm = config.HasQueryKeyNorm ? Weight(checkpoint, TensorNames.AttentionQueryNorm(l)) : null,
                KeyNorm = config.HasQueryKeyNorm ? Weight(checkpoint, TensorNames.AttentionKeyNorm(l)) : null,
                AttentionOutput = Weight(checkpoint, TensorNames.AttentionOutput(l)),
                PostAttentionNorm = config.HasPostAttentionNorm ? Weight(checkpoint, TensorNames.PostAttentionNorm(l)) : null,
                FeedForwardNorm = Weight(checkpoint, TensorNames.FeedForwardNorm(l)),
                Gate = Weight(checkpoint, TensorNames.FeedForwardGate(l)),
                Up = Weight(checkpoint, TensorNames.FeedForwardUp(l)),
                Down = Weight(checkpoint, TensorNames.FeedForwardDown(l)),
                PostFeedForwardNorm = config.HasPostFeedForwardNorm ? Weight(checkpoint, TensorNames.PostFeedForwardNorm(l)) : null,
                RotaryTable = TableFor(tableKeys, tables, l),
            };
        }
        rotaryTables = [.. tables];

        var windows = Enumerable.Range(0, config.LayerCount)
            .Select(l => config.IsSlidingWindowLayer(l) ? config.SlidingWindow : null).ToArray();
        cache = new KvCache(backend, new KvCacheLayout(config.LayerCount, config.KeyValueHeadCount, config.HeadDim,
            Slots, ContextLength, MaxRowsPerForward, windows), options.KvType);
        work = AllocateActivations();
        rowTokens = new int[MaxRowsPerForward];
        rowSlots = new int[MaxRowsPerForward];
        rowPositions = new int[MaxRowsPerForward];
        rowRanges = new KeyRange[MaxRowsPerForward];
        rowOverflowed = new bool[MaxRowsPerForward];
        rowMasked = new bool[MaxRowsPerForward * config.HeadCount];
        angleHost = new float[MaxRowsPerForward * config.HeadDim];
        angleTensors = new Tensor[rotaryTables.Length];
        problems = new Problems(MaxRowsPerForward);
    }

    public IBackend Backend => backend;
    public ModelConfig Config => config;
    public KvCache Cache => cache;
    public int VocabSize => config.VocabSize;
    public int ContextLength { get; }
    public int Slots { get; }
    public int MaxRowsPerForward { get; }

    int QueryWidth => config.HeadCount * config.HeadDim;
    int KeyValueWidth => config.KeyValueHeadCount * config.HeadDim;

    /// <summary>
    /// The forward pass. x holds the residual stream of every row; each layer adds attention and
    /// feed-forward outputs to it. Only the rows in <paramref name="logitRows"/> reach the
    /// classifier (RMSNorm is row-wise, so normalising after the gather is the same).
    /// </summary>
    public ForwardResult Forward(ReadOnlySpan<TokenRow> rows, ReadOnlySpan<int> logitRows, ForwardChecks checks = ForwardChecks.None)
    {
        int n = rows.Length;
        if (n < 1 || n > MaxRowsPerForward)
            throw new ArgumentOutOfRangeException(nameof(rows), $"a forward pass takes 1 to {MaxRowsPerForward} rows; got {n}");
        // Per-row host data lives in buffers sized for the most rows a pass takes: the loop calls
        // this once per token and should not churn the GC.
        var tokens = rowTokens.AsSpan(0, n);
        var slots = rowSlots.AsSpan(0, n);
        var positions = rowPositions.AsSpan(0, n);
        for (int r = 0; r < n; r++)
            (slots[r], positions[r], tokens[r]) = (rows[r].Slot, rows[r].Position, rows[r].Token);
        cache.ValidateRows(slots, positions);
        foreach (int row in logitRows)
            if ((uint)row >= (uint)n)
                throw new ArgumentOutOfRangeException(nameof(logitRows), $"logit row {row} is not one of the {n} rows");
        var problems = this.problems;
        problems.Reset(n, checks == ForwardChecks.EveryOp ? backend : null);

        int hidden = config.HiddenSize, heads = config.HeadCount, kvHeads = config.KeyValueHeadCount, headDim = config.HeadDim;
        float eps = config.RmsNormEpsilon;
        var x = work.X.Slice(0, (long)n * hidden);
        var normed = work.Normed.Slice(0, (long)n * hidden);
        var q = work.Q.Slice(0, (long)n * QueryWidth);
        var k = work.K.Slice(0, (long)n * KeyValueWidth);
        var v = work.V.Slice(0, (long)n * KeyValueWidth);
        var attended = work.Attended.Slice(0, (long)n * QueryWidth);
        var projected = work.Projected.Slice(0, (long)n * hidden);
        var gate = work.Gate.Slice(0, (long)n * config.IntermediateSize);
        var up = work.Up.Slice(0, (long)n * config.IntermediateSize);
        var rowNorm = new RmsNormShape(n, hidden, eps, AddOneToWeight: false);
        var ranges = rowRanges.AsSpan(0, n);
        var overflowed = rowOverflowed.AsSpan(0, n);
        var fullyMasked = rowMasked.AsSpan(0, n * heads);

        // token embedding, scaled (Gemma: √hidden)
        backend.Embedding(tokenEmbedding, tokens, x, new EmbeddingShape(n, config.VocabSize, hidden), config.EmbeddingScale);
        problems.Check(x, hidden, -1, "the token embedding");
        var angles = RotaryAngles(positions);

        for (int l = 0; l < layers.Length; l++)
        {
            var layer = layers[l];
            // attention: rmsnorm → q, k, v projections (+ bias) → [q/k norm] → rotary → cache → attend → output projection
            backend.RmsNorm(x, layer.AttentionNorm, normed, rowNorm);
            backend.Linear(normed, layer.Query, layer.QueryBias, q, new LinearShape(n, QueryWidth, hidden));
            backend.Linear(normed, layer.Key, layer.KeyBias, k, new LinearShape(n, KeyValueWidth, hidden));
            backend.Linear(normed, layer.Value, layer.ValueBias, v, new LinearShape(n, KeyValueWidth, hidden));
            problems.Check(q, QueryWidth, l, "attention q projection");
            problems.Check(k, KeyValueWidth, l, "attention k projection");
            problems.Check(v, KeyValueWidth, l, "attention v projection");
            var (queries, keys) = (q, k);
            if (layer.QueryNorm != null && layer.KeyNorm != null)
            {
                queries = work.QNormed.Slice(0, q.Length);
                keys = work.KNormed.Slice(0, k.Length);
                backend.RmsNorm(q, layer.QueryNorm, queries, new RmsNormShape(n * heads, headDim, eps, false));
                backend.RmsNorm(k, layer.KeyNorm, keys, new RmsNormShape(n * kvHeads, headDim, eps, false));
            }
            var rotary = angles[layer.RotaryTable];
            backend.Rotary(queries, rotary, new RotaryShape(n, heads, headDim, config.RotaryLayout));
            backend.Rotary(keys, rotary, new RotaryShape(n, kvHeads, headDim, config.RotaryLayout));
            if (cache.Store(l, keys, v, slots, positions, overflowed))
                for (int r = 0; r < n; r++)
                    if (overflowed[r])
                        problems.Add(r, $"layer {l}: a key or value at position {positions[r]} overflows the f16 KV cache (|x| > 65504); use --kv-dtype f32 or bf16");
            for (int r = 0; r < n; r++)
                ranges[r] = cache.Range(l, slots[r], positions[r]);
            var attention = new AttentionShape(n, heads, kvHeads, headDim, Slots, cache.Layout.Capacity(l),
                config.AttentionScale, config.AttentionLogitSoftCap ?? 0f);
            backend.Attention(queries, cache.Keys(l), cache.Values(l), attended, ranges, attention, null, fullyMasked);
            problems.Check(attended, QueryWidth, l, "attention");
            backend.Linear(attended, layer.AttentionOutput, null, projected, new LinearShape(n, hidden, QueryWidth));
            if (layer.PostAttentionNorm != null)
            {
                backend.RmsNorm(projected, layer.PostAttentionNorm, normed, rowNorm);
                backend.Add(x, normed, x, x.Length);
            }
            else
                backend.Add(x, projected, x, x.Length);
            problems.Check(x, hidden, l, "attention output (attn_output)");

            // feed-forward: rmsnorm → act(gate) · up → down projection → [post norm] → residual
            backend.RmsNorm(x, layer.FeedForwardNorm, normed, rowNorm);
            backend.Linear(normed, layer.Gate, null, gate, new LinearShape(n, config.IntermediateSize, hidden));
            backend.Linear(normed, layer.Up, null, up, new LinearShape(n, config.IntermediateSize, hidden));
            backend.GatedActivation(gate, up, gate, gate.Length, config.Activation);
            problems.Check(gate, config.IntermediateSize, l, "feed-forward activation");
            backend.Linear(gate, layer.Down, null, projected, new LinearShape(n, hidden, config.IntermediateSize));
            if (layer.PostFeedForwardNorm != null)
            {
                backend.RmsNorm(projected, layer.PostFeedForwardNorm, normed, rowNorm);
                backend.Add(x, normed, x, x.Length);
            }
            else
                backend.Add(x, projected, x, x.Length);
            problems.Check(x, hidden, l, "feed-forward output (ffn_down)");
        }

        // final norm and classifier over the rows whose logits are wanted
        int m = logitRows.Length;
        var logits = LogitBuffer(m);
        if (m > 0)
        {
            var last = work.Last!.Slice(0, (long)m * hidden);
            var lastNormed = work.LastNormed!.Slice(0, (long)m * hidden);
            backend.Embedding(x, logitRows, last, new EmbeddingShape(m, n, hidden), 1f);
            backend.RmsNorm(last, outputNorm, lastNormed, new RmsNormShape(m, hidden, eps, false));
            backend.Linear(lastNormed, classifier, null, logits, new LinearShape(m, config.VocabSize, hidden));
            if (config.FinalLogitSoftCap is float cap)
                backend.SoftCap(logits, logits.Length, cap);
            problems.CheckRows(logits, config.VocabSize, logitRows, "the output classifier");
        }
        return new ForwardResult(logits, problems.Found);
    }

    /// <summary>(cos, sin) of every rotary table at the rows' positions, uploaded once per forward pass.</summary>
    Tensor[] RotaryAngles(ReadOnlySpan<int> positions)
    {
        int n = positions.Length;
        var host = angleHost.AsSpan(0, n * config.HeadDim);
        for (int t = 0; t < rotaryTables.Length; t++)
        {
            rotaryTables[t].Fill(positions, host);
            var angles = work.Angles.Slice((long)t * MaxRowsPerForward * config.HeadDim, host.Length);
            backend.Upload(angles, System.Runtime.InteropServices.MemoryMarshal.AsBytes(host));
            angleTensors[t] = angles;
        }
        return angleTensors;
    }

    /// <summary>
    /// The rotary table of a layer: its base θ (Gemma 3's sliding layers: the local base) and the
    /// model's scaling where it applies. Layers with the same pair share one table.
    /// </summary>
    int TableFor(List<(double Theta, bool Scaled)> keys, List<RotaryTable> tables, int layer)
    {
        double theta = config.RopeThetaForLayer(layer);
        bool scaled = config.RopeScalingAppliesToLayer(layer) && config.RopeScaling.Type != RopeScalingType.None;
        int existing = keys.IndexOf((theta, scaled));
        if (existing >= 0)
            return existing;
        RotaryScaling? scaling = !scaled ? null : config.RopeScaling.Type switch
        {
            RopeScalingType.Linear => new RotaryScaling.Linear(config.RopeScaling.Factor),
            _ => new RotaryScaling.PerPairDivisors(config.RopeFrequencyFactors!.Value.Select(f => (double)f).ToArray()),
        };
        keys.Add((theta, scaled));
        tables.Add(new RotaryTable(config.HeadDim, theta, scaling));
        return tables.Count - 1;
    }

    unsafe Tensor Weight(ModelCheckpoint checkpoint, string name, bool asF32 = false)
    {
        var source = checkpoint.GetTensor(name);
        TensorType type = source.DataType;
        Tensor tensor;
        if (asF32 && type != TensorType.F32)
        {
            // Biases are added to f32 activations as f32 values (the exact widening).
            var values = source.ToFloat32Array();
            tensor = backend.Allocate(TensorType.F32, values.Length, name);
            backend.Upload(tensor, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        }
        else
            tensor = backend.Weights(type, source.ElementCount, source.Pointer, name);
        owned.Add(tensor);
        return tensor;
    }

    WorkBuffers AllocateActivations()
    {
        long rows = MaxRowsPerForward;
        Tensor F32(long length, string name)
        {
            var tensor = backend.Allocate(TensorType.F32, length, name);
            owned.Add(tensor);
            return tensor;
        }
        bool qkNorm = config.HasQueryKeyNorm;
        return new WorkBuffers
        {
            X = F32(rows * config.HiddenSize, "residual stream"),
            Normed = F32(rows * config.HiddenSize, "normed activations"),
            Q = F32(rows * QueryWidth, "queries"),
            K = F32(rows * KeyValueWidth, "keys"),
            V = F32(rows * KeyValueWidth, "values"),
            QNormed = F32(qkNorm ? rows * QueryWidth : 1, "normed queries"),
            KNormed = F32(qkNorm ? rows * KeyValueWidth : 1, "normed keys"),
            Attended = F32(rows * QueryWidth, "attention output"),
            Projected = F32(rows * config.HiddenSize, "projected activations"),
            Gate = F32(rows * config.IntermediateSize, "feed-forward gate"),
            Up = F32(rows * config.IntermediateSize, "feed-forward up"),
            Angles = F32((long)rotaryTables.Length * rows * config.HeadDim, "rotary angles"),
        };
    }

    /// <summary>The logits buffer for m rows, grown (and the gather buffers with it) when more are asked for.</summary>
    Tensor LogitBuffer(int m)
    {
        int wanted = Math.Max(m, Math.Min(Slots, MaxRowsPerForward));
        if (work.Logits == null || work.LogitCapacity < wanted)
        {
            foreach (var old in new[] { work.Logits, work.Last, work.LastNormed })
                if (old != null)
                {
                    owned.Remove(old);
                    backend.Free(old);
                }
            work.Logits = backend.Allocate(TensorType.F32, (long)wanted * config.VocabSize, "logits");
            work.Last = backend.Allocate(TensorType.F32, (long)wanted * config.HiddenSize, "last rows");
            work.LastNormed = backend.Allocate(TensorType.F32, (long)wanted * config.HiddenSize, "normed last rows");
            owned.AddRange([work.Logits, work.Last, work.LastNormed]);
            work.LogitCapacity = wanted;
        }
        return work.Logits.Slice(0, (long)m * config.VocabSize);
    }

    /// <summary>
    /// Problems found in a forward pass, one per row (the first wins). With a checking backend,
    /// every op's output rows are scanned for NaN/inf so the first op that produced one is named.
    /// </summary>
    sealed class Problems(int maxRows)
    {
        readonly string?[] byRow = new string?[maxRows];
        int rows;
        IBackend? checker;

        /// <summary>Starts a pass over <paramref name="rowCount"/> rows; with a checker, every op's output is scanned.</summary>
        public void Reset(int rowCount, IBackend? checkingBackend)
        {
            rows = rowCount;
            checker = checkingBackend;
            Array.Clear(byRow, 0, rowCount);
        }

        public IReadOnlyList<RowProblem> Found
        {
            get
            {
                var found = new List<RowProblem>();
                for (int row = 0; row < rows; row++)
                    if (byRow[row] is string message)
                        found.Add(new RowProblem(row, message));
                return found;
            }
        }

        public void Add(int row, string message) => byRow[row] ??= message;

        /// <summary>Scans an op's output rows; the op is named only when something is found.</summary>
        public void Check(Tensor output, int width, int layer, string op)
        {
            if (checker == null)
                return;
            for (int r = 0; r < rows; r++)
                CheckRow(output, width, r, r, layer, op);
        }

        public void CheckRows(Tensor output, int width, ReadOnlySpan<int> rowOf, string op)
        {
            if (checker == null)
                return;
            for (int i = 0; i < rowOf.Length; i++)
                CheckRow(output, width, i, rowOf[i], -1, op);
        }

        void CheckRow(Tensor output, int width, int index, int row, int layer, string op)
        {
            if (byRow[row] != null)
                return;
            long at = checker!.FirstNonFinite(output.Slice((long)index * width, width), width);
            if (at >= 0)
                byRow[row] = layer >= 0 ? $"layer {layer} {op} (element {at} of row {row})" : $"{op} (element {at} of row {row})";
        }
    }

    public void Dispose()
    {
        cache.Dispose();
        foreach (var tensor in owned)
            backend.Free(tensor);
        owned.Clear();
    }
}
