using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using IlgpuLlm.Model.Formats;

namespace IlgpuLlm.Cli.Commands;

/// <summary>
/// <c>quantize</c>: a GGUF (F32, F16, BF16) or a Hugging Face folder in, a quantized GGUF out, with
/// llama-quantize's per-tensor types and ggml's reference rounding, so llama.cpp loads the file and
/// Q8_0 / Q4_0 blocks are byte for byte llama-quantize's.
/// </summary>
public static class QuantizeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m")
        {
            Description = "The model to quantize: a GGUF with F32, F16 or BF16 tensors, or a Hugging Face folder.",
            Required = true,
            HelpName = "path",
        };
        var type = new Option<string>("--type")
        {
            Description = "Q4_K_M (llama.cpp's default mix), Q5_K_M, Q6_K, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, or Q4_K / Q5_K (every matrix in that type).",
            Required = true,
            HelpName = "type",
        };
        type.AcceptOnlyFromAmong([.. Enum.GetNames<QuantizationType>()]);
        var output = new Option<string>("--out", "-o") { Description = "The GGUF file to write.", Required = true, HelpName = "path" };
        var force = new Option<bool>("--force") { Description = "Overwrite an existing file." };
        var command = new Command("quantize", "Quantize a model to a GGUF file as llama-quantize does (Q4_K_M, Q8_0, ...).")
        {
            model, type, output, force,
        };
        command.SetAction((parse, cancellation) => Task.FromResult(Run(parse.GetValue(model)!, TensorQuantization.Parse(parse.GetValue(type)!),
            parse.GetValue(output)!, parse.GetValue(force), cancellation)));
        return command;
    }

    static int Run(string input, QuantizationType type, string path, bool force, CancellationToken cancellation)
    {
        CreateModelCommand.CheckOutput(path, ModelSourceFormat.Gguf, force);
        if (Path.GetFullPath(path) == Path.GetFullPath(input))
            throw new UsageException($"--out {path} is the input model; write the quantized file elsewhere");
        var clock = Stopwatch.StartNew();
        using var plan = GgufQuantizer.Plan(input, path, type);
        try
        {
            CreateModelCommand.Write(plan.Write, $"{Path.GetFileName(path)} ({type})", cancellation);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"cannot write {path}: {e.Message}", e);
        }
        clock.Stop();

        var counts = plan.Tensors.GroupBy(t => t.To).OrderByDescending(g => g.Count())
            .Select(g => $"{g.Count()} {GgmlTypeLayout.Name(g.Key)}");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"quantized {input} to {type}: {plan.Tensors.Count} tensors ({string.Join(", ", counts)}), " +
            $"{CreateModelCommand.Bytes(plan.Write.TotalBytes)} ({plan.Write.TotalBytes:N0} bytes) in {clock.Elapsed.TotalSeconds:F1} s -> {Path.GetFullPath(path)}"));
        return 0;
    }
}
