using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace IlgpuLlm.Kernels;

/// <summary>
/// Whole blocks of one format dequantized to f32 with vector instructions: the same values as
/// <see cref="QuantizedBlocks"/> (every product is exact and the one rounding is the same
/// operation, so look-up tables and integer widening give the reference's bits). Implemented by
/// one struct per format so the SIMD loops specialise per format.
/// </summary>
public unsafe interface IQuantizedBlocks
{
    static abstract QuantFormat Format { get; }

    /// <summary>Dequantizes <paramref name="count"/> consecutive blocks into count × block size floats.</summary>
    static abstract void Dequantize(SimdLevel level, byte* blocks, float* destination, long count);
}

/// <summary>
/// The SIMD CPU twin of <see cref="QuantizedLinear"/> and <see cref="QuantizedEmbedding"/>.
/// Decode (few rows) dequantizes eight weight rows at a time into a per-thread buffer and runs
/// <see cref="SimdDot"/>'s canonical dots on them; prefill (16 rows or more on AVX-512) dequantizes
/// each block's weight rows and hands them to <see cref="LinearSimd"/>'s tiles through their
/// panel. Either way the order is the f32 linear's, so the bits are the f32 linear's on the
/// dequantized weights.
/// </summary>
public static unsafe partial class QuantizedSimd
{
    /// <summary>Dequantizes whole blocks of <paramref name="format"/> at the given SIMD level.</summary>
    public static void Dequantize(SimdLevel level, QuantFormat format, byte* blocks, float* destination, long count)
    {
        level = SimdLevels.AtMost(level);
        switch (format)
        {
            case QuantFormat.Q4_0: Q4_0Blocks.Dequantize(level, blocks, destination, count); break;
            case QuantFormat.Q4_1: Q4_1Blocks.Dequantize(level, blocks, destination, count); break;
            case QuantFormat.Q5_0: Q5_0Blocks.Dequantize(level, blocks, destination, count); break;
            case QuantFormat.Q5_1: Q5_1Blocks.Dequantize(level, blocks, destination, count); break;
            case QuantFormat.Q8_0: Q8_0Blocks.Dequantize(level, blocks, destination, count); break;
            case QuantFormat.Q2_K: Q2_KBlocks.Dequantize(level, blocks, destination, count); break;
            case QuantFormat.Q3_K: Q3_KBlocks.Dequantize(level, blocks, destination, count); break;
            case QuantFormat.Q4_K: Q4_KBlocks.Dequantize(level, blocks, destination, count); break;
            case QuantFormat.Q5_K: Q5_KBlocks.Dequantize(level, blocks, destination, count); break;
            default: Q6_KBlocks.Dequantize(level, blocks, destination, count); break;
        }
    }

    /// <summary>The reusable job object a backend keeps for its quantized linear calls.</summary>
    public sealed class LinearJob : IRangeJob
    {
        internal float* X, Bias, Y;
        internal byte* W;
        internal LinearShape Shape;
        internal QuantFormat Format;
        internal SimdLevel Level;
        internal long RowBytes;

        /// <summary>Where the scratch this job grows is counted (the workers' counters).</summary>
        internal DeviceCounters Counters = new();

        /// <summary>The f32 linear's job, whose tiles and transposed x the prefill path borrows.</summary>
        internal readonly LinearSimd.Job Tiles = new();
        internal bool Tiled;

        public void Run(int start, int end)
        {
            switch (Format)
            {
                case QuantFormat.Q4_0: Run<Q4_0Blocks>(start, end); break;
                case QuantFormat.Q4_1: Run<Q4_1Blocks>(start, end); break;
                case QuantFormat.Q5_0: Run<Q5_0Blocks>(start, end); break;
                case QuantFormat.Q5_1: Run<Q5_1Blocks>(start, end); break;
                case QuantFormat.Q8_0: Run<Q8_0Blocks>(start, end); break;
                case QuantFormat.Q2_K: Run<Q2_KBlocks>(start, end); break;
                case QuantFormat.Q3_K: Run<Q3_KBlocks>(start, end); break;
                case QuantFormat.Q4_K: Run<Q4_KBlocks>(start, end); break;
                case QuantFormat.Q5_K: Run<Q5_KBlocks>(start, end); break;
                default: Run<Q6_KBlocks>(start, end); break;
            }
        }

