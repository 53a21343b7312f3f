using System.Reflection;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace IlgpuLlm.Kernels;

/// <summary>Marks a method as a GPU kernel of the library, so the PTX checks find every one.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class GpuKernelAttribute : Attribute
{
    /// <summary>Whether its storage parameter holds weights, which may also be in a quantized block format.</summary>
    public bool ReadsWeights { get; init; }
}

/// <summary>
/// Every kernel of the library, instantiated for every storage format its type parameters accept:
/// the loads of every format, the stores of every narrowing format (as the formats dispatch them).
/// </summary>
public static class KernelCatalog
{
    static readonly Type[] Loads = [.. StorageFormat.All.Select(f =>
    {
        var record = new RecordLoad();
        f.Dispatch(ref record);
        return record.Type!;
    })];

    static readonly Type[] Stores = [.. StorageFormat.All.Where(f => f.Narrows).Select(f =>
    {
        var record = new RecordStore();
        f.DispatchNarrowing(ref record);
        return record.Type!;
    })];

    struct RecordLoad : IStorageAction
    {
        public Type? Type;

        public void Run<TStorage, TWeights, TExact>()
            where TStorage : struct, IStorageView<TStorage> where TWeights : struct, IStoredVectors where TExact : struct, IStoredVectors =>
            Type = typeof(TStorage);
    }

    struct RecordStore : INarrowingAction
    {
        public Type? Type;

        public void Run<TStore, TNarrowing>() where TStore : struct, IStorageStore<TStore> where TNarrowing : struct, IVectorNarrowing =>
            Type = typeof(TStore);
    }

    static readonly Type[] WeightStorageTypes =
    [
        .. Loads, typeof(Q4_0Storage), typeof(Q4_1Storage), typeof(Q5_0Storage), typeof(Q5_1Storage), typeof(Q8_0Storage),
        typeof(Q2_KStorage), typeof(Q3_KStorage), typeof(Q4_KStorage), typeof(Q5_KStorage), typeof(Q6_KStorage),
    ];

    public static IEnumerable<MethodInfo> All()
    {
        var methods = typeof(KernelCatalog).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
            .Where(m => m.GetCustomAttribute<GpuKernelAttribute>() != null)
            .OrderBy(m => m.DeclaringType!.FullName).ThenBy(m => m.Name);
        foreach (var method in methods)
        {
            if (!method.IsGenericMethodDefinition)
            {
                yield return method;
                continue;
            }
            var storage = method.GetCustomAttribute<GpuKernelAttribute>()!.ReadsWeights ? WeightStorageTypes : Loads;
            foreach (var arguments in Combinations(method.GetGenericArguments(), storage))
                yield return method.MakeGenericMethod(arguments);
        }
    }

    static IEnumerable<Type[]> Combinations(Type[] parameters, Type[] loads)
    {
        IEnumerable<Type[]> result = [[]];
        foreach (var parameter in parameters)
        {
            var constraints = parameter.GetGenericParameterConstraints();
            var choices = constraints.Contains(typeof(IStorage)) ? loads
                : constraints.Any(c => c.IsGenericType && c.GetGenericTypeDefinition() == typeof(IStorageStore<>)) ? Stores
                : throw new NotSupportedException($"kernel type parameter {parameter.Name} has no known instantiations");
            result = result.SelectMany(prefix => choices.Select(choice => prefix.Append(choice).ToArray()));
        }
        return result;
    }

    public static string DisplayName(MethodInfo kernel) =>
        kernel.DeclaringType!.Name + "." + kernel.Name +
        (kernel.IsGenericMethod ? "<" + string.Join(",", kernel.GetGenericArguments().Select(a => a.Name)) + ">" : "");
}

/// <summary>
/// Compiles kernels to PTX without a GPU, through the same ILGPU context setup the CUDA backend
/// uses (exact-math lowering registered). ILGPU 1.5.3 writes <c>.target sm_80</c> whatever
/// architecture is requested; the PTX uses nothing newer, so for sm_90 the checks rewrite the
/// target line and assemble with <c>ptxas -arch=sm_90</c> (docs/NUMERICS.md, "PTX").
/// </summary>
public sealed class PtxCompiler : IDisposable
{
    readonly Context context = KernelContext.Create(1);

    public string Compile(MethodInfo kernel, CudaArchitecture architecture)
    {
        // PTX ISA 8.0 (CUDA 12.0) covers sm_80 and sm_90 and is accepted by every CUDA 12 ptxas.
        using var backend = new PTXBackend(context, architecture, CudaInstructionSet.ISA_80, null!);
        var parameters = kernel.GetParameters();
        var description = parameters.Length > 0 && parameters[0].ParameterType == typeof(Index1D)
            ? EntryPointDescription.FromImplicitlyGroupedKernel(kernel)
            : EntryPointDescription.FromExplicitlyGroupedKernel(kernel);
        var compiled = (PTXCompiledKernel)backend.Compile(description, KernelSpecialization.Empty);
        return compiled.PTXAssembly;
    }

    public void Dispose() => context.Dispose();
}
