using System.Collections.Concurrent;
using IlgpuLlm.Runtime.Generation;

namespace IlgpuLlm;

/// <summary>What the scheduler is doing now: the figures a router or an autoscaler reads.</summary>
/// <param name="Waiting">Requests waiting for a slot.</param>
/// <param name="Running">Requests in the running batch.</param>
/// <param name="Slots">Cache slots (requests that can run at once).</param>
/// <param name="KeptSlots">Slots held by conversations between their turns (given up when a request needs one).</param>
/// <param name="UsedPositions">Cache positions that the running requests' tokens occupy.</param>
/// <param name="CapacityPositions">Cache positions of all slots (slots × context).</param>
public sealed record SchedulerStatus(int Waiting, int Running, int Slots, int KeptSlots, long UsedPositions, long CapacityPositions)
{
    /// <summary>The fraction of the KV cache in use, 0 to 1.</summary>
    public double CacheUsage => CapacityPositions == 0 ? 0 : (double)UsedPositions / CapacityPositions;
}

/// <summary>The bounded queue of waiting requests is full; try again later.</summary>
public sealed class QueueFullException(int limit)
    : InvalidOperationException($"{limit} requests are already waiting for a slot (LanguageModelOptions.MaxWaiting); try again later")
{
    public int Limit { get; } = limit;
}

/// <summary>
/// The one loop that owns a model: a thread that admits waiting requests into free cache slots in
/// the order they came, steps the running batch (<see cref="ContinuousBatch"/>: prefill chunks of
/// new requests beside decode rows of running ones), hands each drawn token to its request, and
/// retires requests individually — finished, failed, or cancelled by their caller, whose slot is
/// free again before the next step. Every caller (a stream, a batch, a conversation, a server's
/// request) is a <see cref="Job"/> submitted here, so concurrent callers share steps instead of
/// taking turns.
/// </summary>
internal sealed class Scheduler : IDisposable
{
    readonly ContinuousBatch batch;
    readonly int maxWaiting;
    readonly ConcurrentQueue<Job> incoming = new();
    readonly ConcurrentQueue<GenerationSequence> releases = new();
    readonly List<Job> waiting = [];
    readonly Dictionary<GenerationSequence, Job> running = [];
    // Conversations holding a slot between turns, the longest idle first: a cache, given up when a
    // request needs the slot (that conversation's next turn then prefills its whole history).
    readonly List<GenerationSequence> idle = [];
    readonly SemaphoreSlim wake = new(0);
    readonly Lock gate = new();
    readonly Thread thread;
    volatile bool stopping;
    int waitingCount;
    volatile SchedulerStatus status;
    volatile GenerationStats stats;

    public Scheduler(ContinuousBatch batch, int maxWaiting)
    {
        this.batch = batch;
        this.maxWaiting = maxWaiting;
        status = new SchedulerStatus(0, 0, batch.Slots, 0, 0, (long)batch.Slots * batch.ContextLength);
        stats = batch.Stats;
        thread = new Thread(Loop) { IsBackground = true, Name = "IlgpuLlm scheduler" };
        thread.Start();
    }

    public SchedulerStatus Status => status with { Waiting = Volatile.Read(ref waitingCount) };

    /// <summary>Every step so far (published after each step, before its requests hear of it).</summary>
    public GenerationStats Stats => stats;

    /// <summary>Queues a job; it starts when a slot is free.</summary>
    /// <exception cref="QueueFullException">The bounded queue is full.</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    public void Submit(Job job)
    {
        // Registered first, so a cancellation can never reach a job the loop has already finished.
        job.Registration = job.CancellationToken.Register(() =>
        {
            job.Sequence.Cancel();
            Wake();
        });
        lock (gate)
        {
            if (stopping || (maxWaiting > 0 && waitingCount >= maxWaiting))
            {
                job.Registration.Dispose();
                ObjectDisposedException.ThrowIf(stopping, typeof(LanguageModel));
                throw new QueueFullException(maxWaiting);
            }
            waitingCount++;
            incoming.Enqueue(job);
        }
        Wake();
    }

    /// <summary>Gives a kept sequence's slot back (a conversation that ended).</summary>
    public void Release(GenerationSequence sequence)
    {
        releases.Enqueue(sequence);
        Wake();
    }

    void Wake()
    {
        if (wake.CurrentCount == 0)
            wake.Release();
    }

