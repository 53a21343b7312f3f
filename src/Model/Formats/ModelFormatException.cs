namespace IlgpuLlm.Model.Formats;

/// <summary>
/// The one exception every model-file reader throws for a file it cannot accept: truncated or
/// corrupted bytes, a lying header, a missing or misshapen tensor, an unsupported architecture
/// or data type. The message always starts with the file and names the key or tensor at fault,
/// what was expected and what was found, so a user can act on it without a debugger.
/// </summary>
public sealed class ModelFormatException : Exception
{
    public ModelFormatException(string filePath, string message)
        : base(Excerpt.Message($"{filePath}: {message}"))
    {
        FilePath = filePath;
    }

    public ModelFormatException(string filePath, string message, Exception innerException)
        : base(Excerpt.Message($"{filePath}: {message}"), innerException)
    {
        FilePath = filePath;
    }

    /// <summary>The file (or model folder) the problem was found in.</summary>
    public string FilePath { get; }
}
