using System.Diagnostics;
using System.Runtime.InteropServices;
using IlgpuLlm.Kernels;
using IlgpuLlm.Runtime.Backends;

namespace IlgpuLlm.Runtime.Generation;

/// <summary>
/// One sequence in flight: its request, the cache slot it holds, every token it has (prompt and
/// generated), how many of them the cache holds, and the hooks its owner listens on. Each hook
/// runs on the thread that steps the batch.
/// </summary>
public sealed class GenerationSequence
{
    internal readonly List<int> tokens;
    volatile bool cancelled;

    public GenerationSequence(GenerationRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        Request = request;
        tokens = [.. request.Prompt];
        PromptLength = request.Prompt.Count;
    }

    /// <summary>The request of the current turn.</summary>
    public GenerationRequest Request { get; private set; }

    /// <summary>The cache slot the sequence holds; −1 when it holds none.</summary>
    public int Slot { get; internal set; } = -1;

    /// <summary>Prompt tokens of the current turn (the whole conversation so far, for a kept sequence).</summary>
    public int PromptLength { get; private set; }

    /// <summary>Tokens of the current turn's prompt that were already in the cache when it started (a kept sequence's shared prefix).</summary>
    public int ReusedPromptTokens { get; private set; }

    /// <summary>Tokens drawn in the current turn.</summary>
    public int Generated { get; internal set; }

    /// <summary>Tokens whose keys and values the cache holds, from position 0.</summary>
    public int Fed { get; internal set; }

    public IReadOnlyList<int> Tokens => tokens;

    /// <summary>The tokens drawn in the current turn (a stop token included).</summary>
    public IReadOnlyList<int> GeneratedTokens => tokens.GetRange(PromptLength, tokens.Count - PromptLength);

    /// <summary>Why the turn ended; null while it runs.</summary>
    public FinishReason? Reason { get; private set; }

    /// <summary>A note on how it ended (the context limit, the error).</summary>
    public string? Message { get; private set; }

    /// <summary>Whether its owner cancelled it; it leaves the batch before the next step.</summary>
    public bool Cancelled => cancelled;

    /// <summary>Sees each token as it is drawn.</summary>
    public Action<int>? TokenDrawn { get; set; }

    /// <summary>
    /// Whether the token just drawn ends the turn for a reason its id alone does not show (a stop
    /// string its text now contains); asked after <see cref="TokenDrawn"/> has seen it.
    /// </summary>
    public Func<int, bool>? StopAfter { get; set; }

    /// <summary>
    /// When set, sees the logits each draw is made from (the model's, before penalty and
    /// temperature), which costs a copy to the host per draw.
    /// </summary>
    public Action<float[]>? LogitsDrawn { get; set; }

    /// <summary>
    /// Keeps the slot and the cache after a turn ends, so that the next turn (<see cref="Continue"/>)
    /// prefills only what its prompt adds. The owner gives the slot back with <see cref="ContinuousBatch.Release"/>.
    /// </summary>
    public bool KeepsSlot { get; init; }

    /// <summary>Asks the batch to drop the sequence before its next step (thread-safe).</summary>
    public void Cancel() => cancelled = true;

    internal void Finish(FinishReason reason, string? message = null)
    {
        Reason ??= reason;
        Message ??= message;
    }

    /// <summary>
    /// The next turn of a kept sequence: <paramref name="request"/>'s prompt is the whole
    /// conversation. The cache rows of the longest prefix it shares with the tokens the cache
    /// holds are kept; the rest is prefilled (keys past it are rewritten before any query reads
    /// them, so nothing of the old turn leaks). At least the last prompt token is fed again, for
    /// the logits of the first draw.
    /// </summary>
    public void Continue(GenerationRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (Reason == null && Slot >= 0 && !cancelled)
            throw new InvalidOperationException("the sequence's turn has not ended");
        int shared = 0, limit = Math.Min(Math.Min(Fed, request.Prompt.Count - 1), tokens.Count);
        while (shared < limit && tokens[shared] == request.Prompt[shared])
            shared++;
        Request = request;
        tokens.Clear();
        tokens.AddRange(request.Prompt);
        PromptLength = request.Prompt.Count;
        ReusedPromptTokens = Math.Max(shared, 0);
        Fed = ReusedPromptTokens;
        Generated = 0;
        Reason = null;
        Message = null;
        cancelled = false;
    }
}

