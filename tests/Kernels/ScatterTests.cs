using System.Runtime.InteropServices;
using IlgpuLlm.Kernels;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.Kernels;

[Collection(BackendCollection.Name)]
public class ScatterTests
{
    public static IEnumerable<object[]> Cases() =>
        from backend in TestBackends.All from type in Enum.GetValues<StorageType>() select new object[] { backend[0], type };

    /// <summary>The values narrowing must get right: ties, the f16 overflow edge, subnormals, NaN.</summary>
    static readonly float[] Edges =
    [
        0f, -0f, 1f, -1f, 65504f, -65504f, 65519.996f, 65520f, -65520f, 70000f, 3e38f, float.MaxValue,
        float.PositiveInfinity, float.NegativeInfinity, float.NaN, -float.NaN,
        1.00048828125f, 1.00146484375f, // f16 ties: 1 + 2^−11 → even 1, 1 + 3·2^−11 → even 1 + 2^−9
        BitConverter.UInt32BitsToSingle(0x3F808000), BitConverter.UInt32BitsToSingle(0x3F818000), // bf16 ties
        5.9604645e-8f, 2.9802322e-8f, 2.9802326e-8f, 8.940697e-8f, 6.097555e-5f, 6.1035156e-5f, // f16 subnormals, 2^−25 tie
        1e-40f, -3e-42f, float.Epsilon, 1e-30f,
    ];

    /// <summary>
    /// Signalling NaNs. Written through an integer view: a float constant made from these bits can
    /// be folded by the JIT, which quiets it on the way.
    /// </summary>
    static readonly uint[] SignallingNaNs = [0x7F800001, 0xFFBFFFFF, 0x7FA00000];

    static void PutSignallingNaNs(Span<float> values) =>
        SignallingNaNs.CopyTo(MemoryMarshal.Cast<float, uint>(values));

    [Theory]
    [MemberData(nameof(Cases))]
    public void Scatter_matches_the_reference_bit_for_bit(string backendName, StorageType type)
    {
        var backend = TestBackends.Get(backendName);
        const int width = 37;
        long[] rowIndices = [7, 0, 3, 8, 2];
        var shape = new ScatterShape(rowIndices.Length, width, 9);
        var source = TestValues.WithEdges(rowIndices.Length * width, seed: 11, nonFinite: true);
        // Row 1 holds only values that fit f16; row 3 overflows exactly at the 65520 edge.
        for (int i = 0; i < width; i++)
        {
            source[width + i] = i < Edges.Length && float.IsFinite(Edges[i]) && Math.Abs(Edges[i]) < 65520f ? Edges[i] : 0.25f * i;
            source[3 * width + i] = float.IsFinite(source[3 * width + i]) ? Math.Clamp(source[3 * width + i], -65519f, 65519f) : 1f;
        }
        source[3 * width + 5] = -65520f;
        for (int i = 0; i < Edges.Length; i++)
            source[4 * width + i] = Edges[i];
        int signalling = 4 * width + Edges.Length;
        PutSignallingNaNs(source.AsSpan(signalling));

        var initial = TestValues.Stored(TestValues.Random(9 * width, seed: 5), type);
        var expected = initial.ToArray();
        var expectedOverflowed = new bool[rowIndices.Length];
        int expectedCount = Scatter.Reference(source, expected, type, rowIndices, shape, expectedOverflowed);
        if (type == StorageType.F16)
            Assert.True(!expectedOverflowed[1] && expectedOverflowed[3] && expectedOverflowed[4]);

        var src = backend.Upload(source, "source");
        var destination = backend.Allocate(type, 9 * width, "cache");
        backend.Upload(destination, initial);
        var overflowed = new bool[rowIndices.Length];
        int count = backend.ScatterRows(src, destination, rowIndices, shape, overflowed);
        Bits.Equal(expected, backend.DownloadBytes(destination), $"{backend.Name} scatter to {type.Name()}");
        Assert.Equal(expectedCount, count);
        Assert.Equal(expectedOverflowed, overflowed);
        // A signalling NaN (0x7F800001) is stored as a quiet one, whatever the backend.
        var stored = backend.DownloadBytes(destination);
        long at = rowIndices[4] * width + signalling - 4 * width;
        uint quietBit = type switch { StorageType.F32 => 0u, StorageType.F16 => 0x200u, _ => 0x40u };
        uint bits = type == StorageType.F32 ? BitConverter.ToUInt32(stored, (int)at * 4) : BitConverter.ToUInt16(stored, (int)at * 2);
        Assert.True(type == StorageType.F32 ? bits == 0x7F800001 : (bits & quietBit) != 0, $"{backend.Name} {type.Name()}: 0x{bits:X}");
        backend.Free(src);
        backend.Free(destination);
    }

