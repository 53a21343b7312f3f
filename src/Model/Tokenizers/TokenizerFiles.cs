namespace IlgpuLlm.Model.Tokenizers;

/// <summary>File access that turns I/O failures into <see cref="TokenizerLoadException"/>s naming the file.</summary>
internal static class TokenizerFiles
{
    public static byte[] ReadAllBytes(string path)
    {
        RequireRegularFile(path);
        try
        {
            return File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TokenizerLoadException(path, e is FileNotFoundException or DirectoryNotFoundException ? "file not found" : e.Message, e);
        }
    }

    public static string[] ReadAllLines(string path)
    {
        RequireRegularFile(path);
        try
        {
            return File.ReadAllLines(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TokenizerLoadException(path, e is FileNotFoundException or DirectoryNotFoundException ? "file not found" : e.Message, e);
        }
    }

    /// <summary>A named pipe or a device would block or never end: only regular files are read.</summary>
    public static void RequireRegularFile(string path)
    {
        if (Formats.FileKind.WhyNotRegularFile(path) is string why)
            throw new TokenizerLoadException(path, why == "no such file or folder" ? "file not found" : why);
    }
}
