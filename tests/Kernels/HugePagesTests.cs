using IlgpuLlm.Kernels;

namespace IlgpuLlm.Tests.Kernels;

/// <summary>The memory weights and the bandwidth probe live in: whole 2 MiB pages on a 2 MiB boundary, usable end to end.</summary>
public unsafe class HugePagesTests
{
    [Theory]
    [InlineData(0L, HugePages.Size)]
    [InlineData(1L, HugePages.Size)]
    [InlineData(HugePages.Size, HugePages.Size)]
    [InlineData(HugePages.Size + 1, 2 * HugePages.Size)]
    public void A_block_is_whole_huge_pages_on_a_huge_page_boundary(long bytes, long expected)
    {
        using var block = HugePages.Allocate(bytes);
        Assert.Equal(expected, block.Bytes);
        Assert.Equal(0, (long)block.Pointer % HugePages.Size);
        // Every byte is writable, the first and the last page included.
        var span = new Span<byte>(block.Pointer, (int)block.Bytes);
        span.Fill(0x5a);
        Assert.Equal(0x5a, span[^1]);
    }

    [Fact]
    public void Disposing_twice_is_harmless_and_a_negative_size_is_refused()
    {
        var block = HugePages.Allocate(100);
        block.Dispose();
        block.Dispose();
        Assert.True(block.Pointer == null);
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => HugePages.Allocate(-1));
        Assert.Contains("-1 bytes", error.Message);
    }
}
