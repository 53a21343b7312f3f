using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace IlgpuLlm.Kernels;

/// <summary>
/// Prefill (many rows) of <see cref="LinearSimd"/> on AVX-512. The canonical order keeps 32
/// separate lanes per output (lane j takes k = j, j+32, … in increasing k, then the tree), and a
/// kernel that puts those lanes in one vector must load a vector of x and a vector of w for every
/// 16 multiply-adds: about 37 bytes per multiply-add cycle, more than L2 delivers. So this path
/// turns the vectors the other way: one vector holds the same lane of 16 rows, x is transposed
/// once per call into that layout, and each weight is broadcast from a widened panel. A register
/// tile covers 16 rows × 6 outputs × 4 lanes (24 accumulators) and needs one x vector per six
/// multiply-adds. Every lane still takes its own k values in increasing order and the tree is the
/// same, so the bits equal the one-row path's; only the layout changed.
/// </summary>
public static unsafe partial class LinearSimd
{
    /// <summary>Rows from which the tiled path beats one dot product per output.</summary>
    public const int TiledFromRows = 16;

    /// <summary>Outputs per register tile.</summary>
    const int TileOutputs = 6;

    /// <summary>Lanes per register tile; the 32 lanes are walked as 8 lane groups.</summary>
    const int TileLanes = 4;

    const int LaneGroups = 32 / TileLanes;

    /// <summary>Rows per vector.</summary>
    const int RowGroup = 16;

    /// <summary>
    /// Floats of widened weights a thread packs per block (1 MiB, its share of L2). The panel
    /// holds the block's weights for the whole k, so a tile's accumulators stay in registers from
    /// the first k to the last; a wider block reads the transposed x fewer times.
    /// </summary>
    const long PanelBudget = 1 << 18;

    /// <summary>
    /// Outputs per block: whole tiles, few enough that the panel fits its budget, in a number of
    /// blocks that the threads share evenly.
    /// </summary>
    internal static int BlockOutputsFor(LinearShape shape, int threads)
    {
        int tiles = (shape.OutFeatures + TileOutputs - 1) / TileOutputs;
        long panelFloatsPerTile = (long)StepsOf(shape.InFeatures) * 32 * TileOutputs;
        long budgetTiles = Math.Max(1, PanelBudget / panelFloatsPerTile);
        long blocks = (tiles + budgetTiles - 1) / budgetTiles;
        blocks = (blocks + threads - 1) / threads * threads;
        return (int)((tiles + blocks - 1) / blocks) * TileOutputs;
    }

    /// <summary>A thread's panel and accumulators, freed when the thread that owns them has gone.</summary>
    sealed class TileScratch
    {
        public float* Panel;
        public long PanelFloats;
        public float* Accumulators;
        public long AccumulatorFloats;

        ~TileScratch()
        {
            NativeMemory.AlignedFree(Panel);
            NativeMemory.AlignedFree(Accumulators);
        }

        public float* PanelFor(long floats, DeviceCounters counters) => Grow(ref Panel, ref PanelFloats, floats, counters);

        public float* AccumulatorsFor(long floats, DeviceCounters counters) => Grow(ref Accumulators, ref AccumulatorFloats, floats, counters);
    }

    /// <summary>A 64-byte aligned native buffer of at least <paramref name="floats"/>, reallocated only to grow.</summary>
    internal static float* Grow(ref float* buffer, ref long capacity, long floats, DeviceCounters counters)
    {
        if (floats > capacity)
        {
            counters.Allocation();
            NativeMemory.AlignedFree(buffer);
            buffer = (float*)NativeMemory.AlignedAlloc((nuint)(floats * 4), 64);
            capacity = floats;
        }
        return buffer;
    }

    [ThreadStatic]
    static TileScratch? tileScratch;

    /// <summary>32-wide k steps of a row of length <paramref name="k"/>, the last one partial when k is not a multiple of 32.</summary>
    static int StepsOf(int k) => (k + 31) >> 5;

