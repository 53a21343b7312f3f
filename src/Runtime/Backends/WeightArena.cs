using System.Runtime.InteropServices;

namespace IlgpuLlm.Runtime.Backends;

/// <summary>Where the SIMD CPU backend keeps the weights it is given.</summary>
public enum WeightMemory
{
    /// <summary>
    /// Used in place, in the memory-mapped model file: nothing is copied, loading is instant and
    /// the pages are the page cache's (shared with other processes reading the file), in 4 KiB pages.
    /// </summary>
    Mapped,

    /// <summary>
    /// Copied at load time into anonymous memory aligned to 2 MiB and advised for transparent huge
    /// pages (Linux madvise MADV_HUGEPAGE): a decode step streams every weight once, and with 2 MiB
    /// pages the TLB covers a whole matrix instead of one 4 KiB row of it at a time. Costs the copy
    /// (a second or two per GiB) and memory of its own.
    /// </summary>
    HugePages,
}

/// <summary>
/// Anonymous memory for weight copies: regions of at least <see cref="RegionBytes"/> aligned to
/// 2 MiB and advised for huge pages where the system has them, handed out 64-byte aligned, one
/// after another. A region is returned to the system when its last tensor is freed.
/// </summary>
sealed unsafe partial class WeightArena : IDisposable
{
    const long HugePage = 2L << 20;
    const long RegionBytes = 64L << 20;
    const int Alignment = 64;

    sealed class Region(byte* mapped, long mappedBytes, byte* start, long bytes)
    {
        public readonly byte* Mapped = mapped;
        public readonly long MappedBytes = mappedBytes;
        public readonly byte* Start = start;
        public readonly long Bytes = bytes;
        public long Used;
        public int Live;
    }

    readonly List<Region> regions = [];
    Region? current;

    /// <summary>Bytes mapped for weights so far.</summary>
    public long ReservedBytes => regions.Sum(r => r.Bytes);

    /// <summary>A copy of <paramref name="bytes"/> bytes at <paramref name="source"/>; give <paramref name="handle"/> back to <see cref="Release"/>.</summary>
    public byte* Copy(byte* source, long bytes, out object handle)
    {
        long rounded = (Math.Max(bytes, 1) + Alignment - 1) / Alignment * Alignment;
        if (current == null || current.Bytes - current.Used < rounded)
        {
            current = Map(Math.Max(RegionBytes, (rounded + HugePage - 1) / HugePage * HugePage));
            regions.Add(current);
        }
        byte* pointer = current.Start + current.Used;
        current.Used += rounded;
        current.Live++;
        Buffer.MemoryCopy(source, pointer, bytes, bytes);
        handle = current;
        return pointer;
    }

    /// <summary>Frees one tensor's copy; its region goes back to the system with its last tensor.</summary>
    public void Release(object handle)
    {
        var region = (Region)handle;
        if (--region.Live > 0)
            return;
        regions.Remove(region);
        if (ReferenceEquals(current, region))
            current = null;
        Unmap(region);
    }

    public void Dispose()
    {
        foreach (var region in regions)
            Unmap(region);
        regions.Clear();
        current = null;
    }

    /// <summary>
    /// A region of <paramref name="bytes"/> (a multiple of 2 MiB) starting on a 2 MiB boundary. On
    /// Linux an anonymous private mapping one huge page larger, advised for huge pages, so that the
    /// kernel backs it with them at the first touch; elsewhere aligned native memory.
    /// </summary>
    static Region Map(long bytes)
    {
        if (!OperatingSystem.IsLinux())
        {
            var block = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, (nuint)HugePage);
            return new Region(block, -1, block, bytes);
        }
        long mappedBytes = bytes + HugePage;
        nint mapped = Mmap(0, (nuint)mappedBytes, ProtRead | ProtWrite, MapPrivate | MapAnonymous, -1, 0);
        if (mapped == -1)
            throw new InsufficientMemoryException(
                $"could not map {bytes >> 20} MiB for a copy of the weights (errno {Marshal.GetLastPInvokeError()}); load them mapped instead");
        byte* start = (byte*)((mapped + (nint)HugePage - 1) & ~((nint)HugePage - 1));
        // Advice only: where transparent huge pages are off the copy still works, in small pages.
        _ = Madvise((nint)start, (nuint)bytes, MadvHugePage);
        return new Region((byte*)mapped, mappedBytes, start, bytes);
    }

    static void Unmap(Region region)
    {
        if (region.MappedBytes < 0)
            NativeMemory.AlignedFree(region.Mapped);
        else
            _ = Munmap((nint)region.Mapped, (nuint)region.MappedBytes);
    }

    const int ProtRead = 1, ProtWrite = 2, MapPrivate = 2, MapAnonymous = 0x20, MadvHugePage = 14;

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static partial nint Mmap(nint address, nuint length, int protection, int flags, int fd, nint offset);

    [LibraryImport("libc", EntryPoint = "munmap")]
    private static partial int Munmap(nint address, nuint length);

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(nint address, nuint length, int advice);
}
