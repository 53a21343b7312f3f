using IlgpuLlm.Runtime.Backends;

namespace IlgpuLlm.Runtime.Generation;

/// <summary>One token entering the model: which sequence slot it belongs to and its position there.</summary>
public readonly record struct TokenRow(int Slot, int Position, int Token);

/// <summary>How much a forward pass checks its own values.</summary>
public enum ForwardChecks
{
    /// <summary>Only what the ops report on their own (f16 cache overflow, fully masked rows).</summary>
    None,

    /// <summary>Every op's output is checked for NaN/inf, to find where a non-finite value first appears.</summary>
    EveryOp,
}

/// <summary>Something a forward pass found wrong with one row; the sequence of that row must stop.</summary>
public readonly record struct RowProblem(int Row, string Message);

/// <summary>The logits a forward pass produced and the problems it found.</summary>
public sealed record ForwardResult(Tensor Logits, IReadOnlyList<RowProblem> Problems);

/// <summary>
/// What the generation loop needs of a model: a forward pass over any set of token rows from any
/// sequences (prefill chunks and single decode tokens mixed, sequences packed together), writing
/// their keys and values into the model's cache and returning logits for chosen rows.
/// A row's results never depend on the other rows in the call (docs/NUMERICS.md).
/// </summary>
public interface ILanguageModel
{
    IBackend Backend { get; }
    int VocabSize { get; }
    int ContextLength { get; }

    /// <summary>Sequences that can be in flight at once (KV cache slots).</summary>
    int Slots { get; }

    /// <summary>Most rows one forward pass takes.</summary>
    int MaxRowsPerForward { get; }

    /// <summary>
    /// Runs <paramref name="rows"/> through the model and returns f32 logits [logitRows.Length, vocab]
    /// for the rows whose indices are in <paramref name="logitRows"/> (in that order). The logits
    /// tensor is valid until the next call.
    /// </summary>
    ForwardResult Forward(ReadOnlySpan<TokenRow> rows, ReadOnlySpan<int> logitRows, ForwardChecks checks = ForwardChecks.None);

    /// <summary>A step batch shaped for this model's steps (its cache's kinds of layers, its rotary tables).</summary>
    StepBatch CreateStepBatch() => new(Backend, new StepBatchLayout
    {
        MaxRows = MaxRowsPerForward, Slots = Slots, ContextLength = ContextLength, Vocabulary = VocabSize,
    });

    /// <summary>
    /// The forward pass of an uploaded step batch: launches every op without waiting and returns
    /// the logits of the batch's logits rows (valid until the next call); problems the ops find
    /// are raised in the batch's flags. The default runs <see cref="Forward(ReadOnlySpan{TokenRow}, ReadOnlySpan{int}, ForwardChecks)"/>
    /// and reports its problems to the batch.
    /// </summary>
    Tensor Forward(StepBatch batch)
    {
        var result = Forward(batch.Rows, batch.LogitRowIndices);
        foreach (var problem in result.Problems)
            batch.Report(problem);
        return result.Logits;
    }
}
