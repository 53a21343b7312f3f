using ILGPU;
using ILGPU.Runtime;
using static IlgpuLlm.Kernels.ExactMath;

namespace IlgpuLlm.Kernels;

/// <summary>
/// The keys one query row attends to: positions [Begin, End) of cache slot <see cref="Slot"/>.
/// Causality, sliding windows, left or right padding and packed sequences are all expressed as
/// ranges, so they are one mechanism: the runtime sets End = position + 1 and
/// Begin = max(first position of the sequence, position + 1 − window).
/// </summary>
public readonly record struct KeyRange(int Slot, int Begin, int End)
{
    public int Length => End - Begin;
}

/// <summary>
/// Where an optional additive bias lives: bias[Offset + row·RowStride + head·HeadStride + t] is
/// added to the score of key position t. Any offset, stride (0 broadcasts) and length is allowed;
/// every index a row can reach is checked against Length before a kernel runs.
/// </summary>
public readonly record struct AttentionBiasLayout(long Offset, long RowStride, long HeadStride, long Length);

/// <summary>
/// Grouped-query attention. q, output: [rows, heads, head_dim] binary32. keys, values: the cache,
/// [slots, capacity, kv_heads, head_dim] in a storage type; key position t of a slot lives at
/// t mod capacity (global layers have capacity ≥ context, sliding ones a ring). Query head h reads
/// kv head h / (heads / kv_heads), as transformers' repeat_kv. Per (row, head), over the row's key
/// range in increasing position t, each step rounded once:
///   s_t = dot(q, k_t) · scale; with a soft-cap, s_t = cap·tanh(s_t / cap); with a bias, s_t += bias;
///   m = max s_t; e_t = exp(s_t − m); Z = Σ e_t; out_d = (Σ e_t · v_t,d) / Z,
/// where dot, max, Σ e_t and each Σ e_t·v_t,d are canonical reductions over the key index
/// i = t − Begin (terms fused with fma where a product is involved). A row with no keys, or whose
/// scores are all −inf, gets zeros and is reported as fully masked, never NaN.
/// </summary>
public readonly record struct AttentionShape(int Rows, int Heads, int KvHeads, int HeadDim, int Slots, int Capacity,
    float Scale, float SoftCap)
{
    public int GroupSize => Heads / KvHeads;

    /// <summary>
    /// The most keys any row's range may hold (0: the capacity). Ranges on the device are not read
    /// on the host, so this bound, known where they were made, sizes the score work space.
    /// </summary>
    public int MaxKeys { get; init; }

    /// <summary>Scores kept per (row, head): <see cref="MaxKeys"/>, or the capacity.</summary>
    public int KeysPerGroup => MaxKeys > 0 ? MaxKeys : Capacity;

    public void Validate(long qLength, long keysLength, long valuesLength, long outputLength)
    {
        Shapes.Positive("attention: rows", Rows);
        Shapes.Positive("attention: heads", Heads);
        Shapes.Positive("attention: kv heads", KvHeads);
        Shapes.Positive("attention: head_dim", HeadDim);
        Shapes.Positive("attention: cache slots", Slots);
        Shapes.Positive("attention: cache capacity", Capacity);
        if (Heads % KvHeads != 0)
            throw new ArgumentException($"attention: {Heads} query heads cannot share {KvHeads} kv heads evenly");
        if (!float.IsFinite(Scale))
            throw new ArgumentException($"attention: scale {Scale} is not finite");
        if (!(SoftCap >= 0f) || float.IsInfinity(SoftCap))
            throw new ArgumentException($"attention: soft-cap {SoftCap} must be 0 (none) or a positive finite value");
        if (MaxKeys < 0 || MaxKeys > Capacity)
            throw new ArgumentOutOfRangeException(nameof(MaxKeys), $"attention: at most {MaxKeys} keys per row; 0 (the capacity) to {Capacity} are possible");
        long cache = (long)Slots * Capacity * KvHeads * HeadDim;
        Shapes.Expect("attention: q", qLength, (long)Rows * Heads * HeadDim, $"rows {Rows} × heads {Heads} × head_dim {HeadDim}");
        Shapes.Expect("attention: key cache", keysLength, cache, $"slots {Slots} × capacity {Capacity} × kv heads {KvHeads} × head_dim {HeadDim}");
        Shapes.Expect("attention: value cache", valuesLength, cache, $"slots {Slots} × capacity {Capacity} × kv heads {KvHeads} × head_dim {HeadDim}");
        Shapes.Expect("attention: output", outputLength, (long)Rows * Heads * HeadDim, $"rows {Rows} × heads {Heads} × head_dim {HeadDim}");
    }

    public void ValidateRanges(ReadOnlySpan<KeyRange> ranges)
    {
        Shapes.Expect("attention: key ranges", ranges.Length, Rows, $"one per row, rows {Rows}");
        for (int r = 0; r < ranges.Length; r++)
        {
            var range = ranges[r];
            if ((uint)range.Slot >= (uint)Slots)
                throw new ArgumentOutOfRangeException(nameof(ranges), $"attention: row {r} reads cache slot {range.Slot}; the cache has {Slots} slots");
            if (range.Begin < 0 || range.End < range.Begin)
                throw new ArgumentOutOfRangeException(nameof(ranges), $"attention: row {r} has key range [{range.Begin}, {range.End})");
            if (range.Length > Capacity)
                throw new ArgumentOutOfRangeException(nameof(ranges),
                    $"attention: row {r} attends to {range.Length} keys [{range.Begin}, {range.End}); the cache holds {Capacity} positions per slot");
            if (range.Length > KeysPerGroup)
                throw new ArgumentOutOfRangeException(nameof(ranges),
                    $"attention: row {r} attends to {range.Length} keys [{range.Begin}, {range.End}); the call allows at most {KeysPerGroup}");
        }
    }

    public void ValidateBias(AttentionBiasLayout bias, ReadOnlySpan<KeyRange> ranges)
    {
        if (bias.Offset < 0 || bias.RowStride < 0 || bias.HeadStride < 0)
            throw new ArgumentException($"attention: bias offset {bias.Offset} and strides {bias.RowStride}, {bias.HeadStride} must not be negative");
        for (int r = 0; r < ranges.Length; r++)
        {
            if (ranges[r].Length == 0)
                continue;
            long last = bias.Offset + r * bias.RowStride + (Heads - 1L) * bias.HeadStride + ranges[r].End - 1;
            if (last >= bias.Length)
                throw new ArgumentOutOfRangeException(nameof(bias),
                    $"attention: row {r} reads bias index {last} (keys up to position {ranges[r].End - 1}); the bias holds {bias.Length} values");
        }
    }
}

