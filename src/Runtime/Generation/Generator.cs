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
/// A fixed list of requests run to the end over a <see cref="ContinuousBatch"/>: requests wait in
/// order for a free slot, join the running batch as soon as one is free, and leave it
/// individually. Nothing a sequence computes depends on the others, so batched results equal
/// one-at-a-time results bit for bit.
/// </summary>
public sealed class Generator
{
    readonly ILanguageModel model;
    readonly int[] stopTokens;
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
        if (batchSize < 1)
            throw new ArgumentOutOfRangeException(nameof(batchSize), $"batch size {batchSize} must be at least 1");
        var results = new GenerationResult?[requests.Count];
        using var running = new ContinuousBatch(model, stopTokens, drawableTokens, Math.Min(batchSize, model.Slots));
        var waiting = new Queue<(int Index, GenerationSequence Sequence)>(requests.Select((request, i) => (i, new GenerationSequence(request)
        {
            TokenDrawn = onToken == null ? null : token => onToken(i, token),
            StopAfter = stopAfter == null ? null : token => stopAfter(i, token),
            LogitsDrawn = onLogits == null ? null : logits => onLogits(i, logits),
        })));
        var index = new Dictionary<GenerationSequence, int>();
        while (waiting.Count > 0 || running.Active.Count > 0)
        {
            cancellationToken.ThrowIfCancellationRequested();
            while (waiting.Count > 0)
            {
                var (i, sequence) = waiting.Peek();
                var admission = running.Admit(sequence);
                if (admission == Admission.NoSlot)
                    break;
                waiting.Dequeue();
                if (admission == Admission.Finished)
                    results[i] = Result(sequence);
                else
                    index[sequence] = i;
            }
            foreach (var sequence in running.Step())
                results[index[sequence]] = Result(sequence);
        }
        Stats = running.Stats;
        return results.Select(r => r!).ToArray();
    }

    static GenerationResult Result(GenerationSequence sequence) =>
        new(sequence.GeneratedTokens.ToArray(), sequence.Reason!.Value, sequence.Message);
}
