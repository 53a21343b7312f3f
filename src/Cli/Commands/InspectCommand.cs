using System.CommandLine;
using IlgpuLlm.Kernels;
using IlgpuLlm.Model.Formats;
using Spectre.Console;

namespace IlgpuLlm.Cli.Commands;

/// <summary><c>inspect</c>: the resolved configuration of a model and its tensors.</summary>
public static class InspectCommand
{
    public static Command Create()
    {
        var model = new ModelOptions();
        var command = new Command("inspect", "Print a model's resolved configuration and tensor table");
        command.Options.Add(model.Model);
        command.SetAction(parse =>
        {
            using var checkpoint = model.OpenCheckpoint(parse);
            var output = new AnsiConsoleOutput(Console.Out);
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = output });
            // Piped into a file or grep, a table wrapped at 80 columns would split names and shapes.
            if (!output.IsTerminal)
                console.Profile.Width = 240;
            console.WriteLine(TerminalText.Sanitize($"{checkpoint.SourcePath} ({checkpoint.Format})"));
            var config = new Table().AddColumns("setting", "value").Border(TableBorder.Simple);
            foreach (var (name, value) in Describe(checkpoint.Config, ""))
                config.AddRow(Markup.Escape(name), Markup.Escape(TerminalText.Sanitize(value)));
            console.Write(config);
            var tensors = new Table().AddColumns("tensor", "dtype", "shape", "source").Border(TableBorder.Simple);
            long parameters = 0, bytes = 0;
            foreach (var tensor in checkpoint.Tensors)
            {
                // A quantized tensor shows its block format and the bytes of its blocks (its values are their dequantization).
                tensors.AddRow(Markup.Escape(TerminalText.Sanitize(tensor.Name)), (tensor.Quantized?.Format.Name() ?? tensor.DataType.ToString()).ToLowerInvariant(),
                    Markup.Escape("[" + string.Join(", ", tensor.Shape) + "]"),
                    Markup.Escape(TerminalText.Sanitize(tensor.Transformation == null ? tensor.SourceName : $"{tensor.SourceName} ({tensor.Transformation})")));
                parameters += tensor.ElementCount;
                bytes += tensor.Quantized?.ByteLength ?? tensor.ByteLength;
            }
            console.Write(tensors);
            console.WriteLine($"{checkpoint.Tensors.Length} tensors, {parameters:N0} parameters, {bytes / 1048576.0:F1} MiB");
            return 0;
        });
        return command;
    }

    /// <summary>
    /// Every setting of a configuration, by property name, arrays shown compactly; a setting that is
    /// itself a record of settings (rope scaling) is shown field by field ("RopeScaling.Factor").
    /// </summary>
    static IEnumerable<(string, string)> Describe(object config, string prefix)
    {
        foreach (var property in config.GetType().GetProperties(System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.Public))
        {
            if (property.GetIndexParameters().Length > 0 || property.Name == "EqualityContract")
                continue;
            var value = property.GetValue(config);
            if (value != null && value.GetType() is { IsEnum: false, IsPrimitive: false } type && type.Namespace?.StartsWith("IlgpuLlm", StringComparison.Ordinal) == true)
            {
                foreach (var field in Describe(value, $"{prefix}{property.Name}."))
                    yield return field;
                continue;
            }
            string text = value switch
            {
                null => "-",
                System.Collections.Immutable.ImmutableArray<bool> flags => Compact(flags.Select(f => f ? "1" : "0"), ""),
                System.Collections.Immutable.ImmutableArray<int> ids => Compact(ids.Select(i => i.ToString()), " "),
                System.Collections.Immutable.ImmutableArray<float> values => Compact(values.Select(v => v.ToString("G6")), " "),
                float f => f.ToString("R"),
                _ => value.ToString() ?? "-",
            };
            yield return (prefix + property.Name, text);
        }
    }

    static string Compact(IEnumerable<string> items, string separator)
    {
        var all = items.ToArray();
        return all.Length <= 64 ? string.Join(separator, all) : string.Join(separator, all.Take(64)) + $"… ({all.Length})";
    }
}