        void Run<TBlocks>(int start, int end) where TBlocks : struct, IQuantizedBlocks
        {
            if (Tiled)
                LinearSimd.TiledPanels<QuantizedPanel<TBlocks>>(Tiles, start, end);
            else
                DecodeRows<TBlocks>(this, start, end);
        }
    }

    /// <summary>
    /// y = x·Wᵀ (+ b), W [out, in] in <paramref name="format"/>; the caller has checked the
    /// buffers (<see cref="QuantFormats.Validate(LinearShape, QuantFormat, long, long, long?, long)"/>).
    /// </summary>
    public static void Linear(CpuWorkers workers, SimdLevel level, LinearJob job, float* x, byte* w, QuantFormat format,
        float* bias, float* y, LinearShape shape)
    {
        job.X = x;
        job.W = w;
        job.Counters = workers.Counters;
        job.Format = format;
        job.Bias = bias;
        job.Y = y;
        job.Shape = shape;
        job.Level = SimdLevels.AtMost(level);
        job.RowBytes = format.RowBytes(shape.InFeatures);
        job.Tiled = job.Level == SimdLevel.Avx512 && shape.Rows >= LinearSimd.TiledFromRows;
        if (job.Tiled)
        {
            var tiles = job.Tiles;
            tiles.X = x;
            tiles.Counters = workers.Counters;
            tiles.W = w;
            tiles.Bias = bias;
            tiles.Y = y;
            tiles.Shape = shape;
            tiles.Level = job.Level;
            tiles.Tiled = true;
            LinearSimd.PackRows(tiles);
            tiles.BlockOutputs = LinearSimd.BlockOutputsFor(shape, workers.Threads);
            workers.For((shape.OutFeatures + tiles.BlockOutputs - 1) / tiles.BlockOutputs, 1, job);
        }
        else
            workers.For(shape.OutFeatures, (workers.ChunkFor(shape.OutFeatures) + DecodeGroup - 1) / DecodeGroup * DecodeGroup, job);
    }

    /// <summary>Weight rows a decode step dequantizes together (<see cref="SimdDot.Dot512x8{T}"/>'s rows).</summary>
    const int DecodeGroup = 8;

    static void DecodeRows<TBlocks>(LinearJob job, int start, int end) where TBlocks : struct, IQuantizedBlocks
    {
        var shape = job.Shape;
        int k = shape.InFeatures;
        long blocksPerRow = k / TBlocks.Format.BlockSize();
        var level = job.Level;
        float* rows = Scratch.For((long)DecodeGroup * k, job.Counters);
        int n = start;
        if (level == SimdLevel.Avx512 && shape.Rows == 1)
            n = TBlocks.Format switch
            {
                QuantFormat.Q8_0 => DecodeInRegisters<Q8_0Steps>(job, start, end),
                QuantFormat.Q4_0 => DecodeInRegisters<Q4_0Steps>(job, start, end),
                QuantFormat.Q4_K => DecodeInRegisters<Q4_KSteps>(job, start, end),
                QuantFormat.Q5_K => DecodeInRegisters<Q5_KSteps>(job, start, end),
                QuantFormat.Q6_K => DecodeInRegisters<Q6_KSteps>(job, start, end),
                _ => start,
            };
        if (level == SimdLevel.Avx512)
        {
            var dots = stackalloc float[DecodeGroup];
            for (; n + DecodeGroup <= end; n += DecodeGroup)
            {
                // Consecutive rows are consecutive blocks: one call dequantizes all eight.
                TBlocks.Dequantize(level, job.W + n * job.RowBytes, rows, DecodeGroup * blocksPerRow);
                for (int m = 0; m < shape.Rows; m++)
                {
                    SimdDot.Dot512x8<F32Vectors>(job.X + (long)m * k, (byte*)rows, 0, k, k, dots);
                    float* y = job.Y + (long)m * shape.OutFeatures + n;
                    for (int r = 0; r < DecodeGroup; r++)
                        y[r] = job.Bias != null ? dots[r] + job.Bias[n + r] : dots[r];
                }
            }
        }
        for (; n < end; n++)
        {
            TBlocks.Dequantize(level, job.W + n * job.RowBytes, rows, blocksPerRow);
            for (int m = 0; m < shape.Rows; m++)
            {
                float dot = SimdDot.Dot<F32Vectors>(level, job.X + (long)m * k, (byte*)rows, 0, k);
                job.Y[(long)m * shape.OutFeatures + n] = job.Bias != null ? dot + job.Bias[n] : dot;
            }
        }
    }

