namespace IlgpuLlm.Tests.Support;

/// <summary>
/// Tests that drive the shared backends run one at a time: a backend serves one caller at a time,
/// as the generation loop uses it.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class BackendCollection
{
    public const string Name = "backends";
}