public static partial class Attention
{
    public static void Reference(ReadOnlySpan<float> q, HostStorage keys, HostStorage values, Span<float> output,
        ReadOnlySpan<KeyRange> ranges, AttentionShape shape, ReadOnlySpan<float> bias, AttentionBiasLayout? biasLayout,
        Span<bool> fullyMasked)
    {
        shape.Validate(q.Length, keys.Length, values.Length, output.Length);
        shape.ValidateRanges(ranges);
        if (biasLayout is AttentionBiasLayout layout)
        {
            Shapes.Expect("attention: bias", bias.Length, layout.Length, "the bias layout's length");
            shape.ValidateBias(layout, ranges);
        }
        Shapes.Expect("attention: fully-masked flags", fullyMasked.Length, (long)shape.Rows * shape.Heads, $"rows {shape.Rows} × heads {shape.Heads}");

        int d = shape.HeadDim;
        for (int r = 0; r < shape.Rows; r++)
        {
            var range = ranges[r];
            int keyCount = range.Length;
            var scores = new float[keyCount];
            var keyRow = new float[d];
            for (int h = 0; h < shape.Heads; h++)
            {
                int kvHead = h / shape.GroupSize;
                var query = q.Slice((r * shape.Heads + h) * d, d);
                for (int i = 0; i < keyCount; i++)
                {
                    long at = CacheOffset(range.Slot, range.Begin + i, kvHead, shape);
                    for (int j = 0; j < d; j++)
                        keyRow[j] = keys[at + j];
                    float s = Mul(Canonical.Dot(query, keyRow), shape.Scale);
                    if (shape.SoftCap > 0f)
                        s = CanonicalMath.SoftCap(s, shape.SoftCap);
                    if (biasLayout is AttentionBiasLayout b)
                        s = Add(s, bias[(int)(b.Offset + r * b.RowStride + h * b.HeadStride + range.Begin + i)]);
                    scores[i] = s;
                }
                var head = output.Slice((r * shape.Heads + h) * d, d);
                float max = Canonical.Max(scores);
                if (keyCount == 0 || max == float.NegativeInfinity)
                {
                    head.Clear();
                    fullyMasked[r * shape.Heads + h] = true;
                    continue;
                }
                fullyMasked[r * shape.Heads + h] = false;
                for (int i = 0; i < keyCount; i++)
                    scores[i] = CanonicalMath.Exp(Sub(scores[i], max));
                float total = Canonical.Sum(scores);
                var column = new float[keyCount];
                for (int j = 0; j < d; j++)
                {
                    for (int i = 0; i < keyCount; i++)
                        column[i] = values[CacheOffset(range.Slot, range.Begin + i, kvHead, shape) + j];
                    head[j] = Div(Canonical.Dot(scores, column), total);
                }
            }
        }
    }

