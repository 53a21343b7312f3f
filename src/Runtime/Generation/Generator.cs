using System.Diagnostics;
using IlgpuLlm.Kernels;
using IlgpuLlm.Runtime.Backends;

namespace IlgpuLlm.Runtime.Generation;

public enum FinishReason
{
    /// <summary>An end-of-sequence/turn token or a stop string.</summary>
    Stop,

    /// <summary>The token budget or the context is used up.</summary>
    Length,

    /// <summary>The sequence could not continue (non-finite values, cache overflow, bad prompt).</summary>
    Error,
}

/// <summary>One sequence to generate. <see cref="Sequence"/> keys its random numbers.</summary>
public sealed record GenerationRequest(IReadOnlyList<int> Prompt, int MaxNewTokens, SamplerSettings Sampling)
{
    /// <summary>
    /// The random stream of this sequence: draws are keyed by (seed, sequence, step), so a sequence
    /// samples the same tokens whatever batch it runs in. Usually the request's index in its input.
    /// </summary>
    public int Sequence { get; init; }
}

public sealed record GenerationResult(IReadOnlyList<int> Tokens, FinishReason Reason, string? Message);

/// <summary>Token counts and wall time spent in prefill steps and in decode-only steps.</summary>
public sealed record GenerationStats(int PromptTokens, TimeSpan PrefillTime, int DecodedTokens, TimeSpan DecodeTime)
{
    public double PrefillTokensPerSecond => PrefillTime > TimeSpan.Zero ? PromptTokens / PrefillTime.TotalSeconds : 0;
    public double DecodeTokensPerSecond => DecodeTime > TimeSpan.Zero ? DecodedTokens / DecodeTime.TotalSeconds : 0;
}

/// <summary>
/// The generation loop: continuous batching of many sequences of different lengths over a model's
/// cache slots. Each step feeds every active sequence's next tokens — a prefill chunk, or the one
/// token it sampled last — in one forward pass (sequences packed together, each with its own
/// positions and keys), samples the sequences whose logits are due, and retires finished
/// sequences individually so waiting ones take their slots. Nothing a sequence computes depends on
/// the others, so batched results equal one-at-a-time results bit for bit.
/// </summary>
public sealed class Generator
{
    readonly ILanguageModel model;
    readonly HashSet<int> stopTokens;
    readonly Func<int, int, bool>? stopAfter;

    /// <param name="stopTokens">Ids that end a sequence (the model's EOS/EOT ids; never its pad id).</param>
    /// <param name="stopAfter">
    /// Whether the token a sequence just drew ends it (request index, token) for a reason its id
    /// alone does not show: a stop string its text now contains, a stop id of that request only.
    /// It is asked after <c>onToken</c> has seen the token, so a caller that decodes the text
    /// there answers from what it already decoded instead of decoding the sequence again.
    /// </param>
    public Generator(ILanguageModel model, IEnumerable<int> stopTokens, Func<int, int, bool>? stopAfter = null)
    {
        this.model = model;
        this.stopTokens = [.. stopTokens];
        this.stopAfter = stopAfter;
    }

    public GenerationStats Stats { get; private set; } = new(0, TimeSpan.Zero, 0, TimeSpan.Zero);

    /// <summary>
    /// Ids from this one up are never drawn: the embedding table has rows the tokenizer has no
    /// token for (Qwen2.5 pads 151,665 tokens to 151,936 rows; a model paired with a smaller
    /// vocabulary), and an id the tokenizer cannot decode must not be generated. Their logits are
    /// set to −inf before sampling. Null (the default): every id of the model.
    /// </summary>
    public int? DrawableTokens
    {
        get => drawableTokens;
        init
        {
            if (value is int limit && (limit < 1 || limit > model.VocabSize))
                throw new ArgumentOutOfRangeException(nameof(DrawableTokens), $"drawable tokens {limit} must be in [1, {model.VocabSize}]");
            drawableTokens = value;
        }
    }

    readonly int? drawableTokens;
    byte[]? maskBytes;

    sealed class Sequence(int request, int slot, GenerationRequest definition)
    {
        public readonly int Request = request;
        public readonly int Slot = slot;
        public readonly GenerationRequest Definition = definition;
        public readonly List<int> Tokens = [.. definition.Prompt];
        public int Fed;
        public int Generated;
        public int LogitRow = -1;
        public FinishReason? Reason;
        public string? Message;

        public void Finish(FinishReason reason, string? message = null)
        {
            Reason ??= reason;
            Message ??= message;
        }
    }

