using IlgpuLlm.Kernels;
namespace IlgpuLlm.Model.Formats;

/// <summary>
/// ggml tensor types by their on-disk id (ggml.h <c>enum ggml_type</c>). The engine reads F32,
/// F16, BF16 and the block formats of <see cref="QuantFormat"/>; the others are listed so a file
/// holding them is recognised by name, its layout still validated (block sizes below), and
/// rejected with a message that names the tensor and the type.
/// </summary>
public enum GgmlType : uint
{
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q4_2 = 4,
    Q4_3 = 5,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    Q4_0_4_4 = 31,
    Q4_0_4_8 = 32,
    Q4_0_8_8 = 33,
    TQ1_0 = 34,
    TQ2_0 = 35,
    IQ4_NL_4_4 = 36,
    IQ4_NL_4_8 = 37,
    IQ4_NL_8_8 = 38,
    MXFP4 = 39,
}

/// <summary>Block layout of each ggml type: elements per block and bytes per block.</summary>
public static class GgmlTypeLayout
{
    const int QK_K = 256;

    /// <summary>
    /// Elements per block and bytes per block, as ggml's type traits (and gguf-py's
    /// GGML_QUANT_SIZES) define them. False for ids that are unknown or were removed from ggml
    /// (Q4_2, Q4_3, the in-file repacked Q4_0_x_y / IQ4_NL_x_y): no current file can hold them.
    /// </summary>
    public static bool TryGetBlockLayout(GgmlType type, out int blockSize, out int bytesPerBlock)
    {
        (blockSize, bytesPerBlock) = type switch
        {
            GgmlType.F32 => (1, 4),
            GgmlType.F16 => (1, 2),
            GgmlType.BF16 => (1, 2),
            GgmlType.F64 => (1, 8),
            GgmlType.I8 => (1, 1),
            GgmlType.I16 => (1, 2),
            GgmlType.I32 => (1, 4),
            GgmlType.I64 => (1, 8),
            GgmlType.Q4_0 => (32, 2 + 16),
            GgmlType.Q4_1 => (32, 2 + 2 + 16),
            GgmlType.Q5_0 => (32, 2 + 4 + 16),
            GgmlType.Q5_1 => (32, 2 + 2 + 4 + 16),
            GgmlType.Q8_0 => (32, 2 + 32),
            GgmlType.Q8_1 => (32, 4 + 32),
            GgmlType.Q2_K => (QK_K, 2 * 2 + QK_K / 16 + QK_K / 4),
            GgmlType.Q3_K => (QK_K, 2 + QK_K / 4 + QK_K / 8 + 12),
            GgmlType.Q4_K => (QK_K, 2 * 2 + 12 + QK_K / 2),
            GgmlType.Q5_K => (QK_K, 2 * 2 + 12 + QK_K / 8 + QK_K / 2),
            GgmlType.Q6_K => (QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16),
            GgmlType.Q8_K => (QK_K, 4 + QK_K + QK_K / 8),
            GgmlType.IQ2_XXS => (QK_K, 2 + QK_K / 4),
            GgmlType.IQ2_XS => (QK_K, 2 + QK_K / 4 + QK_K / 32),
            GgmlType.IQ3_XXS => (QK_K, 2 + QK_K / 4 + QK_K / 8),
            GgmlType.IQ1_S => (QK_K, 2 + QK_K / 8 + QK_K / 16),
            GgmlType.IQ4_NL => (32, 2 + 16),
            GgmlType.IQ3_S => (QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4),
            GgmlType.IQ2_S => (QK_K, 2 + QK_K / 4 + QK_K / 16),
            GgmlType.IQ4_XS => (QK_K, 2 + 2 + QK_K / 2 + QK_K / 64),
            GgmlType.IQ1_M => (QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32),
            GgmlType.TQ1_0 => (QK_K, 2 + 4 * 13),
            GgmlType.TQ2_0 => (QK_K, 2 + 64),
            GgmlType.MXFP4 => (32, 1 + 16),
            _ => (0, 0),
        };
        return blockSize != 0;
    }

    /// <summary>The ggml name of a type id, or "type id N" for ids ggml does not define.</summary>
    public static string Name(GgmlType type) =>
        Enum.IsDefined(type) ? type.ToString() : $"type id {(uint)type}";

    /// <summary>The engine's block format for a quantized ggml type, or null when it is not one the engine reads.</summary>
    public static QuantFormat? ToQuantFormat(GgmlType type) => type switch
    {
        GgmlType.Q4_0 => QuantFormat.Q4_0,
        GgmlType.Q4_1 => QuantFormat.Q4_1,
        GgmlType.Q5_0 => QuantFormat.Q5_0,
        GgmlType.Q5_1 => QuantFormat.Q5_1,
        GgmlType.Q8_0 => QuantFormat.Q8_0,
        GgmlType.Q2_K => QuantFormat.Q2_K,
        GgmlType.Q3_K => QuantFormat.Q3_K,
        GgmlType.Q4_K => QuantFormat.Q4_K,
        GgmlType.Q5_K => QuantFormat.Q5_K,
        GgmlType.Q6_K => QuantFormat.Q6_K,
        _ => null,
    };

    /// <summary>The ggml type of a block format.</summary>
    public static GgmlType ToGgmlType(QuantFormat format) => format switch
    {
        QuantFormat.Q4_0 => GgmlType.Q4_0,
        QuantFormat.Q4_1 => GgmlType.Q4_1,
        QuantFormat.Q5_0 => GgmlType.Q5_0,
        QuantFormat.Q5_1 => GgmlType.Q5_1,
        QuantFormat.Q8_0 => GgmlType.Q8_0,
        QuantFormat.Q2_K => GgmlType.Q2_K,
        QuantFormat.Q3_K => GgmlType.Q3_K,
        QuantFormat.Q4_K => GgmlType.Q4_K,
        QuantFormat.Q5_K => GgmlType.Q5_K,
        QuantFormat.Q6_K => GgmlType.Q6_K,
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, null),
    };

    /// <summary>The ggml types a model tensor may have, for messages.</summary>
    public static string Readable => "F32, F16, BF16, " + string.Join(", ", Enum.GetValues<QuantFormat>().Select(f => f.Name()));

    /// <summary>The engine's storage type for a ggml type, or null when the engine cannot compute with it.</summary>
    public static StorageType? ToTensorDataType(GgmlType type) => StorageFormat.FromGgmlTypeId((uint)type)?.Type;
}
