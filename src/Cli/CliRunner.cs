using System.CommandLine;

namespace IlgpuLlm.Cli;

/// <summary>
/// Runs the parsed command and turns failures into the exit codes users script against:
/// 0 success, 1 a failure with one clear message on stderr, 2 wrong usage. No stack traces.
/// </summary>
public static class CliRunner
{
    public const int Failure = 1;
    public const int Usage = 2;

    public static int Run(RootCommand root, string[] args)
    {
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var error in parsed.Errors)
                Console.Error.WriteLine($"error: {error.Message}");
            Console.Error.WriteLine("Run with --help for usage.");
            return Usage;
        }
        try
        {
            // System.CommandLine's own handler would print the exception with its stack trace and
            // return 1 before the catches below could turn it into one line (and usage into 2).
            return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return Usage;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Console.Error.WriteLine($"error: {Describe(e)}");
            return Failure;
        }
    }

    /// <summary>The message of an exception and of the causes it wraps, on one line.</summary>
    static string Describe(Exception e)
    {
        var message = e.Message;
        for (var inner = e.InnerException; inner != null; inner = inner.InnerException)
            if (!message.Contains(inner.Message, StringComparison.Ordinal))
                message += $": {inner.Message}";
        return message;
    }
}

/// <summary>Wrong usage that the parser cannot see (conflicting options, a value out of range).</summary>
public sealed class UsageException(string message) : Exception(message);
