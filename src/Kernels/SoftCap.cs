using ILGPU;
using ILGPU.Runtime;

namespace IlgpuLlm.Kernels;

public static partial class Activations
{
    /// <summary>Most threads a soft-cap launch starts; each walks the buffer with this stride.</summary>
    const int SoftCapMaxThreads = 1 << 20;

    public struct SoftCapArgs
    {
        public ArrayView<float> X;
        public long Count;
        public long Stride;
        public float Cap;
    }

    /// <summary>One thread per element, grid-strided with 64-bit indices: neighbouring threads touch neighbouring values.</summary>
    [GpuKernel]
    static void SoftCapKernel(Index1D index, SoftCapArgs a)
    {
        for (long i = index; i < a.Count; i += a.Stride)
            a.X[i] = CanonicalMath.SoftCap(a.X[i], a.Cap);
    }

    /// <summary>The checks of a soft-cap call over the first <paramref name="count"/> values of a buffer.</summary>
    public static void ValidateSoftCap(long available, long count, float cap)
    {
        ValidateCap(cap);
        if (count < 0)
            throw new ArgumentOutOfRangeException(nameof(count), $"soft-cap: count {count} must not be negative");
        Shapes.ExpectAtLeast("soft-cap: x", available, count, $"a count of {count}");
    }

    /// <summary>
    /// x = tanh(x / cap)·cap in place over the whole view, with at most <paramref name="maxThreads"/>
    /// threads (tests lower it to exercise the stride loop).
    /// </summary>
    public static void RunSoftCap(KernelLibrary library, ArrayView<float> x, float cap, int maxThreads = SoftCapMaxThreads)
    {
        ValidateCap(cap);
        Shapes.Positive("soft-cap: threads", maxThreads);
        if (x.Length == 0)
            return;
        int threads = (int)Math.Min(x.Length, maxThreads);
        library.GetElementwise<SoftCapArgs>(SoftCapKernel)(threads, new SoftCapArgs
        {
            X = x, Count = x.Length, Stride = threads, Cap = cap,
        });
    }
}
