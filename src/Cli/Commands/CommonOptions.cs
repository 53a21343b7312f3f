using System.CommandLine;
using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Model.Formats;
using IlgpuLlm.Runtime.Backends;

namespace IlgpuLlm.Cli.Commands;

/// <summary>
/// Options shared by the commands that load and run a model, named as llama.cpp names them
/// (<c>-m/--model</c>, <c>-t/--threads</c>, <c>-c/--ctx-size</c>).
/// </summary>
public sealed class ModelOptions
{
    public readonly Option<string?> Model = new("--model", "-m")
    {
        Description = "A GGUF file, a Hugging Face folder (config.json + safetensors) or a llama2.c checkpoint (default: the built-in stories260K)",
    };

    public readonly Option<string?> Tokenizer = new("--tokenizer")
    {
        Description = "Tokenizer to use when the model has none inside (tokenizer.model, tokenizer.json, vocab.json + merges.txt folder, llama2.c tokenizer.bin); needs --model",
    };

    public readonly Option<string> Device = new("--device")
    {
        Description = "auto (CUDA if present, else the SIMD CPU backend), cpu, ilgpu-cpu (slow, for verifying bits) or cuda",
        DefaultValueFactory = _ => "auto",
    };

    public readonly Option<int> Threads = NumberOptions.Int("--threads", ["-t"],
        "CPU threads (0: all cores; more than the machine's cores are capped to them with a warning)", Accepts<int>.AtLeast(0), 0);

    public readonly Option<string> KvType = new("--kv-dtype")
    {
        Description = "Storage of the KV cache: f32, f16 or bf16 (compute is always f32)",
        DefaultValueFactory = _ => "f32",
    };

    // --context is the name this option had before it took llama.cpp's.
    public readonly Option<int> Context = NumberOptions.Int("--ctx-size", ["-c", "--context"],
        $"Positions the KV cache holds per sequence (0: the model's context, at most {IlgpuLlm.Model.TransformerOptions.DefaultContextCap}; " +
        "never more than the model's own)", Accepts<int>.AtLeast(0), 0);

    public ModelOptions()
    {
        Device.AcceptOnlyFromAmong(Devices.Names);
        KvType.AcceptOnlyFromAmong("f32", "f16", "bf16");
    }

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { Model, Tokenizer, Device, Threads, KvType, Context })
            command.Options.Add(option);
    }

    public IBackend CreateBackend(ParseResult parse) => Devices.Create(parse.GetValue(Device)!, ThreadCount(parse));

    /// <summary>
    /// --threads, capped at the machine's cores: more threads than cores only wait on each other
    /// (and tens of thousands exhaust the process), so the cap comes with a warning, not an error.
    /// </summary>
    public int ThreadCount(ParseResult parse)
    {
        int threads = parse.GetValue(Threads), cores = Environment.ProcessorCount;
        if (threads <= cores)
            return threads;
        Console.Error.WriteLine($"warning: --threads {threads} is more than the {cores} cores of this machine; using {cores}");
        return cores;
    }

    public TransformerOptions TransformerOptions(ParseResult parse, int slots) => new()
    {
        Slots = slots,
        ContextLength = parse.GetValue(Context),
        KvType = StorageTypes.Parse(parse.GetValue(KvType)!),
    };

    /// <summary>The --model path, checked (exists, a file or folder, readable); null when none was given.</summary>
    public string? ModelPath(ParseResult parse) =>
        parse.GetValue(Model) is string path ? PathArguments.Input("--model", path, folderAllowed: true) : null;

    /// <summary>--model, which this command cannot do without.</summary>
    public string RequireModel(ParseResult parse) => PathArguments.Input("--model", parse.GetValue(Model), folderAllowed: true);

    /// <summary>The --tokenizer path, checked; it only makes sense with --model (the built-in model has its vocabulary).</summary>
    public string? TokenizerPath(ParseResult parse)
    {
        if (parse.GetValue(Tokenizer) is not string path)
            return null;
        if (parse.GetValue(Model) == null)
            throw new UsageException("--tokenizer needs --model: the built-in model has its own vocabulary");
        return PathArguments.Input("--tokenizer", path, folderAllowed: true);
    }

    /// <summary>Checks the file options before any work, so a wrong path fails before a model is loaded.</summary>
    public void CheckPaths(ParseResult parse)
    {
        _ = TokenizerPath(parse);
        _ = ModelPath(parse);
    }

    /// <summary>The --model checkpoint, or the built-in model (with a note on stderr) when none is given.</summary>
    public ModelCheckpoint OpenCheckpoint(ParseResult parse)
    {
        if (ModelPath(parse) is string path)
            return ModelCheckpoint.Open(path);
        Console.Error.WriteLine(DefaultModel.Note);
        return DefaultModel.Open();
    }

    /// <summary>The model of --model (and --tokenizer) on a backend, or the built-in model when no --model is given.</summary>
    public LoadedModel Open(ParseResult parse, IBackend backend, TransformerOptions options)
    {
        string? tokenizer = TokenizerPath(parse);
        return ModelPath(parse) is string path
            ? ModelLoader.Open(path, backend, options, tokenizer)
            : ModelLoader.Open(OpenCheckpoint(parse), backend, options);
    }

    /// <summary>The options as the library entry point takes them (threads and context checked as for every command).</summary>
    public LanguageModelOptions LanguageModelOptions(ParseResult parse, int slots, string? chatTemplate)
    {
        var transformer = TransformerOptions(parse, slots);
        return new LanguageModelOptions
        {
            Device = parse.GetValue(Device) switch
            {
                "cpu" => ComputeDevice.SimdCpu,
                "ilgpu-cpu" => ComputeDevice.IlgpuCpu,
                "cuda" => ComputeDevice.Cuda,
                "auto" => ComputeDevice.Auto,
                var name => throw new UsageException($"--device '{name}' is not one of {string.Join(", ", Devices.Names)}"),
            },
            Threads = ThreadCount(parse),
            ContextLength = transformer.ContextLength,
            KvCache = Enum.Parse<KvCacheType>(parse.GetValue(KvType)!, ignoreCase: true),
            Slots = slots,
            TokenizerPath = TokenizerPath(parse),
            ChatTemplate = chatTemplate,
        };
    }

    /// <summary>The library's model for --model, or the built-in model (with a note on stderr) when none is given.</summary>
    public LanguageModel OpenLanguageModel(ParseResult parse, int slots, string? chatTemplate)
    {
        var options = LanguageModelOptions(parse, slots, chatTemplate);
        if (ModelPath(parse) is string path)
            return LanguageModel.Load(path, options);
        Console.Error.WriteLine(DefaultModel.Note);
        return LanguageModel.Load(DefaultModel.Open(), options);
    }
}

