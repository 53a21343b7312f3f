using System.Reflection;
using System.Runtime.CompilerServices;
using ILGPU.Backends.PTX;
using ILGPU.IR;
using ILGPU.IR.Intrinsics;

namespace IlgpuLlm.Kernels;

/// <summary>
/// The only floating-point arithmetic kernels may use (docs/NUMERICS.md, "Exact operations").
/// Each operation is one correctly rounded IEEE-754 binary32 operation, round to nearest even,
/// subnormals kept. On the CPU (the scalar references, ILGPU's CPU accelerator) the bodies below
/// run as written. On CUDA every call becomes one PTX instruction with an explicit rounding
/// mode: ILGPU 1.5.3 emits plain <c>mul.f32</c>/<c>add.f32</c> for C# operators, which ptxas
/// is free to contract into an FFMA the CPU never performs, and it has no lowering of
/// <see cref="MathF.FusedMultiplyAdd"/> at all (it becomes an unresolved extern). The <c>.rn</c>
/// forms are never contracted.
/// </summary>
public static class ExactMath
{
    [IntrinsicImplementation, MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Add(float a, float b) => a + b;

    [IntrinsicImplementation, MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sub(float a, float b) => a - b;

    [IntrinsicImplementation, MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Mul(float a, float b) => a * b;

    [IntrinsicImplementation, MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Div(float a, float b) => a / b;

    /// <summary>a·b + c with a single rounding.</summary>
    [IntrinsicImplementation, MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Fma(float a, float b, float c) => MathF.FusedMultiplyAdd(a, b, c);

    [IntrinsicImplementation, MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sqrt(float a) => MathF.Sqrt(a);

    /// <summary>
    /// Registers the PTX lowering of every operation above with a context under construction.
    /// Every ILGPU context that may compile kernels for CUDA must call this.
    /// </summary>
    public static void RegisterPtx(ILGPU.Context.Builder builder)
    {
        // ILGPU 1.5.3 keeps the builder's intrinsic manager internal (ILGPU.Algorithms reaches it
        // through InternalsVisibleTo); the manager type itself and RegisterMethod are public.
        var manager = typeof(ILGPU.Context.Builder)
            .GetProperty("IntrinsicManager", BindingFlags.NonPublic | BindingFlags.Instance)?
            .GetValue(builder) as IntrinsicImplementationManager
            ?? throw new InvalidOperationException(
                "this ILGPU version has no Context.Builder.IntrinsicManager; ExactMath cannot register its PTX lowering");

        Register(manager, nameof(Add), nameof(EmitAdd));
        Register(manager, nameof(Sub), nameof(EmitSub));
        Register(manager, nameof(Mul), nameof(EmitMul));
        Register(manager, nameof(Div), nameof(EmitDiv));
        Register(manager, nameof(Fma), nameof(EmitFma));
        Register(manager, nameof(Sqrt), nameof(EmitSqrt));
    }

    static void Register(IntrinsicImplementationManager manager, string method, string emitter)
    {
        var target = typeof(ExactMath).GetMethod(method, BindingFlags.Public | BindingFlags.Static)
            ?? throw new InvalidOperationException($"ExactMath.{method} is missing");
        manager.RegisterMethod(target,
            new PTXIntrinsic(typeof(ExactMath), emitter, IntrinsicImplementationMode.GenerateCode));
    }

    static void EmitAdd(PTXBackend backend, PTXCodeGenerator generator, Value value) =>
        Emit(generator, value, "add.rn.f32");

    static void EmitSub(PTXBackend backend, PTXCodeGenerator generator, Value value) =>
        Emit(generator, value, "sub.rn.f32");

    static void EmitMul(PTXBackend backend, PTXCodeGenerator generator, Value value) =>
        Emit(generator, value, "mul.rn.f32");

    static void EmitDiv(PTXBackend backend, PTXCodeGenerator generator, Value value) =>
        Emit(generator, value, "div.rn.f32");

    static void EmitFma(PTXBackend backend, PTXCodeGenerator generator, Value value) =>
        Emit(generator, value, "fma.rn.f32");

    static void EmitSqrt(PTXBackend backend, PTXCodeGenerator generator, Value value) =>
        Emit(generator, value, "sqrt.rn.f32");

    /// <summary>Emits <c>instruction result, arg0, arg1, ...</c> for the call in <paramref name="value"/>.</summary>
    static void Emit(PTXCodeGenerator generator, Value value, string instruction)
    {
        var arguments = new PTXCodeGenerator.PrimitiveRegister[value.Count];
        for (int i = 0; i < arguments.Length; i++)
            arguments[i] = generator.LoadPrimitive(value[i]);
        var result = generator.AllocateHardware(value);
        using var command = generator.BeginCommand(instruction);
        command.AppendArgument(result);
        foreach (var argument in arguments)
            command.AppendArgument(argument);
    }
}