    /// <summary>A tiled block's weight rows dequantized, then widened into the panel as f32 weights.</summary>
    struct QuantizedPanel<TBlocks> : LinearSimd.IPanelSource where TBlocks : struct, IQuantizedBlocks
    {
        public static void Pack(LinearSimd.Job job, int first, int outputs, int paddedOutputs, float* panel)
        {
            int k = job.Shape.InFeatures;
            long rowBytes = TBlocks.Format.RowBytes(k);
            float* rows = Scratch.For((long)outputs * k, job.Counters);
            TBlocks.Dequantize(job.Level, job.W + first * rowBytes, rows, (long)outputs * (k / TBlocks.Format.BlockSize()));
            LinearSimd.PackPanel<F32Vectors>((byte*)rows, 0, k, outputs, paddedOutputs, k, panel);
        }
    }

    /// <summary>A thread's buffer of dequantized rows, freed when the thread that owns it has gone.</summary>
    sealed class Scratch
    {
        float* buffer;
        long capacity;

        [ThreadStatic]
        static Scratch? current;

        ~Scratch() => NativeMemory.AlignedFree(buffer);

        public static float* For(long floats, DeviceCounters counters)
        {
            var scratch = current ??= new Scratch();
            return LinearSimd.Grow(ref scratch.buffer, ref scratch.capacity, floats, counters);
        }
    }

    /// <summary>The reusable job object a backend keeps for its quantized embedding gathers.</summary>
    public sealed class EmbeddingJob : IRangeJob
    {
        internal byte* Table;
        internal int* Ids;
        internal float* Output;
        internal EmbeddingShape Shape;
        internal QuantFormat Format;
        internal SimdLevel Level;
        internal float Scale;
        internal int SegmentsPerRow;

        public void Run(int start, int end)
        {
            int width = Shape.Width, blockSize = Format.BlockSize();
            long rowBytes = Format.RowBytes(width);
            for (int item = start; item < end; item++)
            {
                int row = item / SegmentsPerRow;
                int begin = item % SegmentsPerRow * EmbeddingSimd.BlockWidth;
                int count = Math.Min(EmbeddingSimd.BlockWidth, width - begin);
                float* to = Output + (long)row * width + begin;
                Dequantize(Level, Format, Table + Ids[row] * rowBytes + begin / blockSize * Format.BlockBytes(), to, count / blockSize);
                ScaleInPlace(Level, to, count, Scale);
            }
        }
    }

    /// <summary>
    /// Gathers dequantized rows times <paramref name="scale"/>; the ids must already be validated
    /// against the vocabulary. Work items are <see cref="EmbeddingSimd.BlockWidth"/> (4096) weights
    /// of a row, whole blocks of every format.
    /// </summary>
    public static void Embedding(CpuWorkers workers, SimdLevel level, EmbeddingJob job, byte* table, QuantFormat format, int* ids,
        float* output, EmbeddingShape shape, float scale)
    {
        job.Table = table;
        job.Format = format;
        job.Ids = ids;
        job.Output = output;
        job.Shape = shape;
        job.Scale = scale;
        job.Level = SimdLevels.AtMost(level);
        job.SegmentsPerRow = (shape.Width + EmbeddingSimd.BlockWidth - 1) / EmbeddingSimd.BlockWidth;
        int items = checked(shape.Rows * job.SegmentsPerRow);
        workers.For(items, workers.ChunkFor(items), job);
    }

    /// <summary>values[i] · scale, one rounding each (a scale of 1 changes no bit).</summary>
    static void ScaleInPlace(SimdLevel level, float* values, int count, float scale)
    {
        int i = 0;
        if (level == SimdLevel.Avx512)
            for (var s = Vector512.Create(scale); i + 16 <= count; i += 16)
                (Vector512.Load(values + i) * s).Store(values + i);
        else if (level == SimdLevel.Avx2)
            for (var s = Vector256.Create(scale); i + 8 <= count; i += 8)
                (Vector256.Load(values + i) * s).Store(values + i);
        for (; i < count; i++)
            values[i] *= scale;
    }

