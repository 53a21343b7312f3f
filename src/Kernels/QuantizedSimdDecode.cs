using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace IlgpuLlm.Kernels;

/// <summary>
/// One block's weights dequantized into registers for the AVX-512 decode dots, one unit of
/// <see cref="UnitWeights"/> (32 or 64) at a time: unit u is weights [u·W, u·W + W), as 32-weight
/// steps of lanes 0–15 (<c>a</c>) and 16–31 (<c>b</c>) of the canonical order; a 64-weight unit
/// gives two steps (the second in <c>a1</c>, <c>b1</c>) from codes it widens once (the low and high
/// nibbles of the same bytes, the high bits shared by a group of steps). <see cref="Prepare"/>
/// turns what a row's blocks share into floats (their scales, exact products as in the
/// reference; the f16 fields widened by <see cref="FiniteHalves"/>, exact for the finite scales
/// loading validated); <see cref="Step"/> must inline into the dot's loop, so it only reads those floats
/// and the codes (a call there would push the accumulators out of registers). A step may give a
/// zero weight either sign: lanes start at +0 and +0 + (±0) = +0, so the sign of a zero weight
/// never reaches a dot.
/// </summary>
public unsafe interface IBlockSteps
{
    /// <summary>Weights and bytes per block, as the format's <see cref="IQuantizedBlocks"/> states them.</summary>
    static abstract int BlockElements { get; }

    static abstract int BlockBytes { get; }

    /// <summary>Weights per <see cref="Step"/>: 32 or 64 (a JIT-time constant in the loop).</summary>
    static abstract int UnitWeights { get; }

    /// <summary>Floats <see cref="Prepare"/> writes per block.</summary>
    static abstract int TableFloats { get; }

    /// <summary>
    /// Whether the decode prefetches the next four rows' panel while it works on this one: worth
    /// it where <see cref="Prepare"/> gathers a field from every block, so it touches every cache
    /// line of the panel before the steps do (Q8_0 decode 1.5× faster in alternating runs; no
    /// gain measured for Q4_K_M, whose steps read the codes in order).
    /// </summary>
    static abstract bool PrefetchNextRows { get; }

    /// <summary>The tables of <paramref name="count"/> consecutive blocks of a row (at most <see cref="QuantizedSimd.PanelBlocks"/>).</summary>
    static abstract void Prepare(byte* blocks, int count, float* tables);

    static abstract void Step(byte* block, float* table, int unit, out Vector512<float> a0, out Vector512<float> b0,
        out Vector512<float> a1, out Vector512<float> b1);
}

static class Rotation
{
    /// <summary>Each lane rotated right by <paramref name="bits"/> mod 32 (a count known only at run time: vprorvd).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> Rotated(Vector512<int> value, int bits) =>
        Avx512F.RotateRightVariable(value.AsUInt32(), Vector512.Create((uint)(bits & 31))).AsInt32();
}

/// <summary>
/// f16 scale fields widened the way <see cref="F16Vectors"/> widens weights: sign and magnitude
/// moved into a binary32 pattern, then multiplied by 2^112 — exact for every finite half,
/// subnormals included, and branch-free. Loading validates that every scale field is finite
/// (<see cref="BlockFormat.FindBadScale(byte*, long)"/>); the reference (<see cref="HalfBits"/>) is
/// exact for any half and stays the dequantizers'.
/// </summary>
static unsafe class FiniteHalves
{
    const float TwoTo112 = 5.192296858534828e33f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Of(byte* at) =>
        BitConverter.Int32BitsToSingle((*(short*)at << 13) & unchecked((int)0x8FFFE000)) * TwoTo112;

    /// <summary>The f16 field at the start of each of <paramref name="count"/> blocks <paramref name="stride"/> bytes apart.</summary>
    public static void OfBlocks(byte* blocks, int stride, int count, float* destination)
    {
        int b = 0;
        if (count == 16)
        {
            // Two gathers of the sixteen fields (and the code bytes after them, shifted out).
            var offsets = Vector256<int>.Indices * Vector256.Create(stride);
            var words = Vector512.Create(Avx2.GatherVector256((int*)blocks, offsets, 1), Avx2.GatherVector256((int*)(blocks + 8 * stride), offsets, 1));
            var bits = Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(words, 16), 3) & Vector512.Create(unchecked((int)0x8FFFE000));
            (bits.AsSingle() * Vector512.Create(TwoTo112)).Store(destination);
            return;
        }
        for (; b < count; b++)
            destination[b] = Of(blocks + b * stride);
    }
}