    /// <summary>
    /// Every check an attention call makes before anything runs (shape, lengths, ranges, bias
    /// reach, flag count); returns the longest key range, which sizes the backends' score scratch.
    /// </summary>
    public static int Validate(AttentionShape shape, long qLength, long keysLength, long valuesLength, long outputLength,
        ReadOnlySpan<KeyRange> ranges, long? biasLength, AttentionBiasLayout? biasLayout, long fullyMaskedLength)
    {
        shape.Validate(qLength, keysLength, valuesLength, outputLength);
        shape.ValidateRanges(ranges);
        if (biasLayout is AttentionBiasLayout layout)
        {
            Shapes.Expect("attention: bias", biasLength ?? 0, layout.Length, "the bias layout's length");
            shape.ValidateBias(layout, ranges);
        }
        Shapes.Expect("attention: fully-masked flags", fullyMaskedLength, (long)shape.Rows * shape.Heads, $"rows {shape.Rows} × heads {shape.Heads}");
        int longest = 0;
        foreach (var range in ranges)
            longest = Math.Max(longest, range.Length);
        return longest;
    }

    public struct Args<TCache> where TCache : struct, IStorage
    {
        public ArrayView<float> Q;
        public TCache Keys;
        public TCache Values;
        public ArrayView<float> Output;
        /// <summary>Each row's <see cref="KeyRange"/> as three ints (slot, begin, end): read as ints, so the section may start anywhere.</summary>
        public ArrayView<int> Ranges;
        public ArrayView<float> Bias;
        /// <summary>[rows × heads × ScoresPerGroup]: the scores, then the exp weights, of each (row, head).</summary>
        public ArrayView<float> Scores;
        /// <summary>Per (row, head), raised to <see cref="Mark"/> where no score is finite (when Mark is positive).</summary>
        public ArrayView<int> FullyMasked;
        public int Heads, KvHeads, HeadDim, Slots, Capacity, ScoresPerGroup, HasBias, TileKeys, Mark;
        public float Scale, SoftCap;
        public long BiasOffset, BiasRowStride, BiasHeadStride, BiasLength;
    }

    /// <summary>q·k of one key staged in shared memory: the terms of the canonical dot over the head dimension.</summary>
    struct QueryKeyTerms : ITermSource
    {
        public ArrayView<float> Q;
        public ArrayView<float> Tile;
        public long QueryAt;
        public int KeyAt;

        public float Accumulate(int index, float accumulator) =>
            Fma(Q[QueryAt + index], Tile[KeyAt + index], accumulator);
    }

    /// <summary>Σ e_i·v_i,d of one output dimension d: the terms over the key index i.</summary>
    struct WeightedValueTerms<TCache> : ITermSource where TCache : struct, IStorage
    {
        public ArrayView<float> Weights;
        public TCache Values;
        public long WeightsAt, ValueAt, PositionStride;
        public int FirstPosition, Capacity;

        public float Accumulate(int index, float accumulator)
        {
            int position = FirstPosition + index;
            position = position >= Capacity ? position - Capacity : position;
            return Fma(Weights[WeightsAt + index], Values.Load(ValueAt + position * PositionStride), accumulator);
        }
    }

