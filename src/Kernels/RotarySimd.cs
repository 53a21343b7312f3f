using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace IlgpuLlm.Kernels;

/// <summary>
/// The SIMD CPU twin of <see cref="Rotary"/>: the same two products and one sum or difference per
/// element. The (cos, sin) table is interleaved; rotate_half pairs take cos and sin apart with
/// exact permutes, interleaved pairs duplicate them in place and swap the pair's elements, then
/// pick the difference for the first element and the sum for the second. Threads split the
/// (row, head) items.
/// </summary>
public static unsafe class RotarySimd
{
    /// <summary>The reusable job object a backend keeps for its rotary calls.</summary>
    public sealed class Job : IRangeJob
    {
        internal float* X, Angles;
        internal RotaryShape Shape;
        internal SimdLevel Level;

        public void Run(int start, int end)
        {
            var shape = Shape;
            int pairs = shape.Pairs;
            for (int item = start; item < end; item++)
            {
                int row = item / shape.Heads;
                float* head = X + (long)item * shape.HeadDim;
                float* angles = Angles + (long)row * shape.HeadDim;
                int done = shape.Layout == RotaryLayout.HalfSplit
                    ? Level switch
                    {
                        SimdLevel.Avx512 => HalfSplit512(head, angles, pairs),
                        SimdLevel.Avx2 => HalfSplit256(head, angles, pairs),
                        _ => 0,
                    }
                    : Level switch
                    {
                        SimdLevel.Avx512 => Interleaved512(head, angles, pairs),
                        SimdLevel.Avx2 => Interleaved256(head, angles, pairs),
                        _ => 0,
                    };
                Scalar(head, angles, done, pairs, shape.Layout);
            }
        }
    }

    public static void Run(CpuWorkers workers, SimdLevel level, Job job, float* x, float* angles, RotaryShape shape)
    {
        job.X = x;
        job.Angles = angles;
        job.Shape = shape;
        job.Level = SimdLevels.AtMost(level);
        int items = checked(shape.Rows * shape.Heads);
        workers.For(items, workers.ChunkFor(items), job);
    }

    /// <summary>Rotates pairs (i, i + pairs) 16 at a time; returns how many pairs it did.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static int HalfSplit512(float* head, float* angles, int pairs)
    {
        var even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        var odd = even + Vector512<int>.One;
        int i = 0;
        for (; i + 16 <= pairs; i += 16)
        {
            var low = Vector512.Load(angles + 2 * i);
            var high = Vector512.Load(angles + 2 * i + 16);
            var cos = Avx512F.PermuteVar16x32x2(low, even, high);
            var sin = Avx512F.PermuteVar16x32x2(low, odd, high);
            var a = Vector512.Load(head + i);
            var b = Vector512.Load(head + pairs + i);
            (a * cos - b * sin).Store(head + i);
            (b * cos + a * sin).Store(head + pairs + i);
        }
        return i;
    }

    /// <summary>Rotates pairs (i, i + pairs) 8 at a time; returns how many pairs it did.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static int HalfSplit256(float* head, float* angles, int pairs)
    {
        int i = 0;
        for (; i + 8 <= pairs; i += 8)
        {
            var low = Vector256.Load(angles + 2 * i);
            var high = Vector256.Load(angles + 2 * i + 8);
            // Within each 128-bit half: (c0 c1 c4 c5 | c2 c3 c6 c7); then 64-bit blocks in order 0 2 1 3.
            var cos = Avx2.Permute4x64(Avx.Shuffle(low, high, 0b10_00_10_00).AsDouble(), 0b11_01_10_00).AsSingle();
            var sin = Avx2.Permute4x64(Avx.Shuffle(low, high, 0b11_01_11_01).AsDouble(), 0b11_01_10_00).AsSingle();
            var a = Vector256.Load(head + i);
            var b = Vector256.Load(head + pairs + i);
            (a * cos - b * sin).Store(head + i);
            (b * cos + a * sin).Store(head + pairs + i);
        }
        return i;
    }

    /// <summary>Rotates pairs (2i, 2i + 1) 8 at a time; returns how many pairs it did.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static int Interleaved512(float* head, float* angles, int pairs)
    {
        var firstOfPair = Vector512.Equals(Vector512<int>.Indices & Vector512<int>.One, Vector512<int>.Zero).AsSingle();
        int i = 0;
        for (; i + 8 <= pairs; i += 8)
        {
            var table = Vector512.Load(angles + 2 * i);
            var cos = Avx512F.Permute4x32(table, 0b10_10_00_00);
            var sin = Avx512F.Permute4x32(table, 0b11_11_01_01);
            var x = Vector512.Load(head + 2 * i);
            var swapped = Avx512F.Permute4x32(x, 0b10_11_00_01);
            var direct = x * cos;
            var crossed = swapped * sin;
            // First elements: a·cos − b·sin; second elements: b·cos + a·sin.
            Vector512.ConditionalSelect(firstOfPair, direct - crossed, direct + crossed).Store(head + 2 * i);
        }
        return i;
    }

    /// <summary>Rotates pairs (2i, 2i + 1) 4 at a time; returns how many pairs it did.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static int Interleaved256(float* head, float* angles, int pairs)
    {
        var firstOfPair = Vector256.Equals(Vector256<int>.Indices & Vector256<int>.One, Vector256<int>.Zero).AsSingle();
        int i = 0;
        for (; i + 4 <= pairs; i += 4)
        {
            var table = Vector256.Load(angles + 2 * i);
            var cos = Avx.DuplicateEvenIndexed(table);
            var sin = Avx.DuplicateOddIndexed(table);
            var x = Vector256.Load(head + 2 * i);
            var swapped = Avx.Permute(x, 0b10_11_00_01);
            var direct = x * cos;
            var crossed = swapped * sin;
            Vector256.ConditionalSelect(firstOfPair, direct - crossed, direct + crossed).Store(head + 2 * i);
        }
        return i;
    }

    /// <summary>Pairs [begin, pairs) of one head, one at a time, exactly as the reference.</summary>
    static void Scalar(float* head, float* angles, int begin, int pairs, RotaryLayout layout)
    {
        for (int i = begin; i < pairs; i++)
        {
            float cos = angles[2 * i], sin = angles[2 * i + 1];
            var (first, second) = Rotary.PairIndices(i, pairs, layout);
            float a = head[first], b = head[second];
            head[first] = Rotary.RotateFirst(a, b, cos, sin);
            head[second] = Rotary.RotateSecond(a, b, cos, sin);
        }
    }
}
