using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using System.Threading.Channels;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Formats;
using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Runtime.Generation;

namespace IlgpuLlm;

/// <summary>
/// A model ready to generate text: its weights on a backend, its tokenizer and chat template, and
/// the rules every generation follows — the ids that stop it, the ids it may draw, how long a
/// prompt may be, how generated ids become text. Stream one prompt with <c>GenerateAsync</c>, or
/// run many with <c>Generate</c>, talk with <see cref="StartConversation"/>. Every call is a request
/// to one scheduler that owns the model: requests run together in one batch of
/// <see cref="LanguageModelOptions.Slots"/> cache slots, join it as soon as a slot is free and leave
/// it individually, so concurrent calls share forward passes instead of taking turns. A request's
/// tokens do not depend on the others beside it (the same bits alone or in any batch).
/// </summary>
public sealed class LanguageModel : IDisposable
{
    readonly IBackend backend;
    readonly LoadedModel loaded;
    readonly Scheduler scheduler;
    readonly Lazy<ChatTemplate> chatTemplate;
    readonly int drawableTokens;
    volatile bool disposed;

    LanguageModel(IBackend backend, LoadedModel loaded, LanguageModelOptions options)
    {
        this.backend = backend;
        this.loaded = loaded;
        Tokenizer = loaded.RequireTokenizer();
        chatTemplate = new(() => loaded.ChatTemplate(options.ChatTemplate));
        StopTokens = loaded.StopTokens();
        // Ids past the tokenizer's (padded embedding tables) cannot be decoded, so they are never drawn.
        drawableTokens = Math.Min(Tokenizer.VocabSize, loaded.Config.VocabSize);
        var batch = new ContinuousBatch(loaded.Transformer, StopTokens, drawableTokens, loaded.Transformer.Slots);
        scheduler = new Scheduler(batch, options.MaxWaiting);
    }

    /// <summary>
    /// Opens a model — a GGUF file, a Hugging Face folder (config.json + safetensors) or a llama2.c
    /// checkpoint — with its tokenizer (inside a GGUF, beside the weights, or
    /// <see cref="LanguageModelOptions.TokenizerPath"/>) and loads it onto the chosen device.
    /// </summary>
    /// <exception cref="ArgumentException">An option is out of range.</exception>
    /// <exception cref="InvalidOperationException">No tokenizer was found, or no CUDA device for <see cref="ComputeDevice.Cuda"/>.</exception>
    public static LanguageModel Load(string path, LanguageModelOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return Create(options, (backend, transformerOptions, tokenizerPath) => ModelLoader.Open(path, backend, transformerOptions, tokenizerPath));
    }

    /// <summary>
    /// Loads an opened checkpoint (an in-memory GGUF, say) with the tokenizer it carries or
    /// <see cref="LanguageModelOptions.TokenizerPath"/>; the model takes ownership of it.
    /// </summary>
    public static LanguageModel Load(ModelCheckpoint checkpoint, LanguageModelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        return Create(options, (backend, transformerOptions, tokenizerPath) => ModelLoader.Open(checkpoint, backend, transformerOptions, tokenizerPath));
    }

    /// <summary>
    /// The built-in demo model: fixed random weights and a byte-level vocabulary, in memory. It runs
    /// without any file, and its text is meaningless.
    /// </summary>
    public static LanguageModel LoadDemo(LanguageModelOptions? options = null) =>
        Create(options, (backend, transformerOptions, _) => ModelLoader.OpenDemo(backend, transformerOptions));

    static LanguageModel Create(LanguageModelOptions? options, Func<IBackend, TransformerOptions, string?, LoadedModel> open)
    {
        options ??= new LanguageModelOptions();
        options.Validate();
        var backend = options.CreateBackend();
        LoadedModel? loaded = null;
        try
        {
            loaded = open(backend, options.TransformerOptions(), options.TokenizerPath);
            return new LanguageModel(backend, loaded, options);
        }
        catch
        {
            loaded?.Dispose();
            backend.Dispose();
            throw;
        }
    }

    public ModelConfig Config => loaded.Config;

    public ITokenizer Tokenizer { get; }

    /// <summary>Where the weights came from (a path, or a name for an in-memory model).</summary>
    public string Source => loaded.Checkpoint.SourcePath;

    /// <summary>The backend the model runs on, as it describes itself ("simd-cpu (avx512, 8 threads)").</summary>
    public string Device => backend.Name;

    /// <summary>Positions a sequence may use, prompt and generated tokens together.</summary>
    public int ContextLength => loaded.Transformer.ContextLength;

    /// <summary>Requests generated at once (cache slots); more wait for a free slot.</summary>
    public int Slots => loaded.Transformer.Slots;

    /// <summary>Requests waiting and running now, and how full the KV cache is.</summary>
    public SchedulerStatus Status => scheduler.Status;