    /// <summary>
    /// x transposed into row groups: group g holds, for lane group q, step s and lane jj, the 16
    /// rows' values at k = 32s + 4q + jj, zero beyond the row's end and beyond the last row.
    /// Owned by the job between calls.
    /// </summary>
    internal static void PackRows(Job job)
    {
        var shape = job.Shape;
        int k = shape.InFeatures, steps = StepsOf(k);
        int groups = (shape.Rows + RowGroup - 1) / RowGroup;
        long groupFloats = (long)steps * 32 * RowGroup;
        long floats = groups * groupFloats;
        Grow(ref job.Packed, ref job.PackedCapacity, floats, job.Counters);
        // Written in the packed order, so the stores stream; each store gathers one k of 16 rows.
        float* destination = job.Packed;
        for (int g = 0; g < groups; g++)
        {
            int rows = Math.Min(RowGroup, shape.Rows - g * RowGroup);
            float* x = job.X + (long)g * RowGroup * k;
            for (int q = 0; q < LaneGroups; q++)
                for (int s = 0; s < steps; s++)
                    for (int jj = 0; jj < TileLanes; jj++, destination += RowGroup)
                    {
                        int kk = s * 32 + q * TileLanes + jj;
                        int r = 0;
                        if (kk < k)
                            for (; r < rows; r++)
                                destination[r] = x[(long)r * k + kk];
                        for (; r < RowGroup; r++)
                            destination[r] = 0f;
                    }
        }
    }

    /// <summary>Fills a block's panel with the widened weights of outputs [first, first + outputs).</summary>
    internal interface IPanelSource
    {
        static abstract void Pack(Job job, int first, int outputs, int paddedOutputs, float* panel);
    }

    /// <summary>Weights stored as f32, f16 or bf16, widened straight into the panel.</summary>
    struct StoredPanel<T> : IPanelSource where T : struct, IStoredVectors
    {
        public static void Pack(Job job, int first, int outputs, int paddedOutputs, float* panel)
        {
            int k = job.Shape.InFeatures;
            PackPanel<T>(job.W, (long)first * k, k, outputs, paddedOutputs, k, panel);
        }
    }

    static void TiledBlocks<T>(Job job, int firstBlock, int endBlock) where T : struct, IStoredVectors =>
        TiledPanels<StoredPanel<T>>(job, firstBlock, endBlock);

    /// <summary>The tiled blocks [firstBlock, endBlock), each panel filled by <typeparamref name="TPanel"/>.</summary>
    internal static void TiledPanels<TPanel>(Job job, int firstBlock, int endBlock) where TPanel : struct, IPanelSource
    {
        var scratch = tileScratch ??= new TileScratch();
        var shape = job.Shape;
        int rows = shape.Rows, k = shape.InFeatures, steps = StepsOf(k), fullSteps = k >> 5, tail = k & 31;
        int groups = (rows + RowGroup - 1) / RowGroup;
        long groupFloats = (long)steps * 32 * RowGroup;
        int blockOutputs = job.BlockOutputs;
        float* panel = scratch.PanelFor((long)blockOutputs * steps * 32, job.Counters);
        float* accumulators = scratch.AccumulatorsFor((long)blockOutputs * 32 * RowGroup, job.Counters);
        for (int block = firstBlock; block < endBlock; block++)
        {
            int n0 = block * blockOutputs;
            int outputs = Math.Min(blockOutputs, shape.OutFeatures - n0);
            int paddedOutputs = (outputs + TileOutputs - 1) / TileOutputs * TileOutputs;
            int panelStep = paddedOutputs * TileLanes;
            TPanel.Pack(job, n0, outputs, paddedOutputs, panel);
            for (int g = 0; g < groups; g++)
            {
                // Accumulator vector (c, lane) of this row group at (c · 32 + lane) · 16.
                float* xGroup = job.Packed + g * groupFloats;
                for (int q = 0; q < LaneGroups; q++)
                {
                    float* x = xGroup + (long)q * steps * TileLanes * RowGroup;
                    float* panelQ = panel + (long)q * steps * panelStep;
                    for (int c0 = 0; c0 < paddedOutputs; c0 += TileOutputs)
                    {
                        float* tileAcc = accumulators + (c0 * 32 + q * TileLanes) * RowGroup;
                        Tile(x, panelQ + c0 * TileLanes, panelStep, tileAcc, fullSteps);
                        if (tail > 0)
                            TailStep(x + fullSteps * TileLanes * RowGroup, panelQ + (long)fullSteps * panelStep + c0 * TileLanes,
                                tileAcc, q * TileLanes, tail);
                    }
                }
                Reduce(job, accumulators, g, n0, outputs);
            }
        }
    }

