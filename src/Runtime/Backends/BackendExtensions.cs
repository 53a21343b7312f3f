using System.Runtime.InteropServices;
using IlgpuLlm.Kernels;

namespace IlgpuLlm.Runtime.Backends;

/// <summary>
/// Typed uploads and downloads over the raw-byte calls of <see cref="IBackend"/>, and the host-span
/// forms of the ops whose per-row data lives on the device: each validates its host data as a
/// <see cref="Generation.StepBatch"/> does, uploads it to temporary tensors, runs the op, waits and
/// brings back what the op reports. For tests and tools; the generation loop uploads a step batch.
/// </summary>
public static class BackendExtensions
{
    /// <summary>Uploads 32-bit integers as a new i32 tensor.</summary>
    public static Tensor UploadInts(this IBackend backend, ReadOnlySpan<int> values, string name)
    {
        var tensor = backend.Allocate(TensorType.I32, values.Length, name);
        backend.Upload(tensor, MemoryMarshal.AsBytes(values));
        return tensor;
    }

    public static int[] DownloadInts(this IBackend backend, Tensor tensor)
    {
        if (tensor.Type != TensorType.I32)
            throw new ArgumentException($"{tensor.Name} holds {tensor.Type.Name()} values, not i32");
        var values = new int[tensor.Length];
        backend.Download(tensor, MemoryMarshal.AsBytes(values.AsSpan()));
        return values;
    }

    /// <summary>Runs an op over temporary tensors, freeing them once the op has finished.</summary>
    static void WithTemporaries(IBackend backend, Tensor[] temporaries, Action run)
    {
        try
        {
            run();
            backend.Synchronize();
        }
        finally
        {
            foreach (var tensor in temporaries)
                backend.Free(tensor);
        }
    }

    /// <summary><see cref="IBackend.Embedding"/> with ids from the host.</summary>
    public static void Embedding(this IBackend backend, Tensor table, ReadOnlySpan<int> ids, Tensor output, EmbeddingShape shape, float scale)
    {
        shape.Validate(table.Length, ids.Length, output.Length);
        shape.ValidateIds(ids);
        var device = backend.UploadInts(ids, "ids");
        WithTemporaries(backend, [device], () => backend.Embedding(table, device, output, shape, scale));
    }

    /// <summary><see cref="IBackend.ScatterRows"/> with row indices from the host; returns how many rows overflowed f16.</summary>
    public static int ScatterRows(this IBackend backend, Tensor source, Tensor destination, ReadOnlySpan<long> rowIndices,
        ScatterShape shape, Span<bool> rowOverflowed)
    {
        shape.Validate(source.Length, destination.Length, rowIndices);
        Shapes.Expect("scatter: overflow flags", rowOverflowed.Length, shape.Rows, $"one per row, rows {shape.Rows}");
        var indices = new int[rowIndices.Length];
        for (int r = 0; r < indices.Length; r++)
            indices[r] = (int)rowIndices[r];
        var device = backend.UploadInts(indices, "row indices");
        var flags = backend.Allocate(TensorType.I32, shape.Rows, "overflow flags");
        int[] raised = [];
        WithTemporaries(backend, [device, flags], () =>
        {
            backend.ScatterRows(source, destination, device, shape, new ProblemFlags(flags, 1));
            raised = backend.DownloadInts(flags);
        });
        int count = 0;
        for (int r = 0; r < raised.Length; r++)
        {
            rowOverflowed[r] = raised[r] != 0;
            count += rowOverflowed[r] ? 1 : 0;
        }
        return count;
    }

