namespace IlgpuLlm.Tests.Library;

/// <summary>
/// Stop strings in text that arrives in pieces: found across pieces, never returned, text that may
/// start one held back and released when it turns out not to, and work that grows with the text
/// only linearly (each piece is scanned with the held-back text, not with everything before it).
/// </summary>
public class StopStringMatcherTests
{
    static (List<string> Released, StopStringMatcher Matcher) Feed(string[] stops, params string[] pieces)
    {
        var matcher = new StopStringMatcher(stops);
        var released = pieces.Select(matcher.Append).ToList();
        released.Add(matcher.Flush());
        return (released, matcher);
    }

    [Fact]
    public void A_stop_string_split_across_pieces_ends_the_text_before_it()
    {
        var (released, matcher) = Feed(["o Wo"], "Hel", "lo W", "orld");
        Assert.True(matcher.Stopped);
        Assert.Equal(["Hel", "l", "", ""], released);
    }

    [Fact]
    public void Text_that_begins_a_stop_string_is_held_back_until_it_diverges()
    {
        var (released, matcher) = Feed(["abc"], "xa", "b", "d", "ab");
        Assert.False(matcher.Stopped);
        // "a", then "ab" could begin "abc"; "abd" cannot, so it is released whole. The last "ab" comes out at the end.
        Assert.Equal(["x", "", "abd", "", "ab"], released);
    }

    [Fact]
    public void The_earliest_stop_string_wins_and_later_text_is_ignored()
    {
        var (released, matcher) = Feed(["world", "lo w"], "hello world", "more");
        Assert.True(matcher.Stopped);
        Assert.Equal(["hel", "", ""], released);
    }

    [Fact]
    public void A_stop_string_inside_one_piece_and_at_its_very_start_are_found()
    {
        Assert.Equal(["ab", ""], Feed(["X"], "abXcd").Released);
        Assert.Equal(["", ""], Feed(["ab"], "abcd").Released);
    }

    [Fact]
    public void Without_stop_strings_text_passes_through()
    {
        var (released, matcher) = Feed([], "a", "", "bc");
        Assert.False(matcher.Stopped);
        Assert.Equal(["a", "", "bc", ""], released);
    }

    [Fact]
    public void Empty_stop_strings_are_rejected_by_position()
    {
        var error = Assert.Throws<ArgumentException>(() => new StopStringMatcher(["end", ""]));
        Assert.Contains("stop string 1 is empty", error.Message);
        Assert.Throws<ArgumentException>(() => new StopStringMatcher([null!]));
        Assert.Contains("stop string 0 is empty", Assert.Throws<ArgumentException>(() =>
            new GenerationOptions { StopStrings = [""] }.Validate()).Message);
    }

    [Fact]
    public void Work_grows_linearly_with_the_text()
    {
        // One character per piece (as tokens arrive) that keeps beginning the stop string and then
        // diverging: the held-back text stays shorter than the longest stop string.
        long Work(int pieces)
        {
            var matcher = new StopStringMatcher(["abcabd", "zz"]);
            var text = new System.Text.StringBuilder();
            for (int i = 0; i < pieces; i++)
                text.Append(matcher.Append("abc"[i % 3].ToString()));
            text.Append(matcher.Flush());
            Assert.False(matcher.Stopped);
            Assert.Equal(pieces, text.Length);
            return matcher.Scanned;
        }
        long small = Work(10_000), large = Work(40_000);
        // Quadratic work (rescanning everything) would grow 16-fold; linear grows 4-fold.
        Assert.InRange(large, 4 * small * 0.999, 4 * small * 1.001);
        // Each piece costs a bounded amount: its window (at most 6 characters) per stop string and the ends tried.
        Assert.True(large <= 40_000L * (6 * 2 + 5 * 2), $"{large} characters scanned for 40000 pieces");
    }
}
