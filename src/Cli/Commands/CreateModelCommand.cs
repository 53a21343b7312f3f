using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Formats;
using Spectre.Console;

namespace IlgpuLlm.Cli.Commands;

/// <summary>
/// <c>create-model</c>: writes a random-weight model of a preset shape as a GGUF file or a Hugging
/// Face folder, for trying the engine (or llama.cpp, or transformers) at a real model's size
/// without downloading one. Same seed, same bytes.
/// </summary>
public static class CreateModelCommand
{
    public static Command Create()
    {
        var families = Enum.GetValues<ModelFamily>().Select(RandomModel.FamilyName).ToArray();
        var family = new Option<string?>("--family")
        {
            Description = $"Model family: {string.Join(", ", families)}. May be left out when the preset belongs to one family.",
            HelpName = "family",
        };
        family.AcceptOnlyFromAmong(families);
        var preset = new Option<string>("--preset")
        {
            Description = "Shape preset: 'tiny' (every family) or a real model's shape: " +
                string.Join(", ", RandomModel.Presets.Where(p => p.Name != "tiny").Select(p => p.Name)) + ".",
            DefaultValueFactory = _ => "tiny",
            HelpName = "name",
        };
        var dtype = new Option<string>("--dtype")
        {
            Description = "Storage type of the weights (GGUF keeps norms and biases in f32, as llama.cpp does).",
            DefaultValueFactory = _ => "f16",
        };
        dtype.AcceptOnlyFromAmong("f32", "f16", "bf16");
        var format = new Option<string>("--format")
        {
            Description = "gguf: one llama.cpp GGUF file; hf: a Hugging Face folder (config.json, model.safetensors, tokenizer.json).",
            DefaultValueFactory = _ => "gguf",
        };
        format.AcceptOnlyFromAmong("gguf", "hf");
        var seed = NumberOptions.ULong("--seed", [], "Seed of the weights; the same seed gives byte-identical files on any machine",
            Accepts<ulong>.Between(0, ulong.MaxValue), 0);
        var output = new Option<string>("--out", "-o")
        {
            Description = "The GGUF file, or the folder for --format hf.",
            Required = true,
            HelpName = "path",
        };
        var force = new Option<bool>("--force")
        {
            Description = "Overwrite an existing file or non-empty folder.",
        };

        var command = new Command("create-model", "Write a random-weight model in a real model's shape (GGUF or Hugging Face).")
        {
            family, preset, dtype, format, seed, output, force,
        };
        command.SetAction((parse, cancellation) => Task.FromResult(Run(
            parse.GetValue(family), parse.GetValue(preset)!, parse.GetValue(dtype)!, parse.GetValue(format)!,
            parse.GetValue(seed), parse.GetValue(output)!, parse.GetValue(force), cancellation)));
        return command;
    }