    /// <summary><see cref="IBackend.Attention"/> with key ranges from the host; <paramref name="fullyMasked"/> receives each (row, head)'s flag.</summary>
    public static void Attention(this IBackend backend, Tensor q, Tensor keys, Tensor values, Tensor output, ReadOnlySpan<KeyRange> ranges,
        AttentionShape shape, AttentionBias? bias, Span<bool> fullyMasked)
    {
        if (keys.Type != values.Type)
            throw new ArgumentException($"attention: the key cache {keys.Name} holds {keys.Type.Name()} values and the value cache {values.Name} {values.Type.Name()}; both must share one storage type");
        int longest = Kernels.Attention.Validate(shape, q.Length, keys.Length, values.Length, output.Length, ranges,
            bias?.Values.Length, bias?.Layout, fullyMasked.Length);
        var sized = shape with { MaxKeys = shape.MaxKeys > 0 ? shape.MaxKeys : longest };
        var device = backend.UploadInts(MemoryMarshal.Cast<KeyRange, int>(ranges), "key ranges");
        var flags = backend.Allocate(TensorType.I32, fullyMasked.Length, "fully-masked flags");
        var masked = new bool[fullyMasked.Length];
        WithTemporaries(backend, [device, flags], () =>
        {
            backend.Attention(q, keys, values, output, device, sized, bias, new ProblemFlags(flags, 1));
            var raised = backend.DownloadInts(flags);
            for (int i = 0; i < raised.Length; i++)
                masked[i] = raised[i] != 0;
        });
        masked.CopyTo(fullyMasked);
    }

    /// <summary><see cref="IBackend.Sample"/> with the rows and penalized tokens from the host, the tokens back to it.</summary>
    public static void Sample(this IBackend backend, Tensor logits, int vocabulary, ReadOnlySpan<SamplingRow> rows,
        ReadOnlySpan<int> penalizedTokens, Span<int> tokens)
    {
        Sampling.Validate(logits.Length, vocabulary, rows, penalizedTokens, tokens.Length);
        var packed = new int[rows.Length * Sampling.ParameterInts];
        Sampling.PackParameters(rows, packed);
        var parameters = backend.UploadInts(packed, "sampling parameters");
        var penalized = backend.UploadInts(penalizedTokens, "penalized tokens");
        var drawn = backend.Allocate(TensorType.I32, rows.Length, "sampled tokens");
        var shape = new SamplingShape(rows.Length, vocabulary);
        var result = new int[rows.Length];
        WithTemporaries(backend, [parameters, penalized, drawn], () =>
        {
            backend.Sample(logits, parameters, penalized, drawn, shape, skip: null);
            backend.DownloadInts(drawn).CopyTo(result, 0);
        });
        result.CopyTo(tokens);
    }

    public static Tensor Upload(this IBackend backend, ReadOnlySpan<float> values, string name)
    {
        var tensor = backend.Allocate(TensorType.F32, values.Length, name);
        backend.Upload(tensor, MemoryMarshal.AsBytes(values));
        return tensor;
    }

    /// <summary>Uploads raw 16-bit patterns as an f16 or bf16 tensor.</summary>
    public static Tensor UploadHalves(this IBackend backend, ReadOnlySpan<ushort> bits, TensorType type, string name)
    {
        if (type != TensorType.F16 && type != TensorType.BF16)
            throw new ArgumentException($"{name}: 16-bit patterns make an f16 or bf16 tensor, not {type.Name()}");
        var tensor = backend.Allocate(type, bits.Length, name);
        backend.Upload(tensor, MemoryMarshal.AsBytes(bits));
        return tensor;
    }

    public static float[] DownloadFloats(this IBackend backend, Tensor tensor)
    {
        if (tensor.Type != TensorType.F32)
            throw new ArgumentException($"{tensor.Name} holds {tensor.Type.Name()} values, not f32");
        var values = new float[tensor.Length];
        backend.Download(tensor, MemoryMarshal.AsBytes(values.AsSpan()));
        return values;
    }

    public static byte[] DownloadBytes(this IBackend backend, Tensor tensor)
    {
        var bytes = new byte[tensor.ByteLength];
        backend.Download(tensor, bytes);
        return bytes;
    }
}