    /// <summary>
    /// Generates for every request, at most <paramref name="batchSize"/> at a time, and returns the
    /// results in request order. <paramref name="onToken"/> sees each token as it is sampled
    /// (request index, token); <paramref name="onLogits"/>, when given, sees the logits each draw
    /// is made from (request index, logits), which costs a copy to the host per draw.
    /// <paramref name="cancellationToken"/> is checked before every step: a cancelled run throws
    /// <see cref="OperationCanceledException"/> between two forward passes, and the model can run
    /// again at once (a sequence's cache rows are rewritten from position 0 when it next starts).
    /// </summary>
    public IReadOnlyList<GenerationResult> Run(IReadOnlyList<GenerationRequest> requests, int batchSize,
        Action<int, int>? onToken = null, Action<int, float[]>? onLogits = null, CancellationToken cancellationToken = default)
    {
        this.onLogits = onLogits;
        if (batchSize < 1)
            throw new ArgumentOutOfRangeException(nameof(batchSize), $"batch size {batchSize} must be at least 1");
        var results = new GenerationResult?[requests.Count];
        var free = new Queue<int>(Enumerable.Range(0, Math.Min(batchSize, model.Slots)));
        var waiting = new Queue<int>(Enumerable.Range(0, requests.Count));
        var active = new List<Sequence>();
        int promptTokens = 0, decodedTokens = 0;
        var prefillTime = TimeSpan.Zero;
        var decodeTime = TimeSpan.Zero;

        while (waiting.Count > 0 || active.Count > 0)
        {
            cancellationToken.ThrowIfCancellationRequested();
            while (free.Count > 0 && waiting.Count > 0)
            {
                int request = waiting.Dequeue();
                var problem = Check(requests[request]);
                if (problem != null)
                {
                    results[request] = new GenerationResult([], FinishReason.Error, problem);
                    continue;
                }
                if (requests[request].MaxNewTokens == 0)
                {
                    results[request] = new GenerationResult([], FinishReason.Length, null);
                    continue;
                }
                active.Add(new Sequence(request, free.Dequeue(), requests[request]));
            }
            if (active.Count == 0)
                continue;

            var clock = Stopwatch.StartNew();
            bool prefillStep = Step(active, onToken, ref promptTokens, ref decodedTokens);
            if (prefillStep)
                prefillTime += clock.Elapsed;
            else
                decodeTime += clock.Elapsed;

            for (int i = active.Count - 1; i >= 0; i--)
            {
                var sequence = active[i];
                if (sequence.Reason is not FinishReason reason)
                    continue;
                results[sequence.Request] = new GenerationResult(
                    sequence.Tokens.Skip(sequence.Definition.Prompt.Count).ToArray(), reason, sequence.Message);
                free.Enqueue(sequence.Slot);
                active.RemoveAt(i);
            }
        }
        Stats = new GenerationStats(promptTokens, prefillTime, decodedTokens, decodeTime);
        return results.Select(r => r!).ToArray();
    }

    Action<int, float[]>? onLogits;

    string? Check(GenerationRequest request)
    {
        if (request.Prompt.Count == 0)
            return "the prompt is empty; start it with the BOS token";
        for (int i = 0; i < request.Prompt.Count; i++)
            if ((uint)request.Prompt[i] >= (uint)model.VocabSize)
                return $"prompt token {i} is id {request.Prompt[i]}, outside the vocabulary of {model.VocabSize}";
        if (request.Prompt.Count > model.ContextLength)
            return $"the prompt needs {request.Prompt.Count} positions; the context holds {model.ContextLength}";
        if (request.MaxNewTokens < 0)
            return $"max new tokens {request.MaxNewTokens} is negative";
        request.Sampling.Validate();
        return null;
    }

    /// <summary>One forward pass over every active sequence and the draws it makes due. Returns whether it fed prompt tokens.</summary>
    bool Step(List<Sequence> active, Action<int, int>? onToken, ref int promptTokens, ref int decodedTokens)
    {
        var rows = new List<TokenRow>();
        var logitRows = new List<int>();
        var rowOwner = new List<Sequence>();
        var sampled = new List<Sequence>();
        bool prefill = false;
        int budget = model.MaxRowsPerForward;
        foreach (var sequence in active)
        {
            int take = Math.Min(sequence.Tokens.Count - sequence.Fed, budget);
            if (take <= 0)
                continue;
            bool promptRows = sequence.Fed < sequence.Definition.Prompt.Count;
            prefill |= promptRows;
            if (promptRows)
                promptTokens += Math.Min(take, sequence.Definition.Prompt.Count - sequence.Fed);
            for (int i = 0; i < take; i++)
            {
                rows.Add(new TokenRow(sequence.Slot, sequence.Fed + i, sequence.Tokens[sequence.Fed + i]));
                rowOwner.Add(sequence);
            }
            sequence.Fed += take;
            budget -= take;
            sequence.LogitRow = -1;
            if (sequence.Fed == sequence.Tokens.Count)
            {
                sequence.LogitRow = logitRows.Count;
                logitRows.Add(rows.Count - 1);
                sampled.Add(sequence);
            }
            if (budget == 0)
                break;
        }

        var result = model.Forward(rows.ToArray(), logitRows.ToArray());
        foreach (var problem in result.Problems)
            rowOwner[problem.Row].Finish(FinishReason.Error, problem.Message);

        var vocabulary = model.VocabSize;
        var backend = model.Backend;
        List<Sequence>? nonFinite = null;
        foreach (var sequence in sampled)
            if (sequence.Reason == null && backend.FirstNonFinite(result.Logits.Slice((long)sequence.LogitRow * vocabulary, vocabulary), vocabulary) >= 0)
                (nonFinite ??= []).Add(sequence);
        if (nonFinite != null)
            Locate(rows, logitRows, rowOwner, nonFinite);

        var drawing = sampled.Where(s => s.Reason == null).ToList();
        if (onLogits != null)
            foreach (var sequence in drawing)
                onLogits(sequence.Request, backend.DownloadFloats(result.Logits.Slice((long)sequence.LogitRow * vocabulary, vocabulary)));
        if (drawing.Count > 0)
            Draw(drawing, result, onToken);
        if (!prefill)
            decodedTokens += drawing.Count;
        return prefill;
    }

