using System.Runtime.InteropServices;
using System.Xml.Linq;
using IlgpuLlm.Kernels;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Tests.Support;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace IlgpuLlm.Tests.Kernels;

/// <summary>
/// One type per storage format, and no format can be half-added: every <see cref="StorageType"/>
/// has a format whose members all work (enumerated here, so a new format is checked without
/// editing this file), the one enum switch and every other switch over formats are exhaustive
/// with no default (a missing case is compile error CS8509 under the repository's settings,
/// proved by compiling a snippet with them), and the sources hold no default arm that would take
/// a format.
/// </summary>
[Collection(BackendCollection.Name)]
public class StorageFormatTests
{
    public static IEnumerable<object[]> Formats() => Enum.GetValues<StorageType>().Select(t => new object[] { t });

    [Theory]
    [MemberData(nameof(Formats))]
    public void Every_storage_type_has_one_format_with_its_names_and_ids(StorageType type)
    {
        var format = type.Format();
        Assert.Equal(type, format.Type);
        Assert.Same(format, type.Format());
        Assert.Equal(format.Name, format.Aliases[0]);
        foreach (string alias in format.Aliases)
            Assert.Equal(type, StorageTypes.Parse(alias.ToUpperInvariant()));
        Assert.Same(format, StorageFormat.FromGgmlTypeId(format.GgmlTypeId));
        if (format.SafetensorsName is string dtype)
            Assert.Same(format, StorageFormat.FromSafetensorsName(dtype));
        Assert.Single(StorageFormat.All, f => f.Name == format.Name);
        Assert.True(format.BlockElements >= 1 && format.BlockBytes >= 1);
        Assert.Equal(3L * format.BlockBytes, format.ByteLength(3L * format.BlockElements));
        Assert.Equal(3L * format.BlockElements, format.ElementCount(3L * format.BlockBytes));
    }

    [Fact]
    public void Unknown_names_and_partial_blocks_are_refused_with_the_reason()
    {
        var error = Assert.Throws<ArgumentException>(() => StorageTypes.Parse("q3"));
        Assert.Contains("'q3'", error.Message);
        Assert.Contains("f32, f16, bf16", error.Message);
        var blocks = new ThirtyTwoValueBlocks();
        Assert.Equal(68, blocks.ByteLength(64));
        Assert.Contains("not a whole number of 32-value test blocks",
            Assert.Throws<ArgumentException>(() => blocks.ByteLength(40)).Message);
        Assert.Contains("not a whole number of 34-byte test blocks",
            Assert.Throws<ArgumentException>(() => blocks.ElementCount(35)).Message);
        // An integer tensor has no format.
        Assert.Contains("integers", Assert.Throws<ArgumentException>(() => TensorType.I32.Storage).Message);
        Assert.Throws<System.Runtime.CompilerServices.SwitchExpressionException>(() => ((StorageType)77).Format());
    }

