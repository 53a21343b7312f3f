namespace IlgpuLlm.Tests.Support;

/// <summary>
/// Locates the shared test data that sits beside the repository (../shared from the repository
/// root), as it does in CI. ILGPULLM_SHARED overrides the location.
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
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "IlgpuLlm.sln")))
            {
                var shared = System.IO.Path.GetFullPath(System.IO.Path.Combine(dir.FullName, "..", "shared"));
                if (!Directory.Exists(shared))
                    throw new DirectoryNotFoundException(
                        $"the shared test data is expected at {shared} (beside the repository); set ILGPULLM_SHARED to its location");
                return shared;
            }
        }
        throw new DirectoryNotFoundException(
            $"no IlgpuLlm.sln above {AppContext.BaseDirectory}; set ILGPULLM_SHARED to the shared test data");
    }
}