/// <summary>
/// The sampling options of the commands that generate (<c>generate</c>, <c>chat</c>), named as
/// llama.cpp names them, with its defaults.
/// </summary>
public sealed class SamplingOptions
{
    readonly Option<float> temperature = NumberOptions.Float("--temp", ["--temperature"], "Sampling temperature",
        new Accepts<float>(t => t == 0 || t >= SamplingRow.MinTemperature,
            $"0 (greedy) or a number from {SamplingRow.MinTemperature.ToString(System.Globalization.CultureInfo.InvariantCulture)} up"), 0.8f);
    readonly Option<int> topK = NumberOptions.Int("--top-k", [], "Keep the k most likely tokens", Accepts<int>.AtLeast(0, "0: off"), 40);
    readonly Option<float> topP = NumberOptions.Float("--top-p", [], "Keep the most likely tokens up to this probability mass", Accepts<float>.Above(0, 1, "1: off"), 0.95f);
    readonly Option<float> minP = NumberOptions.Float("--min-p", [], "Drop tokens less likely than this fraction of the top one", Accepts<float>.Between(0, 1, "0: off"), 0.05f);
    readonly Option<float> repeatPenalty = NumberOptions.Float("--repeat-penalty", [], "Penalty for tokens among the last 64",
        new Accepts<float>(p => p >= SamplingRow.MinRepetitionPenalty,
            $"a number from {SamplingRow.MinRepetitionPenalty.ToString(System.Globalization.CultureInfo.InvariantCulture)} up (1: off)"), 1f);
    readonly Option<string?> seed = NumberOptions.Seed("Random seed (default: a new one, printed in the summary)");

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { temperature, topK, topP, minP, repeatPenalty, seed })
            command.Options.Add(option);
    }

    /// <summary>The generation options these and the command's own give, checked (a bad combination is a usage error).</summary>
    public GenerationOptions Generation(ParseResult parse, int maxNewTokens, IReadOnlyList<string> stops)
    {
        var generation = new GenerationOptions
        {
            MaxNewTokens = maxNewTokens,
            Sampling = new Runtime.Generation.SamplerSettings
            {
                Temperature = parse.GetValue(temperature),
                TopK = parse.GetValue(topK),
                TopP = parse.GetValue(topP),
                MinP = parse.GetValue(minP),
                RepetitionPenalty = parse.GetValue(repeatPenalty),
                Seed = NumberOptions.SeedValue(parse.GetValue(seed)) ?? (ulong)Random.Shared.NextInt64(),
            },
            StopStrings = stops,
        };
        try
        {
            generation.Validate();
        }
        catch (ArgumentException e)
        {
            throw new UsageException(CliRunner.Describe(e).Replace("sampling row 0: ", "", StringComparison.Ordinal)
                .Replace("stop string", "--stop", StringComparison.Ordinal));
        }
        return generation;
    }
}
