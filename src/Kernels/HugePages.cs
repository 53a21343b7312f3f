using System.Runtime.InteropServices;

namespace IlgpuLlm.Kernels;

/// <summary>
/// Memory for data streamed end to end (weights, the memory-bandwidth probe's buffer): anonymous,
/// aligned to 2 MiB and advised for transparent huge pages where the system has them (Linux
/// madvise MADV_HUGEPAGE), so the TLB covers 2 MiB per entry instead of 4 KiB. Where the advice is
/// ignored (huge pages off) or unknown (other systems) it is ordinary aligned memory.
/// </summary>
public static unsafe partial class HugePages
{
    /// <summary>The size of one huge page, and the alignment of every block.</summary>
    public const long Size = 2L << 20;

    /// <summary>A block of <see cref="Bytes"/> bytes at <see cref="Pointer"/>, 2 MiB aligned, returned to the system on dispose.</summary>
    public sealed class Block : IDisposable
    {
        readonly byte* mapped;
        readonly long mappedBytes;

        internal Block(byte* mapped, long mappedBytes, byte* pointer, long bytes)
        {
            this.mapped = mapped;
            this.mappedBytes = mappedBytes;
            Pointer = pointer;
            Bytes = bytes;
        }

        public byte* Pointer { get; private set; }
        public long Bytes { get; }

        public void Dispose()
        {
            if (Pointer == null)
                return;
            if (mappedBytes < 0)
                NativeMemory.AlignedFree(mapped);
            else
                _ = Munmap((nint)mapped, (nuint)mappedBytes);
            Pointer = null;
        }
    }

    /// <summary>
    /// A block of at least <paramref name="bytes"/> (rounded up to whole huge pages). On Linux an
    /// anonymous private mapping one huge page larger, so that a 2 MiB boundary lies inside it,
    /// advised for huge pages there: the kernel backs it with them as it is first touched.
    /// </summary>
    public static Block Allocate(long bytes)
    {
        if (bytes < 0)
            throw new ArgumentOutOfRangeException(nameof(bytes), $"cannot allocate {bytes} bytes");
        long rounded = Math.Max(1, (bytes + Size - 1) / Size) * Size;
        if (!OperatingSystem.IsLinux())
        {
            var block = (byte*)NativeMemory.AlignedAlloc((nuint)rounded, (nuint)Size);
            return new Block(block, -1, block, rounded);
        }
        long mappedBytes = rounded + Size;
        nint mapped = Mmap(0, (nuint)mappedBytes, ProtRead | ProtWrite, MapPrivate | MapAnonymous, -1, 0);
        if (mapped == -1)
            throw new InsufficientMemoryException($"could not map {rounded >> 20} MiB of memory (errno {Marshal.GetLastPInvokeError()})");
        byte* start = (byte*)((mapped + (nint)Size - 1) & ~((nint)Size - 1));
        // Advice only: where transparent huge pages are off the block still works, in small pages.
        _ = Madvise((nint)start, (nuint)rounded, MadvHugePage);
        return new Block((byte*)mapped, mappedBytes, start, rounded);
    }

    const int ProtRead = 1, ProtWrite = 2, MapPrivate = 2, MapAnonymous = 0x20, MadvHugePage = 14;

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static partial nint Mmap(nint address, nuint length, int protection, int flags, int fd, nint offset);

    [LibraryImport("libc", EntryPoint = "munmap")]
    private static partial int Munmap(nint address, nuint length);

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(nint address, nuint length, int advice);
}
