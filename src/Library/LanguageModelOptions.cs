using IlgpuLlm.Kernels;
using IlgpuLlm.Model;
using IlgpuLlm.Runtime.Backends;

namespace IlgpuLlm;

/// <summary>Where a model runs.</summary>
public enum ComputeDevice
{
    /// <summary>The SIMD CPU backend (AVX-512, AVX2 or scalar, whichever the CPU has): fast without a GPU.</summary>
    SimdCpu,

    /// <summary>ILGPU's CPU accelerator: the GPU kernels run in software. Slow; meant for checking bits.</summary>
    IlgpuCpu,

    /// <summary>The first CUDA device; loading fails when there is none.</summary>
    Cuda,

    /// <summary>CUDA when a device is present, else the SIMD CPU backend.</summary>
    Auto,
}

/// <summary>How the KV cache stores keys and values (compute is always f32).</summary>
public enum KvCacheType
{
    F32,
    F16,
    BF16,
}

/// <summary>How <see cref="LanguageModel.Load"/> sets a model up.</summary>
public sealed record LanguageModelOptions
{
    public ComputeDevice Device { get; init; } = ComputeDevice.SimdCpu;

    /// <summary>CPU threads for the CPU backends; 0 uses every core.</summary>
    public int Threads { get; init; }

    /// <summary>
    /// Positions the KV cache holds per sequence, prompt and generated tokens together; 0 takes the
    /// model's own context, at most <see cref="TransformerOptions.DefaultContextCap"/>.
    /// </summary>
    public int ContextLength { get; init; }

    public KvCacheType KvCache { get; init; } = KvCacheType.F32;

    /// <summary>
    /// Requests generated at once (KV cache slots): this many prompts of any callers run together
    /// in one batch; more wait for a free slot. Each slot holds a whole context, so memory grows with it.
    /// </summary>
    public int Slots { get; init; } = 1;

    /// <summary>Requests that may wait for a slot; one more is refused with <see cref="QueueFullException"/>. 0: no limit.</summary>
    public int MaxWaiting { get; init; }

    /// <summary>
    /// A tokenizer for a model that carries none (tokenizer.model, tokenizer.json, a folder with
    /// vocab.json + merges.txt, a llama2.c tokenizer.bin, or a GGUF with a vocabulary).
    /// </summary>
    public string? TokenizerPath { get; init; }

    /// <summary>
    /// The chat format for chat prompts: llama3, llama2, gemma, chatml or qwen2.5. Null takes the
    /// template the model stores, else its family's.
    /// </summary>
    public string? ChatTemplate { get; init; }

    /// <exception cref="ArgumentException">A value is out of range or names nothing known.</exception>
    public void Validate()
    {
        if (!Enum.IsDefined(Device))
            throw new ArgumentException($"device {(int)Device} is not one of {string.Join(", ", Enum.GetNames<ComputeDevice>())}", nameof(Device));
        if (!Enum.IsDefined(KvCache))
            throw new ArgumentException($"KV cache type {(int)KvCache} is not one of {string.Join(", ", Enum.GetNames<KvCacheType>())}", nameof(KvCache));
        if (Threads < 0)
            throw new ArgumentOutOfRangeException(nameof(Threads), Threads, $"threads {Threads} must not be negative (0 uses every core)");
        if (ContextLength < 0)
            throw new ArgumentOutOfRangeException(nameof(ContextLength), ContextLength, $"context length {ContextLength} must not be negative (0 takes the model's own)");
        if (Slots < 1)
            throw new ArgumentOutOfRangeException(nameof(Slots), Slots, $"slots {Slots} must be at least 1");
        if (MaxWaiting < 0)
            throw new ArgumentOutOfRangeException(nameof(MaxWaiting), MaxWaiting, $"max waiting {MaxWaiting} must not be negative (0: no limit)");
        if (ChatTemplate != null)
            Model.Tokenizers.ChatTemplate.FromName(ChatTemplate);
    }

    internal IBackend CreateBackend() => Devices.Create(Device switch
    {
        ComputeDevice.SimdCpu => "cpu",
        ComputeDevice.IlgpuCpu => "ilgpu-cpu",
        ComputeDevice.Cuda => "cuda",
        ComputeDevice.Auto => "auto",
        _ => throw new ArgumentException($"device {(int)Device} is not one of {string.Join(", ", Enum.GetNames<ComputeDevice>())}", nameof(Device)),
    }, Threads);

    internal TransformerOptions TransformerOptions() => new()
    {
        Slots = Slots,
        ContextLength = ContextLength,
        KvType = StorageTypes.Parse(KvCache.ToString()),
    };
}
