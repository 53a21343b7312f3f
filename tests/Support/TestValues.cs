using IlgpuLlm.Kernels;

namespace IlgpuLlm.Tests.Support;

/// <summary>Deterministic test inputs, optionally salted with the edge values the contract names.</summary>
public static class TestValues
{
    /// <summary>Values of a magnitude class, from a fixed seed.</summary>
    public static float[] Random(int count, int seed, float scale = 1f)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (int i = 0; i < count; i++)
            values[i] = (float)(random.NextDouble() * 2 - 1) * scale;
        return values;
    }

    /// <summary>
    /// Ordinary finite values whose magnitudes spread over 2^−spread … 2^spread, with random signs
    /// and full random mantissas: their products round (so a fused multiply-add and a multiply then
    /// an add give different bits), and sums of them round differently in every other order.
    /// </summary>
    public static float[] Ordinary(int count, int seed, int spread = 6)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (int i = 0; i < count; i++)
        {
            float magnitude = (float)((1 + random.NextDouble()) * Math.Pow(2, random.Next(-spread, spread + 1)));
            values[i] = random.Next(2) == 0 ? magnitude : -magnitude;
        }
        return values;
    }

    /// <summary>
    /// Random values where some positions hold edge cases: ±0, subnormals, values near the top of
    /// binary32 and of f16, and (when allowed) NaN and ±inf.
    /// </summary>
    public static float[] WithEdges(int count, int seed, bool nonFinite)
    {
        var values = Random(count, seed);
        var random = new Random(seed ^ 0x5EED);
        float[] edges = nonFinite
            ? [0f, -0f, 1e-40f, -3e-42f, 1e-30f, 3e38f, -3e38f, 65519f, 70000f, float.NaN, float.PositiveInfinity, float.NegativeInfinity]
            : [0f, -0f, 1e-40f, -3e-42f, 1e-30f, 1e30f, -1e30f, 65519f, 70000f, 1e-20f];
        for (int i = 0; i < count; i++)
            if (random.Next(4) == 0)
                values[i] = edges[random.Next(edges.Length)];
        return values;
    }

    /// <summary>
    /// The formats that store any value element by element (f32, f16, bf16): the KV cache's, and
    /// every op's stored operands. The block formats have tests of their own (QuantizedTests).
    /// </summary>
    public static IEnumerable<StorageType> ElementTypes => StorageFormat.All.Where(f => f.Narrows).Select(f => f.Type);

    /// <summary>The values narrowed to a storage type, as raw bytes.</summary>
    public static byte[] Stored(ReadOnlySpan<float> values, StorageType type)
    {
        var bytes = new byte[type.ByteLength(values.Length)];
        type.Format().Narrow(values, bytes);
        return bytes;
    }

    /// <summary>Finite values for an f16 weight (the SIMD widening assumes validated, finite weights).</summary>
    public static float[] FiniteForStorage(float[] values, StorageType type) =>
        type == StorageType.F16 ? values.Select(v => float.IsFinite(v) ? Math.Clamp(v, -65504f, 65504f) : 1f).ToArray() : values;
}
