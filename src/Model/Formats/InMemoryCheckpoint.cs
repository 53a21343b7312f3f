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

        var matched = ModelWriting.MatchTensors(config, tensors, message => new ModelFormatException(name, message));

        var store = new TensorStore();
        try
        {
            var result = new List<ModelTensor>(matched.Count);
            foreach (var (e, source) in matched)
            {
                byte* data = store.Allocate(source.ByteLength);
                var format = source.DataType.Format();
                long chunkElements = format.ElementCount(CopyChunkBytes / format.BlockBytes * format.BlockBytes);
                for (long first = 0; first < source.ElementCount; first += chunkElements)
                {
                    long count = Math.Min(chunkElements, source.ElementCount - first);
                    source.Read(first, new Span<byte>(data + format.ByteLength(first), checked((int)format.ByteLength(count))));
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
