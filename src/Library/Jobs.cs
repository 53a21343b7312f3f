using System.Threading.Channels;
using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Runtime.Generation;

namespace IlgpuLlm;

/// <summary>A request whose pieces stream through a channel to one reader (GenerateAsync, a conversation's turn).</summary>
internal sealed class StreamJob : Job
{
    readonly Channel<GenerationPiece> pieces = Channel.CreateUnbounded<GenerationPiece>(
        new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    readonly TaskCompletionSource done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly Continuation continuation;
    readonly LanguageModel.PreparedPrompt prepared;

    /// <param name="kept">A conversation's sequence, whose next turn this is; null for a new sequence.</param>
    public StreamJob(LanguageModel.PreparedPrompt prepared, GenerationSequence? kept, ITokenizer tokenizer, int drawable, CancellationToken cancellationToken)
        : base(kept ?? new GenerationSequence(prepared.Request), cancellationToken)
    {
        this.prepared = prepared;
        kept?.Continue(prepared.Request);
        var text = continuation = new Continuation(tokenizer, prepared.Request.Prompt, prepared.StopStrings, prepared.EndOfTurn);
        var logProbabilities = prepared.LogProbabilities is int top ? new LogProbabilityRecorder(top, drawable) : null;
        var writer = pieces.Writer;
        Sequence.TokenDrawn = token =>
            writer.TryWrite(new GenerationPiece(text.Append(token), token) { LogProbability = logProbabilities?.Of(token) });
        Sequence.StopAfter = _ => text.Stopped;
        Sequence.LogitsDrawn = logProbabilities == null ? null : logProbabilities.See;
    }

    public ChannelReader<GenerationPiece> Pieces => pieces.Reader;

    /// <summary>Completes when the request has left the scheduler, whatever the reader did.</summary>
    public Task Done => done.Task;

    /// <summary>Why the request did not end normally; null when it did.</summary>
    public Exception? Failure { get; private set; }

    public override void Finish(GenerationStats run)
    {
        var sequence = Sequence;
        var rest = continuation.Finish();
        if (sequence.Reason == FinishReason.Error)
        {
            if (rest.Length > 0)
                pieces.Writer.TryWrite(new GenerationPiece(rest, null));
            End(new GenerationException(sequence.Message ?? "the sequence could not continue"));
            return;
        }
        pieces.Writer.TryWrite(new GenerationPiece(rest, null)
        {
            FinishReason = sequence.Reason,
            Message = sequence.Message,
            Usage = new GenerationUsage(prepared.Request.Prompt.Count, sequence.Generated, run) { ReusedPromptTokens = sequence.ReusedPromptTokens },
        });
        End(null);
    }

    public override void Fail(Exception error) => End(error);

    void End(Exception? failure)
    {
        Unregister();
        Failure = failure;
        pieces.Writer.TryComplete();
        done.TrySetResult();
    }
}

/// <summary>One prompt of a batch call; its result is a <see cref="Completion"/>.</summary>
internal sealed class BatchJob : Job
{
    readonly TaskCompletionSource<Completion> result = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly TaskCompletionSource done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly Continuation continuation;
    readonly int promptTokens;

    public BatchJob(LanguageModel.PreparedPrompt prepared, ITokenizer tokenizer, CancellationToken cancellationToken)
        : base(Create(prepared, tokenizer, out var continuation), cancellationToken)
    {
        this.continuation = continuation;
        promptTokens = prepared.Request.Prompt.Count;
    }

    static GenerationSequence Create(LanguageModel.PreparedPrompt prepared, ITokenizer tokenizer, out Continuation continuation)
    {
        var text = continuation = new Continuation(tokenizer, prepared.Request.Prompt, prepared.StopStrings, prepared.EndOfTurn);
        return new GenerationSequence(prepared.Request)
        {
            TokenDrawn = token => text.Append(token),
            StopAfter = _ => text.Stopped,
        };
    }

    public Task<Completion> Result => result.Task;

    public Task Done => done.Task;

    public override void Finish(GenerationStats run)
    {
        Unregister();
        continuation.Finish();
        var s = Sequence;
        result.TrySetResult(new Completion(continuation.Text, s.GeneratedTokens.ToArray(), s.Reason!.Value, s.Message,
            new GenerationUsage(promptTokens, s.Generated, run)));
        done.TrySetResult();
    }

    public override void Fail(Exception error)
    {
        Unregister();
        result.TrySetException(error);
        done.TrySetResult();
    }
}
