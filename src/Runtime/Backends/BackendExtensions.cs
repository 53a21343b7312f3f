using System.Runtime.InteropServices;

namespace IlgpuLlm.Runtime.Backends;

/// <summary>Typed uploads and downloads over the raw-byte calls of <see cref="IBackend"/>.</summary>
public static class BackendExtensions
{
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
