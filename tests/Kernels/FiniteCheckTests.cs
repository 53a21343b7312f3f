using ILGPU;
using ILGPU.Runtime;
using IlgpuLlm.Kernels;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Kernels;

[Collection(BackendCollection.Name)]
public class FiniteCheckTests
{
    // Lengths around the SIMD twin's 32- and 64-value steps (31, 32, 33, 64, 512), a vocabulary's
    // logits (128256) and 200 000 values that span several of its blocks; ILGPU's CPU accelerator
    // would take tens of seconds for that many threads, and its stride loop is covered with few
    // threads below.
    public static IEnumerable<object[]> Cases() =>
        from backend in TestBackends.All
        from length in new[] { 1, 3, 17, 31, 32, 33, 64, 127, 512, 1000, 128_256, 200_000 }
        where length <= 1000 || !TestBackends.IsCpuAccelerator((string)backend[0])
        select new[] { backend[0], length };

    static float[] WithNonFinite(int length, int at, float bad)
    {
        var values = TestValues.WithEdges(length, seed: length, nonFinite: false);
        if (at >= 0)
        {
            values[at] = bad;
            // Later non-finite values, in the same and in other blocks, must not hide the first.
            for (int later = at + 1; later < length; later += Math.Max(1, length / 7) + 61)
                values[later] = float.NaN;
        }
        return values;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Finds_the_lowest_non_finite_index_like_the_reference(string backendName, int length)
    {
        var backend = TestBackends.Get(backendName);
        var cases = new List<(string Name, float[] Values)> { ("all finite", WithNonFinite(length, -1, 0f)) };
        foreach (float bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity, BitConverter.UInt32BitsToSingle(0xFFC00001) })
            foreach (int at in new[] { 0, length / 2, length - 1, length / 3 + 1 }.Where(i => i < length).Distinct())
                cases.Add(($"{bad} at {at}", WithNonFinite(length, at, bad)));
        var x = backend.Allocate(Runtime.Backends.TensorType.F32, length, "activations");
        foreach (var (name, values) in cases)
        {
            backend.Upload(x, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
            long expected = FiniteCheck.Reference(values);
            Assert.True(expected == backend.FirstNonFinite(x, length), $"{backend.Name} length {length} {name}: expected {expected}");
            // Counting fewer values ignores what lies beyond the count.
            long within = FiniteCheck.Reference(values.AsSpan(0, length / 2));
            Assert.True(within == backend.FirstNonFinite(x, length / 2), $"{backend.Name} first {length / 2} of {length} {name}: expected {within}");
        }
        backend.Free(x);
    }

    [Fact]
    public void The_kernel_with_fewer_threads_than_values_strides_to_the_lowest_index()
    {
        var accelerator = IlgpuCpuLibrary.Accelerator;
        foreach (int at in new[] { -1, 0, 45, 600, 999 })
        {
            var values = WithNonFinite(1000, at, float.PositiveInfinity);
            using var x = accelerator.Allocate1D(values);
            using var result = accelerator.Allocate1D(new[] { FiniteCheck.NotFound });
            FiniteCheck.Run(IlgpuCpuLibrary.Library, x.View, result.View, maxThreads: 96);
            accelerator.Synchronize();
            long found = result.GetAsArray1D()[0];
            Assert.Equal(FiniteCheck.Reference(values), found == FiniteCheck.NotFound ? -1 : found);
        }
    }

    [Theory]
    [MemberData(nameof(TestBackends.All), MemberType = typeof(TestBackends))]
    public void Rejects_counts_outside_the_tensor(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        var x = backend.Allocate(Runtime.Backends.TensorType.F32, 4, "logits");
        var error = Assert.Throws<ArgumentException>(() => backend.FirstNonFinite(x, 5));
        Assert.Contains("finite check: x holds 4 values; needs at least 5", error.Message);
        var negative = Assert.Throws<ArgumentOutOfRangeException>(() => backend.FirstNonFinite(x, -1));
        Assert.Contains("finite check: count -1 must not be negative", negative.Message);
        Assert.Equal(-1, backend.FirstNonFinite(x, 0));
        backend.Free(x);
    }
}
