using ILGPU;
using ILGPU.Runtime;
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

    public struct Args<TTable> where TTable : struct, IStorage
    {
        public TTable Table;
        public ArrayView<int> Ids;
        public ArrayView<float> Output;
        public int Width, Vocabulary;
        public float Scale;
    }

    /// <summary>
    /// One thread per output element, threads of a row over its width: neighbouring threads read
    /// neighbouring table elements of the same id, so loads and stores are coalesced. An id
    /// outside the table (which validation on the host rules out) reads nothing and gives NaN, so
    /// the row's logits are reported as not finite instead of memory being read out of bounds.
    /// </summary>
    [GpuKernel(ReadsWeights = true)]
    static void Kernel<TTable>(Index1D index, Args<TTable> a) where TTable : struct, IStorage
    {
        int row = index / a.Width;
        int column = index - row * a.Width;
        int id = a.Ids[row];
        a.Output[index] = (uint)id < (uint)a.Vocabulary ? Mul(a.Table.Load((long)id * a.Width + column), a.Scale) : float.NaN;
    }

    /// <summary>
    /// Launches the gather with the table behind any <see cref="IStorage"/> (the quantized
    /// formats' included); the caller has validated the buffers and the ids.
    /// </summary>
    internal static void LaunchOn<TTable>(KernelLibrary library, TTable table, ArrayView<int> ids, ArrayView<float> output,
        EmbeddingShape shape, float scale) where TTable : struct, IStorage =>
        library.GetElementwise<Args<TTable>>(Kernel)(Elementwise.ThreadCount("embedding: output", (long)shape.Rows * shape.Width),
            new Args<TTable> { Table = table, Ids = ids, Output = output, Width = shape.Width, Vocabulary = shape.Vocabulary, Scale = scale });

    /// <summary>
    /// Launches the gather. <paramref name="ids"/> is already on the device; the caller validated
    /// its values on the host (<see cref="EmbeddingShape.ValidateIds"/>) before uploading them.
    /// </summary>
    public static void Run(KernelLibrary library, ArrayView<byte> table, StorageType tableType, ArrayView<int> ids,
        ArrayView<float> output, EmbeddingShape shape, float scale)
    {
        shape.Validate(tableType.ElementCount(table.Length), ids.Length, output.Length);
        var launch = new Launch { Library = library, Table = table, Ids = ids, Output = output, Shape = shape, Scale = scale };
        tableType.Format().Dispatch(ref launch);
    }

    struct Launch : IStorageAction
    {
        public KernelLibrary Library;
        public ArrayView<byte> Table;
        public ArrayView<int> Ids;
        public ArrayView<float> Output;
        public EmbeddingShape Shape;
        public float Scale;

        public readonly void Run<TStorage, TWeights, TExact>()
            where TStorage : struct, IStorageView<TStorage> where TWeights : struct, IStoredVectors where TExact : struct, IStoredVectors =>
            LaunchOn(Library, TStorage.Over(Table), Ids, Output, Shape, Scale);
    }
}
