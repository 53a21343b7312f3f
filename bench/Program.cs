using BenchmarkDotNet.Running;
using IlgpuLlm.Bench;

// "--job short" (or dry) picks the job of BenchConfig: the suites' own [Config] would otherwise run
// BenchmarkDotNet's command-line job in addition to its own. The benchmark processes inherit it.
var rest = new List<string>();
for (int i = 0; i < args.Length; i++)
{
    if (args[i] is "--job" or "-j" && i + 1 < args.Length)
        Environment.SetEnvironmentVariable(BenchConfig.JobVariable, args[++i]);
    else
        rest.Add(args[i]);
}
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run([.. rest]);
