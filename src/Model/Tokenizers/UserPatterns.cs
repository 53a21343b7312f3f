using IlgpuLlm.Model.Formats;
using System.Text.RegularExpressions;

namespace IlgpuLlm.Model.Tokenizers;

/// <summary>
/// Regular expressions that come from files (a tokenizer.json's Split pattern) are code from
/// outside: a pattern such as <c>(a+)+$</c> backtracks for longer than the universe on forty
/// characters. Every such pattern is built here: on .NET's non-backtracking engine, which runs in
/// time linear in the text, where the pattern allows it (no lookarounds, backreferences or atomic
/// groups); otherwise on the backtracking engine with a match timeout that fails clearly.
/// </summary>
public static class UserPatterns
{
    public static readonly TimeSpan MatchTimeout = TimeSpan.FromSeconds(2);

    /// <param name="source">Where the pattern came from (a file), for messages.</param>
    public static Regex Create(string pattern, string source)
    {
        try
        {
            return new Regex(pattern, RegexOptions.NonBacktracking | RegexOptions.CultureInvariant);
        }
        catch (NotSupportedException)
        {
            // Lookarounds (GPT-2's \s+(?!\S)) and the like: the backtracking engine, bounded in time.
        }
        catch (ArgumentException e)
        {
            throw new FormatException($"{source}: the pattern '{Excerpt.Of(pattern)}' is not a valid regular expression ({e.Message})", e);
        }
        return new Regex(pattern, RegexOptions.CultureInvariant, MatchTimeout);
    }

    /// <summary>The error for a pattern that ran out of time on a text.</summary>
    public static Exception TimedOut(string pattern, string source, int textLength, RegexMatchTimeoutException e) =>
        new InvalidOperationException(
            $"{source}: the pattern '{Excerpt.Of(pattern)}' took more than {MatchTimeout.TotalSeconds:0} s on a text of {textLength} characters " +
            "(it backtracks catastrophically); this tokenizer cannot split text safely", e);
}