    /// <summary>
    /// Widens weight rows [first, first + outputs) × [k0, k0 + depth) into the panel, laid out as
    /// lane group q, step s, output c, lane jj — so a tile reads its steps contiguously — with
    /// zeros beyond depth and for the padding outputs.
    /// </summary>
    internal static void PackPanel<T>(byte* w, long first, int rowLength, int outputs, int paddedOutputs, int depth, float* panel)
        where T : struct, IStoredVectors
    {
        int steps = StepsOf(depth), full = depth & ~15;
        int panelStep = paddedOutputs * TileLanes;
        long laneGroupFloats = (long)steps * panelStep;
        for (int c = 0; c < paddedOutputs; c++)
        {
            float* destination = panel + c * TileLanes;
            if (c >= outputs)
            {
                for (long q = 0; q < LaneGroups; q++)
                    for (int s = 0; s < steps; s++)
                        Vector128<float>.Zero.Store(destination + q * laneGroupFloats + s * panelStep);
                continue;
            }
            long at = first + (long)c * rowLength;
            for (int i = 0; i < full; i += 16)
            {
                // 16 values at k = i … i + 15 are lanes (i & 31) … +15: four lane groups of one step.
                var values = T.Load16(w, at + i);
                int s = i >> 5, q = (i & 31) / TileLanes;
                float* step = destination + s * panelStep;
                values.GetLower().GetLower().Store(step + (q + 0) * laneGroupFloats);
                values.GetLower().GetUpper().Store(step + (q + 1) * laneGroupFloats);
                values.GetUpper().GetLower().Store(step + (q + 2) * laneGroupFloats);
                values.GetUpper().GetUpper().Store(step + (q + 3) * laneGroupFloats);
            }
            for (int i = full; i < steps * 32; i++)
            {
                int s = i >> 5, lane = i & 31;
                destination[(lane / TileLanes) * laneGroupFloats + s * panelStep + lane % TileLanes] =
                    i < depth ? T.Load1(w, at + i) : 0f;
            }
        }
    }

    /// <summary>
    /// One register tile: 16 rows × 6 outputs × 4 lanes over <paramref name="steps"/> full steps.
    /// x holds per step 4 vectors (one per lane, 16 rows each); the panel holds per step 6 outputs ×
    /// 4 lanes, <paramref name="panelStep"/> floats apart. Accumulator (c, jj) lives at
    /// acc + (c · 32 + jj) · 16.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile(float* x, float* panel, int panelStep, float* acc, int steps)
    {
        const int C = 32 * RowGroup;
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default;
        Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default;
        Vector512<float> a40 = default, a41 = default, a42 = default, a43 = default;
        Vector512<float> a50 = default, a51 = default, a52 = default, a53 = default;
        for (int s = 0; s < steps; s++)
        {
            float* xs = x + s * (TileLanes * RowGroup);
            float* p = panel + (long)s * panelStep;
            var x0 = Vector512.Load(xs);
            var x1 = Vector512.Load(xs + 16);
            var x2 = Vector512.Load(xs + 32);
            var x3 = Vector512.Load(xs + 48);
            a00 = Vector512.FusedMultiplyAdd(x0, Vector512.Create(p[0]), a00);
            a01 = Vector512.FusedMultiplyAdd(x1, Vector512.Create(p[1]), a01);
            a02 = Vector512.FusedMultiplyAdd(x2, Vector512.Create(p[2]), a02);
            a03 = Vector512.FusedMultiplyAdd(x3, Vector512.Create(p[3]), a03);
            a10 = Vector512.FusedMultiplyAdd(x0, Vector512.Create(p[4]), a10);
            a11 = Vector512.FusedMultiplyAdd(x1, Vector512.Create(p[5]), a11);
            a12 = Vector512.FusedMultiplyAdd(x2, Vector512.Create(p[6]), a12);
            a13 = Vector512.FusedMultiplyAdd(x3, Vector512.Create(p[7]), a13);
            a20 = Vector512.FusedMultiplyAdd(x0, Vector512.Create(p[8]), a20);
            a21 = Vector512.FusedMultiplyAdd(x1, Vector512.Create(p[9]), a21);
            a22 = Vector512.FusedMultiplyAdd(x2, Vector512.Create(p[10]), a22);
            a23 = Vector512.FusedMultiplyAdd(x3, Vector512.Create(p[11]), a23);
            a30 = Vector512.FusedMultiplyAdd(x0, Vector512.Create(p[12]), a30);
            a31 = Vector512.FusedMultiplyAdd(x1, Vector512.Create(p[13]), a31);
            a32 = Vector512.FusedMultiplyAdd(x2, Vector512.Create(p[14]), a32);
            a33 = Vector512.FusedMultiplyAdd(x3, Vector512.Create(p[15]), a33);
            a40 = Vector512.FusedMultiplyAdd(x0, Vector512.Create(p[16]), a40);
            a41 = Vector512.FusedMultiplyAdd(x1, Vector512.Create(p[17]), a41);
            a42 = Vector512.FusedMultiplyAdd(x2, Vector512.Create(p[18]), a42);
            a43 = Vector512.FusedMultiplyAdd(x3, Vector512.Create(p[19]), a43);
            a50 = Vector512.FusedMultiplyAdd(x0, Vector512.Create(p[20]), a50);
            a51 = Vector512.FusedMultiplyAdd(x1, Vector512.Create(p[21]), a51);
            a52 = Vector512.FusedMultiplyAdd(x2, Vector512.Create(p[22]), a52);
            a53 = Vector512.FusedMultiplyAdd(x3, Vector512.Create(p[23]), a53);
        }
        a00.Store(acc); a01.Store(acc + 16); a02.Store(acc + 32); a03.Store(acc + 48);
        a10.Store(acc + C); a11.Store(acc + C + 16); a12.Store(acc + C + 32); a13.Store(acc + C + 48);
        a20.Store(acc + 2 * C); a21.Store(acc + 2 * C + 16); a22.Store(acc + 2 * C + 32); a23.Store(acc + 2 * C + 48);
        a30.Store(acc + 3 * C); a31.Store(acc + 3 * C + 16); a32.Store(acc + 3 * C + 32); a33.Store(acc + 3 * C + 48);
        a40.Store(acc + 4 * C); a41.Store(acc + 4 * C + 16); a42.Store(acc + 4 * C + 32); a43.Store(acc + 4 * C + 48);
        a50.Store(acc + 5 * C); a51.Store(acc + 5 * C + 16); a52.Store(acc + 5 * C + 32); a53.Store(acc + 5 * C + 48);
    }

