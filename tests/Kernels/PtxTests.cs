using System.Diagnostics;
using System.Text.RegularExpressions;
using ILGPU.Runtime.Cuda;
using IlgpuLlm.Kernels;

namespace IlgpuLlm.Tests.Kernels;

/// <summary>
/// Every kernel compiles to PTX for sm_80 and sm_90 without a GPU, and the PTX keeps the numerics
/// contract: only explicitly rounded floating-point instructions, no approximate or flush-to-zero
/// forms, no unresolved externs, no local memory. Where NVIDIA's ptxas is available (CI installs
/// it; ILGPULLM_PTXAS names it) the PTX must also assemble.
/// </summary>
public class PtxTests
{
    static readonly Lazy<PtxCompiler> Compiler = new(() => new PtxCompiler());
    static readonly Dictionary<string, System.Reflection.MethodInfo> Kernels =
        KernelCatalog.All().ToDictionary(KernelCatalog.DisplayName);

    public static IEnumerable<object[]> Cases() =>
        Kernels.Keys.SelectMany(name => new[] { new object[] { name, 80 }, [name, 90] });

    static string Ptx(string kernel, int sm)
    {
        lock (Compiler)
            return Compiler.Value.Compile(Kernels[kernel], sm == 90 ? CudaArchitecture.SM_90 : CudaArchitecture.SM_80);
    }

    /// <summary>Lines of PTX code (comments removed) that break the contract, with the reason.</summary>
    public static IEnumerable<string> Violations(string ptx)
    {
        var stubs = new HashSet<string>();
        var lines = ptx.Split('\n').Select(l => Regex.Replace(l, "//.*$", "").Trim()).Where(l => l.Length > 0).ToArray();
        foreach (var line in lines)
        {
            if (Regex.IsMatch(line, @"\.approx\b"))
                yield return $"approximate instruction: {line}";
            if (Regex.IsMatch(line, @"\.full\b"))
                yield return $"non-IEEE division: {line}";
            if (Regex.IsMatch(line, @"\.ftz\b"))
                yield return $"flush-to-zero: {line}";
            if (Regex.IsMatch(line, @"\.extern\s+\.func"))
                yield return $"unresolved external function: {line}";
            if (Regex.IsMatch(line, @"^(mul|add|sub|fma|mad|div|sqrt|rcp)\.(f32|f64)\b"))
                yield return $"floating-point instruction without an explicit rounding mode (ptxas may contract or approximate it): {line}";
            if (Regex.IsMatch(line, @"^(ex2|lg2|sin|cos|rsqrt|tanh)\."))
                yield return $"hardware transcendental: {line}";
            if (Regex.IsMatch(line, @"\.local\b"))
                yield return $"local memory: {line}";
            var call = Regex.Match(line, @"^call(\.uni)?\s.*?,?\s*\(?\s*(?<target>[A-Za-z_][A-Za-z0-9_$]*)\s*,");
            if (call.Success)
                stubs.Add(call.Groups["target"].Value);
        }
        foreach (var target in stubs)
            if (Regex.IsMatch(target, @"^(Add|Sub|Mul|Div|Fma|Sqrt)_\d+$"))
                yield return $"call to an ExactMath stub that was not lowered to an instruction: {target}";
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Kernel_compiles_to_contract_clean_ptx(string kernel, int sm)
    {
        var ptx = Ptx(kernel, sm);
        Assert.Contains(".entry", ptx);
        var violations = Violations(ptx).ToList();
        Assert.True(violations.Count == 0, $"{kernel} sm_{sm}:\n" + string.Join("\n", violations));
    }

    [Fact]
    public void The_lint_catches_what_the_contract_forbids()
    {
        string[] forbidden =
        [
            "mul.f32 %f1, %f2, %f3;", "add.f32 %f1, %f2, %f3;", "sub.f32 %f1, %f2, %f3;", "ex2.approx.f32 %f1, %f2;",
            "div.full.f32 %f1, %f2, %f3;", "add.rn.ftz.f32 %f1, %f2, %f3;", ".extern .func (.param .b32 r) fmaf(.param .b32 a);",
            "ld.local.f32 %f1, [%rd1];",
        ];
        foreach (var line in forbidden)
            Assert.NotEmpty(Violations(line));
        Assert.Empty(Violations("fma.rn.f32 %f1, %f2, %f3, %f4;\nadd.rn.f32 %f1, %f2, %f3;\nmul.wide.u32 %rd1, %r1, 4;\nadd.u64 %rd1, %rd2, %rd3;"));
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void Ptx_assembles_with_ptxas(string kernel, int sm)
    {
        var ptxas = FindPtxas();
        bool required = Environment.GetEnvironmentVariable("ILGPULLM_REQUIRE_PTXAS") == "1";
        Assert.False(required && ptxas == null, "ILGPULLM_REQUIRE_PTXAS is set but no ptxas was found (ILGPULLM_PTXAS or .build/cuda)");
        Skip.If(ptxas == null, "ptxas not installed (.ci/run installs it under .build/cuda)");

        var ptx = Ptx(kernel, sm);
        if (sm == 90)
            ptx = Regex.Replace(ptx, @"^\.target\s+sm_\d+", ".target sm_90", RegexOptions.Multiline);
        var directory = Directory.CreateTempSubdirectory("ilgpullm-ptx-");
        try
        {
            var source = Path.Combine(directory.FullName, "kernel.ptx");
            File.WriteAllText(source, ptx);
            var start = new ProcessStartInfo(ptxas!, ["-arch=sm_" + sm, "-o", Path.Combine(directory.FullName, "kernel.cubin"), source])
            {
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            };
            using var process = Process.Start(start)!;
            string errors = process.StandardError.ReadToEnd() + process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            Assert.True(process.ExitCode == 0, $"ptxas -arch=sm_{sm} rejected {kernel}:\n{errors}");
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    static string? FindPtxas()
    {
        var named = Environment.GetEnvironmentVariable("ILGPULLM_PTXAS");
        if (!string.IsNullOrEmpty(named))
            return File.Exists(named) ? named : null;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, ".build", "cuda", "usr", "bin", "ptxas");
            if (File.Exists(candidate))
                return candidate;
        }
        return null;
    }
}