    /// <summary>
    /// Every upper half of the binary32 bit patterns (sign, exponent, 7 mantissa bits) with lower
    /// halves at the rounding boundaries of f16 (bit 12) and bf16 (bit 15), their neighbours, the
    /// sticky extremes and a random one: every rounding case of both formats, normal and subnormal.
    /// </summary>
    static float[] BitPatterns(int upperStep)
    {
        ushort[] lows = [0x0000, 0x0001, 0x0FFF, 0x1000, 0x1001, 0x1FFF, 0x2000, 0x3000, 0x7FFF, 0x8000, 0x8001, 0xFFFF];
        var random = new Random(3);
        var patterns = new List<float>();
        for (int upper = 0; upper < 0x10000; upper += upperStep)
        {
            foreach (var low in lows)
                patterns.Add(BitConverter.UInt32BitsToSingle(((uint)upper << 16) | low));
            patterns.Add(BitConverter.UInt32BitsToSingle(((uint)upper << 16) | (uint)random.Next(0x10000)));
        }
        return patterns.ToArray();
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Narrowing_is_exact_for_every_rounding_case(string backendName, StorageType type)
    {
        var backend = TestBackends.Get(backendName);
        // ILGPU's CPU accelerator runs each GPU thread in software: a sparser sweep there.
        var patterns = BitPatterns(TestBackends.IsSlow(backendName) ? 61 : 1);
        const int width = 13 * 64;
        int rows = patterns.Length / width;
        var source = patterns.AsSpan(0, rows * width).ToArray();
        var rowIndices = Enumerable.Range(0, rows).Select(r => (long)(rows - 1 - r)).ToArray();
        var shape = new ScatterShape(rows, width, rows);
        var expected = new byte[type.ByteLength(rows * width)];
        var expectedOverflowed = new bool[rows];
        int expectedCount = Scatter.Reference(source, expected, type, rowIndices, shape, expectedOverflowed);

        var src = backend.Upload(source, "source");
        var destination = backend.Allocate(type, (long)rows * width, "cache");
        var overflowed = new bool[rows];
        int count = backend.ScatterRows(src, destination, rowIndices, shape, overflowed);
        var actual = backend.DownloadBytes(destination);
        int at = expected.AsSpan().CommonPrefixLength(actual);
        if (at < expected.Length)
        {
            int element = (int)type.ElementCount(at / type.ByteLength(1) * type.ByteLength(1));
            int row = (int)rowIndices.AsSpan().IndexOf(element / width);
            float value = source[row * width + element % width];
            Assert.Fail($"{backend.Name} {type.Name()}: 0x{BitConverter.SingleToUInt32Bits(value):X8} narrowed wrong");
        }
        Assert.Equal(expectedCount, count);
        Assert.Equal(expectedOverflowed, overflowed);
        if (type == StorageType.F16)
            Assert.True(count > 0 && count < rows);
        backend.Free(src);
        backend.Free(destination);
    }

    public static IEnumerable<object[]> ConvertCases() =>
        from backend in TestBackends.All
        from sourceType in Enum.GetValues<StorageType>()
        from type in Enum.GetValues<StorageType>()
        select new object[] { backend[0], sourceType, type };

    [Theory]
    [MemberData(nameof(ConvertCases))]
    public void Convert_matches_the_reference_between_every_pair_of_types(string backendName, StorageType sourceType, StorageType type)
    {
        var backend = TestBackends.Get(backendName);
        const int length = 301;
        var values = TestValues.WithEdges(length, seed: 21, nonFinite: true);
        Edges.CopyTo(values, 40);
        PutSignallingNaNs(values.AsSpan(40 + Edges.Length));
        var stored = TestValues.Stored(values, sourceType);
        if (sourceType != StorageType.F32)
        {
            // Raw 16-bit specials a narrowing would never produce: signalling NaNs, ±inf, subnormals.
            var halves = MemoryMarshal.Cast<byte, ushort>(stored.AsSpan());
            ushort[] specials = [0x7C00, 0xFC00, 0x7C01, 0xFD55, 0x7F81, 0xFF80, 0x0001, 0x83FF, 0x0080, 0x8001, 0x7BFF, 0x7F7F];
            specials.CopyTo(halves[250..]);
        }
        var expected = new byte[type.ByteLength(length)];
        long expectedOverflows = Scatter.ConvertReference(new HostStorage(stored, sourceType), expected, type);
        if (type == StorageType.F16 && sourceType != StorageType.F16)
            Assert.True(expectedOverflows > 0);

        var source = backend.Allocate(sourceType, length, "source");
        backend.Upload(source, stored);
        var destination = backend.Allocate(type, length, "destination");
        long overflows = backend.Convert(source, destination);
        Bits.Equal(expected, backend.DownloadBytes(destination), $"{backend.Name} {sourceType.Name()} → {type.Name()}");
        Assert.Equal(expectedOverflows, overflows);
        backend.Free(source);
        backend.Free(destination);
    }

    public static IEnumerable<object[]> ValidationBackends() =>
        TestBackends.All.Where(b => (string)b[0] is "ilgpu-cpu" or "simd-scalar-t1" || ((string)b[0]).EndsWith("-t2"));

    [Theory]
    [MemberData(nameof(ValidationBackends))]
    public void Rejects_bad_arguments_with_a_message_naming_what_is_wrong(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        var source = backend.Allocate(TensorType.F32, 6, "source");
        var destination = backend.Allocate(TensorType.F16, 12, "cache");
        var shape = new ScatterShape(2, 3, 4);
        var flags = new bool[2];

        Assert.Contains("destination row 1 is written twice (row 1)",
            Assert.Throws<ArgumentException>(() => backend.ScatterRows(source, destination, [1, 1], shape, flags)).Message);
        Assert.Contains("row 1 targets destination row 4; the destination has 4 rows",
            Assert.Throws<ArgumentOutOfRangeException>(() => backend.ScatterRows(source, destination, [0, 4], shape, flags)).Message);
        Assert.Contains("row 0 targets destination row -1",
            Assert.Throws<ArgumentOutOfRangeException>(() => backend.ScatterRows(source, destination, [-1, 0], shape, flags)).Message);
        Assert.Contains("row indices holds 3 values; expected 2",
            Assert.Throws<ArgumentException>(() => backend.ScatterRows(source, destination, [0, 1, 2], shape, flags)).Message);
        Assert.Contains("destination holds 12 values; expected 15",
            Assert.Throws<ArgumentException>(() => backend.ScatterRows(source, destination, [0, 1], shape with { DestinationRows = 5 }, flags)).Message);
        Assert.Contains("source holds 6 values; expected 8",
            Assert.Throws<ArgumentException>(() => backend.ScatterRows(source, destination, [0, 1], new ScatterShape(2, 4, 3), flags)).Message);
        Assert.Contains("overflow flags holds 3 values; expected 2",
            Assert.Throws<ArgumentException>(() => backend.ScatterRows(source, destination, [0, 1], shape, new bool[3])).Message);
        Assert.Contains("convert: destination cache holds 12 values; expected 6",
            Assert.Throws<ArgumentException>(() => backend.Convert(source, destination)).Message);
        var ids = backend.Allocate(TensorType.I32, 12, "ids");
        Assert.Throws<ArgumentException>(() => backend.Convert(ids, destination));
        foreach (var t in new[] { source, destination, ids })
            backend.Free(t);
    }
}
