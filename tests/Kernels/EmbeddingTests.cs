using IlgpuLlm.Kernels;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Kernels;

[Collection(BackendCollection.Name)]
public class EmbeddingTests
{
    public static IEnumerable<object[]> Cases()
    {
        (int rows, int vocabulary, int width)[] shapes =
            [(1, 1, 1), (3, 5, 3), (4, 7, 17), (2, 3, 33), (5, 4, 127), (3, 9, 16), (2, 2, 8), (3, 2, 4100)];
        foreach (var backend in TestBackends.All)
            foreach (var type in Enum.GetValues<StorageType>())
                foreach (var (rows, vocabulary, width) in shapes)
                    yield return [backend[0], type, rows, vocabulary, width];
    }

    /// <summary>Ids that include the first and last table rows and a repeat.</summary>
    static int[] Ids(int rows, int vocabulary) =>
        Enumerable.Range(0, rows).Select(r => r switch
        {
            0 => vocabulary - 1,
            1 => 0,
            _ => r * 7 % vocabulary,
        }).ToArray();

    [Theory]
    [MemberData(nameof(Cases))]
    public void Matches_the_reference_bit_for_bit(string backendName, StorageType type, int rows, int vocabulary, int width)
    {
        var backend = TestBackends.Get(backendName);
        var shape = new EmbeddingShape(rows, vocabulary, width);
        var values = TestValues.FiniteForStorage(
            TestValues.WithEdges(vocabulary * width, seed: vocabulary * 13 + width, nonFinite: type != StorageType.F16), type);
        var stored = TestValues.Stored(values, type);
        var ids = Ids(rows, vocabulary);
        var table = backend.Allocate(type, values.Length, "table");
        backend.Upload(table, stored);
        var output = backend.Allocate(TensorType.F32, rows * width, "output");

        // Scale 1 (the last-row gather, Llama) and √hidden rounded to binary32 (Gemma).
        foreach (float scale in new[] { 1f, MathF.Sqrt(width), 0.37f })
        {
            var expected = new float[rows * width];
            Embedding.Reference(new HostStorage(stored, type), ids, expected, shape, scale);
            backend.Embedding(table, ids, output, shape, scale);
            Bits.Equal(expected, backend.DownloadFloats(output), $"{backend.Name} {type.Name()} {shape} scale {scale}");
        }
        backend.Free(table);
        backend.Free(output);
    }

    [Theory]
    [MemberData(nameof(TestBackends.All), MemberType = typeof(TestBackends))]
    public void Gathering_f32_rows_with_scale_one_copies_their_bits(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        const int sequences = 3, width = 37;
        var activations = TestValues.WithEdges(sequences * 5 * width, seed: 3, nonFinite: false);
        int[] lastRows = [4, 9, 14];
        var shape = new EmbeddingShape(lastRows.Length, sequences * 5, width);
        var table = backend.Upload(activations, "activations");
        var output = backend.Allocate(TensorType.F32, lastRows.Length * width, "last rows");
        backend.Embedding(table, lastRows, output, shape, 1f);
        var expected = lastRows.SelectMany(r => activations.Skip(r * width).Take(width)).ToArray();
        Bits.Equal(expected, backend.DownloadFloats(output), $"{backend.Name} last-row gather");
        backend.Free(table);
        backend.Free(output);
    }

    [Theory]
    [MemberData(nameof(TestBackends.All), MemberType = typeof(TestBackends))]
    public void Rejects_ids_outside_the_table_naming_the_row_and_the_id(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        var table = backend.Upload(new float[4 * 3], "table");
        var output = backend.Allocate(TensorType.F32, 2 * 3, "output");
        var shape = new EmbeddingShape(2, 4, 3);
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => backend.Embedding(table, [0, 4], output, shape, 1f));
        Assert.Contains("id 4 at row 1 is outside the table's 4 rows", error.Message);
        error = Assert.Throws<ArgumentOutOfRangeException>(() => backend.Embedding(table, [-1, 2], output, shape, 1f));
        Assert.Contains("id -1 at row 0", error.Message);
        var lengths = Assert.Throws<ArgumentException>(() => backend.Embedding(table, [0, 1, 2], output, shape, 1f));
        Assert.Contains("embedding: ids holds 3 values; expected 2", lengths.Message);
        lengths = Assert.Throws<ArgumentException>(() => backend.Embedding(table, [0, 1], output, new EmbeddingShape(2, 4, 2), 1f));
        Assert.Contains("embedding: table holds 12 values; expected 8", lengths.Message);
        lengths = Assert.Throws<ArgumentException>(() => backend.Embedding(table, [0], output, new EmbeddingShape(1, 4, 3), 1f));
        Assert.Contains("embedding: output holds 6 values; expected 3", lengths.Message);
        backend.Free(table);
        backend.Free(output);
    }
}
