using System.CommandLine;

namespace IlgpuLlm.Cli.Commands;

/// <summary>Every subcommand of the CLI, in the order <c>--help</c> lists them.</summary>
public static class CommandCatalog
{
    public static IEnumerable<Command> All()
    {
        yield return GenerateCommand.Create();
        yield return ChatCommand.Create();
        yield return ServeCommand.Create();
        yield return LogitsCommand.Create();
        yield return TokenizeCommand.Create();
        yield return InspectCommand.Create();
        yield return CreateModelCommand.Create();
        yield return QuantizeCommand.Create();
        yield return BenchCommand.Create();
        yield return PerplexityCommand.Create();
        yield return CompareCommand.Create();
    }

    /// <summary>The root command with every subcommand: what the <c>ilgpullm</c> executable parses (tests run it in-process).</summary>
    public static RootCommand Root()
    {
        var root = new RootCommand("IlgpuLlm: large language models on ILGPU kernels (CUDA) and a SIMD CPU backend, with the same bits on every backend. " +
            "Without --model, the model commands run the built-in stories260K. " + CliRunner.ExitCodes);
        foreach (var command in All())
            root.Subcommands.Add(command);
        return root;
    }
}
