using IlgpuLlm.Kernels;

namespace IlgpuLlm.Tests.Kernels;

/// <summary>
/// Shape checks run on every op call of the generation loop; when they pass they must not allocate
/// (their explanations are formatted only on failure), or every decoded token churns the GC.
/// </summary>
public class ValidationAllocationTests
{
    static long Allocated(Action check)
    {
        check(); // JIT and first-use costs
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++)
            check();
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    [Fact]
    public void Passing_shape_checks_allocate_nothing()
    {
        var linear = new LinearShape(3, 5, 7);
        Assert.Equal(0, Allocated(() => linear.Validate(21, 35, 5, 15)));
        var norm = new RmsNormShape(3, 8, 1e-5f, false);
        Assert.Equal(0, Allocated(() => norm.Validate(24, 8, 24)));
        var rotary = new RotaryShape(2, 4, 8, RotaryLayout.HalfSplit);
        Assert.Equal(0, Allocated(() => rotary.Validate(64, 16)));
        var attention = new AttentionShape(2, 4, 2, 8, 2, 16, 0.35f, 0f);
        KeyRange[] ranges = [new(0, 0, 3), new(1, 2, 9)];
        Assert.Equal(0, Allocated(() =>
        {
            attention.Validate(64, 2 * 16 * 2 * 8, 2 * 16 * 2 * 8, 64);
            attention.ValidateRanges(ranges);
        }));
        var scatter = new ScatterShape(3, 4, 10);
        long[] rows = [7, 2, 5];
        Assert.Equal(0, Allocated(() => scatter.Validate(12, 40, rows)));
    }

    [Fact]
    public void Failing_checks_still_explain_themselves()
    {
        var error = Assert.Throws<ArgumentException>(() => new LinearShape(3, 5, 7).Validate(21, 35, 5, 16));
        Assert.Contains("linear: y holds 16 values; expected 15 (rows 3 × out features 5)", error.Message);
        Assert.Contains("written twice", Assert.Throws<ArgumentException>(() =>
            new ScatterShape(3, 4, 10).Validate(12, 40, [7, 2, 7])).Message);
    }
}
