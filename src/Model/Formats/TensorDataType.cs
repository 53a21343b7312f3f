using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace IlgpuLlm.Model.Formats;

/// <summary>Element types the engine stores weights in.</summary>
public enum TensorDataType
{
    F32,
    F16,
    BF16,
}

public static class TensorDataTypeExtensions
{
    public static int ElementSize(this TensorDataType type) => type switch
    {
        TensorDataType.F32 => 4,
        TensorDataType.F16 => 2,
        TensorDataType.BF16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, null),
    };

    /// <summary>
    /// Widens elements to f32. Exact: every f16 and bf16 value is an f32 value (bf16 is the top
    /// half of an f32, so widening is a shift).
    /// </summary>
    public static void WidenToFloat32(this TensorDataType type, ReadOnlySpan<byte> source, Span<float> destination)
    {
        switch (type)
        {
            case TensorDataType.F32:
                MemoryMarshal.Cast<byte, float>(source).CopyTo(destination);
                break;
            case TensorDataType.F16:
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(source), destination);
                break;
            case TensorDataType.BF16:
                var bits = MemoryMarshal.Cast<byte, ushort>(source);
                for (int i = 0; i < bits.Length; i++)
                    destination[i] = BitConverter.Int32BitsToSingle(bits[i] << 16);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(type), type, null);
        }
    }
}