    /// <summary>
    /// The ids that end every generation: EOS, end-of-turn, the model's own stop ids (and BOS for
    /// llama2.c checkpoints, which delimit stories with it). A chat prompt also stops at its
    /// template's end-of-turn token.
    /// </summary>
    public IReadOnlyList<int> StopTokens { get; }

    /// <summary>
    /// The chat template conversations are rendered with: <see cref="LanguageModelOptions.ChatTemplate"/>,
    /// else the one the model stores, else its family's.
    /// </summary>
    /// <exception cref="InvalidOperationException">The vocabulary lacks the template's special tokens.</exception>
    public ChatTemplate ChatTemplate => chatTemplate.Value;

    /// <summary>A one-line description: family, shape, vocabulary, context and device.</summary>
    public override string ToString()
    {
        var c = Config;
        return $"{c.Family} from {Source}: {c.LayerCount} layers, hidden {c.HiddenSize}, {c.HeadCount} heads ({c.KeyValueHeadCount} key/value) of {c.HeadDim}, " +
            $"vocabulary {Tokenizer.VocabSize} tokens ({c.VocabSize} rows), context {ContextLength} of the model's {c.ContextLength}; {Device}";
    }

    /// <summary>The ids a prompt feeds the model: the text with BOS where the model's convention has one, or the conversation rendered with the chat template.</summary>
    /// <exception cref="ArgumentException">The prompt has ids outside the vocabulary, or is empty text for a model without BOS.</exception>
    /// <exception cref="InvalidOperationException">A conversation, and the vocabulary lacks the chat template's special tokens.</exception>
    public int[] Encode(Prompt prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (prompt.Messages != null)
            return ChatTemplate.Encode(Tokenizer, prompt.Messages, addGenerationPrompt: true);
        if (prompt.Tokens != null)
        {
            if (prompt.Tokens.Count == 0)
                throw new ArgumentException("the prompt has no tokens; start it with BOS", nameof(prompt));
            for (int i = 0; i < prompt.Tokens.Count; i++)
                if ((uint)prompt.Tokens[i] >= (uint)Tokenizer.VocabSize)
                    throw new ArgumentException($"prompt token {i} is id {prompt.Tokens[i]}, outside the vocabulary of {Tokenizer.VocabSize}", nameof(prompt));
            return [.. prompt.Tokens];
        }
        if (prompt.Text!.Length == 0)
        {
            int bos = Tokenizer.Special.Bos ?? Config.BosTokenId
                ?? throw new ArgumentException("this model has no BOS token to start from; give a prompt that is not empty", nameof(prompt));
            return [bos];
        }
        return Tokenizer.Encode(prompt.Text, addBos: Tokenizer.AddBosByDefault, parseSpecial: false);
    }

    /// <summary>
    /// Streams the continuation of a prompt, one piece per generated token, then a last piece with
    /// the rest of the text, the finish reason and the usage. The prompt is encoded and checked
    /// against the context when this is called, before anything is streamed.
    /// </summary>
    /// <exception cref="PromptTooLongException">The prompt does not fit the context.</exception>
    /// <exception cref="GenerationException">While streaming: the sequence could not continue.</exception>
    /// <exception cref="OperationCanceledException">While streaming: <paramref name="cancellationToken"/> was cancelled (checked between forward passes).</exception>
    public IAsyncEnumerable<GenerationPiece> GenerateAsync(string prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default) =>
        GenerateAsync(Prompt.FromText(prompt), options, cancellationToken);

    /// <inheritdoc cref="GenerateAsync(string, GenerationOptions?, CancellationToken)"/>
    public IAsyncEnumerable<GenerationPiece> GenerateAsync(IReadOnlyList<ChatMessage> messages, GenerationOptions? options = null, CancellationToken cancellationToken = default) =>
        GenerateAsync(Prompt.FromMessages(messages), options, cancellationToken);

    /// <inheritdoc cref="GenerateAsync(string, GenerationOptions?, CancellationToken)"/>
    public IAsyncEnumerable<GenerationPiece> GenerateAsync(Prompt prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        options ??= new GenerationOptions();
        options.Validate();
        return Stream(Job(prompt, index: null, options), kept: null, cancellationToken);
    }

