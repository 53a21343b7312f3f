using System.Runtime.InteropServices;
using IlgpuLlm.Kernels;

namespace IlgpuLlm.Model.Formats;

/// <summary>One tensor of a quantization plan: its type in the input and in the output.</summary>
public sealed record QuantizedTensorPlan(string Name, IReadOnlyList<long> Shape, string From, GgmlType To);

/// <summary>
/// What <see cref="GgufQuantizer.Plan"/> will write; nothing is written until
/// <see cref="ModelWritePlan.Write"/>. Disposing releases the input.
/// </summary>
public sealed class QuantizationPlan : IDisposable
{
    readonly IDisposable _input;

    internal QuantizationPlan(ModelWritePlan write, IReadOnlyList<QuantizedTensorPlan> tensors, IDisposable input)
    {
        Write = write;
        Tensors = tensors;
        _input = input;
    }

    public ModelWritePlan Write { get; }

    /// <summary>Every tensor of the output, in file order, with its chosen type.</summary>
    public IReadOnlyList<QuantizedTensorPlan> Tensors { get; }

    public void Dispose() => _input.Dispose();
}

/// <summary>
/// Quantizes a model to a GGUF file as llama-quantize does: the per-tensor types of
/// <see cref="TensorQuantization"/> and ggml's reference quantizers (<see cref="BlockQuantizer"/>).
/// From a GGUF (F32, F16 or BF16 tensors) every metadata entry is copied as it is, with
/// <c>general.file_type</c> and <c>general.quantization_version</c> set, and unquantized tensors
/// keep their bytes; from a Hugging Face folder the GGUF is what <see cref="GgufModelWriter"/>
/// writes for the model, with the matrices quantized.
/// </summary>
public static class GgufQuantizer
{
    public static QuantizationPlan Plan(string input, string output, QuantizationType type)
    {
        var checkpoint = ModelCheckpoint.Open(input);
        try
        {
            var quantization = new TensorQuantization(type, checkpoint.Config);
            return checkpoint.Gguf is { } gguf
                ? FromGguf(checkpoint, gguf, output, quantization)
                : FromTensors(checkpoint, output, quantization);
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    static QuantizationPlan FromGguf(ModelCheckpoint checkpoint, GgufFile gguf, string output, TensorQuantization quantization)
    {
        var writer = new GgufWriter(gguf.Alignment);
        foreach (var entry in gguf.Metadata)
            if (entry.Key == "general.file_type")
                writer.AddUInt32(entry.Key, quantization.FileType);
            else if (entry.Key != TensorQuantization.VersionKey)
                writer.Add(entry);
        if (!gguf.TryGetEntry("general.file_type", out _))
            writer.AddUInt32("general.file_type", quantization.FileType);
        writer.AddUInt32(TensorQuantization.VersionKey, TensorQuantization.Version);

        var tensors = new List<QuantizedTensorPlan>();
        foreach (var info in gguf.Tensors)
        {
            var chosen = quantization.TypeOf(info.Name, info.Shape) ?? info.Type;
            if (chosen != info.Type && GgmlTypeLayout.ToTensorDataType(info.Type) is null)
                throw new ModelFormatException(gguf.Path,
                    $"tensor '{info.Name}' is already {GgmlTypeLayout.Name(info.Type)}; quantize the F32, F16 or BF16 model instead (requantizing loses accuracy twice)");
            tensors.Add(new QuantizedTensorPlan(info.Name, info.Shape, GgmlTypeLayout.Name(info.Type), chosen));
            if (chosen == info.Type)
            {
                var file = info;
                writer.AddTensor(info.Name, info.Type, info.Shape, stream => CopyBytes(gguf, file, stream));
                continue;
            }
            var source = Source(gguf, info);
            if (GgmlTypeLayout.ToQuantFormat(chosen) is QuantFormat format)
                writer.AddTensor(info.Name, chosen, info.Shape, stream => ModelWriting.CopyQuantized(stream, source, format));
            else
            {
                var storage = GgmlTypeLayout.ToTensorDataType(chosen)!.Value;
                writer.AddTensor(info.Name, chosen, info.Shape, stream => ModelWriting.Copy(stream, source, storage));
            }
        }
        return new QuantizationPlan(PlanFile(output, writer), tensors, checkpoint);
    }

    static QuantizationPlan FromTensors(ModelCheckpoint checkpoint, string output, TensorQuantization quantization)
    {
        var sources = checkpoint.Tensors.Select(TensorSource.FromCheckpoint).ToList();
        if (checkpoint.Tensors.FirstOrDefault(t => t.Quantized is not null) is { } quantized)
            throw new ModelFormatException(checkpoint.SourcePath, $"tensor '{quantized.Name}' is already quantized; quantize the F32, F16 or BF16 model instead");
        var writer = GgufModelWriter.Prepare(checkpoint.Config, sources, vocabulary: null, name: null, quantization);
        var tensors = writer.Tensors.Select(t =>
        {
            var source = sources.FirstOrDefault(s => s.Name == t.Name);
            return new QuantizedTensorPlan(t.Name, t.Shape, source?.DataType.Name().ToUpperInvariant() ?? "F32", t.Type);
        }).ToList();
        return new QuantizationPlan(PlanFile(output, writer), tensors, checkpoint);
    }

    static ModelWritePlan PlanFile(string path, GgufWriter writer) =>
        new(path, ModelSourceFormat.Gguf,
            [new PlannedFile(path, writer.Length, (progress, done, cancellation) => writer.WriteTo(path, progress, done, cancellation))]);

    static void CopyBytes(GgufFile gguf, GgufTensorInfo info, Stream stream)
    {
        const int chunk = 1 << 22;
        for (long offset = 0; offset < info.ByteLength; offset += chunk)
            stream.Write(gguf.File.Span(info.FileOffset + offset, (int)Math.Min(chunk, info.ByteLength - offset), $"tensor '{info.Name}'"));
    }

    /// <summary>A GGUF tensor of F32, F16 or BF16 as it lies in the file (llama.cpp's row order, untouched).</summary>
    static unsafe TensorSource Source(GgufFile gguf, GgufTensorInfo info)
    {
        var type = GgmlTypeLayout.ToTensorDataType(info.Type)!.Value;
        var format = type.Format();
        return new TensorSource(info.Name, type, info.Shape, (first, destination) =>
            new ReadOnlySpan<byte>(gguf.File.PointerAt(info.FileOffset + format.ByteLength(first)), destination.Length).CopyTo(destination));
    }
}
