using IlgpuLlm.Kernels;

namespace IlgpuLlm.Model.Formats;

/// <summary>
/// Builds a <see cref="ModelCheckpoint"/> from tensors in memory, checked like a file: the
/// config's own consistency (<see cref="ModelLayout.Validate"/>), then exactly the tensor set
/// and shapes it implies, with errors that name the model and the tensor.
/// </summary>
internal static unsafe class InMemoryCheckpoint
{
    /// <summary>Bytes copied per read from a source (tensors may exceed what one span holds).</summary>
    const int CopyChunkBytes = 1 << 26;

    public static ModelCheckpoint Build(ModelConfig config, IEnumerable<TensorSource> tensors, string name)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentException.ThrowIfNullOrEmpty(name);
        ModelLayout.Validate(config, name);

        var byName = new Dictionary<string, TensorSource>(StringComparer.Ordinal);
        foreach (var tensor in tensors)
            if (!byName.TryAdd(tensor.Name, tensor))
                throw new ModelFormatException(name, $"tensor '{tensor.Name}' is given twice");
        var expected = ModelLayout.Expected(config);
        var expectedNames = expected.Select(e => e.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var extra in byName.Keys.Where(n => !expectedNames.Contains(n)))
            throw new ModelFormatException(name,
                $"unexpected tensor '{extra}': not part of a {config.Family} model with {config.LayerCount} layers" +
                $"{(config.TiedEmbeddings ? ", tied embeddings" : "")}{(config.HasQkvBias ? ", q/k/v biases" : ", no biases")}");

        var store = new TensorStore();
        try
        {
            var result = new List<ModelTensor>(expected.Count);
            foreach (var e in expected)
            {
                if (!byName.TryGetValue(e.Name, out var source))
                    throw new ModelFormatException(name,
                        $"tensor '{e.Name}' is missing: a {config.Family} model with this config needs it, shape [{string.Join(", ", e.Shape)}]");
                if (!source.Shape.SequenceEqual(e.Shape))
                    throw new ModelFormatException(name,
                        $"tensor '{e.Name}': expected shape [{string.Join(", ", e.Shape)}] (from the config), found [{string.Join(", ", source.Shape)}]");
                byte* data = store.Allocate(source.ByteLength);
                int size = source.DataType.SizeOf();
                long chunkElements = CopyChunkBytes / size;
                for (long first = 0; first < source.ElementCount; first += chunkElements)
                {
                    long count = Math.Min(chunkElements, source.ElementCount - first);
                    source.Read(first, new Span<byte>(data + first * size, checked((int)(count * size))));
                }
                result.Add(ModelTensor.InMemory(store, e.Name, name, source.DataType, source.Shape, data));
            }
            return new ModelCheckpoint(name, ModelSourceFormat.InMemory, config, [.. result], store, gguf: null);
        }
        catch
        {
            store.Dispose();
            throw;
        }
    }
}
