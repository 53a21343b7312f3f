using IlgpuLlm.Kernels;
using System.Numerics;
using System.Runtime.Intrinsics;

namespace IlgpuLlm.Model.Formats;

/// <summary>
/// Checks that weights hold no NaN or infinity. The SIMD backend widens f16 with arithmetic that
/// is exact only for finite inputs, and a non-finite weight would silently poison every logit,
/// so the engine calls this when it uploads weights. It runs over whole models (GBs): it tests
/// the exponent bits of 64 bytes per step with Vector512/Vector256 and only looks at single
/// elements inside a block that failed.
/// </summary>
public static unsafe class WeightFiniteness
{
    /// <summary>
    /// Throws a <see cref="ModelFormatException"/> naming the tensor and element index of the first
    /// non-finite value, or for a quantized tensor the block and field of the first non-finite scale.
    /// </summary>
    public static void EnsureFinite(ModelTensor tensor)
    {
        if (tensor.Quantized is { } blocks)
        {
            // Finite scales make every dequantized weight finite (docs/NUMERICS.md), and checking
            // them does not dequantize the tensor.
            if (blocks.FindBadScale() is { } bad)
                throw new ModelFormatException(tensor.SourcePath,
                    $"tensor '{tensor.Name}' (source '{tensor.SourceName}', {blocks.Format.Name()}): {bad}; quantization scales must be finite");
            return;
        }
        long index = IndexOfNonFinite(tensor.Pointer, tensor.ElementCount, tensor.DataType);
        if (index >= 0)
        {
            float value = ReadAsFloat(tensor.Pointer, index, tensor.DataType);
            throw new ModelFormatException(tensor.SourcePath,
                $"tensor '{tensor.Name}' (source '{tensor.SourceName}'): element {index} is {value}; weights must be finite");
        }
    }

    /// <summary>The index of the first NaN or infinity in <paramref name="count"/> elements, or -1.</summary>
    public static long IndexOfNonFinite(byte* data, long count, StorageType type) => type.Format().IndexOfNonFinite(data, count);

    public static long IndexOfNonFinite(ReadOnlySpan<byte> data, StorageType type)
    {
        fixed (byte* p = data)
            return IndexOfNonFinite(p, type.ElementCount(data.Length), type);
    }

    static float ReadAsFloat(byte* data, long index, StorageType type)
    {
        var format = type.Format();
        long block = index / format.BlockElements;
        var bytes = new ReadOnlySpan<byte>(data + block * format.BlockBytes, format.BlockBytes);
        return format.Widen(bytes, index - block * format.BlockElements);
    }
}
