namespace IlgpuLlm.Model.Tokenizers;

/// <summary>
/// A tokenizer file is missing, unreadable or not what it claims to be. The message starts with the
/// file's path and says what was wrong, so a user can fix the right file without a debugger.
/// </summary>
public sealed class TokenizerLoadException : IOException
{
    public TokenizerLoadException(string filePath, string problem, Exception? inner = null)
        : base(Formats.Excerpt.Message($"{filePath}: {problem}"), inner)
    {
        FilePath = filePath;
    }

    /// <summary>The file (or folder) that could not be used.</summary>
    public string FilePath { get; }
}
