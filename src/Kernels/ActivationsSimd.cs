using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace IlgpuLlm.Kernels;

/// <summary>
/// The SIMD CPU twins of the element-wise ops of <see cref="Activations"/>: the gated activation
/// with <see cref="CanonicalMathSimd"/> (the scalar functions' exact operation sequence per lane)
/// and the residual add. Threads split blocks of elements.
/// </summary>
public static unsafe class ActivationsSimd
{
    /// <summary>Elements one work item covers: enough to outweigh handing it to a thread.</summary>
    public const int BlockSize = 8192;

    /// <summary>The reusable job object a backend keeps for its gated-activation calls.</summary>
    public sealed class GatedJob : IRangeJob
    {
        internal float* Gate, Up, Output;
        internal long Count;
        internal Activation Activation;
        internal SimdLevel Level;

        public void Run(int start, int end)
        {
            long begin = (long)start * BlockSize;
            int n = (int)(Math.Min(Count, (long)end * BlockSize) - begin);
            float* gate = Gate + begin, up = Up + begin, output = Output + begin;
            int done = (Level, Activation) switch
            {
                (SimdLevel.Avx512, Activation.Silu) => Silu512(gate, up, output, n),
                (SimdLevel.Avx512, _) => GeluTanh512(gate, up, output, n),
                (SimdLevel.Avx2, Activation.Silu) => Silu256(gate, up, output, n),
                (SimdLevel.Avx2, _) => GeluTanh256(gate, up, output, n),
                _ => 0,
            };
            for (int i = done; i < n; i++)
                output[i] = Activations.Apply(Activation, gate[i]) * up[i];
        }
    }

    public static void RunGated(CpuWorkers workers, SimdLevel level, GatedJob job, float* gate, float* up, float* output,
        long count, Activation activation)
    {
        job.Gate = gate;
        job.Up = up;
        job.Output = output;
        job.Count = count;
        job.Activation = activation;
        job.Level = SimdLevels.AtMost(level);
        int blocks = Blocks(count);
        workers.For(blocks, 1, job);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static int Silu512(float* gate, float* up, float* output, int n)
    {
        int i = 0;
        for (; i + 16 <= n; i += 16)
            (CanonicalMathSimd.Silu(Vector512.Load(gate + i)) * Vector512.Load(up + i)).Store(output + i);
        return i;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static int GeluTanh512(float* gate, float* up, float* output, int n)
    {
        int i = 0;
        for (; i + 16 <= n; i += 16)
            (CanonicalMathSimd.GeluTanh(Vector512.Load(gate + i)) * Vector512.Load(up + i)).Store(output + i);
        return i;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static int Silu256(float* gate, float* up, float* output, int n)
    {
        int i = 0;
        for (; i + 8 <= n; i += 8)
            (CanonicalMathSimd.Silu(Vector256.Load(gate + i)) * Vector256.Load(up + i)).Store(output + i);
        return i;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static int GeluTanh256(float* gate, float* up, float* output, int n)
    {
        int i = 0;
        for (; i + 8 <= n; i += 8)
            (CanonicalMathSimd.GeluTanh(Vector256.Load(gate + i)) * Vector256.Load(up + i)).Store(output + i);
        return i;
    }

    /// <summary>The reusable job object a backend keeps for its add calls.</summary>
    public sealed class AddJob : IRangeJob
    {
        internal float* A, B, Output;
        internal long Count;
        internal SimdLevel Level;

        public void Run(int start, int end)
        {
            long begin = (long)start * BlockSize;
            int n = (int)(Math.Min(Count, (long)end * BlockSize) - begin);
            float* a = A + begin, b = B + begin, output = Output + begin;
            int done = Level switch
            {
                SimdLevel.Avx512 => Add512(a, b, output, n),
                SimdLevel.Avx2 => Add256(a, b, output, n),
                _ => 0,
            };
            for (int i = done; i < n; i++)
                output[i] = a[i] + b[i];
        }
    }

    public static void RunAdd(CpuWorkers workers, SimdLevel level, AddJob job, float* a, float* b, float* output, long count)
    {
        job.A = a;
        job.B = b;
        job.Output = output;
        job.Count = count;
        job.Level = SimdLevels.AtMost(level);
        workers.For(Blocks(count), 1, job);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static int Add512(float* a, float* b, float* output, int n)
    {
        int i = 0;
        for (; i + 16 <= n; i += 16)
            (Vector512.Load(a + i) + Vector512.Load(b + i)).Store(output + i);
        return i;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static int Add256(float* a, float* b, float* output, int n)
    {
        int i = 0;
        for (; i + 8 <= n; i += 8)
            (Vector256.Load(a + i) + Vector256.Load(b + i)).Store(output + i);
        return i;
    }

    static int Blocks(long count) => checked((int)((count + BlockSize - 1) / BlockSize));
}
