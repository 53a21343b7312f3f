using IlgpuLlm.Kernels;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace IlgpuLlm.Model.Formats;

/// <summary>Widening of stored weights for the loader (kernels widen with <see cref="HalfBits"/>).</summary>
public static class StorageWidening
{
    /// <summary>
    /// Widens elements to f32. Exact: every f16 and bf16 value is an f32 value (bf16 is the top
    /// half of an f32, so widening is a shift).
    /// </summary>
    public static void WidenToFloat32(this StorageType type, ReadOnlySpan<byte> source, Span<float> destination)
    {
        switch (type)
        {
            case StorageType.F32:
                MemoryMarshal.Cast<byte, float>(source).CopyTo(destination);
                break;
            case StorageType.F16:
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(source), destination);
                break;
            case StorageType.BF16:
                var bits = MemoryMarshal.Cast<byte, ushort>(source);
                for (int i = 0; i < bits.Length; i++)
                    destination[i] = BitConverter.Int32BitsToSingle(bits[i] << 16);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(type), type, null);
        }
    }
}