/// <summary>How <see cref="ContinuousBatch.Admit"/> took a sequence.</summary>
public enum Admission
{
    /// <summary>It holds a slot and runs from the next step.</summary>
    Admitted,

    /// <summary>It ended without a step: a bad prompt (its <see cref="GenerationSequence.Message"/> says why) or no tokens to generate.</summary>
    Finished,

    /// <summary>No slot is free; try again after a step has retired a sequence.</summary>
    NoSlot,
}

/// <summary>
/// Continuous batching over a model's cache slots, one forward pass at a time. Sequences are
/// admitted into free slots whenever there are any and leave individually. Each step feeds every
/// active sequence's next tokens — the one token it drew last (decode rows, placed first so a long
/// prompt never starves them), then prefill chunks of prompts from the rows left — in one forward
/// pass (sequences packed together, each with its own positions and keys), draws for the
/// sequences whose logits are due, and retires the ones that finished or were cancelled. Nothing
/// a sequence computes depends on the others (docs/NUMERICS.md), so its tokens are the same alone,
/// beside any others, or in a slot others used before (its positions are written from 0 before
/// any query reads them).
/// </summary>
public sealed class ContinuousBatch : IDisposable
{
    readonly ILanguageModel model;
    readonly HashSet<int> stopTokens;
    readonly int? drawableTokens;
    readonly StepBatch batch;
    readonly Queue<int> free;
    readonly List<GenerationSequence> active = [];
    readonly List<GenerationSequence> retired = [];

    // Per-step bookkeeping, kept between steps.
    readonly List<GenerationSequence> rowOwner = [], sampled = [];
    readonly List<int> penalties = [];
    readonly HashSet<int> seen = [];
    readonly Dictionary<GenerationSequence, int> logitRows = [];

    long promptTokens, decodedTokens;
    TimeSpan prefillTime, decodeTime;

