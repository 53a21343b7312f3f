using System.CommandLine;
using IlgpuLlm.Cli;
using IlgpuLlm.Cli.Commands;

var root = new RootCommand("IlgpuLlm: large language models on ILGPU kernels (CUDA) and a SIMD CPU backend, with the same bits on every backend.");
foreach (var command in CommandCatalog.All())
    root.Subcommands.Add(command);
return CliRunner.Run(root, args);
