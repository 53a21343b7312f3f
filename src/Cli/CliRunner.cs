using System.CommandLine;

namespace IlgpuLlm.Cli;

/// <summary>
/// Runs the parsed command and turns failures into the exit codes users script against:
/// 0 success, 1 a failure with one clear message on stderr, 2 wrong usage. No stack traces.
/// Wrong usage is what the command line alone shows to be wrong: an unknown option, a value that
/// does not parse or lies out of range, conflicting options, an empty path. Everything found by
/// looking further (a missing, unreadable or malformed file, too little memory) is a failure.
/// </summary>
public static class CliRunner
{
    public const int Failure = 1;
    public const int Usage = 2;

    /// <summary>What the root's help says about exit codes (the README says the same).</summary>
    public const string ExitCodes = "Exit codes: 0 success; 1 a failure (a missing or malformed file, too little memory, a failed run), " +
        "one line on stderr; 2 wrong usage (an unknown option, a value out of range, conflicting options).";

    public static int Run(RootCommand root, string[] args)
    {
        // Alone, the executable shows what it can do rather than complain that no command was given.
        if (args.Length == 0)
            args = ["--help"];
        // No response files: a prompt or stop string starting with '@' is text, not a file to read.
        var parsed = root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null });
        if (parsed.Errors.Count > 0)
        {
            var messages = parsed.Errors.Select(ParseErrors.Describe).Distinct();
            Console.Error.WriteLine($"error: {TerminalText.Line(string.Join("; ", messages))} (run with --help for usage)");
            return Usage;
        }
        try
        {
            // System.CommandLine's own handler would print the exception with its stack trace and
            // return 1 before the catches below could turn it into one line (and usage into 2).
            // chat handles Ctrl-C itself: it stops the reply in progress, not the program.
            return parsed.Invoke(new InvocationConfiguration
            {
                EnableDefaultExceptionHandler = false,
                ProcessTerminationTimeout = parsed.CommandResult.Command.Name == Commands.ChatCommand.Name ? null : TimeSpan.FromSeconds(2),
            });
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"error: {TerminalText.Line(OneLine(e.Message))}");
            return Usage;
        }
        catch (InsufficientMemoryException e)
        {
            // The memory plan's refusal, with the numbers: an OutOfMemoryException, but a told one.
            Console.Error.WriteLine($"error: {Describe(e)}");
            return Failure;
        }
        catch (OutOfMemoryException)
        {
            Console.Error.WriteLine("error: out of memory; a smaller --ctx-size or --parallel needs less");
            return Failure;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"error: {Describe(e)}");
            return Failure;
        }
    }

    /// <summary>
    /// The message of an exception and of the causes it wraps, on one line, safe for a terminal and
    /// short (a message may quote a file's bytes).
    /// </summary>
    public static string Describe(Exception e)
    {
        var message = Message(e);
        for (var inner = e.InnerException; inner != null; inner = inner.InnerException)
            if (!message.Contains(Message(inner), StringComparison.Ordinal))
                message += $": {Message(inner)}";
        return TerminalText.Line(ParseErrors.WithoutTypeNames(OneLine(message)));
    }

    /// <summary>An exception's message without what argument exceptions append for programmers: "(Parameter 'name')", "Actual value was …".</summary>
    static string Message(Exception e)
    {
        var message = e.Message;
        if (e is ArgumentOutOfRangeException { ActualValue: not null } range)
            message = string.Join('\n', message.Split('\n').Where(line => !line.StartsWith("Actual value was ", StringComparison.Ordinal)));
        if (e is ArgumentException { ParamName: string name })
            message = message.Replace($" (Parameter '{name}')", "", StringComparison.Ordinal);
        return message;
    }

    /// <summary>
    /// A multi-line message on one line: the first line, then the others (a parser's list of
    /// allowed values, one per line) separated by commas.
    /// </summary>
    public static string OneLine(string message)
    {
        var lines = message.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        return lines.Length <= 1 ? message.Trim() : lines[0] + " " + string.Join(", ", lines.Skip(1));
    }
}

/// <summary>Wrong usage that the parser cannot see (conflicting options, a value out of range).</summary>
public sealed class UsageException(string message) : Exception(message);
