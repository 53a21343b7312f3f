using IlgpuLlm.Model.Formats;

namespace IlgpuLlm.Cli;

/// <summary>
/// The one check every file argument goes through before any work starts. The convention, the
/// same in every command: a path that is empty, or "-" where no stream is allowed, is wrong usage
/// (exit 2); a path that does not exist, is a folder where a file is needed (or the reverse), is a
/// named pipe or device, or cannot be read or written is a failure (exit 1). Each message names
/// the option and the path.
/// </summary>
public static class PathArguments
{
    /// <summary>The standard-stream path: stdout for outputs that allow it.</summary>
    public const string StandardStream = "-";

    /// <summary>A file (or, with <paramref name="folderAllowed"/>, a folder) to read.</summary>
    public static string Input(string option, string? path, bool folderAllowed = false)
    {
        if (path == null)
            throw new UsageException($"{option} is required");
        if (path.Trim().Length == 0)
            throw new UsageException($"{option} needs a path; it was empty");
        if (Directory.Exists(path))
        {
            if (!folderAllowed)
                throw new FileArgumentException($"{option} {path} is a folder; a file is needed");
            try
            {
                _ = Directory.EnumerateFileSystemEntries(path).Any();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new FileArgumentException($"{option} {path}: cannot read the folder ({e.Message})");
            }
            return path;
        }
        if (FileKind.WhyNotRegularFile(path) is string why)
            throw new FileArgumentException($"{option} {path}: {why}");
        try
        {
            using var probe = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new FileArgumentException($"{option} {path}: cannot read the file ({e.Message})");
        }
        return path;
    }

    /// <summary>
    /// A file to write, checked before any work so a long run does not fail at its end: its folder
    /// exists, it is not a folder, and it can be opened for writing. An existing file is not changed;
    /// a new one is created and removed again. "-" is stdout where <paramref name="standardAllowed"/>.
    /// </summary>
    public static string Output(string option, string? path, bool standardAllowed)
    {
        if (path == null)
            throw new UsageException($"{option} is required");
        if (path.Trim().Length == 0)
            throw new UsageException($"{option} needs a path; it was empty");
        if (path == StandardStream)
            return standardAllowed ? path : throw new UsageException($"{option} cannot write to stdout ('-'); name a file");
        if (Directory.Exists(path))
            throw new FileArgumentException($"{option} {path} is a folder; name a file to write");
        string folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        if (!Directory.Exists(folder))
            throw new FileArgumentException($"{option} {path}: the folder {folder} does not exist");
        try
        {
            if (File.Exists(path))
            {
                // A pipe or device given as the output (/dev/null, a process substitution) is the user's choice.
                if (FileKind.WhyNotRegularFile(path) == null)
                    using (new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1)) { }
            }
            else
            {
                using (new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1)) { }
                File.Delete(path);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new FileArgumentException($"{option} {path}: cannot write the file ({e.Message})");
        }
        return path;
    }

    /// <summary>Writes text to the output a checked path names (stdout for "-").</summary>
    public static void WriteText(string option, string path, string text)
    {
        if (path == StandardStream)
        {
            Console.Out.Write(text);
            Console.Out.Flush();
            return;
        }
        try
        {
            File.WriteAllText(path, text);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new FileArgumentException($"{option} {path}: cannot write the file ({e.Message})");
        }
    }
}

/// <summary>A file argument that cannot be used (missing, a folder, a pipe, unreadable, unwritable): exit 1.</summary>
public sealed class FileArgumentException(string message) : IOException(message);
