using IlgpuLlm.Kernels;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Kernels;

[Collection(BackendCollection.Name)]
public class ActivationsTests
{
    static readonly int[] Counts = [1, 3, 17, 33, 127, 1000, 8192 + 17, 20000];

    public static IEnumerable<object[]> GatedCases()
    {
        foreach (var backend in TestBackends.All)
            foreach (var activation in Enum.GetValues<Activation>())
                foreach (int count in Counts)
                    yield return [backend[0], activation, count];
    }

    public static IEnumerable<object[]> AddCases()
    {
        foreach (var backend in TestBackends.All)
            foreach (int count in Counts)
                yield return [backend[0], count];
    }

    /// <summary>
    /// Gate values over the whole range that matters: edge values, the activations' working range,
    /// the exp clamps (|x| near 89 and 104) and tanh's series boundary inside GELU.
    /// </summary>
    static float[] Gates(int count, int seed)
    {
        var values = TestValues.WithEdges(count, seed, nonFinite: true);
        var random = new Random(seed);
        float[] boundaries = [0.55f, -0.55f, 0.5353f, -0.5353f, 89f, -89f, 104f, -104f, 88.72f, -88.72f, 9f, -9f, 20f, -20f];
        for (int i = 0; i < count; i++)
            values[i] = (i % 5) switch
            {
                1 => (float)(random.NextDouble() * 24 - 12),
                3 => boundaries[random.Next(boundaries.Length)] * (1 + (float)(random.NextDouble() - 0.5) * 1e-6f),
                _ => values[i],
            };
        return values;
    }

    [Theory]
    [MemberData(nameof(GatedCases))]
    public void Gated_activation_matches_the_reference_bit_for_bit(string backendName, Activation activation, int count)
    {
        var backend = TestBackends.Get(backendName);
        var gate = Gates(count, seed: count);
        var up = TestValues.WithEdges(count, seed: count + 1, nonFinite: true);
        var expected = new float[count];
        Activations.GatedReference(gate, up, expected, activation);

        // Tensors longer than the count: the values past it must stay untouched.
        const int extra = 5;
        var gates = backend.Upload([.. gate, .. new float[extra]], "gate");
        var ups = backend.Upload([.. up, .. new float[extra]], "up");
        var output = backend.Upload(Enumerable.Repeat(-7f, count + extra).ToArray(), "output");
        backend.GatedActivation(gates, ups, output, count, activation);
        Bits.Equal([.. expected, .. Enumerable.Repeat(-7f, extra)], backend.DownloadFloats(output), $"{backend.Name} {activation} × {count}");

        // In place on the gate, as the feed-forward block may run it.
        backend.GatedActivation(gates, ups, gates, count, activation);
        Bits.Equal([.. expected, .. new float[extra]], backend.DownloadFloats(gates), $"{backend.Name} {activation} × {count} in place");
        foreach (var t in new[] { gates, ups, output })
            backend.Free(t);
    }

    [Theory]
    [MemberData(nameof(AddCases))]
    public void Add_matches_the_reference_bit_for_bit(string backendName, int count)
    {
        var backend = TestBackends.Get(backendName);
        var a = TestValues.WithEdges(count, seed: count, nonFinite: true);
        var b = TestValues.WithEdges(count, seed: count * 3, nonFinite: true);
        var expected = new float[count];
        Activations.AddReference(a, b, expected);
        var left = backend.Upload(a, "a");
        var right = backend.Upload(b, "b");
        var output = backend.Upload(Enumerable.Repeat(-7f, count + 3).ToArray(), "output");
        backend.Add(left, right, output, count);
        Bits.Equal([.. expected, -7f, -7f, -7f], backend.DownloadFloats(output), $"{backend.Name} add × {count}");
        // The residual stream adds into itself.
        backend.Add(left, right, left, count);
        Bits.Equal(expected, backend.DownloadFloats(left), $"{backend.Name} add × {count} in place");
        foreach (var t in new[] { left, right, output })
            backend.Free(t);
    }

    [Fact]
    public void Reference_applies_the_activation_to_the_gate_only()
    {
        var output = new float[2];
        Activations.GatedReference([0f, 2f], [5f, 3f], output, Activation.Silu);
        Assert.Equal(0f, output[0]);
        Assert.Equal(CanonicalMath.Silu(2f) * 3f, output[1]);
        Activations.GatedReference([1f, -1f], [2f, 2f], output, Activation.GeluTanh);
        Assert.Equal(CanonicalMath.GeluTanh(1f) * 2f, output[0]);
        Assert.Equal(0.841192f, CanonicalMath.GeluTanh(1f), 5);
    }

    [Theory]
    [MemberData(nameof(TestBackends.All), MemberType = typeof(TestBackends))]
    public void Rejects_counts_the_tensors_cannot_hold(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        var a = backend.Upload(new float[8], "a");
        var b = backend.Upload(new float[6], "b");
        var output = backend.Allocate(TensorType.F32, 8, "output");
        var error = Assert.Throws<ArgumentException>(() => backend.Add(a, b, output, 7));
        Assert.Contains("add: second input holds 6 values; needs at least 7", error.Message);
        error = Assert.Throws<ArgumentException>(() => backend.GatedActivation(a, b, output, 0, Activation.Silu));
        Assert.Contains("gated activation: count is 0", error.Message);
        error = Assert.Throws<ArgumentException>(() => backend.GatedActivation(a, a, b, 8, Activation.GeluTanh));
        Assert.Contains("gated activation: output holds 6 values; needs at least 8", error.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => backend.GatedActivation(a, a, output, 8, (Activation)7));
        backend.Free(a);
        backend.Free(b);
        backend.Free(output);
    }
}
