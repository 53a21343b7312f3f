using IlgpuLlm.Cli;
using IlgpuLlm.Cli.Commands;

namespace IlgpuLlm.Tests.Support;

/// <summary>Tests that redirect Console.Out and Console.Error run one at a time.</summary>
[CollectionDefinition(nameof(ConsoleCollection), DisableParallelization = true)]
public sealed class ConsoleCollection;

/// <summary>What one CLI run printed and returned.</summary>
public sealed record CliResult(int ExitCode, string Out, string Error)
{
    /// <summary>The non-empty lines written to stderr.</summary>
    public string[] ErrorLines => Error.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    public override string ToString() => $"exit {ExitCode}\nstdout: {Out}\nstderr: {Error}";
}

/// <summary>
/// The CLI run in-process, as <c>ilgpullm …</c> runs it (the same root command and runner), with
/// Console.Out and Console.Error captured. Far cheaper than starting a process per case.
/// </summary>
public static class InProcessCli
{
    static readonly Lock Gate = new();

    public static CliResult Run(params string[] args)
    {
        lock (Gate)
        {
            var (oldOut, oldError) = (Console.Out, Console.Error);
            using var output = new StringWriter();
            using var error = new StringWriter();
            Console.SetOut(output);
            Console.SetError(error);
            try
            {
                int code = CliRunner.Run(CommandCatalog.Root(), args);
                return new CliResult(code, output.ToString().Replace("\r\n", "\n"), error.ToString().Replace("\r\n", "\n"));
            }
            finally
            {
                Console.SetOut(oldOut);
                Console.SetError(oldError);
            }
        }
    }

    /// <summary>Asserts a failure the way users script against it: the exit code, one "error: " line on stderr, no stack trace.</summary>
    public static void AssertOneLineError(CliResult result, int exitCode, string? mentions = null)
    {
        Assert.True(result.ExitCode == exitCode, $"expected exit {exitCode}; {result}");
        Assert.DoesNotContain("   at ", result.Error);
        var lines = result.ErrorLines;
        Assert.True(lines.Length == 1, $"expected one line on stderr; {result}");
        Assert.StartsWith("error: ", lines[0]);
        if (mentions != null)
            Assert.Contains(mentions, lines[0]);
    }
}