    /// <summary>The scalar reference on whole blocks, for the levels and formats without vector code.</summary>
    internal static void Reference(QuantFormat format, byte* blocks, float* destination, long count)
    {
        int bytes = format.BlockBytes(), size = format.BlockSize();
        // Block by block: a span covers at most 2^31 bytes, a tensor may not.
        for (long b = 0; b < count; b++)
            QuantizedBlocks.Dequantize(format, new ReadOnlySpan<byte>(blocks + b * bytes, bytes), new Span<float>(destination + b * size, size));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Half(byte* at) => HalfBits.F16ToF32(Unsafe.ReadUnaligned<ushort>(at));

    /// <summary>16 bytes zero-extended to 16 int lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<int> Bytes16(byte* at) => Avx512F.ConvertToVector512Int32(Vector128.Load(at));

    /// <summary>8 bytes zero-extended to 8 int lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> Bytes8(byte* at) => Avx2.ConvertToVector256Int32(Vector128.CreateScalarUnsafe(Unsafe.ReadUnaligned<ulong>(at)).AsByte());

    /// <summary>0, 1, …, 15 as floats: the codes of a 16-entry table.</summary>
    internal static Vector512<float> Codes16 => Vector512.ConvertToSingle(Vector512<int>.Indices);
}

// One struct per format. Each AVX-512 path builds, per group of weights sharing a scale, the table
// of what each code dequantizes to (the reference's operations on the code) and looks the codes up
// with vpermps / vpermt2ps; the AVX2 paths convert the codes and apply the same operations. Formats
// without a vector path use the scalar reference (the bits are the same; only the speed differs).

public unsafe struct Q8_0Blocks : IQuantizedBlocks
{
    public static QuantFormat Format => QuantFormat.Q8_0;

    public static void Dequantize(SimdLevel level, byte* blocks, float* y, long count)
    {
        if (level == SimdLevel.Scalar)
        {
            QuantizedSimd.Reference(Format, blocks, y, count);
            return;
        }
        for (long b = 0; b < count; b++, blocks += 34, y += 32)
        {
            float d = QuantizedSimd.Half(blocks);
            sbyte* q = (sbyte*)(blocks + 2);
            if (level == SimdLevel.Avx512)
            {
                var dv = Vector512.Create(d);
                (Vector512.ConvertToSingle(Avx512F.ConvertToVector512Int32(Vector128.Load(q))) * dv).Store(y);
                (Vector512.ConvertToSingle(Avx512F.ConvertToVector512Int32(Vector128.Load(q + 16))) * dv).Store(y + 16);
            }
            else
            {
                var dv = Vector256.Create(d);
                for (int i = 0; i < 32; i += 8)
                    (Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(Vector128.CreateScalarUnsafe(Unsafe.ReadUnaligned<long>(q + i)).AsSByte())) * dv).Store(y + i);
            }
        }
    }
}

public unsafe struct Q4_0Blocks : IQuantizedBlocks
{
    public static QuantFormat Format => QuantFormat.Q4_0;

    public static void Dequantize(SimdLevel level, byte* blocks, float* y, long count)
    {
        if (level == SimdLevel.Scalar)
        {
            QuantizedSimd.Reference(Format, blocks, y, count);
            return;
        }
        for (long b = 0; b < count; b++, blocks += 18, y += 32)
        {
            float d = QuantizedSimd.Half(blocks);
            if (level == SimdLevel.Avx512)
            {
                var table = (QuantizedSimd.Codes16 - Vector512.Create(8f)) * Vector512.Create(d);
                var codes = QuantizedSimd.Bytes16(blocks + 2);
                Avx512F.PermuteVar16x32(table, codes).Store(y);
                Avx512F.PermuteVar16x32(table, Vector512.ShiftRightLogical(codes, 4)).Store(y + 16);
            }
            else
            {
                var dv = Vector256.Create(d);
                for (int i = 0; i < 16; i += 8)
                {
                    var codes = QuantizedSimd.Bytes8(blocks + 2 + i);
                    (Vector256.ConvertToSingle((codes & Vector256.Create(0x0F)) - Vector256.Create(8)) * dv).Store(y + i);
                    (Vector256.ConvertToSingle(Vector256.ShiftRightLogical(codes, 4) - Vector256.Create(8)) * dv).Store(y + 16 + i);
                }
            }
        }
    }
}

