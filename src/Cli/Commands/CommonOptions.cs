using System.CommandLine;
using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Runtime.Backends;

namespace IlgpuLlm.Cli.Commands;

/// <summary>Options shared by the commands that load and run a model.</summary>
public sealed class ModelOptions
{
    public readonly Option<string?> Model = new("--model", "-m")
    {
        Description = "A GGUF file, a Hugging Face folder (config.json + safetensors) or a llama2.c checkpoint",
    };

    public readonly Option<string?> Tokenizer = new("--tokenizer")
    {
        Description = "Tokenizer to use when the model has none inside (tokenizer.model, tokenizer.json, vocab.json + merges.txt folder, llama2.c tokenizer.bin)",
    };

    public readonly Option<string> Device = new("--device")
    {
        Description = "auto (CUDA if present, else the SIMD CPU backend), cpu, ilgpu-cpu (slow, for verifying bits) or cuda",
        DefaultValueFactory = _ => "auto",
    };

    public readonly Option<int> Threads = new("--threads", "-t")
    {
        Description = "CPU threads (default: all cores)",
    };

    public readonly Option<string> KvType = new("--kv-dtype")
    {
        Description = "Storage of the KV cache: f32, f16 or bf16 (compute is always f32)",
        DefaultValueFactory = _ => "f32",
    };

    public readonly Option<int> Context = new("--context", "-c")
    {
        Description = $"Positions the KV cache holds per sequence (default: the model's context, at most {IlgpuLlm.Model.TransformerOptions.DefaultContextCap})",
    };

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

    public IBackend CreateBackend(ParseResult parse)
    {
        int threads = parse.GetValue(Threads);
        if (threads < 0)
            throw new UsageException($"--threads {threads} must not be negative");
        return Devices.Create(parse.GetValue(Device)!, threads);
    }

    public TransformerOptions TransformerOptions(ParseResult parse, int slots)
    {
        int context = parse.GetValue(Context);
        if (context < 0)
            throw new UsageException($"--context {context} must not be negative");
        return new TransformerOptions
        {
            Slots = slots,
            ContextLength = context,
            KvType = StorageTypes.Parse(parse.GetValue(KvType)!),
        };
    }

    /// <summary>The options as the library entry point takes them (threads and context checked as for every command).</summary>
    public LanguageModelOptions LanguageModelOptions(ParseResult parse, int slots, string? chatTemplate)
    {
        int threads = parse.GetValue(Threads);
        if (threads < 0)
            throw new UsageException($"--threads {threads} must not be negative");
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
            Threads = threads,
            ContextLength = transformer.ContextLength,
            KvCache = Enum.Parse<KvCacheType>(parse.GetValue(KvType)!, ignoreCase: true),
            Slots = slots,
            TokenizerPath = parse.GetValue(Tokenizer),
            ChatTemplate = chatTemplate,
        };
    }

    public string RequireModel(ParseResult parse) =>
        parse.GetValue(Model) ?? throw new UsageException("--model is required");
}
