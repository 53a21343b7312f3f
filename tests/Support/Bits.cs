namespace IlgpuLlm.Tests.Support;

/// <summary>
/// Bit-for-bit comparison of binary32 results, the assertion of the numerics contract. NaN payloads
/// and signs are not part of the contract (x86 and NVIDIA GPUs propagate different NaNs), so any
/// NaN equals any NaN; every other value, ±0 included, must match exactly.
/// </summary>
public static class Bits
{
    public static void Equal(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string context)
    {
        Assert.True(expected.Length == actual.Length, $"{context}: {actual.Length} values, expected {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
        {
            if (float.IsNaN(expected[i]) && float.IsNaN(actual[i]))
                continue;
            uint e = BitConverter.SingleToUInt32Bits(expected[i]);
            uint a = BitConverter.SingleToUInt32Bits(actual[i]);
            if (e != a)
                Assert.Fail($"{context}: element {i} is {actual[i]:R} (0x{a:X8}), expected {expected[i]:R} (0x{e:X8})");
        }
    }

    public static void Equal(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual, string context)
    {
        Assert.True(expected.Length == actual.Length, $"{context}: {actual.Length} bytes, expected {expected.Length}");
        int at = expected.CommonPrefixLength(actual);
        if (at < expected.Length)
            Assert.Fail($"{context}: byte {at} is 0x{actual[at]:X2}, expected 0x{expected[at]:X2}");
    }
}
