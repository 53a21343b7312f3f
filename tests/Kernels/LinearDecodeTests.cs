using ILGPU;
using ILGPU.Runtime;
using IlgpuLlm.Kernels;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Kernels;

/// <summary>
/// The GPU decode linear (quads of threads per output row, 128-bit loads), launched in CUDA's
/// shapes on ILGPU's CPU accelerator: the reference's bits with the vector loads and with the
/// value-by-value path it takes for unaligned bytes, for 1 to 4 rows of x, whole and partial
/// segments, one and several groups, and every element format.
/// </summary>
[Collection(BackendCollection.Name)]
public class LinearDecodeTests
{
    public static IEnumerable<object[]> Cases() =>
        // Block formats have their own widths (whole blocks) and tests: QuantizedTests, in CUDA's shapes too.
        from type in Enum.GetValues<StorageType>()
        where type.Format() is not BlockFormat
        from shape in new[] { (1, 9, 256), (4, 9, 264), (3, 40, 168), (2, 300, 32), (1, 5, 40) }
        from offset in new[] { 0, 1 }
        select new object[] { type, shape.Item1, shape.Item2, shape.Item3, offset };

    /// <summary>
    /// <paramref name="offset"/> 1 slices x and W one value into their buffers: the bytes no longer
    /// start 16-byte aligned, so the kernel must read them one by one.
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void Matches_the_reference_with_and_without_vector_loads(StorageType type, int rows, int outFeatures, int inFeatures, int offset)
    {
        var library = IlgpuCpuLibrary.GpuShapes;
        var shape = new LinearShape(rows, outFeatures, inFeatures);
        Assert.True(Linear.UsesDecodeKernel(library, shape));
        var x = TestValues.WithEdges(rows * inFeatures, seed: rows + inFeatures, nonFinite: false);
        var weights = TestValues.FiniteForStorage(TestValues.WithEdges(outFeatures * inFeatures, seed: outFeatures, nonFinite: false), type);
        var stored = TestValues.Stored(weights, type);
        var bias = TestValues.Random(outFeatures, seed: 5);
        int elementBytes = (int)type.ByteLength(1);

        var accelerator = library.Accelerator;
        using var xs = accelerator.Allocate1D<float>(offset + x.Length);
        xs.View.SubView(offset, x.Length).CopyFromCPU(x);
        using var ws = accelerator.Allocate1D<byte>(offset * elementBytes + stored.Length);
        ws.View.SubView(offset * elementBytes, stored.Length).CopyFromCPU(stored);
        using var bs = accelerator.Allocate1D(bias);
        using var ys = accelerator.Allocate1D<float>(rows * outFeatures);
        var xView = xs.View.AsContiguous().SubView(offset, x.Length);
        var wView = ws.View.AsContiguous().SubView(offset * elementBytes, stored.Length);
        Assert.Equal(offset == 0, OctetViews.Aligned(xView) && OctetViews.Aligned(wView));
        foreach (bool hasBias in new[] { false, true })
        {
            var expected = new float[rows * outFeatures];
            Linear.Reference(x, new HostStorage(stored, type), bias, hasBias, expected, shape);
            Linear.Run(library, xView, wView, type, hasBias ? bs.View : null, ys.View, shape);
            accelerator.Synchronize();
            Bits.Equal(expected, ys.GetAsArray1D(), $"{type.Name()} {shape} offset {offset} bias={hasBias}");
        }
    }

    [Fact]
    public void Takes_prefill_shapes_to_the_tiled_kernel_and_cpu_shapes_never()
    {
        Assert.False(Linear.UsesDecodeKernel(IlgpuCpuLibrary.GpuShapes, new LinearShape(Linear.DecodeRows + 1, 8, 32)));
        Assert.False(Linear.UsesDecodeKernel(IlgpuCpuLibrary.Library, new LinearShape(1, 8, 32)));
    }
}
