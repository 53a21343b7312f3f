namespace IlgpuLlm.Kernels;

/// <summary>
/// What a backend asked of its device, counted where it happens: kernel launches (on the CPU
/// backend, parallel dispatches over its threads), host waits for the device, allocations and
/// frees of device memory (a CPU backend's native blocks and its kernels' scratch included), and
/// copies between host and device. Each backend increments its own counters at its one place
/// for each kind, so a test can hold the forward pass to a budget per decoded token.
/// Thread-safe; counting costs one interlocked increment.
/// </summary>
public sealed class DeviceCounters
{
    long launches, waits, allocations, frees, uploads, downloads;

    public void Launch() => Interlocked.Increment(ref launches);
    public void Wait() => Interlocked.Increment(ref waits);
    public void Allocation() => Interlocked.Increment(ref allocations);
    public void Free() => Interlocked.Increment(ref frees);
    public void Upload() => Interlocked.Increment(ref uploads);
    public void Download() => Interlocked.Increment(ref downloads);

    /// <summary>The counts so far; subtract two snapshots for what happened between them.</summary>
    public DeviceCounts Snapshot() => new(Interlocked.Read(ref launches), Interlocked.Read(ref waits), Interlocked.Read(ref allocations),
        Interlocked.Read(ref frees), Interlocked.Read(ref uploads), Interlocked.Read(ref downloads));
}

/// <summary>A snapshot of <see cref="DeviceCounters"/>.</summary>
public readonly record struct DeviceCounts(long Launches, long Waits, long Allocations, long Frees, long Uploads, long Downloads)
{
    /// <summary>Copies in either direction.</summary>
    public long Transfers => Uploads + Downloads;

    public static DeviceCounts operator -(DeviceCounts a, DeviceCounts b) => new(a.Launches - b.Launches, a.Waits - b.Waits,
        a.Allocations - b.Allocations, a.Frees - b.Frees, a.Uploads - b.Uploads, a.Downloads - b.Downloads);

    public override string ToString() =>
        $"{Launches} launches, {Waits} waits, {Allocations} allocations, {Frees} frees, {Uploads} uploads, {Downloads} downloads";
}