public unsafe struct Q8_0Steps : IBlockSteps
{
    public static int BlockElements => 32;
    public static int BlockBytes => 34;
    public static int UnitWeights => 32;
    public static int TableFloats => 1;
    public static bool PrefetchNextRows => true;

    public static void Prepare(byte* blocks, int count, float* tables) => FiniteHalves.OfBlocks(blocks, 34, count, tables);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Step(byte* block, float* table, int unit, out Vector512<float> a0, out Vector512<float> b0,
        out Vector512<float> a1, out Vector512<float> b1)
    {
        // d · q is exact.
        var d = Vector512.Create(table[0]);
        a0 = Vector512.ConvertToSingle(Avx512F.ConvertToVector512Int32(Vector128.Load((sbyte*)block + 2))) * d;
        b0 = Vector512.ConvertToSingle(Avx512F.ConvertToVector512Int32(Vector128.Load((sbyte*)block + 18))) * d;
        a1 = b1 = default;
    }
}

public unsafe struct Q4_0Steps : IBlockSteps
{
    public static int BlockElements => 32;
    public static int BlockBytes => 18;
    public static int UnitWeights => 32;
    public static int TableFloats => 1;
    public static bool PrefetchNextRows => true;

    public static void Prepare(byte* blocks, int count, float* tables) => FiniteHalves.OfBlocks(blocks, 18, count, tables);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Step(byte* block, float* table, int unit, out Vector512<float> a0, out Vector512<float> b0,
        out Vector512<float> a1, out Vector512<float> b1)
    {
        // vpermps reads only the low four bits of each index: the low nibbles need no mask.
        var values = (QuantizedSimd.Codes16 - Vector512.Create(8f)) * Vector512.Create(table[0]);
        var codes = QuantizedSimd.Bytes16(block + 2);
        a0 = Avx512F.PermuteVar16x32(values, codes);
        b0 = Avx512F.PermuteVar16x32(values, Vector512.ShiftRightLogical(codes, 4));
        a1 = b1 = default;
    }
}

/// <summary>Q4_K: table = d · sc of the eight groups, then −dmin · m. Unit u: groups 2u and 2u + 1, the low and high nibbles of 32 bytes.</summary>
public unsafe struct Q4_KSteps : IBlockSteps
{
    public static int BlockElements => 256;
    public static int BlockBytes => 144;
    public static int UnitWeights => 64;
    public static int TableFloats => 16;
    public static bool PrefetchNextRows => false;

    public static void Prepare(byte* blocks, int count, float* tables)
    {
        for (int b = 0; b < count; b++, blocks += 144, tables += 16)
            KScales.Read(blocks, FiniteHalves.Of(blocks), FiniteHalves.Of(blocks + 2), tables, tables + 8);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Step(byte* block, float* table, int unit, out Vector512<float> a0, out Vector512<float> b0,
        out Vector512<float> a1, out Vector512<float> b1)
    {
        byte* bytes = block + 16 + 32 * unit;
        var low = Vector512.FusedMultiplyAdd(Vector512.Create(table[2 * unit]), QuantizedSimd.Codes16, Vector512.Create(table[8 + 2 * unit]));
        var high = Vector512.FusedMultiplyAdd(Vector512.Create(table[2 * unit + 1]), QuantizedSimd.Codes16, Vector512.Create(table[9 + 2 * unit]));
        var codes0 = QuantizedSimd.Bytes16(bytes);
        var codes1 = QuantizedSimd.Bytes16(bytes + 16);
        // vpermps reads only the low four bits of each index: the low nibbles need no mask.
        a0 = Avx512F.PermuteVar16x32(low, codes0);
        b0 = Avx512F.PermuteVar16x32(low, codes1);
        a1 = Avx512F.PermuteVar16x32(high, Vector512.ShiftRightLogical(codes0, 4));
        b1 = Avx512F.PermuteVar16x32(high, Vector512.ShiftRightLogical(codes1, 4));
    }
}

/// <summary>Q5_K: as Q4_K, with 32-entry tables whose upper half is the fifth bit's.</summary>
public unsafe struct Q5_KSteps : IBlockSteps
{
    public static int BlockElements => 256;
    public static int BlockBytes => 176;
    public static int UnitWeights => 64;
    public static int TableFloats => 16;
    public static bool PrefetchNextRows => false;

