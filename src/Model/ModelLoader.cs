using IlgpuLlm.Model.Formats;
using IlgpuLlm.Model.Tokenizers;
using IlgpuLlm.Runtime.Backends;

namespace IlgpuLlm.Model;

/// <summary>A model ready to run: its checkpoint, its tokenizer (when one is found) and the decoder on a backend.</summary>
public sealed class LoadedModel : IDisposable
{
    public required ModelCheckpoint Checkpoint { get; init; }
    public required ITokenizer? Tokenizer { get; init; }
    public required Transformer Transformer { get; init; }
    public ModelConfig Config => Checkpoint.Config;

    /// <summary>The tokenizer, or an error saying how to supply one.</summary>
    public ITokenizer RequireTokenizer() => Tokenizer ?? throw new InvalidOperationException(
        $"{Checkpoint.SourcePath} comes with no tokenizer; pass --tokenizer (tokenizer.model, tokenizer.json, a folder with vocab.json + merges.txt, or a llama2.c tokenizer.bin), or give token ids");

    /// <summary>The ids that end generation: the tokenizer's EOS/EOT and the model's own stop ids. Never the pad id.</summary>
    public IReadOnlyList<int> StopTokens()
    {
        var ids = new SortedSet<int>(Config.StopTokenIds);
        if (Config.EosTokenId is int eos) ids.Add(eos);
        if (Config.EotTokenId is int eot) ids.Add(eot);
        if (Tokenizer != null)
            foreach (int id in Tokenizer.Special.EndOfGeneration)
                ids.Add(id);
        // llama2.c's run.c ends a story at BOS: its checkpoints delimit sequences with it.
        if (Checkpoint.Format == ModelSourceFormat.Llama2c && Config.BosTokenId is int bos)
            ids.Add(bos);
        if (Config.PadTokenId is int pad && !(Config.EosTokenId == pad))
            ids.Remove(pad);
        return ids.ToArray();
    }

    /// <summary>
    /// The chat template: the user's choice by name, else the one the model stores (GGUF
    /// tokenizer.chat_template, tokenizer_config.json chat_template), else the family's built-in.
    /// </summary>
    /// <exception cref="InvalidOperationException">
    /// The vocabulary lacks the template's special tokens (a base vocabulary without chat markers):
    /// rendering it anyway would feed the model the markers as plain text.
    /// </exception>
    public ChatTemplate ChatTemplate(string? userChoice)
    {
        var tokenizer = RequireTokenizer();
        ChatTemplate template;
        if (Checkpoint.Gguf != null)
            template = Tokenizers.ChatTemplate.FromGguf(Checkpoint.Gguf, userChoice, tokenizer);
        else
        {
            string? stored = null;
            var config = Path.Combine(Checkpoint.SourcePath, "tokenizer_config.json");
            if (Checkpoint.Format == ModelSourceFormat.HuggingFace && File.Exists(config))
                stored = HuggingFaceTokenizerFiles.ReadChatTemplate(config);
            template = Tokenizers.ChatTemplate.Resolve(userChoice, stored, Config.Family.ToString(), tokenizer);
        }
        var missing = template.MissingTokens(tokenizer);
        if (missing.Count > 0)
            throw new InvalidOperationException(
                $"{Checkpoint.SourcePath}: the {template.Format} chat template needs {string.Join(", ", missing)}, which its vocabulary of " +
                $"{tokenizer.VocabSize} tokens does not have as special tokens, so the prompt cannot be rendered; drop --chat, or name a template its vocabulary has with --chat-template");
        return template;
    }

    /// <summary>The id of the chat template's end-of-turn token, which ends a reply (null when the vocabulary lacks it).</summary>
    public int? EndOfTurnToken(ChatTemplate template)
    {
        var tokenizer = RequireTokenizer();
        if (template.Format == ChatFormat.Llama2)
            return tokenizer.Special.Eos;
        return tokenizer.TryGetSpecialTokenId(template.EndOfTurn, out int id) ? id : null;
    }

    public void Dispose()
    {
        Transformer.Dispose();
        Checkpoint.Dispose();
    }
}

public static class ModelLoader
{
    /// <summary>
    /// Opens a model file or folder, finds its tokenizer (inside a GGUF, tokenizer files in a
    /// Hugging Face folder, a llama2.c tokenizer.bin beside a checkpoint, or an explicit path) and
    /// loads the decoder onto the backend.
    /// </summary>
    public static LoadedModel Open(string path, IBackend backend, TransformerOptions options, string? tokenizerPath = null) =>
        Open(ModelCheckpoint.Open(path), backend, options, tokenizerPath);

