namespace IlgpuLlm.Bench;

/// <summary>
/// The shared test data beside the repository (../shared from the folder holding IlgpuLlm.sln),
/// found by walking up from the running assembly — BenchmarkDotNet runs each benchmark from a
/// generated folder under bench/bin, still inside the repository. ILGPULLM_SHARED overrides it.
/// </summary>
public static class SharedData
{
    static readonly Lazy<string> Root = new(FindRoot);

    public static string Path(params string[] parts) => System.IO.Path.Combine([Root.Value, .. parts]);

    static string FindRoot()
    {
        var overridden = Environment.GetEnvironmentVariable("ILGPULLM_SHARED");
        if (!string.IsNullOrEmpty(overridden))
            return System.IO.Path.GetFullPath(overridden);
        foreach (var start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
            for (var dir = new DirectoryInfo(start); dir != null; dir = dir.Parent)
                if (File.Exists(System.IO.Path.Combine(dir.FullName, "IlgpuLlm.sln")))
                {
                    var shared = System.IO.Path.GetFullPath(System.IO.Path.Combine(dir.FullName, "..", "shared"));
                    if (!Directory.Exists(shared))
                        throw new DirectoryNotFoundException($"the shared data is expected at {shared}; set ILGPULLM_SHARED to its location");
                    return shared;
                }
        throw new DirectoryNotFoundException($"no IlgpuLlm.sln above {AppContext.BaseDirectory}; set ILGPULLM_SHARED to the shared data");
    }
}