    /// <param name="stopTokens">Ids that end a sequence (the model's EOS/EOT ids; never its pad id).</param>
    /// <param name="drawableTokens">Ids from this one up are never drawn (see <see cref="Generator.DrawableTokens"/>); null: every id.</param>
    /// <param name="slots">Cache slots used, 0 to slots − 1; at most the model's.</param>
    public ContinuousBatch(ILanguageModel model, IEnumerable<int> stopTokens, int? drawableTokens, int slots)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (slots < 1 || slots > model.Slots)
            throw new ArgumentOutOfRangeException(nameof(slots), $"slots {slots} must be in [1, {model.Slots}] (the model's cache slots)");
        if (drawableTokens is int limit && (limit < 1 || limit > model.VocabSize))
            throw new ArgumentOutOfRangeException(nameof(drawableTokens), $"drawable tokens {limit} must be in [1, {model.VocabSize}]");
        this.model = model;
        this.stopTokens = [.. stopTokens];
        this.drawableTokens = drawableTokens;
        free = new Queue<int>(Enumerable.Range(0, slots));
        Slots = slots;
        batch = model.CreateStepBatch();
    }

    public int Slots { get; }

    public int FreeSlots => free.Count;

    /// <summary>The sequences that take part in the next step.</summary>
    public IReadOnlyList<GenerationSequence> Active => active;

    /// <summary>Cache positions the active sequences' tokens occupy, of <see cref="Slots"/> × the context.</summary>
    public long UsedPositions => active.Sum(s => (long)Math.Min(s.Tokens.Count, model.ContextLength));

    public int ContextLength => model.ContextLength;

    /// <summary>Every step so far: prompt tokens fed and the time of steps that fed any, tokens drawn in decode-only steps and their time.</summary>
    public GenerationStats Stats => new((int)Math.Min(promptTokens, int.MaxValue), prefillTime, (int)Math.Min(decodedTokens, int.MaxValue), decodeTime);

    /// <summary>
    /// Takes a sequence into a free slot (or the one it kept), unless its request cannot run: a
    /// bad prompt ends it at once with <see cref="FinishReason.Error"/>, a budget of 0 tokens with
    /// <see cref="FinishReason.Length"/>; a kept slot stays kept.
    /// </summary>
    public Admission Admit(GenerationSequence sequence)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        if (active.Contains(sequence))
            throw new InvalidOperationException("the sequence is already in the batch");
        var problem = Check(sequence.Request);
        if (problem != null || sequence.Request.MaxNewTokens == 0)
        {
            sequence.Finish(problem != null ? FinishReason.Error : FinishReason.Length, problem);
            return Admission.Finished;
        }
        if (sequence.Slot < 0)
        {
            if (free.Count == 0)
                return Admission.NoSlot;
            sequence.Slot = free.Dequeue();
            sequence.Fed = 0;
        }
        active.Add(sequence);
        return Admission.Admitted;
    }

    /// <summary>Gives a kept sequence's slot back to the batch.</summary>
    public void Release(GenerationSequence sequence)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        if (active.Contains(sequence))
            throw new InvalidOperationException("the sequence is still in the batch; cancel it first");
        if (sequence.Slot < 0)
            return;
        free.Enqueue(sequence.Slot);
        sequence.Slot = -1;
        sequence.Fed = 0;
    }

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
    /// Drops cancelled sequences, runs one step over the others and retires those that finished.
    /// Returns the sequences that left the batch (valid until the next call); their slots are free
    /// again unless they keep them. A step with no active sequence does nothing.
    /// </summary>
    /// <exception cref="Exception">The step failed as a whole (the device, a row the batch refused): the caller ends the active sequences with <see cref="Abort"/>.</exception>
    public IReadOnlyList<GenerationSequence> Step()
    {
        retired.Clear();
        RetireWhere(s => s.Cancelled);
        if (active.Count > 0)
        {
            var clock = Stopwatch.StartNew();
            bool prefill = Forward();
            if (prefill)
                prefillTime += clock.Elapsed;
            else
                decodeTime += clock.Elapsed;
            RetireWhere(s => s.Reason != null);
        }
        return retired;
    }

    /// <summary>Ends every active sequence with <see cref="FinishReason.Error"/> (the step failed as a whole) and returns them.</summary>
    public IReadOnlyList<GenerationSequence> Abort(string message)
    {
        retired.Clear();
        foreach (var sequence in active)
            sequence.Finish(FinishReason.Error, message);
        RetireWhere(_ => true);
        return retired;
    }

    void RetireWhere(Func<GenerationSequence, bool> leaves)
    {
        for (int i = 0; i < active.Count; i++)
        {
            var sequence = active[i];
            if (!leaves(sequence))
                continue;
            active.RemoveAt(i--);
            retired.Add(sequence);
            if (!sequence.KeepsSlot || sequence.Reason == FinishReason.Error)
            {
                // A failed sequence's cache may hold what made it fail (an f16 overflow); a kept one
                // that was cancelled still holds its fed tokens' keys, which its next turn may reuse.
                free.Enqueue(sequence.Slot);
                sequence.Slot = -1;
                sequence.Fed = 0;
            }
        }
    }

    /// <summary>
    /// One forward pass over every active sequence and the draws it makes due, as one step on the
    /// device: the batch goes up in one transfer, the forward pass, the non-finite check of the
    /// logits and the draws run without a wait, and the drawn ids and problem flags come back in
    /// one transfer. Returns whether it fed prompt tokens.
    /// </summary>
    bool Forward()
    {
        batch.Clear();
        rowOwner.Clear();
        sampled.Clear();
        logitRows.Clear();
        bool prefill = false;
        int budget = model.MaxRowsPerForward;
        // Decode rows first: a sequence that drew a token last step feeds that one token.
        foreach (var sequence in active)
            if (sequence.Tokens.Count - sequence.Fed == 1 && sequence.Fed >= sequence.PromptLength && budget > 0)
                budget -= Feed(sequence, 1, ref prefill);
        foreach (var sequence in active)
        {
            if (budget == 0)
                break;
            if (sequence.Fed < sequence.PromptLength)
                budget -= Feed(sequence, Math.Min(sequence.Tokens.Count - sequence.Fed, budget), ref prefill);
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
        List<GenerationSequence>? nonFinite = null;
        foreach (var sequence in sampled)
            if (sequence.Reason == null && batch.LogitsNonFinite(logitRows[sequence]))
                (nonFinite ??= []).Add(sequence);
        if (nonFinite != null)
            Locate(nonFinite);

        foreach (var sequence in sampled)
        {
            if (sequence.Reason != null)
                continue;
            if (sequence.LogitsDrawn is { } seeLogits)
                seeLogits(backend.DownloadFloats(logits.Slice((long)logitRows[sequence] * vocabulary, vocabulary)));
            if (!prefill)
                decodedTokens++;
        }
        foreach (var sequence in sampled)
            if (sequence.Reason == null)
                Accept(sequence, batch.SampledToken(logitRows[sequence]));
        return prefill;
    }

    /// <summary>Adds the next <paramref name="take"/> tokens of a sequence as rows, and its draw when they are its last; returns <paramref name="take"/>.</summary>
    int Feed(GenerationSequence sequence, int take, ref bool prefill)
    {
        int promptRows = Math.Max(0, Math.Min(take, sequence.PromptLength - sequence.Fed));
        if (promptRows > 0)
        {
            prefill = true;
            promptTokens += promptRows;
        }
        for (int i = 0; i < take; i++)
        {
            batch.Add(new TokenRow(sequence.Slot, sequence.Fed + i, sequence.Tokens[sequence.Fed + i]));
            rowOwner.Add(sequence);
        }
        sequence.Fed += take;
        if (sequence.Fed == sequence.Tokens.Count)
        {
            logitRows[sequence] = sampled.Count;
            sampled.Add(sequence);
            AddDraw(sequence, batch.RowCount - 1);
        }
        return take;
    }

    /// <summary>The next draw of a sequence, from the logits of row <paramref name="row"/>.</summary>
    void AddDraw(GenerationSequence s, int row)
    {
        var settings = s.Request.Sampling;
        penalties.Clear();
        if (settings.RepetitionPenalty != 1f)
        {
            // A token is penalized once however often it occurred (llama.cpp and transformers alike).
            seen.Clear();
            for (int i = Math.Max(0, s.Tokens.Count - settings.PenaltyWindow); i < s.Tokens.Count; i++)
                if (seen.Add(s.Tokens[i]))
                    penalties.Add(s.Tokens[i]);
        }
        var draw = settings.Row(s.Request.Sequence, s.Generated, 0, 0);
        if (drawableTokens is int limit && limit < model.VocabSize)
            draw = draw with { DrawableTokens = limit };
        batch.AddLogitRow(row, draw, CollectionsMarshal.AsSpan(penalties));
    }

    /// <summary>
    /// Re-runs the step with every op checked to name where a non-finite value first appeared
    /// (re-running writes the same keys and values again, so the cache is unchanged).
    /// </summary>
    void Locate(List<GenerationSequence> nonFinite)
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

    void Accept(GenerationSequence s, int token)
    {
        s.tokens.Add(token);
        s.Generated++;
        s.TokenDrawn?.Invoke(token);
        // A stop on the last allowed token is still a stop: the sequence ended where it meant to.
        if (stopTokens.Contains(token) || (s.StopAfter?.Invoke(token) ?? false))
            s.Finish(FinishReason.Stop);
        else if (s.Generated >= s.Request.MaxNewTokens)
            s.Finish(FinishReason.Length);
        // The token just drawn would be fed at position Tokens.Count − 1; past the last one it cannot be.
        if (s.Reason == null && s.Tokens.Count > model.ContextLength)
            s.Finish(FinishReason.Length,
                $"sequence {s.Request.Sequence} reached the context limit of {model.ContextLength} positions");
    }

    public void Dispose() => batch.Dispose();
}