public unsafe struct Q4_1Blocks : IQuantizedBlocks
{
    public static QuantFormat Format => QuantFormat.Q4_1;

    public static void Dequantize(SimdLevel level, byte* blocks, float* y, long count)
    {
        if (level != SimdLevel.Avx512)
        {
            QuantizedSimd.Reference(Format, blocks, y, count);
            return;
        }
        for (long b = 0; b < count; b++, blocks += 20, y += 32)
        {
            var table = QuantizedSimd.Codes16 * Vector512.Create(QuantizedSimd.Half(blocks)) + Vector512.Create(QuantizedSimd.Half(blocks + 2));
            var codes = QuantizedSimd.Bytes16(blocks + 4);
            Avx512F.PermuteVar16x32(table, codes).Store(y);
            Avx512F.PermuteVar16x32(table, Vector512.ShiftRightLogical(codes, 4)).Store(y + 16);
        }
    }
}

/// <summary>The fifth bits of a Q5_0 / Q5_1 block (bit i of qh for weight i) as 16 in lanes 0–15 or 16–31.</summary>
file static class FifthBits
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> Of(uint qh, int first) =>
        Vector512.ShiftLeft(Avx512F.ShiftRightLogicalVariable(Vector512.Create(qh >> first), Vector512<uint>.Indices) & Vector512<uint>.One, 4).AsInt32();
}

public unsafe struct Q5_0Blocks : IQuantizedBlocks
{
    public static QuantFormat Format => QuantFormat.Q5_0;

    public static void Dequantize(SimdLevel level, byte* blocks, float* y, long count)
    {
        if (level != SimdLevel.Avx512)
        {
            QuantizedSimd.Reference(Format, blocks, y, count);
            return;
        }
        for (long b = 0; b < count; b++, blocks += 22, y += 32)
        {
            var d = Vector512.Create(QuantizedSimd.Half(blocks));
            var low = (QuantizedSimd.Codes16 - Vector512.Create(16f)) * d;
            var high = QuantizedSimd.Codes16 * d;
            uint qh = Unsafe.ReadUnaligned<uint>(blocks + 2);
            var codes = QuantizedSimd.Bytes16(blocks + 6);
            Avx512F.PermuteVar16x32x2(low, (codes & Vector512.Create(0x0F)) | FifthBits.Of(qh, 0), high).Store(y);
            Avx512F.PermuteVar16x32x2(low, Vector512.ShiftRightLogical(codes, 4) | FifthBits.Of(qh, 16), high).Store(y + 16);
        }
    }
}

public unsafe struct Q5_1Blocks : IQuantizedBlocks
{
    public static QuantFormat Format => QuantFormat.Q5_1;

    public static void Dequantize(SimdLevel level, byte* blocks, float* y, long count)
    {
        if (level != SimdLevel.Avx512)
        {
            QuantizedSimd.Reference(Format, blocks, y, count);
            return;
        }
        for (long b = 0; b < count; b++, blocks += 24, y += 32)
        {
            var d = Vector512.Create(QuantizedSimd.Half(blocks));
            var m = Vector512.Create(QuantizedSimd.Half(blocks + 2));
            var low = QuantizedSimd.Codes16 * d + m;
            var high = (QuantizedSimd.Codes16 + Vector512.Create(16f)) * d + m;
            uint qh = Unsafe.ReadUnaligned<uint>(blocks + 4);
            var codes = QuantizedSimd.Bytes16(blocks + 8);
            Avx512F.PermuteVar16x32x2(low, (codes & Vector512.Create(0x0F)) | FifthBits.Of(qh, 0), high).Store(y);
            Avx512F.PermuteVar16x32x2(low, Vector512.ShiftRightLogical(codes, 4) | FifthBits.Of(qh, 16), high).Store(y + 16);
        }
    }
}

public unsafe struct Q2_KBlocks : IQuantizedBlocks
{
    public static QuantFormat Format => QuantFormat.Q2_K;

    public static void Dequantize(SimdLevel level, byte* blocks, float* y, long count) =>
        QuantizedSimd.Reference(Format, blocks, y, count);
}

