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

    /// <summary>Index of element 0 of (slot, key position, kv head) in the cache.</summary>
    public static long CacheOffset(int slot, int position, int kvHead, AttentionShape shape) =>
        (((long)slot * shape.Capacity + position % shape.Capacity) * shape.KvHeads + kvHead) * shape.HeadDim;
}