    /// <summary>A block layout like ggml's Q8_0 (32 values in 34 bytes), for the base class's length rules.</summary>
    sealed class ThirtyTwoValueBlocks : StorageFormat
    {
        public override StorageType Type => throw new NotSupportedException();
        public override string Name => "test";
        public override IReadOnlyList<string> Aliases => ["test"];
        public override int BlockElements => 32;
        public override int BlockBytes => 34;
        public override uint GgmlTypeId => uint.MaxValue;
        public override string? SafetensorsName => null;
        public override string? TorchName => null;
        public override float Widen(ReadOnlySpan<byte> data, long index) => throw new NotSupportedException();
        public override void Widen(ReadOnlySpan<byte> source, Span<float> destination) => throw new NotSupportedException();
        public override bool Narrows => false;
        public override void Narrow(ReadOnlySpan<float> source, Span<byte> destination) => throw NotNarrowing();
        public override bool Overflows(float value) => false;
        public override unsafe long IndexOfNonFinite(byte* data, long count) => throw new NotSupportedException();
        public override void Dispatch<TAction>(ref TAction action) => throw new NotSupportedException();
        public override void DispatchNarrowing<TAction>(ref TAction action) => throw NotNarrowing();
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public unsafe void Widening_narrowing_and_the_finiteness_scan_agree_for_every_format(StorageType type)
    {
        var format = type.Format();
        var edges = TestValues.WithEdges(64 * format.BlockElements, seed: 5, nonFinite: false);
        foreach (float value in edges)
            Assert.Equal(type == StorageType.F16 && HalfBits.OverflowsF16(value), format.Overflows(value));
        var values = TestValues.FiniteForStorage(edges, type);
        if (!format.Narrows)
        {
            Assert.Throws<NotSupportedException>(() => format.Narrow(values, new byte[format.ByteLength(values.Length)]));
            return;
        }
        var stored = new byte[format.ByteLength(values.Length)];
        format.Narrow(values, stored);
        var widened = new float[values.Length];
        format.Widen(stored, widened);
        for (int i = 0; i < values.Length; i++)
        {
            Bits.Equal([format.Widen(stored, i)], [widened[i]], $"{format} value {i}: bulk and element widening");
            Bits.Equal([format.RoundTrip(values[i])], [widened[i]], $"{format} value {i}: round trip");
        }
        fixed (byte* data = stored)
        {
            Assert.Equal(-1, format.IndexOfNonFinite(data, values.Length));
            var poisoned = (float[])values.Clone();
            poisoned[37] = float.NaN;
            format.Narrow(poisoned, stored);
            Assert.Equal(37, format.IndexOfNonFinite(data, values.Length));
        }
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void Each_format_dispatches_its_own_kernel_structs(StorageType type)
    {
        var format = type.Format();
        var loads = new RecordLoads();
        format.Dispatch(ref loads);
        Assert.Equal(1, loads.Calls);
        Assert.Equal(type, loads.WeightsType);
        Assert.Equal(type, loads.ExactType);
        var stores = new RecordStores();
        if (format.Narrows)
        {
            format.DispatchNarrowing(ref stores);
            Assert.Equal(1, stores.Calls);
        }
        else
            Assert.Contains(format.Name, Assert.Throws<NotSupportedException>(() => format.DispatchNarrowing(ref stores)).Message);
    }

    struct RecordLoads : IStorageAction
    {
        public int Calls;
        public StorageType WeightsType, ExactType;

        public void Run<TStorage, TWeights, TExact>()
            where TStorage : struct, IStorageView<TStorage> where TWeights : struct, IStoredVectors where TExact : struct, IStoredVectors
        {
            Calls++;
            (WeightsType, ExactType) = (TWeights.Type, TExact.Type);
        }
    }

    struct RecordStores : INarrowingAction
    {
        public int Calls;

        public void Run<TStore, TNarrowing>() where TStore : struct, IStorageStore<TStore> where TNarrowing : struct, IVectorNarrowing =>
            Calls++;
    }

    /// <summary>The repository's warning settings, read from Directory.Build.props.</summary>
    static (bool WarningsAsErrors, string[] NoWarn) RepositorySettings()
    {
        var props = XDocument.Load(Path.Combine(RepositoryRoot(), "Directory.Build.props"));
        var group = props.Descendants("PropertyGroup").First();
        bool asErrors = string.Equals(group.Element("TreatWarningsAsErrors")?.Value, "true", StringComparison.OrdinalIgnoreCase);
        var noWarn = (group.Element("NoWarn")?.Value ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(w => !w.StartsWith('$')).ToArray();
        return (asErrors, noWarn);
    }

    static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "IlgpuLlm.sln")))
                return dir.FullName;
        throw new DirectoryNotFoundException($"no IlgpuLlm.sln above {AppContext.BaseDirectory}");
    }

    static IReadOnlyList<Diagnostic> Compile(string source)
    {
        var (asErrors, noWarn) = RepositorySettings();
        var options = new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary,
            generalDiagnosticOption: asErrors ? ReportDiagnostic.Error : ReportDiagnostic.Default,
            specificDiagnosticOptions: noWarn.Select(id => KeyValuePair.Create(id, ReportDiagnostic.Suppress)),
            nullableContextOptions: NullableContextOptions.Enable);
        var references = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Select(path => MetadataReference.CreateFromFile(path))
            .Append(MetadataReference.CreateFromFile(typeof(StorageType).Assembly.Location));
        var compilation = CSharpCompilation.Create("Snippet", [CSharpSyntaxTree.ParseText(source)], references, options);
        return compilation.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error).ToArray();
    }

    [Fact]
    public void A_switch_missing_a_format_does_not_compile_under_the_repository_settings()
    {
        string Switch(IEnumerable<StorageType> cases) =>
            "using IlgpuLlm.Kernels; static class S { public static int Of(StorageType t) => t switch { "
            + string.Join(" ", cases.Select(c => $"StorageType.{c} => {(int)c},")) + " }; }";
        var all = Enum.GetValues<StorageType>();
        Assert.Empty(Compile(Switch(all)));
        foreach (var missing in all)
        {
            var errors = Compile(Switch(all.Where(t => t != missing)));
            Assert.Contains(errors, e => e.Id == "CS8509" && e.GetMessage().Contains(missing.ToString()));
        }
    }

    /// <summary>
    /// Switch statements are not checked for exhaustiveness by the compiler, and a default arm in a
    /// switch expression takes any format added later: neither may switch over storage types.
    /// </summary>
    [Fact]
    public void No_switch_over_storage_types_in_the_sources_has_a_default()
    {
        var problems = new List<string>();
        foreach (var file in Directory.EnumerateFiles(Path.Combine(RepositoryRoot(), "src"), "*.cs", SearchOption.AllDirectories))
        {
            var root = CSharpSyntaxTree.ParseText(File.ReadAllText(file)).GetRoot();
            string where(SyntaxNode node) =>
                $"{Path.GetRelativePath(RepositoryRoot(), file)}:{node.GetLocation().GetLineSpan().StartLinePosition.Line + 1}";
            foreach (var statement in root.DescendantNodes().OfType<SwitchStatementSyntax>())
                if (statement.Sections.SelectMany(s => s.Labels).Any(NamesAStorageType))
                    problems.Add($"{where(statement)}: a switch statement over storage types (use a switch expression with every format)");
            foreach (var expression in root.DescendantNodes().OfType<SwitchExpressionSyntax>())
                if (expression.Arms.Any(a => NamesAStorageType(a.Pattern))
                    && expression.Arms.Any(a => a.Pattern is DiscardPatternSyntax or VarPatternSyntax))
                    problems.Add($"{where(expression)}: a switch expression over storage types with a default arm");
        }
        Assert.Empty(problems);
    }

    static bool NamesAStorageType(SyntaxNode node) =>
        node.DescendantNodesAndSelf().OfType<MemberAccessExpressionSyntax>()
            .Any(m => m.Expression is IdentifierNameSyntax { Identifier.Text: "StorageType" }
                or MemberAccessExpressionSyntax { Name.Identifier.Text: "StorageType" });

    [Theory]
    [MemberData(nameof(NarrowingCases))]
    public void Attention_reads_every_narrowing_format_as_its_reference_does(string backendName, StorageType type)
    {
        var backend = TestBackends.Get(backendName);
        var shape = new AttentionShape(2, 4, 2, 32, 2, 5, 0.125f, 0f);
        KeyRange[] ranges = [new(0, 0, 3), new(1, 1, 5)];
        var q = TestValues.Random(2 * 4 * 32, seed: 3);
        long cacheLength = 2L * 5 * 2 * 32;
        var keys = TestValues.Stored(TestValues.Random((int)cacheLength, seed: 4), type);
        var values = TestValues.Stored(TestValues.Random((int)cacheLength, seed: 5), type);
        var expected = new float[q.Length];
        Attention.Reference(q, new HostStorage(keys, type), new HostStorage(values, type), expected, ranges, shape, [], null,
            new bool[2 * 4]);

        var keyTensor = backend.Allocate(type, cacheLength, "keys");
        var valueTensor = backend.Allocate(type, cacheLength, "values");
        backend.Upload(keyTensor, keys);
        backend.Upload(valueTensor, values);
        var output = backend.Allocate(TensorType.F32, q.Length, "output");
        var qs = backend.Upload(q, "q");
        backend.Attention(qs, keyTensor, valueTensor, output, ranges, shape, null, new bool[2 * 4]);
        Bits.Equal(expected, backend.DownloadFloats(output), $"{backend.Name} {type.Name()}");
        foreach (var t in new[] { keyTensor, valueTensor, output, qs })
            backend.Free(t);
    }

    public static IEnumerable<object[]> NarrowingCases() =>
        from backend in TestBackends.All
        from format in StorageFormat.All
        where format.Narrows
        select new object[] { backend[0], format.Type };
}
