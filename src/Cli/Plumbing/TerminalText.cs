using System.Text;

namespace IlgpuLlm.Cli;

/// <summary>
/// Text from a model or a file made safe for a terminal: control characters other than newline and
/// tab (ESC would start escape sequences, BEL rings, NUL and CR garble the line) and lone UTF-16
/// surrogates (which no UTF-8 terminal can show) become U+FFFD. Everything the CLI writes that a
/// model produced or a file supplied goes through here.
/// </summary>
public static class TerminalText
{
    public const char Replacement = '\uFFFD';

    public static string Sanitize(string text)
    {
        int i = 0;
        while (i < text.Length && IsSafe(text, i, out int width))
            i += width;
        if (i == text.Length)
            return text;
        var safe = new StringBuilder(text.Length);
        safe.Append(text, 0, i);
        while (i < text.Length)
        {
            if (IsSafe(text, i, out int width))
                safe.Append(text, i, width);
            else
                safe.Append(Replacement);
            i += width;
        }
        return safe.ToString();
    }

    /// <summary>One line for an error message: newlines too become spaces, and at most <paramref name="maxLength"/> characters are kept.</summary>
    public static string Line(string text, int maxLength = 1000)
    {
        var line = Sanitize(text.Replace("\r\n", " ").Replace('\n', ' ').Replace('\t', ' '));
        return line.Length <= maxLength ? line : line[..(maxLength - 1)] + "…";
    }

    static bool IsSafe(string text, int i, out int width)
    {
        char c = text[i];
        width = 1;
        if (char.IsHighSurrogate(c))
        {
            if (i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                width = 2;
                return true;
            }
            return false;
        }
        if (char.IsLowSurrogate(c))
            return false;
        return !char.IsControl(c) || c == '\n' || c == '\t';
    }

    /// <summary>
    /// A writer that sanitizes what it passes on, keeping a high surrogate back until the next
    /// write so a pair split between two writes (two streamed tokens) survives.
    /// </summary>
    public sealed class Writer(TextWriter inner) : TextWriter
    {
        char? pendingHigh;

        public override Encoding Encoding => inner.Encoding;

        public override void Write(char value) => Write(value.ToString());

        public override void Write(string? value)
        {
            if (string.IsNullOrEmpty(value))
                return;
            if (pendingHigh is char high)
            {
                value = high + value;
                pendingHigh = null;
            }
            if (char.IsHighSurrogate(value[^1]))
            {
                pendingHigh = value[^1];
                value = value[..^1];
            }
            inner.Write(Sanitize(value));
        }

        public override void WriteLine(string? value)
        {
            Write(value);
            Write(Environment.NewLine);
        }

        public override void Flush() => inner.Flush();

        /// <summary>Writes out a high surrogate still held back (as U+FFFD: nothing can complete it now).</summary>
        public void Finish()
        {
            if (pendingHigh != null)
                inner.Write(Replacement);
            pendingHigh = null;
            inner.Flush();
        }

        /// <summary>Finishes; the inner writer stays open (it is the console's).</summary>
        protected override void Dispose(bool disposing) => Finish();
    }
}
