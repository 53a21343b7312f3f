using System.Runtime;
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

/// <summary>
/// Token counts and wall time spent in prefill steps and in decode-only steps, and how much of each
/// the process spent compiling code (.NET's JIT, on every thread): the first forward pass of a
/// process compiles every kernel it runs, which on a small model takes longer than the pass itself.
/// </summary>
public sealed record GenerationStats(int PromptTokens, TimeSpan PrefillTime, int DecodedTokens, TimeSpan DecodeTime,
    TimeSpan PrefillCompileTime = default, TimeSpan DecodeCompileTime = default)
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
    /// never drawn (a sampling parameter: the draw is the one those ids' logits set to −inf would
    /// give). Null (the default): every id of the model.
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

    // Per-step bookkeeping, kept between steps.
    readonly List<Sequence> rowOwner = [], sampled = [];
    readonly List<int> penalties = [];
    readonly HashSet<int> seen = [];

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
        TimeSpan prefillCompileTime = default, decodeCompileTime = default;
        using var batch = model.CreateStepBatch();

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
            var compiling = JitInfo.GetCompilationTime(currentThread: false);
            bool prefillStep = Step(active, batch, onToken, ref promptTokens, ref decodedTokens);
            compiling = JitInfo.GetCompilationTime(currentThread: false) - compiling;
            if (prefillStep)
                (prefillTime, prefillCompileTime) = (prefillTime + clock.Elapsed, prefillCompileTime + compiling);
            else
                (decodeTime, decodeCompileTime) = (decodeTime + clock.Elapsed, decodeCompileTime + compiling);

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
        Stats = new GenerationStats(promptTokens, prefillTime, decodedTokens, decodeTime, prefillCompileTime, decodeCompileTime);
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

    /// <summary>
    /// One forward pass over every active sequence and the draws it makes due, as one step on the
    /// device: the batch goes up in one transfer, the forward pass, the non-finite check of the
    /// logits and the draws run without a wait, and the drawn ids and problem flags come back in
    /// one transfer. Returns whether it fed prompt tokens.
    /// </summary>
    bool Step(List<Sequence> active, StepBatch batch, Action<int, int>? onToken, ref int promptTokens, ref int decodedTokens)
    {
        batch.Clear();
        rowOwner.Clear();
        sampled.Clear();
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
                batch.Add(new TokenRow(sequence.Slot, sequence.Fed + i, sequence.Tokens[sequence.Fed + i]));
                rowOwner.Add(sequence);
            }
            sequence.Fed += take;
            budget -= take;
            sequence.LogitRow = -1;
            if (sequence.Fed == sequence.Tokens.Count)
            {
                sequence.LogitRow = sampled.Count;
                sampled.Add(sequence);
                AddDraw(batch, sequence, batch.RowCount - 1);
            }
            if (budget == 0)
                break;
        }

        batch.Upload();
        var logits = model.Forward(batch);
        var vocabulary = model.VocabSize;
        var backend = model.Backend;
        int draws = batch.DrawCount;
        if (draws > 0)
        {
            backend.FlagNonFinite(logits, draws, vocabulary, batch.NonFiniteLogits);
            backend.Sample(logits, batch.SamplingParameters, batch.Penalized, batch.Sampled, new SamplingShape(draws, vocabulary),
                batch.NonFiniteLogits.Flags, batch.SamplingWorkspace);
        }
        batch.Download();

        foreach (var problem in batch.Problems())
            rowOwner[problem.Row].Finish(FinishReason.Error, problem.Message);
        List<Sequence>? nonFinite = null;
        foreach (var sequence in sampled)
            if (sequence.Reason == null && batch.LogitsNonFinite(sequence.LogitRow))
                (nonFinite ??= []).Add(sequence);
        if (nonFinite != null)
            Locate(batch, nonFinite);

        foreach (var sequence in sampled)
        {
            if (sequence.Reason != null)
                continue;
            if (onLogits != null)
                onLogits(sequence.Request, backend.DownloadFloats(logits.Slice((long)sequence.LogitRow * vocabulary, vocabulary)));
            if (!prefill)
                decodedTokens++;
        }
        foreach (var sequence in sampled)
            if (sequence.Reason == null)
                Accept(sequence, batch.SampledToken(sequence.LogitRow), onToken);
        return prefill;
    }

    /// <summary>The next draw of a sequence, from the logits of row <paramref name="row"/>.</summary>
    void AddDraw(StepBatch batch, Sequence s, int row)
    {
        var settings = s.Definition.Sampling;
        penalties.Clear();
        if (settings.RepetitionPenalty != 1f)
        {
            // A token is penalized once however often it occurred (llama.cpp and transformers alike).
            seen.Clear();
            for (int i = Math.Max(0, s.Tokens.Count - settings.PenaltyWindow); i < s.Tokens.Count; i++)
                if (seen.Add(s.Tokens[i]))
                    penalties.Add(s.Tokens[i]);
        }
        var draw = settings.Row(s.Definition.Sequence, s.Generated, 0, 0);
        if (drawableTokens is int limit && limit < model.VocabSize)
            draw = draw with { DrawableTokens = limit };
        batch.AddLogitRow(row, draw, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(penalties));
    }

    /// <summary>
    /// Re-runs the step with every op checked to name where a non-finite value first appeared
    /// (re-running writes the same keys and values again, so the cache is unchanged).
    /// </summary>
    void Locate(StepBatch batch, List<Sequence> nonFinite)
    {
        var located = model.Forward(batch.Rows, batch.LogitRowIndices, ForwardChecks.EveryOp).Problems;
        foreach (var sequence in nonFinite)
        {
            var first = located.FirstOrDefault(p => rowOwner[p.Row] == sequence);
            sequence.Finish(FinishReason.Error, first.Message != null
                ? $"non-finite logits; the first non-finite value appeared in {first.Message}. Storing weights and the KV cache in f32 (--kv-dtype f32) may avoid it"
                : "non-finite logits (no op output was non-finite when re-checked); try f32 storage (--kv-dtype f32)");
        }
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