public unsafe struct Q3_KBlocks : IQuantizedBlocks
{
    public static QuantFormat Format => QuantFormat.Q3_K;

    public static void Dequantize(SimdLevel level, byte* blocks, float* y, long count) =>
        QuantizedSimd.Reference(Format, blocks, y, count);
}

/// <summary>The d · sc and −dmin · m of the eight groups of a Q4_K / Q5_K block.</summary>
static unsafe class KScales
{
    /// <summary>
    /// scale[j] = d · sc_j and negativeMin[j] = −(dmin · m_j): get_scale_min_k4 for all eight groups
    /// at once with ggml's 32-bit shuffle of the twelve bytes (sc in bytes 0–7, m in bytes 8–15),
    /// widened and multiplied eight at a time (each product exact, as in the reference). No
    /// stack buffer, so it inlines into the decode loops and their accumulators stay in registers.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Read(byte* block, float* scale, float* negativeMin)
    {
        const uint low6 = 0x3F3F3F3F, low4 = 0x0F0F0F0F, low2 = 0x03030303;
        uint u0 = Unsafe.ReadUnaligned<uint>(block + 4), u1 = Unsafe.ReadUnaligned<uint>(block + 8), u2 = Unsafe.ReadUnaligned<uint>(block + 12);
        var packed = Vector128.Create(
            u0 & low6,
            (u2 & low4) | (((u0 >> 6) & low2) << 4),
            u1 & low6,
            ((u2 >> 4) & low4) | (((u1 >> 6) & low2) << 4)).AsByte();
        var scales = Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(packed));
        var mins = Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(packed, 8)));
        (scales * Vector256.Create(QuantizedSimd.Half(block))).Store(scale);
        (mins * Vector256.Create(-QuantizedSimd.Half(block + 2))).Store(negativeMin);
    }
}

public unsafe struct Q4_KBlocks : IQuantizedBlocks
{
    public static QuantFormat Format => QuantFormat.Q4_K;

    public static void Dequantize(SimdLevel level, byte* blocks, float* y, long count)
    {
        if (level == SimdLevel.Scalar)
        {
            QuantizedSimd.Reference(Format, blocks, y, count);
            return;
        }
        var scale = stackalloc float[8];
        var min = stackalloc float[8];
        for (long b = 0; b < count; b++, blocks += 144, y += 256)
        {
            KScales.Read(blocks, scale, min);
            byte* q = blocks + 16;
            for (int j = 0; j < 8; j += 2, q += 32)
            {
                float* out0 = y + 32 * j, out1 = out0 + 32;
                if (level == SimdLevel.Avx512)
                {
                    // (d·sc)·q is exact, so the fused form rounds exactly as the reference's q·(d·sc) − dmin·m.
                    var table0 = Vector512.FusedMultiplyAdd(QuantizedSimd.Codes16, Vector512.Create(scale[j]), Vector512.Create(min[j]));
                    var table1 = Vector512.FusedMultiplyAdd(QuantizedSimd.Codes16, Vector512.Create(scale[j + 1]), Vector512.Create(min[j + 1]));
                    var codes0 = QuantizedSimd.Bytes16(q);
                    var codes1 = QuantizedSimd.Bytes16(q + 16);
                    Avx512F.PermuteVar16x32(table0, codes0).Store(out0);
                    Avx512F.PermuteVar16x32(table0, codes1).Store(out0 + 16);
                    Avx512F.PermuteVar16x32(table1, Vector512.ShiftRightLogical(codes0, 4)).Store(out1);
                    Avx512F.PermuteVar16x32(table1, Vector512.ShiftRightLogical(codes1, 4)).Store(out1 + 16);
                }
                else
                {
                    var s0 = Vector256.Create(scale[j]);
                    var m0 = Vector256.Create(min[j]);
                    var s1 = Vector256.Create(scale[j + 1]);
                    var m1 = Vector256.Create(min[j + 1]);
                    for (int i = 0; i < 32; i += 8)
                    {
                        var codes = QuantizedSimd.Bytes8(q + i);
                        Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(codes & Vector256.Create(0x0F)), s0, m0).Store(out0 + i);
                        Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Vector256.ShiftRightLogical(codes, 4)), s1, m1).Store(out1 + i);
                    }
                }
            }
        }
    }
}

public unsafe struct Q5_KBlocks : IQuantizedBlocks
{
    public static QuantFormat Format => QuantFormat.Q5_K;

