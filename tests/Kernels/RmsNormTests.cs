using IlgpuLlm.Kernels;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Kernels;

[Collection(BackendCollection.Name)]
public class RmsNormTests
{
    public static IEnumerable<object[]> Cases()
    {
        // Widths around the 32 canonical lanes (one term per lane, whole blocks, a tail) and the 16/8
        // vector widths, Gemma 3's q/k norm (head_dim 256), hidden sizes (1000, 2048), with the
        // six row kinds of Input in every shape of more than one row.
        (int rows, int width)[] shapes =
            [(1, 1), (6, 3), (6, 17), (6, 31), (6, 32), (6, 33), (7, 40), (6, 64), (6, 127), (6, 256), (6, 512), (6, 1000), (3, 2048)];
        foreach (var backend in TestBackends.All)
            foreach (var type in TestValues.ElementTypes)
                foreach (var (rows, width) in shapes)
                    yield return [backend[0], type, rows, width];
    }

    /// <summary>
    /// Rows of different kinds. Most are ordinary values whose magnitudes spread over several
    /// binades, where every square and every sum rounds (a fused multiply-add against a multiply
    /// then an add, or another order, changes bits); one holds finite edge values (±0,
    /// subnormals, ±1e30 whose squares overflow), one tiny values whose squares underflow, one NaN
    /// and ±inf.
    /// </summary>
    static float[] Input(int rows, int width, int seed)
    {
        var x = new float[rows * width];
        for (int r = 0; r < rows; r++)
        {
            var row = (r % 6) switch
            {
                0 => TestValues.Ordinary(width, seed + r),
                1 => TestValues.Ordinary(width, seed + r, spread: 20),
                2 => TestValues.WithEdges(width, seed + r, nonFinite: false),
                3 => TestValues.Random(width, seed + r, scale: 3f),
                4 => TestValues.Random(width, seed + r, scale: 1e-20f).Select((v, i) => i % 3 == 0 ? v * 1e-20f : v).ToArray(),
                _ => TestValues.WithEdges(width, seed + r, nonFinite: true),
            };
            row.CopyTo(x, r * width);
        }
        return x;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Matches_the_reference_bit_for_bit(string backendName, StorageType type, int rows, int width)
    {
        var backend = TestBackends.Get(backendName);
        var x = Input(rows, width, seed: rows * 100 + width);
        float[] edges = type == StorageType.F16 ? [0f, -0f, 1e-7f, 65504f, -2.5f] : [0f, -0f, 1e-40f, 1e30f, float.PositiveInfinity, float.NaN];
        var weights = TestValues.Ordinary(width, seed: width, spread: 3).Select((v, i) => i % 7 == 3 ? edges[i / 7 % edges.Length] : v).ToArray();
        var stored = TestValues.Stored(weights, type);
        var xs = backend.Upload(x, "x");
        var w = backend.Allocate(type, width, "w");
        backend.Upload(w, stored);
        var y = backend.Allocate(TensorType.F32, x.Length, "y");

        foreach (var (epsilon, addOne) in new[] { (1e-5f, false), (1e-6f, true), (0f, false) })
        {
            var shape = new RmsNormShape(rows, width, epsilon, addOne);
            var expected = new float[x.Length];
            RmsNorm.Reference(x, new HostStorage(stored, type), expected, shape);
            backend.RmsNorm(xs, w, y, shape);
            Bits.Equal(expected, backend.DownloadFloats(y), $"{backend.Name} {type.Name()} {shape}");
        }
        backend.Free(xs);
        backend.Free(w);
        backend.Free(y);
    }

    [Theory]
    [MemberData(nameof(TestBackends.All), MemberType = typeof(TestBackends))]
    public void Normalises_in_place(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        var shape = new RmsNormShape(6, 256, 1e-6f, true); // Gemma 3 q/k norm: rows = tokens × heads
        var x = Input(shape.Rows, shape.Width, seed: 9);
        var weights = TestValues.Random(shape.Width, seed: 10, scale: 0.2f);
        var expected = new float[x.Length];
        RmsNorm.Reference(x, HostStorage.Of(weights), expected, shape);
        var xs = backend.Upload(x, "x");
        var w = backend.Upload(weights, "w");
        backend.RmsNorm(xs, w, xs, shape);
        Bits.Equal(expected, backend.DownloadFloats(xs), $"{backend.Name} in place");
        backend.Free(xs);
        backend.Free(w);
    }

    [Fact]
    public void Reference_normalises_by_the_root_mean_square()
    {
        float[] x = [3f, -4f];
        var y = new float[2];
        RmsNorm.Reference(x, HostStorage.Of([2f, 0.5f]), y, new RmsNormShape(1, 2, 0f, false));
        // rms = √((9 + 16) / 2) = √12.5
        Assert.Equal(3f / MathF.Sqrt(12.5f) * 2f, y[0], 6);
        Assert.Equal(-4f / MathF.Sqrt(12.5f) * 0.5f, y[1], 6);
        RmsNorm.Reference(x, HostStorage.Of([1f, -1f]), y, new RmsNormShape(1, 2, 0f, true));
        Assert.Equal(3f / MathF.Sqrt(12.5f) * 2f, y[0], 6);
        Assert.Equal(0f, y[1]);
    }

    [Theory]
    [MemberData(nameof(TestBackends.All), MemberType = typeof(TestBackends))]
    public void Rejects_bad_epsilon_and_mismatched_lengths(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        var x = backend.Upload(new float[6], "x");
        var w = backend.Upload(new float[3], "w");
        var y = backend.Allocate(TensorType.F32, 6, "y");
        foreach (float epsilon in new[] { -1e-6f, float.NaN, float.PositiveInfinity })
        {
            var error = Assert.Throws<ArgumentException>(() => backend.RmsNorm(x, w, y, new RmsNormShape(2, 3, epsilon, false)));
            Assert.Contains("rms norm: epsilon", error.Message);
        }
        var lengths = Assert.Throws<ArgumentException>(() => backend.RmsNorm(x, w, y, new RmsNormShape(3, 2, 1e-5f, false)));
        Assert.Contains("rms norm: weight holds 3 values; expected 2", lengths.Message);
        lengths = Assert.Throws<ArgumentException>(() => backend.RmsNorm(x, w, y, new RmsNormShape(1, 3, 1e-5f, false)));
        Assert.Contains("rms norm: x holds 6 values; expected 3", lengths.Message);
        lengths = Assert.Throws<ArgumentException>(() => backend.RmsNorm(x, w, y, new RmsNormShape(0, 3, 1e-5f, false)));
        Assert.Contains("rms norm: rows is 0", lengths.Message);
        backend.Free(x);
        backend.Free(w);
        backend.Free(y);
    }
}
