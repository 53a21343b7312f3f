using ILGPU;
using ILGPU.Runtime;
using IlgpuLlm.Kernels;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Kernels;

[Collection(BackendCollection.Name)]
public class SoftCapTests
{
    // 40 000 values span several of the SIMD twin's blocks (slow on ILGPU's CPU accelerator, whose
    // stride loop is covered with few threads below).
    public static IEnumerable<object[]> Cases() =>
        from backend in TestBackends.All
        from count in new[] { 1, 3, 17, 33, 127, 1000, 40000 }
        where count <= 1000 || !TestBackends.IsSlow((string)backend[0])
        select new[] { backend[0], count };

    [Fact]
    public void The_kernel_with_fewer_threads_than_values_strides_over_all_of_them()
    {
        var accelerator = IlgpuCpuLibrary.Accelerator;
        var values = TestValues.WithEdges(1000, seed: 9, nonFinite: true).Select(v => v * 40f).ToArray();
        var expected = (float[])values.Clone();
        Activations.SoftCapReference(expected, 30f);
        using var x = accelerator.Allocate1D(values);
        Activations.RunSoftCap(IlgpuCpuLibrary.Library, x.View, 30f, maxThreads: 96);
        accelerator.Synchronize();
        Bits.Equal(expected, x.GetAsArray1D(), "soft-cap with 96 threads over 1000 values");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Matches_the_reference_bit_for_bit(string backendName, int count)
    {
        var backend = TestBackends.Get(backendName);
        // Edge values (NaN, ±inf, ±3e38, ±0, subnormals) among values on the scale of logits, some
        // beyond the cap and some in tanh's series range.
        var values = TestValues.WithEdges(count, seed: count, nonFinite: true);
        for (int i = 0; i < count; i += 3)
            values[i] *= 80f;
        foreach (float cap in new[] { 30f, 50f, 0.5f })
        {
            var expected = (float[])values.Clone();
            Activations.SoftCapReference(expected, cap);
            var x = backend.Upload(values, "logits");
            backend.SoftCap(x, count, cap);
            Bits.Equal(expected, backend.DownloadFloats(x), $"{backend.Name} count {count} cap {cap}");
            backend.Free(x);
        }
    }

    [Theory]
    [MemberData(nameof(TestBackends.All), MemberType = typeof(TestBackends))]
    public void Caps_only_the_first_count_values(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        var values = new[] { 100f, -100f, 3f, 100f, float.NaN };
        var x = backend.Upload(values, "logits");
        backend.SoftCap(x, 3, 30f);
        var result = backend.DownloadFloats(x);
        Assert.Equal(CanonicalMath.SoftCap(100f, 30f), result[0]);
        Assert.True(result[0] < 30f && result[0] > 29f);
        Assert.Equal(-result[0], result[1]);
        Assert.Equal([100f, float.NaN], result[3..]);
        backend.SoftCap(x, 0, 30f);
        backend.Free(x);
    }

    [Theory]
    [MemberData(nameof(TestBackends.All), MemberType = typeof(TestBackends))]
    public void Rejects_bad_caps_and_counts(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        var x = backend.Upload(new float[4], "logits");
        foreach (float cap in new[] { 0f, -30f, float.NaN, float.PositiveInfinity })
        {
            var error = Assert.Throws<ArgumentException>(() => backend.SoftCap(x, 4, cap));
            Assert.Contains($"soft-cap {cap} must be positive and finite", error.Message);
        }
        var countError = Assert.Throws<ArgumentException>(() => backend.SoftCap(x, 5, 30f));
        Assert.Contains("soft-cap: x holds 4 values; needs at least 5", countError.Message);
        var negative = Assert.Throws<ArgumentOutOfRangeException>(() => backend.SoftCap(x, -1, 30f));
        Assert.Contains("soft-cap: count -1 must not be negative", negative.Message);
        backend.Free(x);
    }
}
