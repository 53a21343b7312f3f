using IlgpuLlm.Kernels;
using IlgpuLlm.Runtime.Backends;

namespace IlgpuLlm.Runtime;

/// <summary>
/// The shape of a KV cache. Global layers keep every position up to the context length; sliding
/// layers keep a ring of window + (rows per forward − 1) positions, so that the keys one forward
/// pass writes never overwrite keys its own earlier rows still attend to (llama.cpp sizes its SWA
/// cache the same way, n_swa + n_ubatch).
/// </summary>
public sealed record KvCacheLayout(
    int Layers,
    int KvHeads,
    int HeadDim,
    int Slots,
    int ContextLength,
    int MaxRowsPerForward,
    IReadOnlyList<int?> SlidingWindows)
{
    public int RowWidth => KvHeads * HeadDim;

    public int Capacity(int layer) =>
        SlidingWindows[layer] is int window ? (int)Math.Min(ContextLength, (long)window + MaxRowsPerForward - 1) : ContextLength;

    /// <summary>
    /// The distinct kinds of layers: global layers share one, sliding layers one per window. A
    /// step computes the cache rows it writes and the keys it attends to once per kind.
    /// </summary>
    public IReadOnlyList<CacheKind> Kinds()
    {
        var kinds = new List<CacheKind>();
        for (int l = 0; l < Layers; l++)
        {
            var kind = Kind(l);
            if (!kinds.Contains(kind))
                kinds.Add(kind);
        }
        return kinds;
    }

    /// <summary>How a layer stores and reads positions.</summary>
    public CacheKind Kind(int layer) => new(Capacity(layer), SlidingWindows[layer]);

    /// <summary>The index in <see cref="Kinds"/> of a layer's kind.</summary>
    public int KindOf(int layer)
    {
        var kinds = Kinds();
        var kind = Kind(layer);
        for (int k = 0; k < kinds.Count; k++)
            if (kinds[k] == kind)
                return k;
        throw new ArgumentOutOfRangeException(nameof(layer), $"kv cache: no layer {layer}");
    }

    public void Validate()
    {
        Shapes.Positive("kv cache: layers", Layers);
        Shapes.Positive("kv cache: kv heads", KvHeads);
        Shapes.Positive("kv cache: head_dim", HeadDim);
        Shapes.Positive("kv cache: slots", Slots);
        Shapes.Positive("kv cache: context length", ContextLength);
        Shapes.Positive("kv cache: rows per forward", MaxRowsPerForward);
        if (SlidingWindows.Count != Layers)
            throw new ArgumentException($"kv cache: {SlidingWindows.Count} sliding-window entries for {Layers} layers");
        for (int l = 0; l < Layers; l++)
        {
            if (SlidingWindows[l] is < 1)
                throw new ArgumentException($"kv cache: layer {l} has sliding window {SlidingWindows[l]}; it must be at least 1");
            // Cache rows are addressed with 32-bit indices on the device.
            if ((long)Slots * Capacity(l) > int.MaxValue)
                throw new ArgumentException($"kv cache: {Slots} slots × {Capacity(l)} positions of layer {l} exceed 2^31 rows");
        }
    }
}

/// <summary>
/// The layers of a cache that store and read alike: a position lives at position mod
/// <see cref="Capacity"/> of its slot, and a query at position p attends to the keys from
/// max(0, p + 1 − window) (0 without a window) to p.
/// </summary>
public readonly record struct CacheKind(int Capacity, int? Window)
{
    /// <summary>The cache row (slot · capacity + position mod capacity) a row at this slot and position writes.</summary>
    public int Destination(int slot, int position) => slot * Capacity + position % Capacity;

    /// <summary>The keys a query at <paramref name="position"/> of a slot attends to.</summary>
    public KeyRange Range(int slot, int position) =>
        new(slot, Window is int window ? Math.Max(0, position + 1 - window) : 0, position + 1);
}

/// <summary>
/// Keys and values of every layer for a fixed number of sequence slots, stored in f32, f16 or
/// bf16 independently of the weights. Position t of a slot lives at t mod capacity of its layer.
/// The cache can be converted to another storage type in place of the old one without losing any
/// stored sequence (the field report: a hybrid cache that could not be converted under mixed
/// precision).
/// </summary>
public sealed class KvCache : IDisposable
{
    readonly IBackend backend;
    readonly Tensor[] keys;
    readonly Tensor[] values;