    public static void Prepare(byte* blocks, int count, float* tables)
    {
        for (int b = 0; b < count; b++, blocks += 176, tables += 16)
            KScales.Read(blocks, FiniteHalves.Of(blocks), FiniteHalves.Of(blocks + 2), tables, tables + 8);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Step(byte* block, float* table, int unit, out Vector512<float> a0, out Vector512<float> b0,
        out Vector512<float> a1, out Vector512<float> b1)
    {
        byte* bytes = block + 48 + 32 * unit;
        var sixteen = Vector512.Create(16f);
        var s0 = Vector512.Create(table[2 * unit]);
        var m0 = Vector512.Create(table[8 + 2 * unit]);
        var s1 = Vector512.Create(table[2 * unit + 1]);
        var m1 = Vector512.Create(table[9 + 2 * unit]);
        var codes0 = QuantizedSimd.Bytes16(bytes);
        var codes1 = QuantizedSimd.Bytes16(bytes + 16);
        var high0 = QuantizedSimd.Bytes16(block + 16);
        var high1 = QuantizedSimd.Bytes16(block + 32);
        // Index bits 0–3 the nibble, bit 4 the group's bit of qh rotated there (0xCA: mask ? nibble : rotated);
        // vpermt2ps reads the low five bits.
        var nibble = Vector512.Create(0x0F);
        int g = 2 * unit;
        a0 = Avx512F.PermuteVar16x32x2(Vector512.FusedMultiplyAdd(s0, QuantizedSimd.Codes16, m0),
            Avx512F.TernaryLogic(nibble, codes0, Rotation.Rotated(high0, (g + 28)), 0xCA),
            Vector512.FusedMultiplyAdd(s0, QuantizedSimd.Codes16 + sixteen, m0));
        b0 = Avx512F.PermuteVar16x32x2(Vector512.FusedMultiplyAdd(s0, QuantizedSimd.Codes16, m0),
            Avx512F.TernaryLogic(nibble, codes1, Rotation.Rotated(high1, (g + 28)), 0xCA),
            Vector512.FusedMultiplyAdd(s0, QuantizedSimd.Codes16 + sixteen, m0));
        a1 = Avx512F.PermuteVar16x32x2(Vector512.FusedMultiplyAdd(s1, QuantizedSimd.Codes16, m1),
            Avx512F.TernaryLogic(nibble, Vector512.ShiftRightLogical(codes0, 4), Rotation.Rotated(high0, (g + 29)), 0xCA),
            Vector512.FusedMultiplyAdd(s1, QuantizedSimd.Codes16 + sixteen, m1));
        b1 = Avx512F.PermuteVar16x32x2(Vector512.FusedMultiplyAdd(s1, QuantizedSimd.Codes16, m1),
            Avx512F.TernaryLogic(nibble, Vector512.ShiftRightLogical(codes1, 4), Rotation.Rotated(high1, (g + 29)), 0xCA),
            Vector512.FusedMultiplyAdd(s1, QuantizedSimd.Codes16 + sixteen, m1));
    }
}

/// <summary>
/// Q6_K: table = d · s of the sixteen groups of 16, then −32 · d · s. Unit u: quarters 2(u mod 2)
/// and 2(u mod 2) + 1 of half u / 2 (ggml's q1…q4), which share their high bits' bytes.
/// </summary>
public unsafe struct Q6_KSteps : IBlockSteps
{
    public static int BlockElements => 256;
    public static int BlockBytes => 210;
    public static int UnitWeights => 64;
    public static int TableFloats => 32;
    public static bool PrefetchNextRows => false;

