using System.Globalization;
using System.Text.RegularExpressions;
using IlgpuLlm.Kernels;
using IlgpuLlm.Model.Formats;
using IlgpuLlm.Runtime.Backends;
using IlgpuLlm.Runtime.Generation;

namespace IlgpuLlm.Model;

/// <summary>
/// A backend that runs every op on another and then checks the op's output rows for NaN and
/// ±inf, keeping the first op that produced one in each row, named after the weight or cache it
/// read (blk.3.ffn_down.weight → "layer 3 feed-forward down projection (ffn_down)"). It is the
/// rare slow path that explains non-finite logits: the forward pass runs unchanged on it, a wait
/// per row per op. Rows are the step's token rows until the gather of the logits rows (the
/// embedding op reading <c>logitRowsOnDevice</c>), then the logits rows.
/// </summary>
sealed partial class CheckingBackend(IBackend inner, int rows, ReadOnlySpan<int> logitRows, Tensor logitRowsOnDevice) : IBackend
{
    readonly int[] logitRows = logitRows.ToArray();
    readonly Dictionary<int, string> byRow = [];
    bool logitStage;
    int layer = -1;
    string lastWeight = "";

    /// <summary>The first problem of each row, in row order.</summary>
    public IEnumerable<RowProblem> Problems => byRow.OrderBy(p => p.Key).Select(p => new RowProblem(p.Key, p.Value));

    public string Name => inner.Name;
    public string Kind => inner.Kind;
    public DeviceCounters Counters => inner.Counters;
    public Tensor Allocate(TensorType type, long length, string name) => inner.Allocate(type, length, name);
    public unsafe Tensor Weights(TensorType type, long length, byte* data, string name) => inner.Weights(type, length, data, name);
    public void Upload(Tensor destination, ReadOnlySpan<byte> values) => inner.Upload(destination, values);
    public void Download(Tensor source, Span<byte> values) => inner.Download(source, values);
    public void Free(Tensor tensor) => inner.Free(tensor);
    public void Synchronize() => inner.Synchronize();
    public long Convert(Tensor source, Tensor destination) => inner.Convert(source, destination);
    public long FirstNonFinite(Tensor x, long count) => inner.FirstNonFinite(x, count);
    public void Softmax(Tensor logits, Tensor probabilities, SoftmaxShape shape, float temperature) =>
        inner.Softmax(logits, probabilities, shape, temperature);
    public void Sample(Tensor logits, Tensor parameters, Tensor penalized, Tensor tokens, SamplingShape shape, Tensor? skip,
        Tensor? workspace = null) => inner.Sample(logits, parameters, penalized, tokens, shape, skip, workspace);
    public void FlagNonFinite(Tensor x, int rows, int width, ProblemFlags flags) => inner.FlagNonFinite(x, rows, width, flags);
    public void ScatterRows(Tensor source, Tensor destination, Tensor rowIndices, ScatterShape shape, ProblemFlags? overflowed) =>
        inner.ScatterRows(source, destination, rowIndices, shape, overflowed);

    public void Embedding(Tensor table, Tensor ids, Tensor output, EmbeddingShape shape, float scale)
    {
        inner.Embedding(table, ids, output, shape, scale);
        logitStage |= ReferenceEquals(ids, logitRowsOnDevice);
        Check(output, logitStage ? "the gather of the logits rows" : Describe(table.Name, "the token embedding"));
    }

    public void Linear(Tensor x, Tensor weight, Tensor? bias, Tensor y, LinearShape shape)
    {
        inner.Linear(x, weight, bias, y, shape);
        Check(y, logitStage ? "the output classifier" : Describe(weight.Name, "a projection"));
    }

    public void RmsNorm(Tensor x, Tensor weight, Tensor y, RmsNormShape shape)
    {
        inner.RmsNorm(x, weight, y, shape);
        Check(y, Describe(weight.Name, "a norm"));
    }

    public void Rotary(Tensor x, Tensor angles, RotaryShape shape)
    {
        inner.Rotary(x, angles, shape);
        Check(x, InLayer("rotary embedding"));
    }

    public void Attention(Tensor q, Tensor keys, Tensor values, Tensor output, Tensor ranges, AttentionShape shape, AttentionBias? bias,
        ProblemFlags? fullyMasked, Tensor? workspace = null)
    {
        inner.Attention(q, keys, values, output, ranges, shape, bias, fullyMasked, workspace);
        if (CacheLayer().Match(keys.Name) is { Success: true } match)
            layer = int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
        Check(output, InLayer("attention"));
    }

    public void GatedActivation(Tensor gate, Tensor up, Tensor output, long count, Activation activation)
    {
        inner.GatedActivation(gate, up, output, count, activation);
        Check(output, InLayer("feed-forward activation"));
    }

    public void Add(Tensor a, Tensor b, Tensor output, long count)
    {
        inner.Add(a, b, output, count);
        Check(output, InLayer($"residual connection after {lastWeight}"));
    }

    public void SoftCap(Tensor x, long count, float cap)
    {
        inner.SoftCap(x, count, cap);
        Check(x, "the final logit soft-cap");
    }

    public void Dispose()
    {
    }

    string InLayer(string op) => layer >= 0 ? $"layer {layer} {op}" : op;

    /// <summary>What an op reading weight <paramref name="name"/> computes, in the words of its layer.</summary>
    string Describe(string name, string fallback)
    {
        if (BlockWeight().Match(name) is { Success: true } match)
        {
            layer = int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
            string role = match.Groups[2].Value;
            lastWeight = role;
            string what = role switch
            {
                "attn_norm" => "attention norm",
                "attn_q" => "attention q projection",
                "attn_k" => "attention k projection",
                "attn_v" => "attention v projection",
                "attn_q_norm" => "attention q norm",
                "attn_k_norm" => "attention k norm",
                "attn_output" => "attention output projection",
                "post_attention_norm" => "attention output norm",
                "ffn_norm" => "feed-forward norm",
                "ffn_gate" => "feed-forward gate projection",
                "ffn_up" => "feed-forward up projection",
                "ffn_down" => "feed-forward down projection",
                "post_ffw_norm" => "feed-forward output norm",
                _ => "weight",
            };
            return $"layer {layer} {what} ({role})";
        }
        return name switch
        {
            TensorNames.TokenEmbedding => "the token embedding",
            TensorNames.OutputNorm => "the output norm",
            _ => fallback,
        };
    }

    void Check(Tensor output, string op)
    {
        int count = logitStage ? logitRows.Length : rows;
        if (count == 0)
            return;
        long width = output.Length / count;
        for (int i = 0; i < count; i++)
        {
            int row = logitStage ? logitRows[i] : i;
            if (byRow.ContainsKey(row))
                continue;
            long at = inner.FirstNonFinite(output.Slice(i * width, width), width);
            if (at >= 0)
                byRow[row] = $"{op} (element {at} of row {row})";
        }
    }

    [GeneratedRegex(@"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")]
    private static partial Regex BlockWeight();

    [GeneratedRegex(@"^layer (\d+) key cache$")]
    private static partial Regex CacheLayer();
}