    /// <summary>
    /// Generates for every prompt and returns the results in input order; the prompts run
    /// <see cref="Slots"/> at a time, beside any other requests. A prompt whose sequence fails
    /// (non-finite values) has <see cref="Completion.Error"/> set; the others are unaffected. Every
    /// prompt is encoded and checked before any work. Each result's <see cref="GenerationUsage.Run"/>
    /// is the scheduler's work while the call ran.
    /// </summary>
    /// <exception cref="PromptTooLongException">A prompt does not fit the context.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled (checked between forward passes).</exception>
    /// <exception cref="QueueFullException">More prompts than <see cref="LanguageModelOptions.MaxWaiting"/> would wait.</exception>
    public IReadOnlyList<Completion> Generate(IReadOnlyList<Prompt> prompts, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        ArgumentNullException.ThrowIfNull(prompts);
        options ??= new GenerationOptions();
        options.Validate();
        var prepared = prompts.Select((prompt, i) => Job(prompt, i, options)).ToArray();
        cancellationToken.ThrowIfCancellationRequested();
        var start = scheduler.Stats;
        var jobs = prepared.Select(p => new BatchJob(p, Tokenizer, cancellationToken)).ToArray();
        try
        {
            foreach (var job in jobs)
                scheduler.Submit(job);
            Task.WaitAll(jobs.Select(j => j.Result).ToArray(), CancellationToken.None);
        }
        catch (Exception e)
        {
            // One prompt refused or cancelled: the others stop too.
            foreach (var job in jobs)
                job.Sequence.Cancel();
            try
            {
                Task.WaitAll(jobs.Select(j => j.Done).ToArray(), CancellationToken.None);
            }
            catch (AggregateException)
            {
            }
            cancellationToken.ThrowIfCancellationRequested();
            if (e is AggregateException aggregate)
                ExceptionDispatchInfo.Throw(aggregate.InnerExceptions[0]);
            throw;
        }
        var run = Subtract(scheduler.Stats, start);
        return jobs.Select(job => job.Result.Result with { Usage = job.Result.Result.Usage with { Run = run } }).ToArray();
    }

    static GenerationStats Subtract(GenerationStats end, GenerationStats start) =>
        new(end.PromptTokens - start.PromptTokens, end.PrefillTime - start.PrefillTime,
            end.DecodedTokens - start.DecodedTokens, end.DecodeTime - start.DecodeTime);

    /// <inheritdoc cref="Generate(IReadOnlyList{Prompt}, GenerationOptions?, CancellationToken)"/>
    public IReadOnlyList<Completion> Generate(IReadOnlyList<string> prompts, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        return Generate(prompts.Select(Prompt.FromText).ToArray(), options, cancellationToken);
    }

    /// <summary>
    /// A conversation whose history stays in the KV cache between turns: it holds one cache slot
    /// from its first turn until it is disposed (or a request needs the slot), and each turn
    /// prefills only what the rendered conversation adds to the tokens the cache holds.
    /// </summary>
    public Conversation StartConversation(string? systemPrompt = null)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        return new Conversation(this, systemPrompt);
    }

    /// <summary>A prompt made ready to run: the request the scheduler takes, and what its text needs.</summary>
    internal sealed record PreparedPrompt(GenerationRequest Request, IReadOnlyList<string> StopStrings, int? EndOfTurn, int? LogProbabilities);

    /// <summary>The one place a prompt becomes a request: its ids checked against the context, its random stream, its stops.</summary>
    internal PreparedPrompt Job(Prompt prompt, int? index, GenerationOptions options)
    {
        var ids = Encode(prompt);
        if (ids.Length > ContextLength)
            throw new PromptTooLongException(index, ids.Length, ContextLength);
        var request = new GenerationRequest(ids, options.MaxNewTokens, options.Sampling) { Sequence = prompt.Sequence ?? index ?? 0 };
        // A reply ends at the end of its turn even where the model does not list that id among its stop ids.
        int? endOfTurn = prompt.Messages != null ? loaded.EndOfTurnToken(ChatTemplate) : null;
        return new PreparedPrompt(request, options.StopStrings, endOfTurn, options.LogProbabilities);
    }

    /// <summary>Streams one request's pieces: a new sequence, or the next turn of a conversation's kept one.</summary>
    internal async IAsyncEnumerable<GenerationPiece> Stream(PreparedPrompt prepared, GenerationSequence? kept,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var job = new StreamJob(prepared, kept, Tokenizer, drawableTokens, stop.Token);
        scheduler.Submit(job);
        bool finished = false;
        try
        {
            await foreach (var piece in job.Pieces.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                // Pieces already drawn are not handed out once the caller has cancelled.
                cancellationToken.ThrowIfCancellationRequested();
                yield return piece;
            }
            finished = true;
        }
        finally
        {
            // Left early (cancelled, or the caller stopped reading): the request leaves the batch
            // before the next step; wait for that, so its slot is free when this returns.
            if (!finished)
                stop.Cancel();
            await job.Done.ConfigureAwait(false);
        }
        if (job.Failure is OperationCanceledException)
            cancellationToken.ThrowIfCancellationRequested();
        if (job.Failure != null)
            ExceptionDispatchInfo.Throw(job.Failure);
    }

    internal void Release(GenerationSequence sequence) => scheduler.Release(sequence);

    internal void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(disposed, this);

    /// <summary>
    /// Frees the weights, the cache and the device. Requests still waiting or running end with
    /// <see cref="ObjectDisposedException"/>; the scheduler leaves the model before it is freed.
    /// </summary>
    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        scheduler.Dispose();
        loaded.Dispose();
        backend.Dispose();
    }
}
