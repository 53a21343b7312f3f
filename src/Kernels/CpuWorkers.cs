using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace IlgpuLlm.Kernels;

/// <summary>The widest vector instructions a SIMD twin may use.</summary>
public enum SimdLevel
{
    /// <summary>Plain scalar C#: the portable fallback.</summary>
    Scalar,

    /// <summary>256-bit vectors with FMA (x86-64 AVX2).</summary>
    Avx2,

    /// <summary>512-bit vectors (x86-64 AVX-512 F/BW).</summary>
    Avx512,
}

public static class SimdLevels
{
    /// <summary>The widest level this machine runs.</summary>
    public static SimdLevel Best { get; } =
        Vector512.IsHardwareAccelerated && Avx512F.IsSupported && Avx512BW.IsSupported ? SimdLevel.Avx512
        : Vector256.IsHardwareAccelerated && Avx2.IsSupported && Fma.IsSupported ? SimdLevel.Avx2
        : SimdLevel.Scalar;

    /// <summary>Every level this machine runs, narrowest first.</summary>
    public static IReadOnlyList<SimdLevel> Available { get; } =
        Enum.GetValues<SimdLevel>().Where(level => level <= Best).ToArray();

    /// <summary>The requested level, or the best the machine has when it asks for more.</summary>
    public static SimdLevel AtMost(SimdLevel requested) => requested < Best ? requested : Best;

    public static string Name(this SimdLevel level) => level switch
    {
        SimdLevel.Avx512 => "avx512",
        SimdLevel.Avx2 => "avx2",
        _ => "scalar",
    };
}

/// <summary>A piece of parallel work: items [start, end) of a range, independent of each other.</summary>
public interface IRangeJob
{
    void Run(int start, int end);
}

/// <summary>
/// A fixed set of threads that split ranges of independent items between them (output rows,
/// heads). The split is dynamic, which is safe because no item's result depends on which thread
/// computes it or on any other item: thread count never changes a bit. The calling thread works
/// too; jobs are objects the caller reuses, so running one allocates nothing.
/// </summary>
/// <remarks>
/// A decode step makes a few hundred calls, most of them short (a small projection streams for
/// tens of microseconds), one right after the other. Between calls the workers spin for a while
/// (<see cref="SpinTime"/>) watching for the next one instead of going to sleep at once, and the
/// caller spins for them to finish, so a hand-off costs a cache line passing between cores rather
/// than waking a sleeping thread (and, in a virtual machine, an idle virtual CPU). The spinning
/// soon turns to yielding the core, so that on a machine with more runnable threads than cores
/// the thread being waited for can run. Threads idle for longer than that sleep, so an idle
/// engine costs nothing.
/// </remarks>
public sealed class CpuWorkers : IDisposable
{
    readonly Thread[] threads;
    /// <summary>Workers that stopped spinning wait on this for the next call; each call pulses it when any do.</summary>
    readonly object wake = new();
    /// <summary>The caller blocks on this when the workers take longer than the spin; the last worker pulses it.</summary>
    readonly object finished = new();
    readonly long spinTicks;
    IRangeJob? job;
    int count;
    int grain;
    int next;
    Exception? failure;
    volatile bool stopping;

    /// <summary>Bumped by each call that hands work to the workers; a worker runs each new value once.</summary>
    int epoch;

    /// <summary>Workers waiting on <see cref="wake"/> or about to, to be woken by the next call.</summary>
    int sleeping;

    /// <summary>Workers that have not finished the current call.</summary>
    int pending;

    /// <summary>How long a thread spins for the next call (a worker) or for the workers (the caller) before it blocks.</summary>
    public static readonly TimeSpan DefaultSpinTime = TimeSpan.FromMicroseconds(100);

    public CpuWorkers(int threadCount) : this(threadCount, DefaultSpinTime)
    {
    }

    public CpuWorkers(int threadCount, TimeSpan spinTime)
    {
        if (threadCount < 1)
            throw new ArgumentOutOfRangeException(nameof(threadCount), $"thread count {threadCount} must be at least 1");
        // Each worker is an OS thread with its own stack: tens of thousands of them exhaust the
        // process (a crash, not an exception). More threads than cores never help.
        if (threadCount > MaxThreads)
            throw new ArgumentOutOfRangeException(nameof(threadCount),
                $"thread count {threadCount} is more than {MaxThreads} (4 per core of this machine's {Environment.ProcessorCount}, at least 64)");
        if (spinTime < TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(spinTime), $"spin time {spinTime} must not be negative");
        Threads = threadCount;
        SpinTime = spinTime;
        spinTicks = (long)(spinTime.TotalSeconds * System.Diagnostics.Stopwatch.Frequency);
        threads = new Thread[threadCount - 1];
        for (int i = 0; i < threads.Length; i++)
        {
            threads[i] = new Thread(Work) { IsBackground = true, Name = $"ilgpullm-cpu-{i + 1}" };
            threads[i].Start();
        }
    }

    public int Threads { get; }

    /// <summary>How long threads wait busily for the next call, or the caller for the workers, before they block.</summary>
    public TimeSpan SpinTime { get; }

    /// <summary>The most workers one pool may have: 4 per core, at least 64.</summary>
    public static int MaxThreads => Math.Max(64, 4 * Environment.ProcessorCount);

