using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace IlgpuLlm.Kernels;

/// <summary>
/// Eight consecutive values of a row, widened to binary32: the terms one thread of a GPU decode
/// kernel folds per step. Values k … k+7 of a row with k a multiple of 8 belong to canonical lanes
/// k mod 32 … k mod 32 + 7 (docs/NUMERICS.md, "Reductions"), so the thread that reads octet q of
/// every 32-value segment owns those eight lanes' chains outright, and four threads cover a row.
/// </summary>
public struct Octet
{
    public float V0, V1, V2, V3, V4, V5, V6, V7;
}

/// <summary>Sixteen bytes read with one 128-bit load (<c>ld.v4.u32</c>) from a 16-byte-aligned view.</summary>
public struct Bytes16
{
    public uint X, Y, Z, W;
}

/// <summary>Four binary32 values read with one 128-bit load (<c>ld.v4.f32</c>) from a 16-byte-aligned view.</summary>
public struct Float4
{
    public float X, Y, Z, W;
}

/// <summary>
/// Stored values read eight at a time: <see cref="Load8"/> with 128-bit loads where the format's
/// bytes allow it, or one value at a time (<see cref="ScalarOctets{T}"/>), with the same values.
/// </summary>
public interface IOctetLoads : IStorage
{
    /// <summary>
    /// Values <paramref name="index"/> … +7, widened exactly. <paramref name="index"/> is a multiple
    /// of 8, and the caller has checked <see cref="OctetViews.Aligned"/> for the bytes the storage
    /// was made over: the plain formats read them as 16-byte units.
    /// </summary>
    Octet Load8(long index);
}

/// <summary>Eight single loads of any stored format (the block formats): the values of <see cref="IOctetLoads.Load8"/>, not its speed.</summary>
public readonly struct ScalarOctets<T>(T storage) : IOctetLoads where T : struct, IStorage
{
    readonly T storage = storage;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Load(long index) => storage.Load(index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Octet Load8(long index) => OneByOne(storage, index);

    /// <summary>Values <paramref name="index"/> … +7 of <paramref name="storage"/>, one load each.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Octet OneByOne(T storage, long index) => new()
    {
        V0 = storage.Load(index), V1 = storage.Load(index + 1), V2 = storage.Load(index + 2), V3 = storage.Load(index + 3),
        V4 = storage.Load(index + 4), V5 = storage.Load(index + 5), V6 = storage.Load(index + 6), V7 = storage.Load(index + 7),
    };
}

/// <summary>Host-side helpers for the 16-byte views the octet loads read.</summary>
public static class OctetViews
{
    /// <summary>Bytes of one vector load.</summary>
    public const int VectorBytes = 16;

    /// <summary>
    /// True when <paramref name="view"/> starts on a 16-byte boundary of device memory (an empty
    /// view counts as aligned). Device allocations are 256-byte aligned on CUDA; slices of them and
    /// host allocations of the CPU accelerator need not be, so every launch checks.
    /// </summary>
    public static bool Aligned<T>(ArrayView<T> view) where T : unmanaged
    {
        if (view.Length == 0)
            return true;
        var raw = (IContiguousArrayView)view;
        return (raw.Buffer.NativePtr.ToInt64() + raw.IndexInBytes) % VectorBytes == 0;
    }

    /// <summary>
    /// The whole 16-byte units of <paramref name="bytes"/> as a view of <typeparamref name="TUnit"/>,
    /// or an empty view where the bytes do not start 16-byte aligned (then only single loads may be
    /// used, which <see cref="Aligned"/> tells the launcher).
    /// </summary>
    public static ArrayView<TUnit> Units<TUnit>(ArrayView<byte> bytes) where TUnit : unmanaged =>
        bytes.Length >= VectorBytes && Aligned(bytes)
            ? bytes.SubView(0, bytes.Length / VectorBytes * VectorBytes).Cast<TUnit>()
            : default;
}
