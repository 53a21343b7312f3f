using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace IlgpuLlm.Kernels;

/// <summary>
/// One block's weights, 32 at a time, dequantized into registers for the AVX-512 decode dots:
/// step s of a block is weights [32s, 32s + 32), lanes 0–15 and 16–31 of the canonical order.
/// <see cref="Prepare"/> turns what the block's steps share into floats (its scales, exact
/// products as in the reference); <see cref="Step"/> must inline into the dot's loop, so it only
/// reads those floats and the codes (a call there would push the accumulators out of registers).
/// </summary>
public unsafe interface IBlockSteps
{
    static abstract QuantFormat Format { get; }

    /// <summary>Floats <see cref="Prepare"/> writes per block.</summary>
    static abstract int TableFloats { get; }

    static abstract void Prepare(byte* block, float* table);

    static abstract void Step(byte* block, float* table, int step, out Vector512<float> low, out Vector512<float> high);
}

public unsafe struct Q8_0Steps : IBlockSteps
{
    public static QuantFormat Format => QuantFormat.Q8_0;
    public static int TableFloats => 1;

    public static void Prepare(byte* block, float* table) => table[0] = QuantizedSimd.Half(block);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Step(byte* block, float* table, int step, out Vector512<float> low, out Vector512<float> high)
    {
        var d = Vector512.Create(table[0]);
        low = Vector512.ConvertToSingle(Avx512F.ConvertToVector512Int32(Vector128.Load((sbyte*)block + 2))) * d;
        high = Vector512.ConvertToSingle(Avx512F.ConvertToVector512Int32(Vector128.Load((sbyte*)block + 18))) * d;
    }
}

public unsafe struct Q4_0Steps : IBlockSteps
{
    public static QuantFormat Format => QuantFormat.Q4_0;
    public static int TableFloats => 1;

    public static void Prepare(byte* block, float* table) => table[0] = QuantizedSimd.Half(block);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Step(byte* block, float* table, int step, out Vector512<float> low, out Vector512<float> high)
    {
        var values = (QuantizedSimd.Codes16 - Vector512.Create(8f)) * Vector512.Create(table[0]);
        var codes = QuantizedSimd.Bytes16(block + 2);
        low = Avx512F.PermuteVar16x32(values, codes);
        high = Avx512F.PermuteVar16x32(values, Vector512.ShiftRightLogical(codes, 4));
    }
}

/// <summary>Q4_K: table = d · sc of the eight groups, then −dmin · m.</summary>
public unsafe struct Q4_KSteps : IBlockSteps
{
    public static QuantFormat Format => QuantFormat.Q4_K;
    public static int TableFloats => 16;

    public static void Prepare(byte* block, float* table) => KScales.Read(block, table, table + 8);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Step(byte* block, float* table, int step, out Vector512<float> low, out Vector512<float> high)
    {
        // Steps 2p and 2p + 1 are the low and high nibbles of the same 32 bytes.
        byte* bytes = block + 16 + 32 * (step >> 1);
        int shift = 4 * (step & 1);
        var values = Vector512.FusedMultiplyAdd(QuantizedSimd.Codes16, Vector512.Create(table[step]), Vector512.Create(table[8 + step]));
        low = Avx512F.PermuteVar16x32(values, Vector512.ShiftRightLogical(QuantizedSimd.Bytes16(bytes), shift));
        high = Avx512F.PermuteVar16x32(values, Vector512.ShiftRightLogical(QuantizedSimd.Bytes16(bytes + 16), shift));
    }
}

/// <summary>Q5_K: as Q4_K, with a 32-entry table for the fifth bit.</summary>
public unsafe struct Q5_KSteps : IBlockSteps
{
    public static QuantFormat Format => QuantFormat.Q5_K;
    public static int TableFloats => 16;

    public static void Prepare(byte* block, float* table) => KScales.Read(block, table, table + 8);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Step(byte* block, float* table, int step, out Vector512<float> low, out Vector512<float> high)
    {
        byte* bytes = block + 48 + 32 * (step >> 1);
        int shift = 4 * (step & 1);
        var s = Vector512.Create(table[step]);
        var m = Vector512.Create(table[8 + step]);
        var lowValues = Vector512.FusedMultiplyAdd(QuantizedSimd.Codes16, s, m);
        var highValues = Vector512.FusedMultiplyAdd(QuantizedSimd.Codes16 + Vector512.Create(16f), s, m);
        var nibble = Vector512.Create(0x0F);
        var codes0 = (Vector512.ShiftRightLogical(QuantizedSimd.Bytes16(bytes), shift) & nibble)
            | Vector512.ShiftLeft(Vector512.ShiftRightLogical(QuantizedSimd.Bytes16(block + 16), step) & Vector512<int>.One, 4);
        var codes1 = (Vector512.ShiftRightLogical(QuantizedSimd.Bytes16(bytes + 16), shift) & nibble)
            | Vector512.ShiftLeft(Vector512.ShiftRightLogical(QuantizedSimd.Bytes16(block + 32), step) & Vector512<int>.One, 4);
        low = Avx512F.PermuteVar16x32x2(lowValues, codes0, highValues);
        high = Avx512F.PermuteVar16x32x2(lowValues, codes1, highValues);
    }
}

/// <summary>Q6_K: table = d · s of the sixteen groups of 16.</summary>
public unsafe struct Q6_KSteps : IBlockSteps
{
    public static QuantFormat Format => QuantFormat.Q6_K;
    public static int TableFloats => 16;

