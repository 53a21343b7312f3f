using IlgpuLlm.Tests.Support;
namespace IlgpuLlm.Tests.Support;

/// <summary>A fresh folder under the system temp directory, deleted with everything in it on dispose.</summary>
public sealed class TempFolder : IDisposable
{
    public TempFolder() => Directory.CreateDirectory(Root);

    public string Root { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "ilgpullm-" + Guid.NewGuid().ToString("N"));

    /// <summary>The path of a file (or folder) inside this folder.</summary>
    public string File(string name) => System.IO.Path.Combine(Root, name);

    public string Write(string name, string text)
    {
        System.IO.File.WriteAllText(File(name), text);
        return File(name);
    }

    public string Write(string name, byte[] bytes)
    {
        System.IO.File.WriteAllBytes(File(name), bytes);
        return File(name);
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
            // A memory map still open (Windows); the OS cleans its temp folder eventually.
        }
    }
}