    public static void Prepare(byte* blocks, int count, float* tables)
    {
        for (int b = 0; b < count; b++, blocks += 210, tables += 32)
        {
            // d · s for the sixteen signed scales at once, then −32 · d · s (both exact).
            var ds = Vector512.ConvertToSingle(Avx512F.ConvertToVector512Int32(Vector128.Load((sbyte*)blocks + 192)))
                * Vector512.Create(FiniteHalves.Of(blocks + 208));
            ds.Store(tables);
            (ds * Vector512.Create(-32f)).Store(tables + 16);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Step(byte* block, float* table, int unit, out Vector512<float> a0, out Vector512<float> b0,
        out Vector512<float> a1, out Vector512<float> b1)
    {
        int n = unit >> 1, first = 2 * (unit & 1);
        byte* ql = block + 64 * n;
        var high0 = QuantizedSimd.Bytes16(block + 128 + 32 * n);
        var high1 = QuantizedSimd.Bytes16(block + 128 + 32 * n + 16);
        a0 = Weights(Low(ql, first, 0), high0, first, table, 8 * n + 2 * first);
        b0 = Weights(Low(ql, first, 16), high1, first, table, 8 * n + 2 * first + 1);
        a1 = Weights(Low(ql, first + 1, 0), high0, first + 1, table, 8 * n + 2 * first + 2);
        b1 = Weights(Low(ql, first + 1, 16), high1, first + 1, table, 8 * n + 2 * first + 3);
    }

    /// <summary>The four low bits of quarter <paramref name="quarter"/>'s codes, bytes [at, at + 16) of its 32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<int> Low(byte* ql, int quarter, int at)
    {
        var bytes = QuantizedSimd.Bytes16(ql + 32 * (quarter & 1) + at);
        return quarter < 2 ? bytes & Vector512.Create(0x0F) : Vector512.ShiftRightLogical(bytes, 4);
    }

    /// <summary>
    /// (d·s)·(q − 32) as q·(d·s) − 32·(d·s): q = low | the quarter's two bits of qh rotated to bits
    /// 4–5 (0xF8: low | (rotated &amp; 0x30)); both products exact, so the one rounding gives the
    /// exact weight (a zero weight as +0).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Weights(Vector512<int> low, Vector512<int> high, int quarter, float* table, int group)
    {
        var codes = Avx512F.TernaryLogic(low, Rotation.Rotated(high, (2 * quarter + 28)), Vector512.Create(0x30), 0xF8);
        return Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(codes), Vector512.Create(table[group]), Vector512.Create(table[16 + group]));
    }
}

public static unsafe partial class QuantizedSimd
{
    /// <summary>Blocks of each row whose scales are prepared before their steps run.</summary>
    internal const int PanelBlocks = 16;

    /// <summary>
    /// Four canonical dots of x with four consecutive quantized rows, each exactly as
    /// <see cref="SimdDot.Dot512{T}"/> computes it on the dequantized row. Panel by panel: first
    /// every block's scales are prepared into a table (calls allowed), then
    /// <see cref="Accumulate4{TSteps}"/> dequantizes each 32-weight step of each row into
    /// registers and folds it into that row's two lane accumulators in increasing k. Four rows
    /// give eight independent accumulator chains, enough to hide the FMA latency, and share each x
    /// load.
    /// </summary>
    static void Dot4<TSteps>(float* x, byte* w, long rowBytes, int k, float* results) where TSteps : struct, IBlockSteps
    {
        var accumulators = stackalloc Vector512<float>[8];
        for (int i = 0; i < 8; i++)
            accumulators[i] = Vector512<float>.Zero;
        int blockBytes = TSteps.BlockBytes, blockSize = TSteps.BlockElements, tableFloats = TSteps.TableFloats;
        var tables = stackalloc float[4 * PanelBlocks * 32];
        int blocks = k / blockSize;
        for (int first = 0; first < blocks; first += PanelBlocks)
        {
            int count = Math.Min(PanelBlocks, blocks - first);
            if (TSteps.PrefetchNextRows)
            {
                // The same panel of the next four rows, one group ahead: the rows are read a panel
                // of each in turn, a pattern the hardware prefetchers follow poorly. A prefetch
                // past the last row never faults.
                byte* ahead = w + 4 * rowBytes + (long)first * blockBytes;
                for (int r = 0; r < 4; r++)
                    for (long line = 0; line < (long)count * blockBytes; line += 64)
                        Sse.Prefetch0(ahead + r * rowBytes + line);
            }
            for (int r = 0; r < 4; r++)
                TSteps.Prepare(w + r * rowBytes + (long)first * blockBytes, count, tables + r * PanelBlocks * tableFloats);
            Accumulate4<TSteps>(x + first * blockSize, w + (long)first * blockBytes, rowBytes, blockBytes, count, tables, accumulators);
        }
        for (int r = 0; r < 4; r++)
            results[r] = SimdTree.Sum(accumulators[2 * r], accumulators[2 * r + 1]);
    }