    /// <summary>Every <see cref="For"/> is counted as a launch; jobs count the scratch they allocate.</summary>
    public DeviceCounters Counters { get; } = new();

    /// <summary>Runs items [0, itemCount) in chunks of about <paramref name="itemsPerChunk"/>; returns when all are done.</summary>
    public void For(int itemCount, int itemsPerChunk, IRangeJob rangeJob)
    {
        if (itemCount <= 0)
            return;
        Counters.Launch();
        itemsPerChunk = Math.Max(1, itemsPerChunk);
        if (threads.Length == 0 || itemCount <= itemsPerChunk)
        {
            rangeJob.Run(0, itemCount);
            return;
        }
        job = rangeJob;
        count = itemCount;
        grain = itemsPerChunk;
        next = 0;
        failure = null;
        pending = threads.Length;
        // The increment is a full fence: a worker that sees the new epoch sees the job above, and
        // of a worker going to sleep and this call, at least one sees the other (see NextEpoch).
        Interlocked.Increment(ref epoch);
        WakeSleepers();
        RunChunks();
        WaitForWorkers();
        job = null;
        if (failure != null)
            throw new AggregateException("a CPU worker failed", failure);
    }

    void WaitForWorkers()
    {
        if (Volatile.Read(ref pending) == 0)
            return;
        long until = System.Diagnostics.Stopwatch.GetTimestamp() + spinTicks;
        var spinner = new SpinWait();
        do
        {
            // Busy at first, then yielding the core: on a machine with more runnable threads than
            // cores the worker being waited for may need this one to run at all.
            spinner.SpinOnce(sleep1Threshold: -1);
            if (Volatile.Read(ref pending) == 0)
                return;
        }
        while (System.Diagnostics.Stopwatch.GetTimestamp() < until);
        // Checked under the lock the last worker pulses after its decrement, so the pulse cannot be
        // missed; a late pulse from an earlier call only makes this look at the count again.
        lock (finished)
            while (Volatile.Read(ref pending) != 0)
                Monitor.Wait(finished);
    }

    /// <summary>Items per chunk that gives each thread a few chunks to balance uneven items.</summary>
    public int ChunkFor(int itemCount) => Math.Max(1, itemCount / (Threads * 4));

    /// <summary>Bytes a chunk of a streaming job reads: small enough that the threads finish an op together.</summary>
    public const long StreamChunkBytes = 256 << 10;

    /// <summary>
    /// Items per chunk for a job that streams <paramref name="bytesPerItem"/> from memory per item
    /// (a decode linear's weight rows): about <see cref="StreamChunkBytes"/> a chunk, a multiple of
    /// <paramref name="multiple"/>, never more than <see cref="ChunkFor(int)"/>. Every thread streams
    /// at the same rate, so when the first runs out of chunks the others are at most one small chunk
    /// from the end, instead of up to an eighth of the op with four chunks per thread.
    /// </summary>
    public int StreamChunkFor(int itemCount, long bytesPerItem, int multiple = 1)
    {
        long items = Math.Clamp(StreamChunkBytes / Math.Max(1, bytesPerItem), 1, ChunkFor(itemCount));
        return (int)Math.Max(multiple, items / multiple * multiple);
    }

    void RunChunks()
    {
        try
        {
            var current = job!;
            while (true)
            {
                int begin = Interlocked.Add(ref next, grain) - grain;
                if (begin >= count)
                    break;
                current.Run(begin, Math.Min(count, begin + grain));
            }
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref failure, e, null);
            next = count;
        }
    }

    void Work()
    {
        int seen = 0;
        while (true)
        {
            seen = NextEpoch(seen);
            if (stopping)
                return;
            RunChunks();
            if (Interlocked.Decrement(ref pending) == 0)
                lock (finished)
                    Monitor.PulseAll(finished);
        }
    }

    /// <summary>Wakes every worker that has stopped spinning; called after the epoch has moved on.</summary>
    void WakeSleepers()
    {
        if (Volatile.Read(ref sleeping) > 0)
            lock (wake)
                Monitor.PulseAll(wake);
    }

    /// <summary>
    /// Waits for a call after <paramref name="seen"/>: spinning for <see cref="SpinTime"/>, then
    /// asleep. A worker counts itself asleep before it looks at the epoch under the lock, and a
    /// call moves the epoch on before it counts the sleepers, so either the worker sees the new
    /// epoch or the call sees the sleeper and pulses the lock; every sleeper wakes on the pulse
    /// and looks for itself, so no wake-up meant for one worker can be taken by another.
    /// </summary>
    int NextEpoch(int seen)
    {
        long until = System.Diagnostics.Stopwatch.GetTimestamp() + spinTicks;
        var spinner = new SpinWait();
        do
        {
            spinner.SpinOnce(sleep1Threshold: -1);
            int current = Volatile.Read(ref epoch);
            if (current != seen)
                return current;
        }
        while (System.Diagnostics.Stopwatch.GetTimestamp() < until);
        Interlocked.Increment(ref sleeping);
        int next;
        lock (wake)
            while ((next = Volatile.Read(ref epoch)) == seen)
                Monitor.Wait(wake);
        Interlocked.Decrement(ref sleeping);
        return next;
    }

    public void Dispose()
    {
        stopping = true;
        Interlocked.Increment(ref epoch);
        WakeSleepers();
        foreach (var thread in threads)
            thread.Join();
    }
}