    /// <summary>
    /// Re-runs the step with every op checked to name where a non-finite value first appeared
    /// (re-running writes the same keys and values again, so the cache is unchanged).
    /// </summary>
    void Locate(List<TokenRow> rows, List<int> logitRows, List<Sequence> rowOwner, List<Sequence> nonFinite)
    {
        var located = model.Forward(rows.ToArray(), logitRows.ToArray(), ForwardChecks.EveryOp).Problems;
        foreach (var sequence in nonFinite)
        {
            var first = located.FirstOrDefault(p => rowOwner[p.Row] == sequence);
            sequence.Finish(FinishReason.Error, first.Message != null
                ? $"non-finite logits; the first non-finite value appeared in {first.Message}. Storing weights and the KV cache in f32 (--kv-dtype f32) may avoid it"
                : "non-finite logits (no op output was non-finite when re-checked); try f32 storage (--kv-dtype f32)");
        }
    }

    void Draw(List<Sequence> drawing, ForwardResult result, Action<int, int>? onToken)
    {
        var vocabulary = model.VocabSize;
        var samplingRows = new SamplingRow[drawing.Count];
        var penalized = new List<int>();
        for (int i = 0; i < drawing.Count; i++)
        {
            var s = drawing[i];
            var settings = s.Definition.Sampling;
            int offset = penalized.Count;
            if (settings.RepetitionPenalty != 1f)
                penalized.AddRange(s.Tokens.Skip(Math.Max(0, s.Tokens.Count - settings.PenaltyWindow)).Distinct());
            samplingRows[i] = settings.Row(s.Definition.Sequence, s.Generated, offset, penalized.Count - offset);
        }
        var logits = result.Logits.Slice(0, (long)drawing.Count * vocabulary);
        if (drawing.Where((s, i) => s.LogitRow != i).Any())
        {
            // Some sequences stopped this step (their logits may be non-finite): sample from a
            // compact exact copy of the drawing rows only, so the sampler never sees their values.
            var picked = drawing.Select(s => s.LogitRow).ToArray();
            logits = Compact(result.Logits, picked);
        }
        if (drawableTokens is int limit && limit < vocabulary)
        {
            // The rows are this step's own copies (the model's logit buffer or the compact one).
            maskBytes ??= System.Runtime.InteropServices.MemoryMarshal.AsBytes(
                Enumerable.Repeat(float.NegativeInfinity, vocabulary - limit).ToArray().AsSpan()).ToArray();
            for (int i = 0; i < drawing.Count; i++)
                model.Backend.Upload(logits.Slice((long)i * vocabulary + limit, vocabulary - limit), maskBytes);
        }
        var tokens = new int[drawing.Count];
        model.Backend.Sample(logits, vocabulary, samplingRows, penalized.ToArray(), tokens);
        for (int i = 0; i < drawing.Count; i++)
            Accept(drawing[i], tokens[i], onToken);
    }

    Tensor? compactLogits;

    Tensor Compact(Tensor logits, int[] rows)
    {
        var vocabulary = model.VocabSize;
        long length = (long)rows.Length * vocabulary;
        if (compactLogits == null || compactLogits.Length < length)
        {
            if (compactLogits != null)
                model.Backend.Free(compactLogits);
            compactLogits = model.Backend.Allocate(Backends.TensorType.F32, (long)model.Slots * vocabulary, "compacted logits");
        }
        var destination = compactLogits.Slice(0, length);
        model.Backend.Embedding(logits, rows, destination, new EmbeddingShape(rows.Length, (int)(logits.Length / vocabulary), vocabulary), 1f);
        return destination;
    }

    void Accept(Sequence s, int token, Action<int, int>? onToken)
    {
        s.Tokens.Add(token);
        s.Generated++;
        onToken?.Invoke(s.Request, token);
        // A stop on the last allowed token is still a stop: the sequence ended where it meant to.
        if (stopTokens.Contains(token) || (stopAfter?.Invoke(s.Request, token) ?? false))
            s.Finish(FinishReason.Stop);
        else if (s.Generated >= s.Definition.MaxNewTokens)
            s.Finish(FinishReason.Length);
        // The token just drawn would be fed at position Tokens.Count − 1; past the last one it cannot be.
        if (s.Reason == null && s.Tokens.Count > model.ContextLength)
            s.Finish(FinishReason.Length,
                $"sequence {s.Definition.Sequence} reached the context limit of {model.ContextLength} positions");
    }
}
