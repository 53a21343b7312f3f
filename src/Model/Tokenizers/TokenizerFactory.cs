namespace IlgpuLlm.Model.Tokenizers;

/// <summary>Opens whatever tokenizer a model ships with.</summary>
public static partial class TokenizerFactory
{
    /// <summary>
    /// Opens a tokenizer file or a model folder. Files: <c>tokenizer.model</c> (SentencePiece protobuf or
    /// a tiktoken rank list, told apart by content), <c>tokenizer.json</c>, <c>vocab.json</c>/<c>encoder.json</c>
    /// (with merges.txt/vocab.bpe beside it), llama2.c's <c>tokenizer.bin</c>. Folders are searched for
    /// tokenizer.json, tokenizer.model, vocab.json + merges.txt, encoder.json + vocab.bpe and tokenizer.bin,
    /// in that order; tokenizer_config.json beside them supplies special tokens.
    /// </summary>
    /// <exception cref="TokenizerLoadException">Nothing usable is there, or the file is corrupt; the message names the file.</exception>
    public static ITokenizer Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (Directory.Exists(path))
            return TokenizerChecks.EnsureUsable(OpenFolder(path), path);
        if (!File.Exists(path))
            throw new TokenizerLoadException(path, "no such file or folder");
        return TokenizerChecks.EnsureUsable(OpenFile(path), path);
    }

    static ITokenizer OpenFolder(string folder)
    {
        string In(string name) => Path.Combine(folder, name);
        string? Config() => File.Exists(In("tokenizer_config.json")) ? In("tokenizer_config.json") : null;

        // Llama 2 and Gemma folders carry a SentencePiece-style tokenizer.json next to tokenizer.model;
        // that one is read from tokenizer.model, which is the original.
        if (File.Exists(In("tokenizer.json")) && !(File.Exists(In("tokenizer.model")) && !HuggingFaceTokenizerFiles.IsByteLevelTokenizerJson(In("tokenizer.json"))))
            return HuggingFaceTokenizerFiles.LoadTokenizerJson(In("tokenizer.json"), Config());
        if (File.Exists(In("tokenizer.model")))
            return OpenFile(In("tokenizer.model"));
        if (File.Exists(In("vocab.json")) && File.Exists(In("merges.txt")))
            return HuggingFaceTokenizerFiles.LoadVocabAndMerges(In("vocab.json"), In("merges.txt"), Config());
        if (File.Exists(In("encoder.json")) && File.Exists(In("vocab.bpe")))
            return HuggingFaceTokenizerFiles.LoadVocabAndMerges(In("encoder.json"), In("vocab.bpe"), Config());
        if (File.Exists(In("tokenizer.bin")))
            return SentencePieceModelFile.LoadLlama2c(In("tokenizer.bin"));
        throw new TokenizerLoadException(folder,
            "no tokenizer here (looked for tokenizer.json, tokenizer.model, vocab.json + merges.txt, encoder.json + vocab.bpe, tokenizer.bin)");
    }

    static ITokenizer OpenFile(string path)
    {
        var folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        string? Beside(string name) => File.Exists(Path.Combine(folder, name)) ? Path.Combine(folder, name) : null;
        var name = Path.GetFileName(path);

        switch (name)
        {
            case "merges.txt":
                return HuggingFaceTokenizerFiles.LoadVocabAndMerges(
                    Beside("vocab.json") ?? throw new TokenizerLoadException(path, "no vocab.json beside this merges.txt"), path, Beside("tokenizer_config.json"));
            case "vocab.bpe":
                return HuggingFaceTokenizerFiles.LoadVocabAndMerges(
                    Beside("encoder.json") ?? throw new TokenizerLoadException(path, "no encoder.json beside this vocab.bpe"), path, Beside("tokenizer_config.json"));
        }

        if (name.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {
            if (IsTokenizerJson(path))
                return HuggingFaceTokenizerFiles.LoadTokenizerJson(path, Beside("tokenizer_config.json"));
            var merges = name == "encoder.json" ? Beside("vocab.bpe") ?? Beside("merges.txt") : Beside("merges.txt") ?? Beside("vocab.bpe");
            return HuggingFaceTokenizerFiles.LoadVocabAndMerges(
                path, merges ?? throw new TokenizerLoadException(path, "a vocabulary JSON without merges.txt or vocab.bpe beside it"), Beside("tokenizer_config.json"));
        }

        var head = ReadHead(path, 64);
        if (SentencePieceModelFile.LooksLikeLlama2c(head))
            return SentencePieceModelFile.LoadLlama2c(path);
        if (TiktokenFile.LooksLikeTiktoken(head))
            return TiktokenFile.Load(path);
        if (head.Length > 0 && head[0] == 0x0A) // protobuf: field 1 (pieces), length-delimited
            return SentencePieceModelFile.Load(path);
        throw new TokenizerLoadException(path,
            "not a tokenizer this engine recognises (expected a SentencePiece or tiktoken tokenizer.model, tokenizer.json, vocab.json, or llama2.c tokenizer.bin)");
    }

    static byte[] ReadHead(string path, int count)
    {
        TokenizerFiles.RequireRegularFile(path);
        try
        {
            using var stream = File.OpenRead(path);
            var buffer = new byte[count];
            int read = stream.ReadAtLeast(buffer, count, throwOnEndOfStream: false);
            return buffer[..read];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TokenizerLoadException(path, e.Message, e);
        }
    }

    static bool IsTokenizerJson(string path)
    {
        // tokenizer.json files start with {"version": …, "truncation": …}; a vocabulary starts with a token.
        var head = System.Text.Encoding.UTF8.GetString(ReadHead(path, 256));
        return head.Contains("\"version\"", StringComparison.Ordinal) || head.Contains("\"model\"", StringComparison.Ordinal)
            || Path.GetFileName(path) == "tokenizer.json";
    }
}