    void Loop()
    {
        while (true)
        {
            while (incoming.TryDequeue(out var job))
                waiting.Add(job);
            while (releases.TryDequeue(out var sequence))
                if (idle.Remove(sequence))
                    batch.Release(sequence);
            if (stopping)
                break;
            Admit();
            Publish();
            if (batch.Active.Count == 0)
            {
                wake.Wait();
                continue;
            }
            IReadOnlyList<GenerationSequence> retired;
            try
            {
                retired = batch.Step();
            }
            catch (Exception e)
            {
                // The step failed as a whole (the device, a row the batch refused): every request in
                // it ends with the error, and the loop goes on with the next ones.
                retired = batch.Abort(e.Message);
            }
            // The figures first, so that a caller who hears its request ended sees them.
            stats = batch.Stats;
            foreach (var sequence in retired)
                if (sequence.Slot >= 0)
                    idle.Add(sequence);
            Publish();
            foreach (var sequence in retired)
                Retire(sequence);
        }
        // Disposed: what still waits or runs is cancelled.
        foreach (var job in waiting)
            job.Fail(new ObjectDisposedException(nameof(LanguageModel), "the model was disposed before the request ran"));
        foreach (var job in running.Values)
            job.Fail(new ObjectDisposedException(nameof(LanguageModel), "the model was disposed while the request ran"));
    }

    /// <summary>Waiting jobs into free slots, in the order they came; cancelled ones leave the queue.</summary>
    void Admit()
    {
        for (int i = 0; i < waiting.Count; i++)
        {
            var job = waiting[i];
            if (job.Sequence.Cancelled)
            {
                Dequeue(i--);
                job.Fail(new OperationCanceledException(job.CancellationToken));
                continue;
            }
            idle.Remove(job.Sequence);
            job.StatsAtStart = stats;
            Admission admission;
            try
            {
                admission = batch.Admit(job.Sequence);
                if (admission == Admission.NoSlot && idle.Count > 0)
                {
                    batch.Release(idle[0]);
                    idle.RemoveAt(0);
                    admission = batch.Admit(job.Sequence);
                }
            }
            catch (Exception e)
            {
                // A request the batch refuses (its sampling settings) fails alone; the loop goes on.
                Dequeue(i--);
                job.Fail(e);
                continue;
            }
            if (admission == Admission.NoSlot)
                continue;
            Dequeue(i--);
            if (admission == Admission.Finished)
                Finish(job);
            else
                running[job.Sequence] = job;
        }
    }

    void Dequeue(int index)
    {
        waiting.RemoveAt(index);
        Interlocked.Decrement(ref waitingCount);
    }

    void Retire(GenerationSequence sequence)
    {
        var job = running[sequence];
        running.Remove(sequence);
        if (sequence.Cancelled)
            job.Fail(new OperationCanceledException(job.CancellationToken));
        else
            Finish(job);
    }

    void Finish(Job job)
    {
        try
        {
            job.Finish(job.StatsAtStart is { } start ? Difference(stats, start) : stats);
        }
        catch (Exception e)
        {
            job.Fail(e);
        }
    }

    static GenerationStats Difference(GenerationStats end, GenerationStats start) =>
        new(end.PromptTokens - start.PromptTokens, end.PrefillTime - start.PrefillTime,
            end.DecodedTokens - start.DecodedTokens, end.DecodeTime - start.DecodeTime);

    void Publish() =>
        status = new SchedulerStatus(0, batch.Active.Count, batch.Slots, idle.Count, batch.UsedPositions, status.CapacityPositions);

    /// <summary>Stops the loop: waiting and running requests fail with <see cref="ObjectDisposedException"/>; returns when the loop has left the model.</summary>
    public void Dispose()
    {
        lock (gate)
            stopping = true;
        Wake();
        thread.Join();
        wake.Dispose();
    }
}

/// <summary>
/// One request as the scheduler runs it: its sequence, and what it does with the tokens, the end
/// and a failure — called on the scheduler's thread, so they only hand results over.
/// </summary>
internal abstract class Job(GenerationSequence sequence, CancellationToken cancellationToken)
{
    public GenerationSequence Sequence { get; } = sequence;
    public CancellationToken CancellationToken { get; } = cancellationToken;
    internal CancellationTokenRegistration Registration;
    internal GenerationStats? StatsAtStart;

    /// <summary>The turn ended (finished, stopped, too long, or an error of this sequence); <paramref name="run"/> is the scheduler's work while it ran.</summary>
    public abstract void Finish(GenerationStats run);

    /// <summary>The request will not run or go on (cancelled, the model disposed).</summary>
    public abstract void Fail(Exception error);

    protected void Unregister() => Registration.Dispose();
}