    /// <summary>Loads an opened checkpoint (which the result then owns, or which is disposed on failure) as <see cref="Open(string, IBackend, TransformerOptions, string?)"/> does.</summary>
    public static LoadedModel Open(ModelCheckpoint checkpoint, IBackend backend, TransformerOptions options, string? tokenizerPath = null)
    {
        try
        {
            var tokenizer = tokenizerPath != null ? OpenTokenizer(tokenizerPath) : FindTokenizer(checkpoint);
            if (tokenizer != null && tokenizer.VocabSize > checkpoint.Config.VocabSize)
                throw new InvalidOperationException(
                    $"the tokenizer{(tokenizerPath != null ? $" {tokenizerPath}" : "")} has {tokenizer.VocabSize} tokens but {checkpoint.SourcePath} has only {checkpoint.Config.VocabSize} embedding rows; it is not this model's tokenizer");
            // llama2.c's run.c reads exactly vocab_size tokens from tokenizer.bin: a shorter file is
            // another model's (the padding that GGUF and Hugging Face vocabularies leave has no place here).
            if (tokenizer != null && checkpoint.Format == ModelSourceFormat.Llama2c && tokenizer.VocabSize < checkpoint.Config.VocabSize)
                throw new InvalidOperationException(
                    $"the tokenizer{(tokenizerPath != null ? $" {tokenizerPath}" : "")} has {tokenizer.VocabSize} tokens but the llama2.c checkpoint {checkpoint.SourcePath} has {checkpoint.Config.VocabSize}; it is not this model's tokenizer");
            var transformer = new Transformer(checkpoint, backend, options);
            return new LoadedModel { Checkpoint = checkpoint, Tokenizer = tokenizer, Transformer = transformer };
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    /// <summary>The built-in demo model (fixed-seed random weights, byte-level vocabulary), for a first run without files.</summary>
    public static LoadedModel OpenDemo(IBackend backend, TransformerOptions options)
    {
        var checkpoint = RandomModel.Demo();
        try
        {
            return new LoadedModel
            {
                Checkpoint = checkpoint,
                Tokenizer = RandomModel.DemoTokenizer(),
                Transformer = new Transformer(checkpoint, backend, options),
            };
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A tokenizer from a bare tokenizer file or folder, a GGUF's vocabulary (a vocabulary-only
    /// GGUF or a whole model's), or the model a path names (its tokenizer found as
    /// <see cref="Open"/> finds it). This is what <c>--tokenizer</c> accepts, so a Hugging Face
    /// folder without tokenizer files can borrow the vocabulary of the same model's GGUF.
    /// </summary>
    public static ITokenizer OpenTokenizer(string path)
    {
        if (File.Exists(path) && IsGguf(path))
        {
            using var gguf = GgufFile.Open(path);
            if (!gguf.Contains("tokenizer.ggml.model"))
                throw new TokenizerLoadException(path, "this GGUF holds no vocabulary (no tokenizer.ggml.model key)");
            return TokenizerFactory.FromGguf(gguf);
        }
        if (Directory.Exists(path) ? HasTokenizerFiles(path) : IsTokenizerFile(path))
            return TokenizerFactory.Open(path);
        if (!File.Exists(path) && !Directory.Exists(path))
            throw new TokenizerLoadException(path, "no such file or folder");
        using var checkpoint = ModelCheckpoint.Open(path);
        return FindTokenizer(checkpoint) ?? throw new TokenizerLoadException(
            path, "this model comes with no tokenizer; name a tokenizer file instead");
    }

    /// <summary>GGUF files start with the magic "GGUF", whatever they are called.</summary>
    static bool IsGguf(string path)
    {
        if (path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
            return true;
        if (FileKind.WhyNotRegularFile(path) != null)
            return false;
        try
        {
            using var stream = File.OpenRead(path);
            Span<byte> magic = stackalloc byte[4];
            return stream.ReadAtLeast(magic, 4, throwOnEndOfStream: false) == 4 && magic.SequenceEqual("GGUF"u8);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>A llama2.c model and its tokenizer are both .bin files: a tokenizer starts with its max token length, not a 7-int header.</summary>
    static bool IsTokenizerFile(string path)
    {
        var name = Path.GetFileName(path);
        if (name.EndsWith(".json", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".model", StringComparison.OrdinalIgnoreCase)
            || name == "merges.txt")
            return true;
        try
        {
            TokenizerFactory.Open(path);
            return true;
        }
        catch (TokenizerLoadException)
        {
            return false;
        }
    }

    static ITokenizer? FindTokenizer(ModelCheckpoint checkpoint)
    {
        switch (checkpoint.Format)
        {
            case ModelSourceFormat.Gguf:
                return checkpoint.Gguf!.Contains("tokenizer.ggml.model") ? TokenizerFactory.FromGguf(checkpoint.Gguf!) : null;
            case ModelSourceFormat.HuggingFace:
                return HasTokenizerFiles(checkpoint.SourcePath) ? TokenizerFactory.Open(checkpoint.SourcePath) : null;
            default:
                // llama2.c ships its tokenizer as a separate tokenizer.bin (stories models: tok512.bin …).
                var folder = Path.GetDirectoryName(Path.GetFullPath(checkpoint.SourcePath))!;
                var candidates = new[] { Path.Combine(folder, "tokenizer.bin") }
                    .Concat(Directory.EnumerateFiles(folder, "tok*.bin")).Where(File.Exists).Distinct().ToArray();
                return candidates.Length == 1 ? TokenizerFactory.Open(candidates[0]) : null;
        }
    }

    /// <summary>Whether a folder holds a tokenizer <see cref="TokenizerFactory.Open"/> reads (a model folder may hold one too).</summary>
    static bool HasTokenizerFiles(string folder) =>
        new[] { "tokenizer.json", "tokenizer.model", "vocab.json", "encoder.json", "tokenizer.bin" }.Any(f => File.Exists(Path.Combine(folder, f)));
}
