using static IlgpuLlm.Kernels.ExactMath;

namespace IlgpuLlm.Kernels;

/// <summary>
/// Gathers rows of a table: output[r] = table[ids[r]] · scale. The table is the token embedding
/// (any storage type; Gemma passes scale = √hidden rounded to binary32) or a binary32 activation
/// matrix (the decoder gathers each sequence's last row this way, with scale 1). Widening is exact
/// and the multiplication is the only rounding; multiplying by 1 changes no bit.
/// </summary>
public readonly record struct EmbeddingShape(int Rows, int Vocabulary, int Width)
{
    public void Validate(long tableLength, long idsLength, long outputLength)
    {
        Shapes.Positive("embedding: rows", Rows);
        Shapes.Positive("embedding: vocabulary", Vocabulary);
        Shapes.Positive("embedding: width", Width);
        Shapes.Expect("embedding: table", tableLength, (long)Vocabulary * Width, $"vocabulary {Vocabulary} × width {Width}");
        Shapes.Expect("embedding: ids", idsLength, Rows, $"rows {Rows}");
        Shapes.Expect("embedding: output", outputLength, (long)Rows * Width, $"rows {Rows} × width {Width}");
    }

    public void ValidateIds(ReadOnlySpan<int> ids)
    {
        for (int r = 0; r < ids.Length; r++)
            if ((uint)ids[r] >= (uint)Vocabulary)
                throw new ArgumentOutOfRangeException(nameof(ids),
                    $"embedding: id {ids[r]} at row {r} is outside the table's {Vocabulary} rows");
    }
}

public static partial class Embedding
{
    public static void Reference(HostStorage table, ReadOnlySpan<int> ids, Span<float> output, EmbeddingShape shape, float scale)
    {
        shape.Validate(table.Length, ids.Length, output.Length);
        shape.ValidateIds(ids);
        for (int r = 0; r < shape.Rows; r++)
            for (int i = 0; i < shape.Width; i++)
                output[r * shape.Width + i] = Mul(table[(long)ids[r] * shape.Width + i], scale);
    }
}
