using System.Diagnostics;
using System.Text.RegularExpressions;
using ILGPU.Runtime.Cuda;
using System.Reflection;
using IlgpuLlm.Kernels;
using Xunit.Abstractions;

namespace IlgpuLlm.Tests.Kernels;

/// <summary>
/// Every kernel compiles to PTX for sm_80 and sm_90 without a GPU, and the PTX keeps the numerics
/// contract: only explicitly rounded floating-point instructions, no approximate or flush-to-zero
/// forms, no unresolved externs, no local memory. Where NVIDIA's ptxas is available (CI installs
/// it; ILGPULLM_PTXAS names it) the PTX must also assemble.
/// </summary>
public class PtxTests(ITestOutputHelper output)
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

    /// <summary>The kernels that must stream with 128-bit loads, in the formats that allow them (not the block formats read value by value).</summary>
    public static IEnumerable<object[]> StreamingCases() =>
        from entry in Kernels
        where entry.Value.GetCustomAttribute<GpuKernelAttribute>()!.StreamsVectors
            && !entry.Value.GetGenericArguments().Any(t => t.IsGenericType && t.GetGenericTypeDefinition() == typeof(ScalarOctets<>))
        from sm in new[] { 80, 90 }
        select new object[] { entry.Key, sm };

    /// <summary>
    /// A decode kernel's weights and activations move in 128-bit loads (<c>ld.v4</c>, generic or
    /// <c>.global</c>): ILGPU emits them only where it can prove 16-byte alignment, so a change to
    /// the index arithmetic could silently fall back to 2- and 4-byte loads.
    /// </summary>
    [Theory]
    [MemberData(nameof(StreamingCases))]
    public void Streaming_kernels_use_128_bit_loads(string kernel, int sm)
    {
        var ptx = Ptx(kernel, sm);
        Assert.True(Regex.IsMatch(ptx, @"^\s*ld(\.global)?(\.nc)?\.v4\.(b32|u32|f32)\s", RegexOptions.Multiline),
            $"{kernel} sm_{sm}: no 128-bit load (ld.v4) in its PTX");
        // Activations are f32; 16-bit stored data (weights, the cache) is read as 16-byte units of words.
        if (Kernels[kernel].GetGenericArguments().Any(t => t == typeof(F16Storage) || t == typeof(Bf16Storage)))
            Assert.True(Regex.IsMatch(ptx, @"^\s*ld(\.global)?(\.nc)?\.v4\.(b32|u32)\s", RegexOptions.Multiline),
                $"{kernel} sm_{sm}: its 16-bit stored values are not read with 128-bit loads");
    }

    [Fact]
    public void Every_decode_kernel_is_checked_for_vector_loads()
    {
        var streaming = StreamingCases().Select(c => (string)c[0]).Distinct().ToList();
        Assert.Contains("Linear.DecodeKernel<Bf16Storage>", streaming);
        Assert.Contains("Linear.DecodeKernel<F16Storage>", streaming);
        Assert.Contains("Linear.DecodeKernel<F32Storage>", streaming);
        Assert.Contains("Attention.ScoresKernel<F16Storage>", streaming);
        Assert.Contains("Attention.ValuesKernel<Bf16Storage>", streaming);
    }

    /// <summary>What <c>ptxas -v</c> reports for one kernel.</summary>
    public readonly record struct PtxasUsage(int Registers, int SharedBytes, int StackFrameBytes, int SpillStoreBytes, int SpillLoadBytes);

    public static PtxasUsage ParseUsage(string ptxasOutput)
    {
        static int Number(string text, string pattern) =>
            Regex.Match(text, pattern) is { Success: true } m ? int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : 0;
        return new PtxasUsage(Number(ptxasOutput, @"Used (\d+) registers"), Number(ptxasOutput, @"(\d+) bytes smem"),
            Number(ptxasOutput, @"(\d+) bytes stack frame"), Number(ptxasOutput, @"(\d+) bytes spill stores"),
            Number(ptxasOutput, @"(\d+) bytes spill loads"));
    }

    [Fact]
    public void Ptxas_usage_is_read_from_its_report()
    {
        var usage = ParseUsage("""
            ptxas info    : Compiling entry function 'Kernel' for 'sm_90'
            ptxas info    : Function properties for Kernel
                16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
            ptxas info    : Used 102 registers, 4224 bytes smem, 380 bytes cmem[0]
            """);
        Assert.Equal(new PtxasUsage(102, 4224, 16, 8, 4), usage);
    }

    /// <summary>
    /// Every kernel assembles with ptxas (-v), and its report is written to the test output:
    /// registers and shared memory per kernel (the launch shapes in docs/BENCHMARKS.md rest on
    /// them). A kernel that spills to local memory fails, and a streaming kernel may not use more
    /// than <see cref="GpuKernelAttribute.MaxStreamingRegisters"/> registers.
    /// </summary>
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
            var start = new ProcessStartInfo(ptxas!, ["-v", "-arch=sm_" + sm, "-o", Path.Combine(directory.FullName, "kernel.cubin"), source])
            {
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            };
            using var process = Process.Start(start)!;
            string errors = process.StandardError.ReadToEnd() + process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            Assert.True(process.ExitCode == 0, $"ptxas -arch=sm_{sm} rejected {kernel}:\n{errors}");
            var usage = ParseUsage(errors);
            output.WriteLine($"{kernel} sm_{sm}: {usage.Registers} registers, {usage.SharedBytes} bytes shared, " +
                $"{usage.StackFrameBytes} bytes stack, {usage.SpillStoreBytes}/{usage.SpillLoadBytes} bytes spilled");
            Assert.True(usage.StackFrameBytes == 0 && usage.SpillStoreBytes == 0 && usage.SpillLoadBytes == 0,
                $"{kernel} sm_{sm} uses local memory: {usage}");
            if (Kernels[kernel].GetCustomAttribute<GpuKernelAttribute>()!.StreamsVectors)
                Assert.True(usage.Registers <= GpuKernelAttribute.MaxStreamingRegisters,
                    $"{kernel} sm_{sm} uses {usage.Registers} registers; a streaming kernel may use {GpuKernelAttribute.MaxStreamingRegisters}");
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
