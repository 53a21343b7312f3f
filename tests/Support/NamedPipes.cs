using System.Runtime.InteropServices;

namespace IlgpuLlm.Tests.Support;

/// <summary>Named pipes (FIFOs) for tests of inputs that must be refused rather than opened: opening one blocks.</summary>
public static class NamedPipes
{
    public static bool Supported => OperatingSystem.IsLinux() || OperatingSystem.IsMacOS();

    /// <summary>Creates a named pipe at <paramref name="path"/>.</summary>
    public static string Create(string path)
    {
        if (MakeFifo(path, 0x1B6 /* 0666 */) != 0)
            throw new IOException($"mkfifo {path} failed (errno {Marshal.GetLastPInvokeError()})");
        return path;
    }

    [DllImport("libc", EntryPoint = "mkfifo", SetLastError = true)]
    static extern int MakeFifo([MarshalAs(UnmanagedType.LPUTF8Str)] string path, uint mode);
}
