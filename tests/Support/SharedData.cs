namespace IlgpuLlm.Tests.Support;

/// <summary>
/// Locates the shared test data beside the repository (../shared from the folder holding
/// IlgpuLlm.sln), as it lies in CI, by walking up from the running assembly (or the current
/// folder: BenchmarkDotNet runs each benchmark from a generated folder). ILGPULLM_SHARED overrides
/// it. The tests and the benchmarks compile this one file.
/// </summary>
public static class SharedData
{
    static readonly Lazy<string> Root = new(FindRoot);

    public static string RootDirectory => Root.Value;

    /// <summary>The absolute path of a file or folder under the shared data root.</summary>
    public static string Path(params string[] parts) =>
        System.IO.Path.Combine([Root.Value, .. parts]);

    static string FindRoot()
    {
        var overridden = Environment.GetEnvironmentVariable("ILGPULLM_SHARED");
        if (!string.IsNullOrEmpty(overridden))
            return System.IO.Path.GetFullPath(overridden);
        foreach (var start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
            for (var dir = new DirectoryInfo(start); dir != null; dir = dir.Parent)
            {
                if (!File.Exists(System.IO.Path.Combine(dir.FullName, "IlgpuLlm.sln")))
                    continue;
                var shared = System.IO.Path.GetFullPath(System.IO.Path.Combine(dir.FullName, "..", "shared"));
                if (!Directory.Exists(shared))
                    throw new DirectoryNotFoundException(
                        $"the shared test data is expected at {shared} (beside the repository); set ILGPULLM_SHARED to its location");
                return shared;
            }
        throw new DirectoryNotFoundException(
            $"no IlgpuLlm.sln above {AppContext.BaseDirectory}; set ILGPULLM_SHARED to the shared test data");
    }
}