    /// <summary>
    /// One 32-thread warp per (query row, head); thread j is canonical lane j throughout.
    /// Phase 1: tiles of <see cref="TileKeysFor"/> keys (32 unless head_dim is very large) are
    /// staged in shared memory, the warp reading each key row coalesced (threads over head_dim);
    /// then the thread whose lane is the key's index mod 32 computes that key's q·k alone with
    /// <see cref="SerialTree"/> over head_dim, reading its tile row (rows padded to an odd pitch,
    /// so the 32 threads hit 32 different banks) and q (a broadcast), keeping its lane maximum;
    /// <see cref="WarpTree.Max"/> gives m. Computing each dot from global memory per thread would
    /// have neighbouring threads read rows kilobytes apart (32 cache lines per warp load); a warp
    /// tree per key would read coalesced but costs five shuffles per key, which on ILGPU's CPU
    /// accelerator (each shuffle a software barrier) is hundreds of milliseconds per row.
    /// Phase 2: thread j turns its scores into e_i = exp(s_i − m) in the scratch area and sums its
    /// lane; <see cref="WarpTree.Sum"/> gives Z. Phase 3, after a group barrier makes every e_i
    /// visible: threads over the head dimension (d = j, j+32, …) each reduce Σ_i fma(e_i, v_i,d, ·)
    /// with <see cref="SerialTree"/> over the key index — neighbouring threads read neighbouring
    /// values of a row (coalesced), e_i is a broadcast — then divide by Z.
    /// </summary>
    [GpuKernel]
    static void Kernel<TCache>(Args<TCache> a) where TCache : struct, IStorage
    {
        int lane = Group.IdxX;
        int group = Grid.IdxX;
        int row = group / a.Heads;
        int head = group - row * a.Heads;
        var range = new KeyRange(a.Ranges[3 * row], a.Ranges[3 * row + 1], a.Ranges[3 * row + 2]);
        int keyCount = range.End - range.Begin;
        long outputAt = (long)group * a.HeadDim;
        // A range the host would reject (its validation rules these out) reads nothing.
        bool outside = (uint)range.Slot >= (uint)a.Slots || range.Begin < 0 || keyCount > a.ScoresPerGroup
            || (a.HasBias != 0 && a.BiasOffset + row * a.BiasRowStride + head * a.BiasHeadStride + range.End > a.BiasLength);
        if (keyCount <= 0 || outside)
        {
            WriteMasked(a, outputAt, group, lane);
            return;
        }

        int kvHead = head / (a.Heads / a.KvHeads);
        long positionStride = (long)a.KvHeads * a.HeadDim;
        long headAt = (long)range.Slot * a.Capacity * positionStride + (long)kvHead * a.HeadDim;
        // Ranges never exceed the capacity, so a position wraps at most once: no modulo per key.
        int firstPosition = range.Begin % a.Capacity;
        long scoresAt = (long)group * a.ScoresPerGroup;
        long biasAt = a.BiasOffset + row * a.BiasRowStride + head * a.BiasHeadStride + range.Begin;

        var tile = SharedMemory.GetDynamic<float>();
        int pitch = TilePitch(a.HeadDim);
        float laneMax = float.NegativeInfinity;
        for (int tileStart = 0; tileStart < keyCount; tileStart += a.TileKeys)
        {
            int tileKeys = keyCount - tileStart < a.TileKeys ? keyCount - tileStart : a.TileKeys;
            for (int k = 0; k < tileKeys; k++)
            {
                int position = firstPosition + tileStart + k;
                position = position >= a.Capacity ? position - a.Capacity : position;
                long keyAt = headAt + position * positionStride;
                for (int d = lane; d < a.HeadDim; d += Canonical.Lanes)
                    tile[k * pitch + d] = a.Keys.Load(keyAt + d);
            }
            Group.Barrier();
            // Key i belongs to canonical lane i mod 32, so each thread scores its own lane's key.
            int tileRow = lane - (tileStart & (Canonical.Lanes - 1));
            if (tileRow >= 0 && tileRow < tileKeys)
            {
                int i = tileStart + tileRow;
                var terms = new QueryKeyTerms { Q = a.Q, Tile = tile, QueryAt = outputAt, KeyAt = tileRow * pitch };
                float score = Mul(SerialTree.Sum(ref terms, a.HeadDim), a.Scale);
                if (a.SoftCap > 0f)
                    score = CanonicalMath.SoftCap(score, a.SoftCap);
                if (a.HasBias != 0)
                    score = Add(score, a.Bias[biasAt + i]);
                a.Scores[scoresAt + i] = score;
                laneMax = CanonicalMath.Max(laneMax, score);
            }
            // The next tile overwrites this one; after the last there is none.
            if (tileStart + a.TileKeys < keyCount)
                Group.Barrier();
        }
        // Threads other than lane 0 end with the tree's mirror image (Max(b, a) at some nodes),
        // which can differ from lane 0's m only in the sign of a zero or a NaN's payload: all
        // threads take the same branch, and exp(s − m) gives the same weights for either.
        float max = WarpTree.Max(laneMax);
        if (max == float.NegativeInfinity)
        {
            WriteMasked(a, outputAt, group, lane);
            return;
        }

        float laneSum = 0f;
        for (int i = lane; i < keyCount; i += Canonical.Lanes)
        {
            float weight = CanonicalMath.Exp(Sub(a.Scores[scoresAt + i], max));
            a.Scores[scoresAt + i] = weight;
            laneSum = Add(laneSum, weight);
        }
        float total = WarpTree.Sum(laneSum);
        Group.Barrier();

        for (int d = lane; d < a.HeadDim; d += Canonical.Lanes)
        {
            var terms = new WeightedValueTerms<TCache>
            {
                Weights = a.Scores, Values = a.Values, WeightsAt = scoresAt, ValueAt = headAt + d,
                PositionStride = positionStride, FirstPosition = firstPosition, Capacity = a.Capacity,
            };
            a.Output[outputAt + d] = Div(SerialTree.Sum(ref terms, keyCount), total);
        }
    }

