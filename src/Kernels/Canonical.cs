using System.Runtime.CompilerServices;
using ILGPU;
using static IlgpuLlm.Kernels.ExactMath;

namespace IlgpuLlm.Kernels;

/// <summary>
/// The canonical reduction order (docs/NUMERICS.md, "Reductions"): 32 lanes; lane j accumulates
/// terms j, j+32, j+64, … in increasing order starting from +0 (−inf for a maximum); then a fixed
/// tree adds lane j+h into lane j for h = 16, 8, 4, 2, 1; the result is lane 0. The order depends
/// on the number of terms alone. Three evaluations of it exist and give the same bits: the scalar
/// one here (references), <see cref="WarpTree"/> (one lane per GPU thread) and
/// <see cref="SerialTree"/> (one GPU thread walks all 32 lanes).
/// </summary>
public static class Canonical
{
    public const int Lanes = 32;

    /// <summary>Folds 32 lane accumulators with the canonical tree; overwrites them.</summary>
    public static float SumTree(Span<float> lanes)
    {
        for (int h = Lanes / 2; h >= 1; h >>= 1)
            for (int j = 0; j < h; j++)
                lanes[j] = Add(lanes[j], lanes[j + h]);
        return lanes[0];
    }

    /// <summary>Folds 32 lane maxima with the canonical tree; overwrites them.</summary>
    public static float MaxTree(Span<float> lanes)
    {
        for (int h = Lanes / 2; h >= 1; h >>= 1)
            for (int j = 0; j < h; j++)
                lanes[j] = CanonicalMath.Max(lanes[j], lanes[j + h]);
        return lanes[0];
    }

    /// <summary>Σ a[i]·b[i], each lane fused multiply-adding its terms.</summary>
    public static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length)
            throw new ArgumentException($"dot product of lengths {a.Length} and {b.Length}");
        Span<float> lanes = stackalloc float[Lanes];
        for (int i = 0; i < a.Length; i++)
            lanes[i % Lanes] = Fma(a[i], b[i], lanes[i % Lanes]);
        return SumTree(lanes);
    }

    /// <summary>Σ x[i]², each lane fused multiply-adding its terms.</summary>
    public static float SumOfSquares(ReadOnlySpan<float> x)
    {
        Span<float> lanes = stackalloc float[Lanes];
        for (int i = 0; i < x.Length; i++)
            lanes[i % Lanes] = Fma(x[i], x[i], lanes[i % Lanes]);
        return SumTree(lanes);
    }

    /// <summary>Σ t[i].</summary>
    public static float Sum(ReadOnlySpan<float> terms)
    {
        Span<float> lanes = stackalloc float[Lanes];
        for (int i = 0; i < terms.Length; i++)
            lanes[i % Lanes] = Add(lanes[i % Lanes], terms[i]);
        return SumTree(lanes);
    }

    /// <summary>max t[i] with <see cref="CanonicalMath.Max"/>; −inf for no terms.</summary>
    public static float Max(ReadOnlySpan<float> terms)
    {
        Span<float> lanes = stackalloc float[Lanes];
        lanes.Fill(float.NegativeInfinity);
        for (int i = 0; i < terms.Length; i++)
            lanes[i % Lanes] = CanonicalMath.Max(lanes[i % Lanes], terms[i]);
        return MaxTree(lanes);
    }
}

/// <summary>
/// The canonical tree across the 32 threads of one warp, one lane per thread, with butterfly
/// shuffles: after step h every thread holds lane j + lane j⊕h, which for j &lt; h is exactly the
/// canonical "lane j + lane j+h" (addition is commutative). Every thread ends with the result.
/// Requires a group of exactly one 32-thread warp.
/// </summary>
public static class WarpTree
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(float lane)
    {
        for (int h = Canonical.Lanes / 2; h >= 1; h >>= 1)
            lane = Add(lane, Warp.ShuffleXor(lane, h));
        return lane;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Max(float lane)
    {
        for (int h = Canonical.Lanes / 2; h >= 1; h >>= 1)
        {
            float other = Warp.ShuffleXor(lane, h);
            // Lane j keeps Max(lane j, lane j+h) in canonical operand order; the upper partner
            // computes the mirror image, which is not used by lanes below h.
            lane = (Warp.LaneIdx & h) == 0 ? CanonicalMath.Max(lane, other) : CanonicalMath.Max(other, lane);
        }
        return lane;
    }
}