    static int Run(string? familyName, string presetName, string dtypeName, string formatName, ulong seed, string path,
        bool force, CancellationToken cancellation)
    {
        var preset = ResolvePreset(familyName, presetName);
        var dataType = StorageTypes.Parse(dtypeName);
        var format = formatName == "hf" ? ModelSourceFormat.HuggingFace : ModelSourceFormat.Gguf;
        CheckOutput(path, format, force);

        var model = RandomModel.Create(preset.Family, preset.Name, dataType, seed);
        var plan = model.Plan(format, path);
        var clock = Stopwatch.StartNew();
        try
        {
            Write(plan, $"{preset.Name} ({dataType.Name()})", cancellation);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"cannot write {path}: {e.Message}", e);
        }
        clock.Stop();

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"created {RandomModel.FamilyName(preset.Family)} {preset.Name}, {dataType.Name()}, seed {seed}: " +
            $"{Count(model.ParameterCount)} parameters ({model.ParameterCount:N0}), {Bytes(plan.TotalBytes)} ({plan.TotalBytes:N0} bytes) " +
            $"in {clock.Elapsed.TotalSeconds:F1} s -> {Path.GetFullPath(path)}"));
        return 0;
    }

    static RandomModelPreset ResolvePreset(string? familyName, string presetName)
    {
        if (familyName is null)
        {
            var matches = RandomModel.Presets.Where(p => string.Equals(p.Name, presetName, StringComparison.OrdinalIgnoreCase)).ToList();
            return matches.Count switch
            {
                1 => matches[0],
                0 => throw new UsageException($"unknown preset '{presetName}'; presets: tiny (any family), " +
                    string.Join(", ", RandomModel.Presets.Where(p => p.Name != "tiny").Select(p => $"{p.Name} ({RandomModel.FamilyName(p.Family)})"))),
                _ => throw new UsageException($"preset '{presetName}' exists for {string.Join(", ", matches.Select(p => RandomModel.FamilyName(p.Family)))}; pass --family"),
            };
        }
        try
        {
            return RandomModel.GetPreset(RandomModel.ParseFamily(familyName), presetName);
        }
        catch (ArgumentException e)
        {
            throw new UsageException(e.Message);
        }
    }

    internal static void CheckOutput(string path, ModelSourceFormat format, bool force)
    {
        if (path.Trim().Length == 0)
            throw new UsageException("--out needs a path; it was empty");
        if (path == PathArguments.StandardStream)
            throw new UsageException("--out cannot write to stdout ('-'); name a file or folder");
        string parent = Path.GetDirectoryName(Path.GetFullPath(path))!;
        if (!Directory.Exists(parent))
            throw new FileArgumentException($"--out {path}: the folder {parent} does not exist");
        if (format == ModelSourceFormat.Gguf)
        {
            if (Directory.Exists(path))
                throw new FileArgumentException($"--out {path} is a folder; --out names the GGUF file to write");
            if (File.Exists(path) && !force)
                throw new UsageException($"{path} exists; pass --force to overwrite it");
        }
        else
        {
            if (File.Exists(path))
                throw new FileArgumentException($"--out {path} is a file; --format hf writes a folder");
            if (Directory.Exists(path) && Directory.EnumerateFileSystemEntries(path).Any() && !force)
                throw new UsageException($"{path} is not empty; pass --force to write into it");
        }
    }

    /// <summary>Writes with a progress bar on stderr when it is a terminal, silently otherwise.</summary>
    internal static void Write(ModelWritePlan plan, string what, CancellationToken cancellation)
    {
        if (Console.IsErrorRedirected)
        {
            plan.Write(null, cancellation);
            return;
        }
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        console.Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn { Width = 24 }, new PercentageColumn(),
                new DownloadedColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                var task = context.AddTask($"writing {what}", maxValue: Math.Max(1, plan.TotalBytes));
                plan.Write(new ImmediateProgress(bytes => task.Value = bytes), cancellation);
                task.Value = task.MaxValue;
            });
    }

    /// <summary>Reports on the writing thread (System.Progress would post to the thread pool and lag).</summary>
    sealed class ImmediateProgress(Action<long> report) : IProgress<long>
    {
        public void Report(long value) => report(value);
    }

    static string Count(long n) => n switch
    {
        >= 1_000_000_000 => string.Create(CultureInfo.InvariantCulture, $"{n / 1e9:F2} B"),
        >= 1_000_000 => string.Create(CultureInfo.InvariantCulture, $"{n / 1e6:F1} M"),
        >= 1_000 => string.Create(CultureInfo.InvariantCulture, $"{n / 1e3:F1} K"),
        _ => n.ToString(CultureInfo.InvariantCulture),
    };

    internal static string Bytes(long n) => n switch
    {
        >= 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{n / (double)(1L << 30):F2} GiB"),
        >= 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{n / (double)(1L << 20):F1} MiB"),
        >= 1L << 10 => string.Create(CultureInfo.InvariantCulture, $"{n / 1024.0:F1} KiB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{n} B"),
    };
}