    public KvCache(IBackend backend, KvCacheLayout layout, StorageType type)
    {
        layout.Validate();
        this.backend = backend;
        Layout = layout;
        Type = type;
        keys = new Tensor[layout.Layers];
        values = new Tensor[layout.Layers];
        for (int l = 0; l < layout.Layers; l++)
        {
            keys[l] = backend.Allocate(type, CacheLength(l), $"layer {l} key cache");
            values[l] = backend.Allocate(type, CacheLength(l), $"layer {l} value cache");
        }
    }

    public KvCacheLayout Layout { get; }
    public StorageType Type { get; private set; }

    public Tensor Keys(int layer) => keys[layer];
    public Tensor Values(int layer) => values[layer];

    long CacheLength(int layer) => (long)Layout.Slots * Layout.Capacity(layer) * Layout.RowWidth;

    /// <summary>The keys a query at <paramref name="position"/> of a slot attends to in a layer.</summary>
    public KeyRange Range(int layer, int slot, int position) => Layout.Kind(layer).Range(slot, position);

    /// <summary>
    /// Writes one layer's new keys and values ([rows, kv_heads·head_dim] f32) at the cache rows in
    /// <paramref name="destinations"/> (i32, one per row; see <see cref="CacheKind.Destination"/>).
    /// A row with a value that overflows f16 has its flag in <paramref name="overflowed"/> raised.
    /// </summary>
    public void Store(int layer, Tensor newKeys, Tensor newValues, Tensor destinations, ProblemFlags? overflowed)
    {
        int rows = checked((int)(newKeys.Length / Layout.RowWidth));
        var shape = new ScatterShape(rows, Layout.RowWidth, (long)Layout.Slots * Layout.Capacity(layer));
        backend.ScatterRows(newKeys, keys[layer], destinations, shape, overflowed);
        backend.ScatterRows(newValues, values[layer], destinations, shape, overflowed);
    }

    /// <summary>
    /// Re-stores every layer in another storage type, keeping every sequence of every slot (sliding
    /// rings included: the layout does not change, only the type of its values). Each value is
    /// narrowed as <see cref="Store"/> narrows it (docs/NUMERICS.md §1), so converting an f32 cache
    /// gives the bits a cache of the new type would hold had the same f32 values been stored in it,
    /// and widening is exact, so f16 → f32 → f16 returns the same bytes. Returns how many values
    /// overflowed to ±inf in f16; <paramref name="overflowsPerSlot"/>, when given (one entry per
    /// slot), receives the count of each slot, so the caller can stop the sequences that overflowed.
    /// </summary>
    public long ConvertTo(StorageType type, Span<long> overflowsPerSlot = default)
    {
        if (!overflowsPerSlot.IsEmpty && overflowsPerSlot.Length != Layout.Slots)
            throw new ArgumentException($"kv cache: {overflowsPerSlot.Length} overflow counts for {Layout.Slots} slots", nameof(overflowsPerSlot));
        overflowsPerSlot.Clear();
        if (type == Type)
            return 0;
        long overflows = 0;
        for (int l = 0; l < Layout.Layers; l++)
        {
            overflows += Replace(keys, l, type, overflowsPerSlot);
            overflows += Replace(values, l, type, overflowsPerSlot);
        }
        Type = type;
        return overflows;
    }

    long Replace(Tensor[] tensors, int layer, StorageType type, Span<long> overflowsPerSlot)
    {
        var old = tensors[layer];
        var converted = backend.Allocate(type, old.Length, old.Name);
        long overflows = 0;
        if (overflowsPerSlot.IsEmpty)
            overflows = backend.Convert(old, converted);
        else
        {
            // A slot's positions are one contiguous block of the layer: [slots, capacity, kv width].
            long perSlot = (long)Layout.Capacity(layer) * Layout.RowWidth;
            for (int slot = 0; slot < Layout.Slots; slot++)
            {
                long count = backend.Convert(old.Slice(slot * perSlot, perSlot), converted.Slice(slot * perSlot, perSlot));
                overflowsPerSlot[slot] += count;
                overflows += count;
            }
        }
        backend.Free(old);
        tensors[layer] = converted;
        return overflows;
    }

    public long ByteLength => keys.Sum(k => k.ByteLength) + values.Sum(v => v.ByteLength);

    public void Dispose()
    {
        foreach (var tensor in keys.Concat(values))
            backend.Free(tensor);
    }
}

/// <summary>A sequence needs more positions than the cache holds.</summary>
public sealed class ContextOverflowException(int slot, int positions, int limit)
    : Exception($"the sequence in cache slot {slot} needs {positions} positions; the cache holds {limit}")
{
    public int Slot { get; } = slot;
    public int Positions { get; } = positions;
    public int Limit { get; } = limit;
}
