using IlgpuLlm;
using IlgpuLlm.Cli;
using IlgpuLlm.Runtime.Generation;

namespace IlgpuLlm.Tests.Cli;

public class TerminalTextTests
{
    [Theory]
    [InlineData("plain text\nand a\ttab", "plain text\nand a\ttab")]
    [InlineData("bell\a escape\u001b[31m nul\0 cr\r del\u007f c1\u009b", "bell\uFFFD escape\uFFFD[31m nul\uFFFD cr\uFFFD del\uFFFD c1\uFFFD")]
    public void Control_characters_become_the_replacement_character(string text, string expected) =>
        Assert.Equal(expected, TerminalText.Sanitize(text));

    [Fact]
    public void Lone_surrogates_become_the_replacement_character_and_pairs_stay()
    {
        // Built in code: test-case data would not carry a lone surrogate through serialisation.
        string high = ((char)0xD83D).ToString(), low = ((char)0xDE00).ToString();
        Assert.Equal("lone high \uFFFD and lone low \uFFFD", TerminalText.Sanitize($"lone high {high} and lone low {low}"));
        Assert.Equal($"pair {high}{low} kept", TerminalText.Sanitize($"pair {high}{low} kept"));
        Assert.Equal("\uFFFD\uFFFD", TerminalText.Sanitize(low + high));
    }

    [Fact]
    public void A_surrogate_pair_split_between_two_writes_survives_and_an_unfinished_one_does_not()
    {
        var inner = new StringWriter();
        var writer = new TerminalText.Writer(inner);
        writer.Write("a\uD83D");
        writer.Flush();
        writer.Write("\uDE00b\uD83D");
        writer.Finish();
        Assert.Equal("a\uD83D\uDE00b\uFFFD", inner.ToString());
    }

    [Fact]
    public void Error_lines_are_one_short_line()
    {
        string line = TerminalText.Line("bad key '" + new string('\0', 1600) + "'\nsecond line", maxLength: 100);
        Assert.Equal(100, line.Length);
        Assert.DoesNotContain('\0', line);
        Assert.DoesNotContain('\n', line);
    }

    [Theory]
    [InlineData(new[] { "Lily" }, new[] { "Once there was Li", "ly and" }, "Once there was ")]
    [InlineData(new[] { "Lily" }, new[] { "Once there was Li", "nda" }, "Once there was Linda")]
    [InlineData(new[] { "b", "ab" }, new[] { "xa", "b" }, "x")] // the earliest stop string wins
    [InlineData(new[] { "never" }, new[] { "a", "b" }, "ab")]
    public void Stop_strings_end_the_streamed_text_and_are_not_part_of_it(string[] stops, string[] pieces, string expected)
    {
        var filter = new StopStringMatcher(stops);
        string shown = string.Concat(pieces.Select(filter.Append)) + filter.Flush();
        Assert.Equal(expected, shown);
        var whole = new StopStringMatcher(stops);
        Assert.Equal(expected, whole.Append(string.Concat(pieces)) + whole.Flush());
    }

    [Fact]
    public void Text_that_may_begin_a_stop_string_is_held_back_until_it_is_known()
    {
        var filter = new StopStringMatcher(["END"]);
        Assert.Equal("story ", filter.Append("story EN"));
        Assert.Equal("", filter.Append("D more"));
        Assert.True(filter.Stopped);
    }
}
