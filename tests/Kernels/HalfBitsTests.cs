using IlgpuLlm.Kernels;

namespace IlgpuLlm.Tests.Kernels;

/// <summary>
/// The integer conversions of <see cref="HalfBits"/> against independent implementations:
/// System.Half for f16 (widening exhaustively, narrowing on every tie, subnormal and overflow
/// boundary), and a nearest-by-distance rounding in double precision for bf16.
/// </summary>
public class HalfBitsTests
{
    static uint BitsOf(float value) => BitConverter.SingleToUInt32Bits(value);

    static float FloatOf(uint bits) => BitConverter.UInt32BitsToSingle(bits);

    [Fact]
    public void F16_widening_is_exact_for_all_65536_patterns()
    {
        for (int h = 0; h <= ushort.MaxValue; h++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf((ushort)h);
            float actual = HalfBits.F16ToF32((ushort)h);
            if (float.IsNaN(expected))
            {
                Assert.True(float.IsNaN(actual), $"f16 0x{h:X4} is NaN; widened to {actual:R}");
                Assert.Equal(BitsOf(expected) >> 31, BitsOf(actual) >> 31);
                continue;
            }
            Assert.True(BitsOf(expected) == BitsOf(actual),
                $"f16 0x{h:X4} widened to 0x{BitsOf(actual):X8}; System.Half gives 0x{BitsOf(expected):X8}");
        }
    }

    [Fact]
    public void Bf16_widening_is_the_upper_half_of_binary32()
    {
        for (int h = 0; h <= ushort.MaxValue; h++)
            Assert.Equal((uint)h << 16, BitsOf(HalfBits.Bf16ToF32((ushort)h)));
    }

    /// <summary>
    /// Binary32 values around every f16 value: the value, the exact midpoints to its neighbours
    /// (ties), one binary32 ulp either side of each midpoint, and random patterns in between.
    /// Covers the subnormal halves, the underflow to zero at 2^−25 and the overflow at 65520.
    /// </summary>
    static IEnumerable<float> F16Probes()
    {
        var random = new Random(16);
        for (int h = 0; h < 0x7C00; h++)
        {
            double value = (double)BitConverter.UInt16BitsToHalf((ushort)h);
            double next = h == 0x7BFF ? 65536.0 : (double)BitConverter.UInt16BitsToHalf((ushort)(h + 1));
            float mid = (float)((value + next) / 2); // exact: the midpoint has at most 12 significant bits
            foreach (float v in new[] { (float)value, mid, MathF.BitDecrement(mid), MathF.BitIncrement(mid),
                         MathF.BitIncrement((float)value), MathF.BitDecrement((float)next),
                         (float)(value + (next - value) * random.NextDouble()) })
            {
                yield return v;
                yield return -v;
            }
        }
        // Below the smallest subnormal half: 2^−25 ties to zero, anything above it rounds up.
        for (int e = -150; e <= -24; e++)
            foreach (double f in new[] { 1.0, 1.5, 0.999999, 1.000001 })
            {
                yield return (float)Math.ScaleB(f, e);
                yield return -(float)Math.ScaleB(f, e);
            }
        // Above the f16 range, up to the binary32 maximum and infinity.
        for (int e = 16; e <= 127; e++)
        {
            yield return (float)Math.ScaleB(1.0, e);
            yield return -(float)Math.ScaleB(1.7, e);
        }
        yield return float.MaxValue;
        yield return float.PositiveInfinity;
        yield return float.NegativeInfinity;
        for (int i = 0; i < 200_000; i++)
            yield return FloatOf((uint)random.NextInt64(1L << 32));
    }

    [Fact]
    public void F16_narrowing_rounds_to_nearest_even_like_system_half()
    {
        int checkedCount = 0;
        foreach (float x in F16Probes())
        {
            checkedCount++;
            ushort actual = HalfBits.F32ToF16(x);
            if (float.IsNaN(x))
                continue;
            ushort expected = BitConverter.HalfToUInt16Bits((Half)x);
            if (expected != actual)
                Assert.Fail($"f32 {x:R} (0x{BitsOf(x):X8}) narrowed to f16 0x{actual:X4}; System.Half gives 0x{expected:X4}");
        }
        Assert.True(checkedCount > 600_000);
        Assert.Equal(0x7C00, HalfBits.F32ToF16(65520f));
        Assert.Equal(0x7BFF, HalfBits.F32ToF16(MathF.BitDecrement(65520f)));
        Assert.Equal(0xFC00, HalfBits.F32ToF16(-65520f));
        Assert.Equal(0x0000, HalfBits.F32ToF16((float)Math.ScaleB(1, -25)));
        Assert.Equal(0x0001, HalfBits.F32ToF16(MathF.BitIncrement((float)Math.ScaleB(1, -25))));
        Assert.Equal(0x8000, HalfBits.F32ToF16(-0f));
    }

