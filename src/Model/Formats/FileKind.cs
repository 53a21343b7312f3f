using System.Runtime.InteropServices;

namespace IlgpuLlm.Model.Formats;

/// <summary>
/// What a path names, told without opening it: opening a named pipe blocks until something
/// writes into it, and a device such as /dev/zero never ends, so every file the engine reads is
/// checked to be a regular file first.
/// </summary>
public static class FileKind
{
    /// <summary>
    /// Null when <paramref name="path"/> is a regular file (after following links); otherwise why it
    /// cannot be read as one, in words ("no such file or folder", "a folder", "a named pipe", …).
    /// </summary>
    public static string? WhyNotRegularFile(string path)
    {
        if (Directory.Exists(path))
            return "a folder, not a file";
        if (!File.Exists(path))
            return "no such file or folder";
        return SpecialKind(path) is string kind ? $"{kind}, not a regular file" : null;
    }

    /// <summary>Throws <see cref="IOException"/> naming the path unless it is a regular file.</summary>
    public static void RequireRegularFile(string path)
    {
        if (WhyNotRegularFile(path) is string why)
            throw new IOException($"{path}: {why}");
    }

    /// <summary>The kind of a non-regular, non-folder file (a named pipe, a device, a socket); null for a regular file.</summary>
    static string? SpecialKind(string path)
    {
        if (OperatingSystem.IsWindows())
            return null;
        int mode;
        try
        {
            mode = UnixMode(path);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null; // without the runtime's native shim the kind cannot be told; opening will tell
        }
        return (mode & TypeMask) switch
        {
            -1 or Regular or Folder => null,
            Fifo => "a named pipe",
            CharacterDevice => "a character device",
            BlockDevice => "a block device",
            Socket => "a socket",
            _ => "not a regular file",
        };
    }

    const int TypeMask = 0xF000, Fifo = 0x1000, CharacterDevice = 0x2000, Folder = 0x4000, BlockDevice = 0x6000, Regular = 0x8000,
        Socket = 0xC000;

    /// <summary>
    /// st_mode of a path, through the .NET runtime's own native shim (libSystem.Native ships with
    /// every runtime and lays its FileStatus out the same on every architecture: flags, then mode).
    /// −1 when the path cannot be examined.
    /// </summary>
    static unsafe int UnixMode(string path)
    {
        // FileStatus is about 120 bytes; the buffer leaves room for later fields.
        byte* status = stackalloc byte[512];
        if (SystemNativeStat(path, status) != 0)
            return -1;
        return *(int*)(status + 4);
    }

    [DllImport("libSystem.Native", EntryPoint = "SystemNative_Stat", CharSet = CharSet.Ansi)]
    static extern unsafe int SystemNativeStat([MarshalAs(UnmanagedType.LPUTF8Str)] string path, byte* status);
}