    /// <summary>Shared-memory row pitch of a key tile: odd, so the rows of 32 threads fall in 32 different banks.</summary>
    static int TilePitch(int headDim) => headDim | 1;

    /// <summary>Shared memory a warp may use without a per-kernel opt-in on CUDA.</summary>
    const int SharedMemoryBytes = 48 * 1024;

    /// <summary>Keys per shared-memory tile: 32, or a smaller power of two when head_dim is too large for 32 rows.</summary>
    public static int TileKeysFor(int headDim)
    {
        int keys = Canonical.Lanes;
        while (keys > 1 && (long)keys * TilePitch(headDim) * sizeof(float) > SharedMemoryBytes)
            keys /= 2;
        if ((long)keys * TilePitch(headDim) * sizeof(float) > SharedMemoryBytes)
            throw new NotSupportedException($"attention: head_dim {headDim} does not fit one key row in {SharedMemoryBytes} bytes of shared memory");
        return keys;
    }

    static void WriteMasked<TCache>(Args<TCache> a, long outputAt, int group, int lane) where TCache : struct, IStorage
    {
        for (int d = lane; d < a.HeadDim; d += Canonical.Lanes)
            a.Output[outputAt + d] = 0f;
        if (lane == 0 && a.Mark > 0)
            Atomic.Max(ref a.FullyMasked[group], a.Mark);
    }