/// <summary>How two lanes combine in the tree: the left operand is always the lower lane.</summary>
public interface ILaneFold
{
    float Combine(float lower, float upper);
}

public struct SumFold : ILaneFold
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Combine(float lower, float upper) => Add(lower, upper);
}

public struct MaxFold : ILaneFold
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Combine(float lower, float upper) => CanonicalMath.Max(lower, upper);
}

/// <summary>Where a single thread gets the final value of lane j from.</summary>
public interface ILaneSource
{
    float Lane(int lane);
}

/// <summary>A sequence of terms that one thread folds into a lane accumulator.</summary>
public interface ITermSource
{
    /// <summary>The accumulator after term <paramref name="index"/> is folded in.</summary>
    float Accumulate(int index, float accumulator);
}

/// <summary>
/// The canonical tree evaluated by a single thread: the 32 lanes one after another, in the
/// depth-first order of the tree (lanes 0, 16, 8, 24, 4, …, the bit reversal of 0..31), merging
/// completed subtrees like a binary counter. Only five partial values are live, so no local array
/// is needed on the GPU.
/// </summary>
public static class SerialTree
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Fold<TSource, TFold>(ref TSource source)
        where TSource : struct, ILaneSource where TFold : struct, ILaneFold
    {
        var fold = default(TFold);
        float s0 = 0f, s1 = 0f, s2 = 0f, s3 = 0f, s4 = 0f;
        for (int c = 0; c < Canonical.Lanes; c++)
        {
            float v = source.Lane(ReverseLaneBits(c));
            if ((c & 1) == 0) { s0 = v; continue; }
            v = fold.Combine(s0, v);
            if ((c & 2) == 0) { s1 = v; continue; }
            v = fold.Combine(s1, v);
            if ((c & 4) == 0) { s2 = v; continue; }
            v = fold.Combine(s2, v);
            if ((c & 8) == 0) { s3 = v; continue; }
            v = fold.Combine(s3, v);
            if ((c & 16) == 0) { s4 = v; continue; }
            return fold.Combine(s4, v);
        }
        return s0; // not reached: c = 31 returns above
    }

    /// <summary>
    /// The canonical sum of <paramref name="count"/> terms by one thread. Used where the data is laid
    /// out so that neighbouring threads reduce different outputs (attention's sum over keys, threads
    /// over the head dimension).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum<T>(ref T terms, int count) where T : struct, ITermSource
    {
        var lanes = new TermLanes<T> { Terms = terms, Count = count };
        return Fold<TermLanes<T>, SumFold>(ref lanes);
    }

    struct TermLanes<T> : ILaneSource where T : struct, ITermSource
    {
        public T Terms;
        public int Count;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public float Lane(int lane)
        {
            float v = 0f;
            for (int i = lane; i < Count; i += Canonical.Lanes)
                v = Terms.Accumulate(i, v);
            return v;
        }
    }

    /// <summary>The 5-bit reversal of c: the tree's depth-first visiting order of lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int ReverseLaneBits(int c) =>
        ((c & 1) << 4) | ((c & 2) << 2) | (c & 4) | ((c & 8) >> 2) | ((c & 16) >> 4);
}

/// <summary>
/// The canonical tree evaluated by one thread over 32 lane values that a warp left in (shared)
/// memory: one barrier hands a whole warp's partial sums to one thread per output, instead of five
/// shuffles per output — which matters on ILGPU's CPU accelerator, where every shuffle is a
/// barrier across 32 OS threads. The lanes are only read.
/// </summary>
public static class StoredTree
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(ArrayView<float> lanes)
    {
        var source = new StoredLanes { Values = lanes };
        return SerialTree.Fold<StoredLanes, SumFold>(ref source);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Max(ArrayView<float> lanes)
    {
        var source = new StoredLanes { Values = lanes };
        return SerialTree.Fold<StoredLanes, MaxFold>(ref source);
    }

    struct StoredLanes : ILaneSource
    {
        public ArrayView<float> Values;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public float Lane(int lane) => Values[lane];
    }
}