    /// <summary>The units of <paramref name="count"/> blocks of four rows, with no call inside the loop.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Accumulate4<TSteps>(float* x, byte* w, long rowBytes, int blockBytes, int count, float* tables, Vector512<float>* accumulators)
        where TSteps : struct, IBlockSteps
    {
        var a0 = accumulators[0]; var b0 = accumulators[1];
        var a1 = accumulators[2]; var b1 = accumulators[3];
        var a2 = accumulators[4]; var b2 = accumulators[5];
        var a3 = accumulators[6]; var b3 = accumulators[7];
        int unitWeights = TSteps.UnitWeights, units = TSteps.BlockElements / unitWeights, tableFloats = TSteps.TableFloats;
        bool twoSteps = unitWeights == 64;
        int rowTable = PanelBlocks * tableFloats;
        for (int b = 0; b < count; b++)
        {
            byte* w0 = w + (long)b * blockBytes, w1 = w0 + rowBytes, w2 = w1 + rowBytes, w3 = w2 + rowBytes;
            float* t0 = tables + b * tableFloats, t1 = t0 + rowTable, t2 = t1 + rowTable, t3 = t2 + rowTable;
            float* xb = x + b * TSteps.BlockElements;
            for (int u = 0; u < units; u++)
            {
                float* xu = xb + unitWeights * u;
                var xl = Vector512.Load(xu);
                var xh = Vector512.Load(xu + 16);
                TSteps.Step(w0, t0, u, out var l0, out var h0, out var l0n, out var h0n);
                a0 = Vector512.FusedMultiplyAdd(xl, l0, a0);
                b0 = Vector512.FusedMultiplyAdd(xh, h0, b0);
                TSteps.Step(w1, t1, u, out var l1, out var h1, out var l1n, out var h1n);
                a1 = Vector512.FusedMultiplyAdd(xl, l1, a1);
                b1 = Vector512.FusedMultiplyAdd(xh, h1, b1);
                TSteps.Step(w2, t2, u, out var l2, out var h2, out var l2n, out var h2n);
                a2 = Vector512.FusedMultiplyAdd(xl, l2, a2);
                b2 = Vector512.FusedMultiplyAdd(xh, h2, b2);
                TSteps.Step(w3, t3, u, out var l3, out var h3, out var l3n, out var h3n);
                a3 = Vector512.FusedMultiplyAdd(xl, l3, a3);
                b3 = Vector512.FusedMultiplyAdd(xh, h3, b3);
                if (twoSteps)
                {
                    // The unit's second step: each lane's next k, after the first step's.
                    xl = Vector512.Load(xu + 32);
                    xh = Vector512.Load(xu + 48);
                    a0 = Vector512.FusedMultiplyAdd(xl, l0n, a0);
                    b0 = Vector512.FusedMultiplyAdd(xh, h0n, b0);
                    a1 = Vector512.FusedMultiplyAdd(xl, l1n, a1);
                    b1 = Vector512.FusedMultiplyAdd(xh, h1n, b1);
                    a2 = Vector512.FusedMultiplyAdd(xl, l2n, a2);
                    b2 = Vector512.FusedMultiplyAdd(xh, h2n, b2);
                    a3 = Vector512.FusedMultiplyAdd(xl, l3n, a3);
                    b3 = Vector512.FusedMultiplyAdd(xh, h3n, b3);
                }
            }
        }
        accumulators[0] = a0; accumulators[1] = b0;
        accumulators[2] = a1; accumulators[3] = b1;
        accumulators[4] = a2; accumulators[5] = b2;
        accumulators[6] = a3; accumulators[7] = b3;
    }

    /// <summary>One-row AVX-512 decode over outputs [start, end) with register dequantization, four rows at a time.</summary>
    internal static int DecodeInRegisters<TSteps>(LinearJob job, int start, int end) where TSteps : struct, IBlockSteps
    {
        var dots = stackalloc float[4];
        int n = start;
        for (; n + 4 <= end; n += 4)
        {
            Dot4<TSteps>(job.X, job.W + n * job.RowBytes, job.RowBytes, job.Shape.InFeatures, dots);
            for (int r = 0; r < 4; r++)
                job.Y[n + r] = job.Bias != null ? dots[r] + job.Bias[n + r] : dots[r];
        }
        return n;
    }
}
