using System.Collections.Concurrent;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace IlgpuLlm.Tests.Support;

/// <summary>
/// The test assembly's own entry point, so a self-contained publish of it runs its tests on a
/// machine without the .NET SDK (scripts/gpu-check.sh): xUnit's framework discovers and runs the
/// tests in process, exactly as the test adapter does under <c>dotnet test</c>.
/// <c>IlgpuLlm.Tests [--filter TEXT]… [--list]</c>: a test runs when its display name (class,
/// method and arguments) contains any filter text, case-insensitively; every test without
/// filters. Exit code 0 when every test run passed (or was skipped), 1 on a failure, 2 on a bad
/// argument or when no test matched.
/// </summary>
public static class ConsoleRunner
{
    public static int Main(string[] args)
    {
        var filters = new List<string>();
        bool list = false;
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--list")
                list = true;
            else if (args[i] == "--filter" && i + 1 < args.Length)
                filters.Add(args[++i]);
            else
            {
                Console.Error.WriteLine($"unknown argument '{args[i]}'; usage: IlgpuLlm.Tests [--filter TEXT]... [--list]");
                return 2;
            }
        }

        var assembly = typeof(ConsoleRunner).Assembly;
        var diagnostics = new Sink(echo: false);
        using var framework = new XunitTestFramework(diagnostics);
        var discovered = new Sink(echo: false);
        using (var discoverer = framework.GetDiscoverer(Reflector.Wrap(assembly)))
        {
            discoverer.Find(includeSourceInformation: false, discovered, new Options());
            discovered.Finished.WaitOne();
        }
        var selected = discovered.TestCases
            .Where(t => filters.Count == 0 || filters.Any(f => t.DisplayName.Contains(f, StringComparison.OrdinalIgnoreCase)))
            .ToList();
        if (list)
        {
            foreach (var test in selected)
                Console.WriteLine(test.DisplayName);
            return 0;
        }
        if (selected.Count == 0)
        {
            Console.Error.WriteLine($"no test matches {string.Join(", ", filters.Select(f => $"'{f}'"))}");
            return 2;
        }

        var results = new Sink(echo: true);
        using (var executor = framework.GetExecutor(assembly.GetName()))
        {
            executor.RunTests(selected, results, new Options());
            results.Finished.WaitOne();
        }
        Console.WriteLine($"{results.Passed} passed, {results.Failed} failed, {results.Skipped} skipped of {selected.Count} test cases");
        return results.Failed == 0 ? 0 : 1;
    }

    /// <summary>Collects discovered test cases, or prints results as they arrive.</summary>
    sealed class Sink(bool echo) : LongLivedMarshalByRefObject, IMessageSink
    {
        public readonly ConcurrentQueue<ITestCase> Cases = new();
        public readonly ManualResetEvent Finished = new(false);
        public int Passed, Failed, Skipped;

        public IEnumerable<ITestCase> TestCases => Cases;

        public bool OnMessage(IMessageSinkMessage message)
        {
            switch (message)
            {
                case ITestCaseDiscoveryMessage found:
                    Cases.Enqueue(found.TestCase);
                    break;
                case IDiscoveryCompleteMessage:
                case ITestAssemblyFinished:
                    Finished.Set();
                    break;
                case ITestPassed passed when echo:
                    Interlocked.Increment(ref Passed);
                    Console.WriteLine($"  passed  {passed.Test.DisplayName} [{passed.ExecutionTime:0.000} s]");
                    break;
                case ITestSkipped skipped when echo:
                    Interlocked.Increment(ref Skipped);
                    Console.WriteLine($"  skipped {skipped.Test.DisplayName}: {skipped.Reason}");
                    break;
                case ITestFailed failed when echo:
                    Interlocked.Increment(ref Failed);
                    Console.WriteLine($"  FAILED  {failed.Test.DisplayName}");
                    for (int i = 0; i < failed.Messages.Length; i++)
                        Console.WriteLine($"    {failed.ExceptionTypes[i]}: {failed.Messages[i]}\n{failed.StackTraces[i]}");
                    break;
                case ITestOutput output when echo:
                    Console.Write(output.Output);
                    break;
            }
            return true;
        }
    }

    /// <summary>xUnit's discovery and execution options, all at their defaults.</summary>
    sealed class Options : ITestFrameworkDiscoveryOptions, ITestFrameworkExecutionOptions
    {
        readonly Dictionary<string, object?> values = [];

        public TValue GetValue<TValue>(string name) => values.TryGetValue(name, out var value) && value is TValue typed ? typed : default!;

        public void SetValue<TValue>(string name, TValue value) => values[name] = value;
    }
}
