using System.Text;
using System.Text.RegularExpressions;

namespace IlgpuLlm.Model.Formats;

/// <summary>A short, escaped excerpt of text taken from a file, for an error message (a file may hold kilobytes of NULs where a name belongs).</summary>
public static partial class Excerpt
{
    public static string Of(string text, int maxLength = 80)
    {
        var builder = new StringBuilder();
        foreach (char c in text)
        {
            if (builder.Length >= maxLength)
            {
                builder.Append($"… ({text.Length} characters)");
                break;
            }
            if (char.IsControl(c) || char.IsSurrogate(c))
                builder.Append(c switch { '\n' => "\\n", '\t' => "\\t", '\r' => "\\r", '\0' => "\\0", _ => $"\\u{(int)c:X4}" });
            else
                builder.Append(c);
        }
        return builder.ToString();
    }

    /// <summary>
    /// A message that quotes a file: every quoted run longer than 80 characters is cut to an
    /// excerpt and every control character is escaped, so a lying length cannot pour kilobytes of
    /// a file into one error line.
    /// </summary>
    public static string Message(string message)
    {
        var shortened = LongQuote().Replace(message, m => $"'{Of(m.Groups[1].Value, 64)}'");
        return shortened.Length <= 2000 && !shortened.Any(c => char.IsControl(c) || char.IsSurrogate(c)) ? shortened : Of(shortened, 2000);
    }

    [GeneratedRegex("'([^']{81,})'", RegexOptions.Singleline)]
    private static partial Regex LongQuote();
}
