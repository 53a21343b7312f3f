using IlgpuLlm.Kernels;

namespace IlgpuLlm.Tests.Kernels;

/// <summary>
/// The thread pool every SIMD op runs on: each item of each call runs exactly once, whether the
/// workers were spinning for the call or had gone to sleep, a worker's exception reaches the
/// caller, and disposing a pool with sleeping or spinning workers ends them.
/// </summary>
public class CpuWorkersTests
{
    sealed class CountingJob(int items) : IRangeJob
    {
        public readonly int[] Runs = new int[items];
        public int ThrowAt = -1;

        public void Run(int start, int end)
        {
            for (int i = start; i < end; i++)
            {
                if (i == ThrowAt)
                    throw new InvalidOperationException($"item {i} failed");
                Interlocked.Increment(ref Runs[i]);
            }
        }
    }

    [Theory]
    [InlineData(2, 0)]
    [InlineData(2, 50)]
    [InlineData(3, 100)]
    [InlineData(4, 0)]
    public void Every_item_runs_once_whether_the_workers_spin_or_sleep(int threads, int spinMicroseconds)
    {
        using var workers = new CpuWorkers(threads, TimeSpan.FromMicroseconds(spinMicroseconds));
        var random = new Random(5);
        for (int call = 0; call < 300; call++)
        {
            int items = random.Next(1, 200);
            var job = new CountingJob(items);
            workers.For(items, random.Next(1, 9), job);
            Assert.True(job.Runs.All(r => r == 1), $"call {call}: items ran {string.Join(",", job.Runs)} times");
            // Now and then a pause longer than the spin, so the next call finds the workers asleep.
            if (call % 7 == 0)
                Thread.Sleep(random.Next(0, 3));
        }
    }

    [Fact]
    public void A_workers_exception_reaches_the_caller_and_the_pool_keeps_working()
    {
        using var workers = new CpuWorkers(2);
        var failing = new CountingJob(64) { ThrowAt = 63 };
        var error = Assert.Throws<AggregateException>(() => workers.For(64, 1, failing));
        Assert.Contains("item 63 failed", error.InnerException!.Message);
        var job = new CountingJob(64);
        workers.For(64, 1, job);
        Assert.All(job.Runs, r => Assert.Equal(1, r));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(20)]
    public void Disposing_ends_spinning_and_sleeping_workers(int sleepMilliseconds)
    {
        var workers = new CpuWorkers(3, TimeSpan.FromMilliseconds(5));
        workers.For(30, 1, new CountingJob(30));
        Thread.Sleep(sleepMilliseconds);
        var disposing = new Thread(workers.Dispose);
        disposing.Start();
        Assert.True(disposing.Join(TimeSpan.FromSeconds(30)), "Dispose did not return");
    }

    [Fact]
    public void A_streaming_chunk_is_a_multiple_of_the_group_and_about_256_KiB()
    {
        using var workers = new CpuWorkers(2);
        Assert.Equal(64, workers.StreamChunkFor(8192, 4096, 8));      // 2048 f16 weights a row
        Assert.Equal(16, workers.StreamChunkFor(2048, 16384, 8));     // 8192 f16 weights a row
        Assert.Equal(8, workers.StreamChunkFor(2048, 1 << 20, 8));    // rows over 256 KiB: one group
        Assert.Equal(8, workers.StreamChunkFor(70, 64, 8));            // at most ChunkFor's share, in whole groups
        Assert.Equal(workers.ChunkFor(100), workers.StreamChunkFor(100, 4, 1));
    }
}