    [Fact]
    public void Nan_narrows_to_a_quiet_nan_of_the_same_sign()
    {
        foreach (uint bits in new uint[] { 0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FBFFFFF, 0x7FFFFFFF, 0x80000000 | 0x7F802000 })
        {
            ushort h = HalfBits.F32ToF16(FloatOf(bits));
            Assert.True((h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0, $"f32 0x{bits:X8} narrowed to f16 0x{h:X4}, not a NaN");
            Assert.True((h & 0x200) != 0, $"f16 0x{h:X4} from 0x{bits:X8} is not a quiet NaN");
            Assert.Equal(bits >> 31, (uint)h >> 15);
            ushort b = HalfBits.F32ToBf16(FloatOf(bits));
            Assert.True((b & 0x7F80) == 0x7F80 && (b & 0x7F) != 0, $"f32 0x{bits:X8} narrowed to bf16 0x{b:X4}, not a NaN");
            Assert.True((b & 0x40) != 0, $"bf16 0x{b:X4} from 0x{bits:X8} is not a quiet NaN");
            Assert.Equal(bits >> 31, (uint)b >> 15);
        }
    }

    [Fact]
    public void Overflow_check_flags_exactly_the_finite_values_that_narrow_to_infinity()
    {
        foreach (float x in F16Probes())
        {
            bool becomesInfinity = (HalfBits.F32ToF16(x) & 0x7FFF) == 0x7C00;
            Assert.Equal(becomesInfinity && float.IsFinite(x), HalfBits.OverflowsF16(x));
        }
    }

    /// <summary>Independent bf16 rounding: the nearer of the two bracketing bf16 values by exact distance.</summary>
    static ushort NearestBf16(float x)
    {
        uint bits = BitsOf(x);
        uint sign = bits & 0x80000000;
        uint magnitude = bits & 0x7FFFFFFF;
        uint below = magnitude >> 16;          // truncation toward zero
        uint above = below + 1;                 // next bf16 up in magnitude (0x7F80 = infinity)
        double value = FloatOf(magnitude);
        double lower = FloatOf(below << 16);
        // IEEE rounding treats the value past the largest finite as 2^128 when deciding overflow.
        double upper = above == 0x7F80 ? Math.ScaleB(1, 128) : FloatOf(above << 16);
        double toLower = value - lower, toUpper = upper - value;
        uint chosen = toLower < toUpper ? below : toUpper < toLower ? above : (below & 1) == 0 ? below : above;
        return (ushort)((sign >> 16) | chosen);
    }

    [Fact]
    public void Bf16_narrowing_rounds_to_nearest_even()
    {
        var random = new Random(32);
        uint[] lowHalves = [0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0x4000, 0xC000];
        for (uint high = 0; high <= 0xFFFF; high++)
        {
            if ((high & 0x7F80) == 0x7F80)
                continue; // ±inf and NaN: the specials test
            foreach (uint low in lowHalves.Append((uint)random.Next(1 << 16)))
            {
                float x = FloatOf((high << 16) | low);
                ushort expected = NearestBf16(x), actual = HalfBits.F32ToBf16(x);
                if (expected != actual)
                    Assert.Fail($"f32 {x:R} (0x{BitsOf(x):X8}) narrowed to bf16 0x{actual:X4}; nearest-even is 0x{expected:X4}");
            }
        }
        Assert.Equal(0x7F80, HalfBits.F32ToBf16(float.MaxValue));
        Assert.Equal(0x7F80, HalfBits.F32ToBf16(float.PositiveInfinity));
        Assert.Equal(0xFF80, HalfBits.F32ToBf16(float.NegativeInfinity));
        Assert.Equal(0x8000, HalfBits.F32ToBf16(-0f));
        Assert.Equal(0x0000, HalfBits.F32ToBf16(float.Epsilon));
    }
}