    /// <summary>The partial last step: only lanes below <paramref name="tail"/> take a term (no zero terms elsewhere).</summary>
    static void TailStep(float* x, float* panel, float* acc, int firstLane, int tail)
    {
        for (int jj = 0; jj < TileLanes && firstLane + jj < tail; jj++)
        {
            var xv = Vector512.Load(x + jj * RowGroup);
            for (int c = 0; c < TileOutputs; c++)
            {
                float* a = acc + (c * 32 + jj) * RowGroup;
                Vector512.FusedMultiplyAdd(xv, Vector512.Create(panel[c * TileLanes + jj]), Vector512.Load(a)).Store(a);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Lane(float* lanes, int lane) => Vector512.Load(lanes + lane * RowGroup);

    /// <summary>The canonical tree over each output's 32 lanes, 16 rows at a time, then bias and the scatter into y.</summary>
    static void Reduce(Job job, float* accumulators, int g, int n0, int outputs)
    {
        var shape = job.Shape;
        var sums = stackalloc float[RowGroup];
            for (int c = 0; c < outputs; c++)
            {
                float* lanes = accumulators + c * 32 * RowGroup;
                // SimdTree.Sum's pairs: lanes j and j + 16, then j + 8, j + 4, and the last four as (0 + 2) + (1 + 3).
                var h0 = Lane(lanes, 0) + Lane(lanes, 16); var h1 = Lane(lanes, 1) + Lane(lanes, 17);
                var h2 = Lane(lanes, 2) + Lane(lanes, 18); var h3 = Lane(lanes, 3) + Lane(lanes, 19);
                var h4 = Lane(lanes, 4) + Lane(lanes, 20); var h5 = Lane(lanes, 5) + Lane(lanes, 21);
                var h6 = Lane(lanes, 6) + Lane(lanes, 22); var h7 = Lane(lanes, 7) + Lane(lanes, 23);
                var h8 = Lane(lanes, 8) + Lane(lanes, 24); var h9 = Lane(lanes, 9) + Lane(lanes, 25);
                var h10 = Lane(lanes, 10) + Lane(lanes, 26); var h11 = Lane(lanes, 11) + Lane(lanes, 27);
                var h12 = Lane(lanes, 12) + Lane(lanes, 28); var h13 = Lane(lanes, 13) + Lane(lanes, 29);
                var h14 = Lane(lanes, 14) + Lane(lanes, 30); var h15 = Lane(lanes, 15) + Lane(lanes, 31);
                h0 += h8; h1 += h9; h2 += h10; h3 += h11; h4 += h12; h5 += h13; h6 += h14; h7 += h15;
                h0 += h4; h1 += h5; h2 += h6; h3 += h7;
                var dot = (h0 + h2) + (h1 + h3);
                if (job.Bias != null)
                    dot += Vector512.Create(job.Bias[n0 + c]);
                dot.Store(sums);
                int rows = Math.Min(RowGroup, shape.Rows - g * RowGroup);
                float* y = job.Y + (long)g * RowGroup * shape.OutFeatures + n0 + c;
                for (int r = 0; r < rows; r++)
                    y[(long)r * shape.OutFeatures] = sums[r];
            }
    }
}