    /// <summary>
    /// Launches one warp per (row, head) after checking every length. <paramref name="ranges"/> is on
    /// the device (validated on the host where it was made; the kernel treats a range it cannot read
    /// as masked); <paramref name="scores"/> holds at least rows × heads × <see cref="AttentionShape.KeysPerGroup"/>
    /// floats; when <paramref name="mark"/> is positive, <paramref name="fullyMasked"/> has the flag of
    /// each (row, head) that had no finite score raised to at least the mark.
    /// </summary>
    public static void Run(KernelLibrary library, ArrayView<float> q, ArrayView<byte> keys, ArrayView<byte> values,
        StorageType cacheType, ArrayView<float> output, ArrayView<int> ranges, AttentionShape shape, ArrayView<float>? bias,
        AttentionBiasLayout? biasLayout, ArrayView<float> scores, ArrayView<int> fullyMasked, int mark)
    {
        shape.Validate(q.Length, cacheType.ElementCount(keys.Length), cacheType.ElementCount(values.Length), output.Length);
        Shapes.Expect("attention: key ranges", ranges.Length, 3L * shape.Rows, $"three per row (slot, begin, end), rows {shape.Rows}");
        if (bias.HasValue != biasLayout.HasValue)
            throw new ArgumentException("attention: a bias needs both its values and its layout");
        var layout = biasLayout ?? default;
        if (bias is ArrayView<float> biasValues)
        {
            Shapes.Expect("attention: bias", biasValues.Length, layout.Length, "the bias layout's length");
            if (layout.Offset < 0 || layout.RowStride < 0 || layout.HeadStride < 0)
                throw new ArgumentException($"attention: bias offset {layout.Offset} and strides {layout.RowStride}, {layout.HeadStride} must not be negative");
        }
        int groups = checked(shape.Rows * shape.Heads);
        Shapes.ExpectAtLeast("attention: score scratch", scores.Length, (long)groups * shape.KeysPerGroup,
            $"rows × heads {groups} × keys per row {shape.KeysPerGroup}");
        if (mark > 0)
            Shapes.ExpectAtLeast("attention: fully-masked flags", fullyMasked.Length, groups, $"rows {shape.Rows} × heads {shape.Heads}");

        int tileKeys = TileKeysFor(shape.HeadDim);
        var config = new KernelConfig(groups, KernelContext.WarpSize,
            SharedMemoryConfig.RequestDynamic<float>(tileKeys * TilePitch(shape.HeadDim)));
        var launch = new Launch
        {
            Library = library, Config = config, Keys = keys, Values = values, Arguments = new Args<F32Storage>
            {
                Q = q, Output = output, Ranges = ranges, Bias = bias ?? q, Scores = scores, FullyMasked = mark > 0 ? fullyMasked : ranges,
                Heads = shape.Heads, KvHeads = shape.KvHeads, HeadDim = shape.HeadDim, Slots = shape.Slots, Capacity = shape.Capacity,
                ScoresPerGroup = shape.KeysPerGroup, HasBias = bias.HasValue ? 1 : 0, TileKeys = tileKeys, Mark = Math.Max(0, mark),
                Scale = shape.Scale, SoftCap = shape.SoftCap, BiasOffset = layout.Offset, BiasRowStride = layout.RowStride,
                BiasHeadStride = layout.HeadStride, BiasLength = layout.Length,
            },
        };
        cacheType.Format().Dispatch(ref launch);
    }

    /// <summary>The launch for one cache format; <see cref="Arguments"/> holds every argument but the cache views.</summary>
    struct Launch : IStorageAction
    {
        public KernelLibrary Library;
        public KernelConfig Config;
        public ArrayView<byte> Keys, Values;
        public Args<F32Storage> Arguments;

        public readonly void Run<TStorage, TWeights, TExact>()
            where TStorage : struct, IStorageView<TStorage> where TWeights : struct, IStoredVectors where TExact : struct, IStoredVectors
        {
            var a = Arguments;
            Library.Get<Args<TStorage>>(Kernel)(Config, new Args<TStorage>
            {
                Q = a.Q, Keys = TStorage.Over(Keys), Values = TStorage.Over(Values), Output = a.Output, Ranges = a.Ranges, Bias = a.Bias,
                Scores = a.Scores, FullyMasked = a.FullyMasked, Heads = a.Heads, KvHeads = a.KvHeads, HeadDim = a.HeadDim,
                Slots = a.Slots, Capacity = a.Capacity, ScoresPerGroup = a.ScoresPerGroup, HasBias = a.HasBias, TileKeys = a.TileKeys,
                Mark = a.Mark, Scale = a.Scale, SoftCap = a.SoftCap, BiasOffset = a.BiasOffset, BiasRowStride = a.BiasRowStride,
                BiasHeadStride = a.BiasHeadStride, BiasLength = a.BiasLength,
            });
        }
    }

    /// <summary>Index of element 0 of (slot, key position, kv head) in the cache.</summary>
    public static long CacheOffset(int slot, int position, int kvHead, AttentionShape shape) =>
        (((long)slot * shape.Capacity + position % shape.Capacity) * shape.KvHeads + kvHead) * shape.HeadDim;
}