    public static void Prepare(byte* block, float* table)
    {
        float d = QuantizedSimd.Half(block + 208);
        sbyte* scales = (sbyte*)block + 192;
        for (int i = 0; i < 16; i++)
            table[i] = d * scales[i];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Step(byte* block, float* table, int step, out Vector512<float> low, out Vector512<float> high)
    {
        // Step s: half n = s / 4 of the block, quarter s % 4 (ggml's q1…q4); groups 2s and 2s + 1.
        int n = step >> 2, quarter = step & 3;
        byte* ql = block + 64 * n + 32 * (quarter & 1);
        byte* qh = block + 128 + 32 * n;
        int lowShift = (quarter >> 1) * 4, highShift = 2 * quarter;
        var nibble = Vector512.Create(0x0F);
        var two = Vector512.Create(3);
        var offset = Vector512.Create(32);
        var codes0 = (Vector512.ShiftRightLogical(QuantizedSimd.Bytes16(ql), lowShift) & nibble)
            | Vector512.ShiftLeft(Vector512.ShiftRightLogical(QuantizedSimd.Bytes16(qh), highShift) & two, 4);
        var codes1 = (Vector512.ShiftRightLogical(QuantizedSimd.Bytes16(ql + 16), lowShift) & nibble)
            | Vector512.ShiftLeft(Vector512.ShiftRightLogical(QuantizedSimd.Bytes16(qh + 16), highShift) & two, 4);
        low = Vector512.ConvertToSingle(codes0 - offset) * Vector512.Create(table[2 * step]);
        high = Vector512.ConvertToSingle(codes1 - offset) * Vector512.Create(table[2 * step + 1]);
    }
}

public static unsafe partial class QuantizedSimd
{
    /// <summary>Blocks of each row whose scales are prepared before their steps run.</summary>
    const int PanelBlocks = 16;

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
        int blockBytes = TSteps.Format.BlockBytes(), blockSize = TSteps.Format.BlockSize(), tableFloats = TSteps.TableFloats;
        var tables = stackalloc float[4 * PanelBlocks * 16];
        int blocks = k / blockSize;
        for (int first = 0; first < blocks; first += PanelBlocks)
        {
            int count = Math.Min(PanelBlocks, blocks - first);
            for (int r = 0; r < 4; r++)
                for (int b = 0; b < count; b++)
                    TSteps.Prepare(w + r * rowBytes + (long)(first + b) * blockBytes, tables + (r * PanelBlocks + b) * tableFloats);
            Accumulate4<TSteps>(x + first * blockSize, w + (long)first * blockBytes, rowBytes, blockBytes, count, tables, accumulators);
        }
        for (int r = 0; r < 4; r++)
            results[r] = SimdTree.Sum(accumulators[2 * r], accumulators[2 * r + 1]);
    }

    /// <summary>The steps of <paramref name="count"/> blocks of four rows, with no call inside the loop.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Accumulate4<TSteps>(float* x, byte* w, long rowBytes, int blockBytes, int count, float* tables, Vector512<float>* accumulators)
        where TSteps : struct, IBlockSteps
    {
        var a0 = accumulators[0]; var b0 = accumulators[1];
        var a1 = accumulators[2]; var b1 = accumulators[3];
        var a2 = accumulators[4]; var b2 = accumulators[5];
        var a3 = accumulators[6]; var b3 = accumulators[7];
        // Block size is 32 or 256 (a JIT-time constant), so this is no call.
        int steps = TSteps.Format.BlockSize() / 32, tableFloats = TSteps.TableFloats;
        int rowTable = PanelBlocks * tableFloats;
        for (int b = 0; b < count; b++)
        {
            byte* w0 = w + (long)b * blockBytes, w1 = w0 + rowBytes, w2 = w1 + rowBytes, w3 = w2 + rowBytes;
            float* t0 = tables + b * tableFloats, t1 = t0 + rowTable, t2 = t1 + rowTable, t3 = t2 + rowTable;
            float* xb = x + b * steps * 32;
            for (int s = 0; s < steps; s++)
            {
                var xl = Vector512.Load(xb + 32 * s);
                var xh = Vector512.Load(xb + 32 * s + 16);
                TSteps.Step(w0, t0, s, out var l0, out var h0);
                a0 = Vector512.FusedMultiplyAdd(xl, l0, a0);
                b0 = Vector512.FusedMultiplyAdd(xh, h0, b0);
                TSteps.Step(w1, t1, s, out var l1, out var h1);
                a1 = Vector512.FusedMultiplyAdd(xl, l1, a1);
                b1 = Vector512.FusedMultiplyAdd(xh, h1, b1);
                TSteps.Step(w2, t2, s, out var l2, out var h2);
                a2 = Vector512.FusedMultiplyAdd(xl, l2, a2);
                b2 = Vector512.FusedMultiplyAdd(xh, h2, b2);
                TSteps.Step(w3, t3, s, out var l3, out var h3);
                a3 = Vector512.FusedMultiplyAdd(xl, l3, a3);
                b3 = Vector512.FusedMultiplyAdd(xh, h3, b3);
            }
        }
        accumulators[0] = a0; accumulators[1] = b0;
        accumulators[2] = a1; accumulators[3] = b1;
        accumulators[4] = a2; accumulators[5] = b2;
        accumulators[6] = a3; accumulators[7] = b3;
    }

    /// <summary>One-row AVX-512 decode over outputs [start, end) with register dequantization, four rows at a time.</summary>
    static int DecodeInRegisters<TSteps>(LinearJob job, int start, int end) where TSteps : struct, IBlockSteps
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
