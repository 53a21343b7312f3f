using System.Runtime.InteropServices;

namespace IlgpuLlm.Model.Evaluation;

/// <summary>
/// CPU time, where the system tells it (Linux): what a thread or the process actually ran,
/// without the time slices other processes took. On a machine shared with other jobs wall time
/// mixes their load into every figure; CPU time does not (memory and caches stay shared).
/// </summary>
public static partial class CpuClock
{
    const int ProcessCpuTime = 2, ThreadCpuTime = 3;

    /// <summary>Whether <see cref="ThreadSeconds"/> and <see cref="ProcessSeconds"/> measure anything.</summary>
    public static bool Available { get; } = OperatingSystem.IsLinux() && Read(ThreadCpuTime) >= 0;

    /// <summary>CPU seconds the calling thread has run; NaN where unavailable.</summary>
    public static double ThreadSeconds() => Available ? Read(ThreadCpuTime) : double.NaN;

    /// <summary>CPU seconds every thread of the process has run; NaN where unavailable.</summary>
    public static double ProcessSeconds() => Available ? Read(ProcessCpuTime) : double.NaN;

    static double Read(int clock)
    {
        try
        {
            return ClockGetTime(clock, out var time) == 0 ? time.Seconds + time.Nanoseconds * 1e-9 : -1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return -1;
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clock, out TimeSpec time);
}
