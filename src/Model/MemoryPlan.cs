using System.Globalization;
using IlgpuLlm.Kernels;
using IlgpuLlm.Model.Evaluation;
using IlgpuLlm.Model.Formats;
using IlgpuLlm.Runtime;
using IlgpuLlm.Runtime.Backends;

namespace IlgpuLlm.Model;

/// <summary>
/// The host memory a decoder will allocate, worked out before any of it is: weights the backend
/// copies (the SIMD backend maps file weights in place and copies only transformed ones), the KV
/// cache of every layer (sliding-window layers hold a ring), the work buffers of one forward pass
/// and the logits. All sums are in long arithmetic, so a context, window or slot count from an
/// option or a file cannot overflow them. A request that does not fit the memory the machine has
/// available fails with both numbers instead of being killed halfway through zeroing its cache.
/// </summary>
/// <remarks>
/// On a CUDA device the weights, cache and buffers live in device memory, which this plan does
/// not see; there it checks nothing, and the device's allocator reports a request too large.
/// </remarks>
public sealed record MemoryPlan(long WeightBytes, long CacheBytes, long WorkBytes, long LogitBytes, string CacheShape, bool OnDevice = false)
{
    public long TotalBytes => checked(WeightBytes + CacheBytes + WorkBytes + LogitBytes);

    public static MemoryPlan For(ModelCheckpoint checkpoint, IBackend backend, int slots, int context, int rowsPerForward, StorageType kvType)
    {
        var config = checkpoint.Config;
        bool copiesWeights = backend is not SimdBackend;
        long weights = 0;
        foreach (var tensor in checkpoint.Tensors)
            if (copiesWeights || tensor.IsTransformed || (tensor.Shape.Length == 1 && tensor.DataType != StorageType.F32))
                weights += tensor.ByteLength;

        long rowWidth = (long)config.KeyValueHeadCount * config.HeadDim;
        long cache = 0;
        for (int l = 0; l < config.LayerCount; l++)
        {
            long capacity = config.IsSlidingWindowLayer(l) && config.SlidingWindow is int window
                ? Math.Min(context, (long)window + rowsPerForward - 1)
                : context;
            cache += 2 * slots * kvType.Format().ByteLength(capacity * rowWidth); // keys and values
        }

        long rows = rowsPerForward, query = (long)config.HeadCount * config.HeadDim;
        long work = 4 * rows * (4L * config.HiddenSize + 3 * query + 4 * rowWidth + 2L * config.IntermediateSize + 2L * config.HeadDim);
        long logitRows = Math.Max(1, Math.Min(slots, rowsPerForward));
        long logits = 4 * logitRows * ((long)config.VocabSize + 2L * config.HiddenSize);
        string shape = $"{slots} sequence{(slots == 1 ? "" : "s")} of {context.ToString("N0", CultureInfo.InvariantCulture)} positions";
        return new MemoryPlan(weights, cache, work, logits, shape, OnDevice: backend.Kind == "cuda");
    }

    /// <summary>Throws <see cref="InsufficientMemoryException"/> when the plan needs more than is available.</summary>
    public void EnsureFits(string model)
    {
        if (OnDevice)
            return;
        long available = AvailableMemory.Bytes();
        if (TotalBytes <= available)
            return;
        throw new InsufficientMemoryException(
            $"{model} needs {Format(TotalBytes)} of memory (KV cache {Format(CacheBytes)} for {CacheShape}, weights copied {Format(WeightBytes)}, " +
            $"work buffers and logits {Format(WorkBytes + LogitBytes)}) but this machine has {Format(available)} available; " +
            "a smaller context (--ctx-size), fewer sequences at once or an f16 KV cache needs less");
    }

    /// <summary>One allocation sized by an option or a file (a buffer, an output array): fails before allocating when it does not fit.</summary>
    public static void EnsureFits(long bytes, string what)
    {
        long available = AvailableMemory.Bytes();
        if (bytes < 0 || bytes > available)
            throw new InsufficientMemoryException(
                $"{what} needs {(bytes < 0 ? "more than 8 EiB" : Format(bytes))} of memory but this machine has {Format(available)} available");
    }

    public static string Format(long bytes) => ModelFootprint.FormatBytes(bytes);
}

/// <summary>The memory this process can still allocate: the machine's (and its control group's) available memory.</summary>
public static class AvailableMemory
{
    public static long Bytes()
    {
        long available = long.MaxValue;
        if (OperatingSystem.IsLinux())
        {
            // MemAvailable counts reclaimable page cache, which is what a new allocation can have.
            if (ReadMeminfo("MemAvailable:") is long meminfo)
                available = meminfo;
            // A container's limit kills the process before the machine runs short.
            if (ReadNumber("/sys/fs/cgroup/memory.max") is long limit && ReadNumber("/sys/fs/cgroup/memory.current") is long used)
                available = Math.Min(available, Math.Max(0, limit - used));
        }
        if (available == long.MaxValue)
        {
            var info = GC.GetGCMemoryInfo();
            available = Math.Max(0, info.TotalAvailableMemoryBytes - info.MemoryLoadBytes);
        }
        return available;
    }

    static long? ReadMeminfo(string key)
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith(key, StringComparison.Ordinal))
                {
                    var parts = line[key.Length..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    return long.Parse(parts[0], CultureInfo.InvariantCulture) * 1024; // kB
                }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or OverflowException)
        {
        }
        return null;
    }

    static long? ReadNumber(string path)
    {
        try
        {
            return File.Exists(path) && long.TryParse(File.ReadAllText(path).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out long value)
                ? value : null; // "max" (no limit) does not parse
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
