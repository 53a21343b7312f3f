using System.CommandLine;

namespace IlgpuLlm.Cli.Commands;

/// <summary>Every subcommand of the CLI, in the order <c>--help</c> lists them.</summary>
public static class CommandCatalog
{
    public static IEnumerable<Command> All()
    {
        yield return GenerateCommand.Create();
        yield return LogitsCommand.Create();
        yield return TokenizeCommand.Create();
        yield return InspectCommand.Create();
        yield return CreateModelCommand.Create();
        yield return BenchCommand.Create();
        yield return PerplexityCommand.Create();
        yield return CompareCommand.Create();
    }
}
