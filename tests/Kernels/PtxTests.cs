using System.Diagnostics;
using System.Text.RegularExpressions;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using System.Reflection;
using IlgpuLlm.Kernels;
using Xunit.Abstractions;

namespace IlgpuLlm.Tests.Kernels;

/// <summary>
/// Every kernel compiles to PTX for sm_80 and sm_90 without a GPU, and the PTX keeps the numerics
/// contract: only explicitly rounded floating-point instructions, no approximate or flush-to-zero
/// forms, no unresolved externs, no local memory. The PTX must also assemble with NVIDIA's ptxas,
/// which `dotnet test` fetches under .build/cuda where it is missing (ILGPULLM_PTXAS names another).
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
            // A guard predicate (@%p1, @!%p2) may precede any instruction: the checks read past it.
            string instruction = Regex.Replace(line, @"^@!?%[\w$]+\s+", "");
            string opcode = Regex.Match(instruction, @"^[a-z][\w.]*").Value;
            string[] parts = opcode.Split('.');
            bool floating = parts.Skip(1).Any(p => p is "f16" or "f16x2" or "bf16" or "bf16x2" or "f32" or "f64" or "tf32");
            if (Regex.IsMatch(line, @"\.approx\b"))
                yield return $"approximate instruction: {line}";
            if (Regex.IsMatch(line, @"\.full\b"))
                yield return $"non-IEEE division: {line}";
            if (Regex.IsMatch(line, @"\.ftz\b"))
                yield return $"flush-to-zero: {line}";
            if (floating && parts.Contains("sat"))
                yield return $"saturating floating-point instruction (clamps to [0, 1], NaN to 0): {line}";
            if (Regex.IsMatch(line, @"\.extern\s+\.func"))
                yield return $"unresolved external function: {line}";
            if (floating && parts[0] is "mul" or "add" or "sub" or "fma" or "mad" or "div" or "sqrt" or "rcp")
            {
                if (!parts.Contains("rn"))
                    yield return parts.Any(p => p is "rz" or "rm" or "rp")
                        ? $"floating-point instruction rounding other than to nearest even: {line}"
                        : $"floating-point instruction without an explicit rounding mode (ptxas may contract or approximate it): {line}";
            }
            if (floating && parts[0] is "min" or "max")
                yield return $"hardware {parts[0]} (drops NaN, orders ±0 its own way; the contract's max propagates NaN): {line}";
            if (floating && parts[0] is "abs" or "neg" && opcode is not ("abs.f32" or "abs.f64" or "neg.f32" or "neg.f64"))
                yield return $"{parts[0]} in a form other than the exact sign operation on f32/f64: {line}";
            if (floating && parts[0] is "ex2" or "lg2" or "sin" or "cos" or "rsqrt" or "tanh")
                yield return $"hardware transcendental: {line}";
            if (parts[0] == "cvt")
                foreach (var problem in ConversionViolations(parts))
                    yield return $"{problem}: {line}";
            if (Regex.IsMatch(line, @"\.local\b"))
                yield return $"local memory: {line}";
            var call = Regex.Match(instruction, @"^call(\.uni)?\s.*?,?\s*\(?\s*(?<target>[A-Za-z_][A-Za-z0-9_$]*)\s*,");
            if (call.Success)
                stubs.Add(call.Groups["target"].Value);
        }
        foreach (var target in stubs)
            if (Regex.IsMatch(target, @"^(Add|Sub|Mul|Div|Fma|Sqrt)_\d+$"))
                yield return $"call to an ExactMath stub that was not lowered to an instruction: {target}";
    }

    /// <summary>
    /// What a cvt may do under the contract: narrow to f16/bf16 never (that rounding is done in
    /// integer arithmetic, docs/NUMERICS.md §1); float to integer only truncating (.rzi, C#'s cast);
    /// integer or f64 to f32 only rounding to nearest even; widening exactly, with no rounding modifier.
    /// </summary>
    static IEnumerable<string> ConversionViolations(string[] parts)
    {
        var types = parts.Where(p => Regex.IsMatch(p, @"^(f16|f16x2|bf16|bf16x2|tf32|e4m3x2|e5m2x2|f32|f64|[su](8|16|32|64)|b(8|16|32|64))$")).ToArray();
        if (types.Length != 2)
            yield break;
        string destination = types[0], source = types[1];
        string? rounding = parts.FirstOrDefault(p => p is "rn" or "rz" or "rm" or "rp" or "rna" or "rni" or "rzi" or "rmi" or "rpi");
        bool toFloat = destination[0] is 'f' or 't' or 'e' || destination.StartsWith("bf", StringComparison.Ordinal);
        bool fromFloat = source[0] is 'f' or 't' or 'e' || source.StartsWith("bf", StringComparison.Ordinal);
        if (destination is "f16" or "f16x2" or "bf16" or "bf16x2" or "tf32" or "e4m3x2" or "e5m2x2")
            yield return "hardware narrowing to a 16-bit or smaller float";
        else if (fromFloat && !toFloat && rounding != "rzi")
            yield return "float to integer conversion other than truncation (.rzi, as C# casts)";
        else if (toFloat && !fromFloat && rounding != "rn")
            yield return "integer to float conversion rounding other than to nearest even";
        else if (destination == "f32" && source == "f64" && rounding != "rn")
            yield return "f64 to f32 conversion rounding other than to nearest even";
    }

    /// <summary>Lines the lint must reject, one per rule and form (a guard predicate in front included).</summary>
    public static readonly string[] ForbiddenLines =
    [
        "mul.f32 %f1, %f2, %f3;", "add.f32 %f1, %f2, %f3;", "sub.f32 %f1, %f2, %f3;", "fma.f32 %f1, %f2, %f3, %f4;",
        "@%p1 add.f32 %f1, %f2, %f3;", "@!%p2 mul.f32 %f1, %f2, %f3;", "@%p3 fma.rz.f32 %f1, %f2, %f3, %f4;",
        "add.rz.f32 %f1, %f2, %f3;", "mul.rm.f32 %f1, %f2, %f3;", "div.rp.f32 %f1, %f2, %f3;", "sqrt.rz.f32 %f1, %f2;",
        "mad.f32 %f1, %f2, %f3, %f4;", "add.rn.sat.f32 %f1, %f2, %f3;", "cvt.rn.sat.f32.f64 %f1, %fd1;",
        "ex2.approx.f32 %f1, %f2;", "@%p1 ex2.approx.ftz.f32 %f1, %f2;", "lg2.approx.f32 %f1, %f2;", "@%p4 tanh.approx.f32 %f1, %f2;",
        "div.full.f32 %f1, %f2, %f3;", "div.approx.f32 %f1, %f2, %f3;", "rcp.approx.ftz.f32 %f1, %f2;", "add.rn.ftz.f32 %f1, %f2, %f3;",
        "min.f32 %f1, %f2, %f3;", "max.f32 %f1, %f2, %f3;", "@%p1 max.f32 %f1, %f2, %f3;", "max.NaN.f32 %f1, %f2, %f3;",
        "min.ftz.NaN.f32 %f1, %f2, %f3;", "max.f64 %fd1, %fd2, %fd3;",
        "abs.ftz.f32 %f1, %f2;", "neg.ftz.f32 %f1, %f2;", "abs.bf16 %rs1, %rs2;", "@%p2 neg.f16 %rs1, %rs2;",
        "cvt.rn.f16.f32 %rs1, %f1;", "cvt.rz.bf16.f32 %rs1, %f1;", "cvt.rn.bf16x2.f32 %r1, %f1, %f2;",
        "cvt.rni.s32.f32 %r1, %f1;", "cvt.rmi.s32.f32 %r1, %f1;", "@%p1 cvt.rpi.u32.f32 %r1, %f1;",
        "cvt.rz.f32.s32 %f1, %r1;", "cvt.rm.f32.u32 %f1, %r1;", "cvt.rz.f32.f64 %f1, %fd1;",
        ".extern .func (.param .b32 r) fmaf(.param .b32 a);", "ld.local.f32 %f1, [%rd1];", "@%p1 st.local.u32 [%rd1], %r1;",
    ];

    /// <summary>Lines the lint must accept: the exact forms kernels use.</summary>
    public static readonly string[] AllowedLines =
    [
        "fma.rn.f32 %f1, %f2, %f3, %f4;", "add.rn.f32 %f1, %f2, %f3;", "@%p1 mul.rn.f32 %f1, %f2, %f3;", "div.rn.f32 %f1, %f2, %f3;",
        "sqrt.rn.f32 %f1, %f2;", "mul.wide.u32 %rd1, %r1, 4;", "add.u64 %rd1, %rd2, %rd3;", "@!%p1 add.s32 %r1, %r2, 1;",
        "max.s32 %r1, %r2, %r3;", "min.u32 %r1, %r2, %r3;", "abs.f32 %f1, %f2;", "neg.f32 %f1, %f2;", "abs.s32 %r1, %r2;",
        "cvt.rzi.s32.f32 %r1, %f1;", "cvt.rn.f32.s32 %f1, %r1;", "cvt.rn.f32.u32 %f1, %r1;", "cvt.f64.f32 %fd1, %f1;",
        "cvt.u32.u16 %r1, %rs1;", "cvt.s64.s32 %rd1, %r1;", "setp.gt.f32 %p1, %f1, %f2;", "selp.f32 %f1, %f2, %f3, %p1;",
        "testp.notanumber.f32 %p1, %f1;", "ld.global.f32 %f1, [%rd1];", "mov.b32 %f1, %r1;",
    ];

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
        foreach (var line in ForbiddenLines)
            Assert.True(Violations(line).Any(), $"the lint accepts {line}");
        foreach (var line in AllowedLines)
            Assert.True(!Violations(line).Any(), $"the lint rejects {line}: {string.Join("; ", Violations(line))}");
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

    /// <summary>Kernels of one exact operation each, to see what it lowers to.</summary>
    static class Probes
    {
        public static void Add(Index1D i, ArrayView<float> a) => a[i] = ExactMath.Add(a[i + 1], a[i + 2]);
        public static void Sub(Index1D i, ArrayView<float> a) => a[i] = ExactMath.Sub(a[i + 1], a[i + 2]);
        public static void Mul(Index1D i, ArrayView<float> a) => a[i] = ExactMath.Mul(a[i + 1], a[i + 2]);
        public static void Div(Index1D i, ArrayView<float> a) => a[i] = ExactMath.Div(a[i + 1], a[i + 2]);
        public static void Fma(Index1D i, ArrayView<float> a) => a[i] = ExactMath.Fma(a[i + 1], a[i + 2], a[i + 3]);
        public static void Sqrt(Index1D i, ArrayView<float> a) => a[i] = ExactMath.Sqrt(a[i + 1]);
        public static void Max(Index1D i, ArrayView<float> a) => a[i] = CanonicalMath.Max(a[i + 1], a[i + 2]);
    }

    /// <summary>The floating-point arithmetic instructions of a PTX listing, guard predicates and operands dropped.</summary>
    static string[] FloatArithmetic(string ptx) =>
        ptx.Split('\n').Select(l => Regex.Replace(Regex.Replace(l, "//.*$", "").Trim(), @"^@!?%[\w$]+\s+", ""))
            .Select(l => Regex.Match(l, @"^(add|sub|mul|div|fma|mad|sqrt|rcp|rsqrt|min|max|ex2|lg2)\.[\w.]*\b(f32|f64)\b").Value)
            .Where(op => op.Length > 0).ToArray();

    /// <summary>
    /// Each exact operation is one instruction with the rounding the contract names (a lowering to a
    /// multiply and an add, or to another rounding mode, would give the GPU other bits than the
    /// CPUs), and the contract's max is a compare and a select, never the GPU's NaN-dropping max.
    /// </summary>
    [Theory]
    [InlineData("Add", "add.rn.f32")]
    [InlineData("Sub", "sub.rn.f32")]
    [InlineData("Mul", "mul.rn.f32")]
    [InlineData("Div", "div.rn.f32")]
    [InlineData("Fma", "fma.rn.f32")]
    [InlineData("Sqrt", "sqrt.rn.f32")]
    [InlineData("Max", null)]
    public void Each_exact_operation_lowers_to_its_one_instruction(string operation, string? instruction)
    {
        string ptx;
        lock (Compiler)
            ptx = Compiler.Value.Compile(typeof(Probes).GetMethod(operation)!, CudaArchitecture.SM_80);
        Assert.Equal(instruction is null ? [] : [instruction], FloatArithmetic(ptx));
        Assert.Empty(Violations(ptx));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Ptx_assembles_with_ptxas(string kernel, int sm)
    {
        var ptxas = FindPtxas();
        var named = Environment.GetEnvironmentVariable("ILGPULLM_PTXAS");
        Assert.True(ptxas != null, string.IsNullOrEmpty(named)
            ? "NVIDIA's ptxas was not found: `dotnet test` runs .ci/install-ptxas on Linux to put it under .build/cuda (see the build " +
              "output if that failed); elsewhere set ILGPULLM_PTXAS to a CUDA 12 ptxas"
            : $"ILGPULLM_PTXAS names {named}, which does not exist");

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
