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
    readonly AttentionShape[] attentionShapes;
    readonly StepBatch ownBatch;

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
        public int CacheKind;                            // index into the cache layout's kinds
    }

    /// <summary>Work buffers for the most rows a forward pass takes, allocated once.</summary>
    sealed class WorkBuffers
    {
        public required Tensor X, Normed, Q, K, V, QNormed, KNormed, Attended, Projected, Gate, Up;
        public required Tensor Last, LastNormed, Logits;
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

        MemoryPlan.For(checkpoint, backend, Slots, ContextLength, MaxRowsPerForward, options.KvType).EnsureFits(checkpoint.SourcePath);
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
        attentionShapes = new AttentionShape[layers.Length];
        for (int l = 0; l < layers.Length; l++)
        {
            layers[l].CacheKind = cache.Layout.KindOf(l);
            attentionShapes[l] = new AttentionShape(1, config.HeadCount, config.KeyValueHeadCount, config.HeadDim, Slots,
                cache.Layout.Capacity(l), config.AttentionScale, config.AttentionLogitSoftCap ?? 0f);
        }
        work = AllocateActivations();
        ownBatch = CreateStepBatch();
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

    /// <summary>A step batch for this model's steps: its cache's kinds of layers and its rotary tables.</summary>
    public StepBatch CreateStepBatch() => new(backend, new StepBatchLayout
    {
        MaxRows = MaxRowsPerForward, Slots = Slots, ContextLength = ContextLength, Vocabulary = config.VocabSize,
        Heads = config.HeadCount, Cache = cache.Layout, RotaryTables = rotaryTables,
    });

    /// <summary>
    /// The forward pass over <paramref name="rows"/>, returning the logits of the rows in
    /// <paramref name="logitRows"/> and the problems found (one wait, at the end). With
    /// <see cref="ForwardChecks.EveryOp"/>, every op's output rows are checked for NaN and ±inf to
    /// name the op where one first appeared (slow: a wait per row per op).
    /// </summary>
    public ForwardResult Forward(ReadOnlySpan<TokenRow> rows, ReadOnlySpan<int> logitRows, ForwardChecks checks = ForwardChecks.None)
    {
        if (rows.Length < 1 || rows.Length > MaxRowsPerForward)
            throw new ArgumentOutOfRangeException(nameof(rows), $"a forward pass takes 1 to {MaxRowsPerForward} rows; got {rows.Length}");
        var batch = ownBatch;
        batch.Clear();
        foreach (var row in rows)
            batch.Add(row);
        foreach (int row in logitRows)
            if ((uint)row >= (uint)rows.Length)
                throw new ArgumentOutOfRangeException(nameof(logitRows), $"logit row {row} is not one of the {rows.Length} rows");
            else
                batch.AddLogitRow(row);
        batch.Upload();
        if (checks == ForwardChecks.None)
        {
            var logits = Forward(batch);
            batch.Download();
            return new ForwardResult(logits, batch.Problems());
        }
        var checker = new CheckingBackend(backend, rows.Length, logitRows, batch.LogitRows);
        var checkedLogits = Forward(batch, checker);
        batch.Download();
        var problems = checker.Problems.ToList();
        problems.AddRange(batch.Problems().Where(p => !problems.Any(found => found.Row == p.Row)));
        return new ForwardResult(checkedLogits, problems);
    }

    /// <summary>The forward pass of an uploaded step batch; launches every op and waits for none.</summary>
    public Tensor Forward(StepBatch batch) => Forward(batch, backend);

    /// <summary>
    /// The forward pass. x holds the residual stream of every row; each layer adds attention and
    /// feed-forward outputs to it. Only the batch's logits rows reach the classifier (RMSNorm is
    /// row-wise, so normalising after the gather is the same). Every per-row input (ids, cache
    /// rows, key ranges, rotary angles) is in the batch, uploaded once; problems are flagged there.
    /// </summary>
    Tensor Forward(StepBatch batch, IBackend ops)
    {
        if (batch.Layout.Cache != cache.Layout || !ReferenceEquals(batch.Layout.RotaryTables, rotaryTables)
            || batch.Layout.MaxRows > MaxRowsPerForward || batch.Layout.Heads != config.HeadCount)
            throw new ArgumentException("the step batch was made for another model; make it with this model's CreateStepBatch", nameof(batch));
        int n = batch.RowCount;
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

        // token embedding, scaled (Gemma: √hidden)
        ops.Embedding(tokenEmbedding, batch.Tokens, x, new EmbeddingShape(n, config.VocabSize, hidden), config.EmbeddingScale);

        for (int l = 0; l < layers.Length; l++)
        {
            var layer = layers[l];
            // attention: rmsnorm → q, k, v projections (+ bias) → [q/k norm] → rotary → cache → attend → output projection
            ops.RmsNorm(x, layer.AttentionNorm, normed, rowNorm);
            ops.Linear(normed, layer.Query, layer.QueryBias, q, new LinearShape(n, QueryWidth, hidden));
            ops.Linear(normed, layer.Key, layer.KeyBias, k, new LinearShape(n, KeyValueWidth, hidden));
            ops.Linear(normed, layer.Value, layer.ValueBias, v, new LinearShape(n, KeyValueWidth, hidden));
            var (queries, keys) = (q, k);
            if (layer.QueryNorm != null && layer.KeyNorm != null)
            {
                queries = work.QNormed.Slice(0, q.Length);
                keys = work.KNormed.Slice(0, k.Length);
                ops.RmsNorm(q, layer.QueryNorm, queries, new RmsNormShape(n * heads, headDim, eps, false));
                ops.RmsNorm(k, layer.KeyNorm, keys, new RmsNormShape(n * kvHeads, headDim, eps, false));
            }
            var angles = batch.Angles(layer.RotaryTable);
            ops.Rotary(queries, angles, new RotaryShape(n, heads, headDim, config.RotaryLayout));
            ops.Rotary(keys, angles, new RotaryShape(n, kvHeads, headDim, config.RotaryLayout));
            cache.Store(l, keys, v, batch.Destinations(layer.CacheKind), batch.Overflow(l));
            var attention = attentionShapes[l] with { Rows = n, MaxKeys = batch.MaxKeys(layer.CacheKind) };
            ops.Attention(queries, cache.Keys(l), cache.Values(l), attended, batch.Ranges(layer.CacheKind), attention, null,
                batch.FullyMasked(l), batch.AttentionWorkspace);
            ops.Linear(attended, layer.AttentionOutput, null, projected, new LinearShape(n, hidden, QueryWidth));
            if (layer.PostAttentionNorm != null)
            {
                ops.RmsNorm(projected, layer.PostAttentionNorm, normed, rowNorm);
                ops.Add(x, normed, x, x.Length);
            }
            else
                ops.Add(x, projected, x, x.Length);

            // feed-forward: rmsnorm → act(gate) · up → down projection → [post norm] → residual
            ops.RmsNorm(x, layer.FeedForwardNorm, normed, rowNorm);
            ops.Linear(normed, layer.Gate, null, gate, new LinearShape(n, config.IntermediateSize, hidden));
            ops.Linear(normed, layer.Up, null, up, new LinearShape(n, config.IntermediateSize, hidden));
            ops.GatedActivation(gate, up, gate, gate.Length, config.Activation);
            ops.Linear(gate, layer.Down, null, projected, new LinearShape(n, hidden, config.IntermediateSize));
            if (layer.PostFeedForwardNorm != null)
            {
                ops.RmsNorm(projected, layer.PostFeedForwardNorm, normed, rowNorm);
                ops.Add(x, normed, x, x.Length);
            }
            else
                ops.Add(x, projected, x, x.Length);
        }

        // final norm and classifier over the rows whose logits are wanted
        int m = batch.LogitRowCount;
        var logits = LogitBuffer(m);
        if (m > 0)
        {
            var last = work.Last.Slice(0, (long)m * hidden);
            var lastNormed = work.LastNormed.Slice(0, (long)m * hidden);
            ops.Embedding(x, batch.LogitRows, last, new EmbeddingShape(m, n, hidden), 1f);
            ops.RmsNorm(last, outputNorm, lastNormed, new RmsNormShape(m, hidden, eps, false));
            ops.Linear(lastNormed, classifier, null, logits, new LinearShape(m, config.VocabSize, hidden));
            if (config.FinalLogitSoftCap is float cap)
                ops.SoftCap(logits, logits.Length, cap);
        }
        return logits;
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
        long logitRows = Math.Min(Slots, MaxRowsPerForward);
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
            // Logits for as many rows as sequences decode together; a step that wants more grows them.
            Logits = F32(logitRows * config.VocabSize, "logits"),
            Last = F32(logitRows * config.HiddenSize, "last rows"),
            LastNormed = F32(logitRows * config.HiddenSize, "normed last rows"),
            LogitCapacity = (int)logitRows,
        };
    }

    /// <summary>The logits buffer for m rows, grown (and the gather buffers with it) when more are asked for.</summary>
    Tensor LogitBuffer(int m)
    {
        int wanted = m;
        if (work.LogitCapacity < wanted)
        {
            foreach (var old in new[] { work.Logits, work.Last, work.LastNormed })
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

    public void Dispose()
    {
        ownBatch.Dispose();
        cache.Dispose();
        foreach (var tensor in owned)
            backend.Free(tensor);
        owned.Clear();
    }
}
