using System.Text;

namespace IlgpuLlm.Runtime.Generation;

/// <summary>
/// Generated text with the stop strings taken out: a stop string ends the text and is not part of
/// it (llama.cpp's server and OpenAI's API alike). Streaming, the text that might be the start of
/// a stop string is held back until the next piece says whether it is.
/// </summary>
public sealed class StopText(IReadOnlyList<string> stopStrings)
{
    readonly string[] stops = stopStrings.Where(s => s.Length > 0).ToArray();
    readonly StringBuilder pending = new();
    bool stopped;

    /// <summary>Whether a stop string has been seen; everything after it is dropped.</summary>
    public bool Stopped => stopped;

    /// <summary>Takes the next piece of text and returns what can be shown now.</summary>
    public string Push(string text)
    {
        if (stopped || text.Length == 0)
            return "";
        if (stops.Length == 0)
            return text;
        pending.Append(text);
        string all = pending.ToString();
        pending.Clear();
        int at = FirstStop(all);
        if (at >= 0)
        {
            stopped = true;
            return all[..at];
        }
        int hold = HeldBack(all);
        pending.Append(all, all.Length - hold, hold);
        return all[..^hold];
    }

    /// <summary>The text still held back (the generation ended without completing a stop string).</summary>
    public string Flush()
    {
        if (stopped)
            return "";
        string rest = pending.ToString();
        pending.Clear();
        return rest;
    }

    /// <summary>A whole text up to its first stop string.</summary>
    public static string Cut(string text, IReadOnlyList<string> stopStrings)
    {
        var filter = new StopText(stopStrings);
        return filter.Push(text) + filter.Flush();
    }

    int FirstStop(string text)
    {
        int first = -1;
        foreach (var stop in stops)
        {
            int at = text.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (first < 0 || at < first))
                first = at;
        }
        return first;
    }

    /// <summary>The length of the longest end of <paramref name="text"/> that begins some stop string.</summary>
    int HeldBack(string text)
    {
        int longest = 0;
        foreach (var stop in stops)
            for (int length = Math.Min(stop.Length - 1, text.Length); length > longest; length--)
                if (text.AsSpan(text.Length - length).SequenceEqual(stop.AsSpan(0, length)))
                {
                    longest = length;
                    break;
                }
        return longest;
    }
}
