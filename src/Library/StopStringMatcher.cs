using System.Text;

namespace IlgpuLlm;

/// <summary>
/// Finds the first of several stop strings in text that arrives a piece at a time, and says which
/// text is safe to show: everything before a stop string, never the stop string itself (as
/// OpenAI's <c>stop</c> does). Text that could be the start of a stop string is held back until
/// the next pieces show it is not one. Each piece is scanned together with the held-back text
/// only, which is shorter than the longest stop string, so the work per piece does not grow with
/// the text before it.
/// </summary>
public sealed class StopStringMatcher
{
    readonly string[] stops;
    readonly StringBuilder held = new();

    /// <exception cref="ArgumentException">A stop string is null or empty (it would match everywhere).</exception>
    public StopStringMatcher(IEnumerable<string> stopStrings)
    {
        ArgumentNullException.ThrowIfNull(stopStrings);
        stops = [.. stopStrings];
        Validate(stops);
        Longest = stops.Length == 0 ? 0 : stops.Max(s => s.Length);
    }

    /// <summary>Rejects null and empty stop strings with a message naming which one.</summary>
    public static void Validate(IReadOnlyList<string> stopStrings)
    {
        for (int i = 0; i < stopStrings.Count; i++)
            if (string.IsNullOrEmpty(stopStrings[i]))
                throw new ArgumentException($"stop string {i} is empty; a stop string needs at least one character", nameof(stopStrings));
    }

    /// <summary>The length of the longest stop string: the held-back text is always shorter.</summary>
    public int Longest { get; }

    /// <summary>Whether a stop string has been found; later text is ignored.</summary>
    public bool Stopped { get; private set; }

    /// <summary>Characters looked at so far (each stop string searched over the window, each end tried): the work, bounded per piece.</summary>
    internal long Scanned { get; private set; }

    /// <summary>
    /// Adds the next piece of text and returns the text now known to come before any stop string
    /// (possibly empty). When the piece completes a stop string, <see cref="Stopped"/> becomes
    /// true and the text before it is returned.
    /// </summary>
    public string Append(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (Stopped)
            return string.Empty;
        if (stops.Length == 0)
            return text;
        held.Append(text);
        // Only the held-back text and the new piece can hold a stop string not yet seen: any earlier
        // start would have been held back, since the text from there on began a stop string.
        string window = held.ToString();
        held.Clear();
        int first = -1;
        foreach (var stop in stops)
        {
            Scanned += window.Length;
            int at = window.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (first < 0 || at < first))
                first = at;
        }
        if (first >= 0)
        {
            Stopped = true;
            return window[..first];
        }
        int hold = StartOfStopAtEnd(window);
        held.Append(window, window.Length - hold, hold);
        return window[..^hold];
    }

    /// <summary>Ends the text: what was held back as a possible start of a stop string is released.</summary>
    public string Flush()
    {
        var rest = Stopped ? string.Empty : held.ToString();
        held.Clear();
        return rest;
    }

    /// <summary>The length of the longest end of <paramref name="window"/> that a stop string starts with.</summary>
    int StartOfStopAtEnd(string window)
    {
        for (int length = Math.Min(window.Length, Longest - 1); length > 0; length--)
        {
            var end = window.AsSpan(window.Length - length);
            foreach (var stop in stops)
            {
                Scanned += length;
                if (stop.AsSpan().StartsWith(end, StringComparison.Ordinal))
                    return length;
            }
        }
        return 0;
    }
}
