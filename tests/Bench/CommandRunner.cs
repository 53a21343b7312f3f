using System.CommandLine;
using IlgpuLlm.Cli;
using IlgpuLlm.Cli.Commands;

namespace IlgpuLlm.Tests.Bench;

/// <summary>Runs a CLI command in-process as <c>ilgpullm …</c> runs it, capturing stdout and stderr.</summary>
static class CommandRunner
{
    public static (int ExitCode, string Out, string Error) Run(params string[] args)
    {
        var root = new RootCommand("test");
        foreach (var command in CommandCatalog.All())
            root.Subcommands.Add(command);
        var (oldOut, oldError) = (Console.Out, Console.Error);
        using var output = new StringWriter();
        using var error = new StringWriter();
        Console.SetOut(output);
        Console.SetError(error);
        try
        {
            int code = CliRunner.Run(root, args);
            return (code, output.ToString(), error.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldError);
        }
    }
}
