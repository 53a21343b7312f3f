using System.IO.MemoryMappedFiles;

namespace IlgpuLlm.Model.Formats;

/// <summary>
/// A read-only memory map of a whole file and the base pointer to it. Weights are served as
/// pointers into this map, so opening a multi-GB model costs a few page faults, not a read.
/// Every access goes through <see cref="CheckRange"/>-validated offsets.
/// </summary>
public sealed unsafe class MappedFile : IDisposable
{
    readonly MemoryMappedFile _map;
    readonly MemoryMappedViewAccessor _view;
    byte* _base;

    MappedFile(string path, long length, MemoryMappedFile map, MemoryMappedViewAccessor view, byte* basePointer)
    {
        Path = path;
        Length = length;
        _map = map;
        _view = view;
        _base = basePointer;
    }

    public string Path { get; }

    public long Length { get; }

    /// <summary>
    /// Maps a file read-only. A missing, unreadable or empty file is a
    /// <see cref="ModelFormatException"/> (an empty file cannot be mapped, and holds no model).
    /// </summary>
    public static MappedFile Open(string path)
    {
        if (FileKind.WhyNotRegularFile(path) is string why)
            throw new ModelFormatException(path, why);
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.None);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new ModelFormatException(path, $"cannot open the file ({e.Message})", e);
        }

        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        try
        {
            long length = stream.Length;
            if (length == 0)
                throw new ModelFormatException(path, "the file is empty (0 bytes)");
            map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* pointer = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            return new MappedFile(path, length, map, view, pointer + view.PointerOffset);
        }
        catch (Exception e) when (e is not ModelFormatException)
        {
            view?.Dispose();
            map?.Dispose();
            stream.Dispose();
            throw new ModelFormatException(path, $"cannot map the file into memory ({e.Message})", e);
        }
        catch
        {
            view?.Dispose();
            map?.Dispose();
            stream.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A copy of <paramref name="bytes"/> in anonymous shared memory, served like a mapped file:
    /// a model shipped inside an assembly. <paramref name="name"/> is what messages call it.
    /// </summary>
    public static MappedFile FromBytes(string name, ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length == 0)
            throw new ModelFormatException(name, "the file is empty (0 bytes)");
        var map = MemoryMappedFile.CreateNew(null, bytes.Length, MemoryMappedFileAccess.ReadWrite);
        MemoryMappedViewAccessor? view = null;
        try
        {
            view = map.CreateViewAccessor(0, bytes.Length, MemoryMappedFileAccess.ReadWrite);
            byte* pointer = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            pointer += view.PointerOffset;
            bytes.CopyTo(new Span<byte>(pointer, bytes.Length));
            return new MappedFile(name, bytes.Length, map, view, pointer);
        }
        catch
        {
            view?.Dispose();
            map.Dispose();
            throw;
        }
    }

    /// <summary>The address of byte <paramref name="offset"/>; the range must have been checked.</summary>
    public byte* PointerAt(long offset)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        return _base + offset;
    }

    /// <summary>True when [offset, offset + count) lies inside the file; overflow-safe.</summary>
    public bool Contains(long offset, long count) =>
        offset >= 0 && count >= 0 && (ulong)offset <= (ulong)Length && (ulong)count <= (ulong)(Length - offset);

    public void CheckRange(long offset, long count, string what)
    {
        if (!Contains(offset, count))
            throw new ModelFormatException(Path,
                $"{what}: needs bytes [{offset}, {(ulong)offset + (ulong)count}) but the file has {Length} bytes");
    }

    /// <summary>A span over a checked range shorter than 2 GiB (headers, small tensors).</summary>
    public ReadOnlySpan<byte> Span(long offset, int count, string what)
    {
        CheckRange(offset, count, what);
        return new ReadOnlySpan<byte>(PointerAt(offset), count);
    }

    public void Dispose()
    {
        if (_base == null) return;
        _base = null;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }
}
