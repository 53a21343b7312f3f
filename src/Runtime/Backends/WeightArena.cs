using IlgpuLlm.Kernels;

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
    /// pages (<see cref="HugePages"/>): a decode step streams every weight once, and with 2 MiB
    /// pages the TLB covers a whole matrix instead of one 4 KiB row of it at a time. Costs the copy
    /// (a second or two per GiB) and memory of its own.
    /// </summary>
    HugePages,
}

/// <summary>
/// Huge-page memory for weight copies: <see cref="HugePages"/> blocks of at least
/// <see cref="RegionBytes"/>, handed out 64-byte aligned one after another, so that the small
/// tensors (norms, biases) share pages with the large ones. A region is returned to the system
/// when its last tensor is freed.
/// </summary>
sealed unsafe class WeightArena : IDisposable
{
    const long RegionBytes = 64L << 20;
    const int Alignment = 64;

    sealed class Region(HugePages.Block block)
    {
        public readonly HugePages.Block Block = block;
        public long Used;
        public int Live;
    }

    readonly List<Region> regions = [];
    Region? current;

    /// <summary>A copy of <paramref name="bytes"/> bytes at <paramref name="source"/>; give <paramref name="handle"/> back to <see cref="Release"/>.</summary>
    public byte* Copy(byte* source, long bytes, out object handle)
    {
        long rounded = (Math.Max(bytes, 1) + Alignment - 1) / Alignment * Alignment;
        if (current == null || current.Block.Bytes - current.Used < rounded)
        {
            current = new Region(HugePages.Allocate(Math.Max(RegionBytes, rounded)));
            regions.Add(current);
        }
        byte* pointer = current.Block.Pointer + current.Used;
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
        region.Block.Dispose();
    }

    public void Dispose()
    {
        foreach (var region in regions)
            region.Block.Dispose();
        regions.Clear();
        current = null;
    }
}