    public static void Dequantize(SimdLevel level, byte* blocks, float* y, long count)
    {
        if (level != SimdLevel.Avx512)
        {
            QuantizedSimd.Reference(Format, blocks, y, count);
            return;
        }
        var scale = stackalloc float[8];
        var min = stackalloc float[8];
        var sixteen = Vector512.Create(16f);
        for (long b = 0; b < count; b++, blocks += 176, y += 256)
        {
            KScales.Read(blocks, scale, min);
            var high0 = QuantizedSimd.Bytes16(blocks + 16);
            var high1 = QuantizedSimd.Bytes16(blocks + 32);
            byte* q = blocks + 48;
            for (int j = 0; j < 8; j++)
            {
                var s = Vector512.Create(scale[j]);
                var m = Vector512.Create(min[j]);
                var low = Vector512.FusedMultiplyAdd(QuantizedSimd.Codes16, s, m);
                var high = Vector512.FusedMultiplyAdd(QuantizedSimd.Codes16 + sixteen, s, m);
                byte* bytes = q + 32 * (j >> 1);
                int shift = 4 * (j & 1);
                var codes0 = (Vector512.ShiftRightLogical(QuantizedSimd.Bytes16(bytes), shift) & Vector512.Create(0x0F))
                    | Vector512.ShiftLeft(Vector512.ShiftRightLogical(high0, j) & Vector512<int>.One, 4);
                var codes1 = (Vector512.ShiftRightLogical(QuantizedSimd.Bytes16(bytes + 16), shift) & Vector512.Create(0x0F))
                    | Vector512.ShiftLeft(Vector512.ShiftRightLogical(high1, j) & Vector512<int>.One, 4);
                Avx512F.PermuteVar16x32x2(low, codes0, high).Store(y + 32 * j);
                Avx512F.PermuteVar16x32x2(low, codes1, high).Store(y + 32 * j + 16);
            }
        }
    }
}

public unsafe struct Q6_KBlocks : IQuantizedBlocks
{
    public static QuantFormat Format => QuantFormat.Q6_K;

    public static void Dequantize(SimdLevel level, byte* blocks, float* y, long count)
    {
        if (level == SimdLevel.Scalar)
        {
            QuantizedSimd.Reference(Format, blocks, y, count);
            return;
        }
        for (long b = 0; b < count; b++, blocks += 210, y += 256)
        {
            float d = QuantizedSimd.Half(blocks + 208);
            sbyte* scales = (sbyte*)(blocks + 192);
            for (int n = 0; n < 2; n++)
            {
                byte* ql = blocks + 64 * n, qh = blocks + 128 + 32 * n;
                for (int quarter = 0; quarter < 4; quarter++)
                {
                    byte* low = ql + 32 * (quarter & 1);
                    int lowShift = quarter < 2 ? 0 : 4, highShift = 2 * quarter;
                    float* to = y + 128 * n + 32 * quarter;
                    int first = 8 * n + 2 * quarter;
                    if (level == SimdLevel.Avx512)
                        for (int half = 0; half < 2; half++)
                        {
                            var codes = (Vector512.ShiftRightLogical(QuantizedSimd.Bytes16(low + 16 * half), lowShift) & Vector512.Create(0x0F))
                                | Vector512.ShiftLeft(Vector512.ShiftRightLogical(QuantizedSimd.Bytes16(qh + 16 * half), highShift) & Vector512.Create(3), 4);
                            // (d·s)·(q − 32), both products exact.
                            (Vector512.ConvertToSingle(codes - Vector512.Create(32)) * Vector512.Create(d * scales[first + half])).Store(to + 16 * half);
                        }
                    else
                        for (int i = 0; i < 32; i += 8)
                        {
                            var codes = (Vector256.ShiftRightLogical(QuantizedSimd.Bytes8(low + i), lowShift) & Vector256.Create(0x0F))
                                | Vector256.ShiftLeft(Vector256.ShiftRightLogical(QuantizedSimd.Bytes8(qh + i), highShift) & Vector256.Create(3), 4);
                            (Vector256.ConvertToSingle(codes - Vector256.Create(32)) * Vector256.Create(d * scales[first + i / 16])).Store(to + i);
                        }
                }
            }
        }
    }
}
