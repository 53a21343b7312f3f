using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Runtime;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Runtime.Generation;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.EndToEnd;

/// <summary>
/// The step batch is the API boundary of a step: everything per-row is checked on the host, with
/// messages naming the row, before anything reaches the device; what it uploads is what the ops
/// read (cache rows and key ranges per kind of layer, in one buffer).
/// </summary>
[Collection(BackendCollection.Name)]
public class StepBatchTests
{
    static StepBatch Batch(IBackend backend, int slots = 2, int maxRows = 4) => new(backend, new StepBatchLayout
    {
        MaxRows = maxRows, Slots = slots, ContextLength = 16, Vocabulary = 10, Heads = 2,
        Cache = new KvCacheLayout(2, 1, 4, slots, 16, maxRows, [null, 3]),
        RotaryTables = [new RotaryTable(4, 10_000)],
    });

    static string Fails<TException>(StepBatch batch, Action<StepBatch> build) where TException : Exception
    {
        batch.Clear();
        build(batch);
        return Assert.Throws<TException>(batch.Upload).Message;
    }

    [Fact]
    public void Bad_rows_logit_rows_and_draws_are_refused_before_anything_is_uploaded()
    {
        var backend = TestBackends.Get($"simd-{SimdLevels.Best.Name()}-t1");
        using var batch = Batch(backend);
        long uploads = backend.Counters.Snapshot().Uploads;
        Assert.Contains("cache slot 2; the cache has 2 slots",
            Fails<ArgumentOutOfRangeException>(batch, b => b.Add(new TokenRow(2, 0, 1))));
        Assert.Contains("negative position -1", Fails<ArgumentOutOfRangeException>(batch, b => b.Add(new TokenRow(0, -1, 1))));
        Assert.Contains("needs 17 positions; the cache holds 16", Fails<ContextOverflowException>(batch, b => b.Add(new TokenRow(1, 16, 1))));
        Assert.Contains("id 10 at row 1", Fails<ArgumentOutOfRangeException>(batch, b =>
        {
            b.Add(new TokenRow(0, 0, 1));
            b.Add(new TokenRow(0, 1, 10));
        }));
        Assert.Contains("logit row 1 is not one of the 1 rows", Fails<ArgumentOutOfRangeException>(batch, b =>
        {
            b.Add(new TokenRow(0, 0, 1));
            b.AddLogitRow(1);
        }));
        Assert.Contains("rows 0 and 1 (slot 1, positions 3 and 3)", Fails<ArgumentException>(batch, b =>
        {
            b.Add(new TokenRow(1, 3, 1));
            b.Add(new TokenRow(1, 3, 2));
        }));
        Assert.Contains("penalized token 12 is outside the vocabulary", Fails<ArgumentOutOfRangeException>(batch, b =>
        {
            b.Add(new TokenRow(0, 0, 1));
            b.AddLogitRow(0, SamplingRow.Greedy() with { RepetitionPenalty = 1.2f }, [3, 12]);
        }));
        Assert.Contains("drawable tokens 11", Fails<ArgumentOutOfRangeException>(batch, b =>
        {
            b.Add(new TokenRow(0, 0, 1));
            b.AddLogitRow(0, SamplingRow.Greedy() with { DrawableTokens = 11 });
        }));
        Assert.Equal(uploads, backend.Counters.Snapshot().Uploads);

        batch.Clear();
        Assert.Contains("not been uploaded", Assert.Throws<InvalidOperationException>(() => batch.Tokens).Message);
        batch.Add(new TokenRow(0, 0, 1));
        batch.AddLogitRow(0, SamplingRow.Greedy());
        Assert.Contains("every logits row or from none", Assert.Throws<ArgumentException>(() => batch.AddLogitRow(0)).Message);
        Assert.Contains("a forward pass takes 1 to 1 rows", Assert.Throws<ArgumentOutOfRangeException>(() =>
        {
            using var small = Batch(backend, maxRows: 1);
            small.Add(new TokenRow(0, 0, 1));
            small.Add(new TokenRow(0, 1, 1));
        }).Message);
    }

    [Fact]
    public void Each_kind_of_layer_gets_its_cache_rows_and_key_ranges_in_one_upload()
    {
        var backend = TestBackends.Get($"simd-{SimdLevels.Best.Name()}-t1");
        using var batch = Batch(backend);
        // Layer 0 is global (capacity 16), layer 1 slides with window 3 (capacity 3 + 4 − 1 = 6).
        Assert.Equal([new CacheKind(16, null), new CacheKind(6, 3)], batch.Kinds);
        foreach (var row in new TokenRow[] { new(0, 7, 1), new(1, 3, 2), new(1, 4, 3) })
            batch.Add(row);
        batch.AddLogitRow(2);
        long before = backend.Counters.Snapshot().Uploads;
        batch.Upload();
        Assert.Equal(1, backend.Counters.Snapshot().Uploads - before);
        Assert.Equal([1, 2, 3], backend.DownloadInts(batch.Tokens));
        Assert.Equal([2], backend.DownloadInts(batch.LogitRows));
        Assert.Equal([7, 16 + 3, 16 + 4], backend.DownloadInts(batch.Destinations(0)));
        Assert.Equal([1, 6 + 3, 6 + 4], backend.DownloadInts(batch.Destinations(1)));
        Assert.Equal([0, 0, 8, 1, 0, 4, 1, 0, 5], backend.DownloadInts(batch.Ranges(0)));
        Assert.Equal([0, 5, 8, 1, 1, 4, 1, 2, 5], backend.DownloadInts(batch.Ranges(1)));
        Assert.Equal((8, 3), (batch.MaxKeys(0), batch.MaxKeys(1)));
        var angles = new float[3 * 4];
        new RotaryTable(4, 10_000).Fill([7, 3, 4], angles);
        Bits.Equal(angles, backend.DownloadFloats(batch.Angles(0)), "rotary angles");
        batch.Download();
        Assert.Empty(batch.Problems());
    }

    [Fact]
    public void A_model_refuses_a_batch_made_for_another()
    {
        var backend = TestBackends.Get($"simd-{SimdLevels.Best.Name()}-t1");
        using var model = ModelLoader.OpenDemo(backend, new TransformerOptions { Slots = 2 });
        using var batch = Batch(backend);
        batch.Add(new TokenRow(0, 0, 1));
        batch.Upload();
        Assert.Contains("made for another model", Assert.Throws<ArgumentException>(() => model.Transformer.Forward(batch)).Message);
    }
}
