using IlgpuLlm.Cli;
using IlgpuLlm.Cli.Commands;

return CliRunner.Run(CommandCatalog.Root(), args);
