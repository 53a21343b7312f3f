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
public sealed class CpuWorkers : IDisposable
{
    readonly Thread[] threads;
    readonly SemaphoreSlim start = new(0);
    readonly CountdownEvent finished = new(1);
    IRangeJob? job;
    int count;
    int grain;
    int next;
    Exception? failure;
    volatile bool stopping;

    public CpuWorkers(int threadCount)
    {
        if (threadCount < 1)
            throw new ArgumentOutOfRangeException(nameof(threadCount), $"thread count {threadCount} must be at least 1");
        // Each worker is an OS thread with its own stack: tens of thousands of them exhaust the
        // process (a crash, not an exception). More threads than cores never help.
        if (threadCount > MaxThreads)
            throw new ArgumentOutOfRangeException(nameof(threadCount),
                $"thread count {threadCount} is more than {MaxThreads} (4 per core of this machine's {Environment.ProcessorCount}, at least 64)");
        Threads = threadCount;
        threads = new Thread[threadCount - 1];
        for (int i = 0; i < threads.Length; i++)
        {
            threads[i] = new Thread(Work) { IsBackground = true, Name = $"ilgpullm-cpu-{i + 1}" };
            threads[i].Start();
        }
    }

    public int Threads { get; }

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
        finished.Reset(threads.Length + 1);
        start.Release(threads.Length);
        RunChunks();
        finished.Wait();
        job = null;
        if (failure != null)
            throw new AggregateException("a CPU worker failed", failure);
    }

    /// <summary>Items per chunk that gives each thread a few chunks to balance uneven items.</summary>
    public int ChunkFor(int itemCount) => Math.Max(1, itemCount / (Threads * 4));

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
        finally
        {
            finished.Signal();
        }
    }

    void Work()
    {
        while (true)
        {
            start.Wait();
            if (stopping)
                return;
            RunChunks();
        }
    }

    public void Dispose()
    {
        stopping = true;
        if (threads.Length > 0)
            start.Release(threads.Length);
        foreach (var thread in threads)
            thread.Join();
        start.Dispose();
        finished.Dispose();
    }
}
