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
}
