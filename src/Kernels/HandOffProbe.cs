using System.Diagnostics;

namespace IlgpuLlm.Kernels;

/// <summary>
/// What one <see cref="CpuWorkers.For"/> costs beyond its work: a For over one item per thread
/// whose items do nothing, so the time is the hand-off alone — waking the workers, splitting the
/// range and waiting for every thread to finish. A decode step makes a few hundred of them.
/// </summary>
public static class HandOffProbe
{
    sealed class EmptyJob : IRangeJob
    {
        public void Run(int start, int end)
        {
        }
    }

    /// <summary>
    /// Seconds per For on <paramref name="workers"/>: the median over <paramref name="rounds"/>
    /// rounds of <paramref name="callsPerRound"/> calls each (after one untimed round), so a
    /// neighbour's time slice spoils one round, not the figure.
    /// </summary>
    public static double SecondsPerFor(CpuWorkers workers, int callsPerRound = 200, int rounds = 11)
    {
        if (callsPerRound < 1 || rounds < 1)
            throw new ArgumentOutOfRangeException(nameof(rounds), $"calls per round {callsPerRound} and rounds {rounds} must be at least 1");
        var job = new EmptyJob();
        var perCall = new double[rounds];
        for (int round = -1; round < rounds; round++)
        {
            long start = Stopwatch.GetTimestamp();
            for (int i = 0; i < callsPerRound; i++)
                workers.For(workers.Threads, 1, job);
            if (round >= 0)
                perCall[round] = Stopwatch.GetElapsedTime(start).TotalSeconds / callsPerRound;
        }
        Array.Sort(perCall);
        return perCall[rounds / 2];
    }

    /// <summary>Seconds per For on a new set of <paramref name="threads"/> workers.</summary>
    public static double SecondsPerFor(int threads, int callsPerRound = 200, int rounds = 11)
    {
        using var workers = new CpuWorkers(threads);
        return SecondsPerFor(workers, callsPerRound, rounds);
    }
}
