using System.Runtime.Intrinsics;
using IlgpuLlm.Kernels;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Kernels;

/// <summary>
/// <see cref="SimdTree.Fold16x16"/> finishes sixteen trees at once; each result must carry the
/// bits of <see cref="SimdTree.Fold16"/> on its own vector, and that of the scalar canonical sum.
/// Magnitudes far apart make every different pairing round differently.
/// </summary>
public unsafe class SimdTreeTests
{
    [SkippableFact]
    public void Sixteen_trees_at_once_equal_one_at_a_time()
    {
        Skip.IfNot(SimdLevels.Best == SimdLevel.Avx512, "needs AVX-512");
        var random = new Random(5);
        var vectors = new Vector512<float>[16];
        for (int round = 0; round < 200; round++)
        {
            var expected = new float[16];
            for (int v = 0; v < 16; v++)
            {
                var lanes = new float[16];
                for (int j = 0; j < 16; j++)
                    lanes[j] = (float)((random.NextDouble() - 0.5) * Math.Pow(2, random.Next(-30, 30)));
                if (round % 10 == 0)
                    lanes[random.Next(16)] = round % 20 == 0 ? -0f : float.NegativeInfinity;
                vectors[v] = Vector512.Create(lanes);
                expected[v] = SimdTree.Fold16(vectors[v]);
                var canonical = new float[32];
                lanes.CopyTo(canonical, 0);
                Assert.Equal(BitConverter.SingleToUInt32Bits(Canonical.Sum(canonical)), BitConverter.SingleToUInt32Bits(expected[v]));
            }
            fixed (Vector512<float>* h16 = vectors)
            {
                var folded = SimdTree.Fold16x16(h16);
                var actual = new float[16];
                folded.CopyTo(actual);
                Bits.Equal(expected, actual, $"round {round}");
            }
        }
    }
}
