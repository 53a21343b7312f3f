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
    public static long IndexOfNonFinite(byte* data, long count, StorageType type) => type switch
    {
        StorageType.F32 => IndexOfAllOnes((uint*)data, count, 0x7F80_0000u),
        StorageType.F16 => IndexOfAllOnes((ushort*)data, count, (ushort)0x7C00),
        StorageType.BF16 => IndexOfAllOnes((ushort*)data, count, (ushort)0x7F80),
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, null),
    };

    public static long IndexOfNonFinite(ReadOnlySpan<byte> data, StorageType type)
    {
        fixed (byte* p = data)
            return IndexOfNonFinite(p, data.Length / type.SizeOf(), type);
    }

    /// <summary>First element whose bits under <paramref name="exponentMask"/> are all ones (NaN or ±inf).</summary>
    static long IndexOfAllOnes<T>(T* data, long count, T exponentMask)
        where T : unmanaged, IBinaryInteger<T>
    {
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var mask = Vector512.Create(exponentMask);
            long step = Vector512<T>.Count;
            for (; i + step <= count; i += step)
                if (Vector512.EqualsAny(Vector512.Load(data + i) & mask, mask))
                    return i + Scalar(data + i, step, exponentMask);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var mask = Vector256.Create(exponentMask);
            long step = Vector256<T>.Count;
            for (; i + 2 * step <= count; i += 2 * step)
            {
                var a = Vector256.Load(data + i) & mask;
                var b = Vector256.Load(data + i + step) & mask;
                if (Vector256.EqualsAny(a, mask) || Vector256.EqualsAny(b, mask))
                    return i + Scalar(data + i, 2 * step, exponentMask);
            }
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            var mask = Vector128.Create(exponentMask);
            long step = Vector128<T>.Count;
            for (; i + step <= count; i += step)
                if (Vector128.EqualsAny(Vector128.Load(data + i) & mask, mask))
                    return i + Scalar(data + i, step, exponentMask);
        }
        long rest = Scalar(data + i, count - i, exponentMask);
        return rest < 0 ? -1 : i + rest;
    }

    static long Scalar<T>(T* data, long count, T exponentMask) where T : unmanaged, IBinaryInteger<T>
    {
        for (long i = 0; i < count; i++)
            if ((data[i] & exponentMask) == exponentMask)
                return i;
        return -1;
    }

    static float ReadAsFloat(byte* data, long index, StorageType type) => type switch
    {
        StorageType.F32 => ((float*)data)[index],
        StorageType.F16 => (float)((Half*)data)[index],
        _ => BitConverter.Int32BitsToSingle(((ushort*)data)[index] << 16),
    };
}
