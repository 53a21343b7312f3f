namespace IlgpuLlm.Model.Tokenizers;

/// <summary>
/// GPT-2's bytes_to_unicode: every byte gets a printable character (printable Latin-1 bytes stand for
/// themselves, the other 68 are shifted to U+0100 and up, so a space is "Ġ" and a newline "Ċ"). Byte-level
/// vocabularies (vocab.json, tokenizer.json, GGUF model gpt2) spell their tokens this way.
/// </summary>
internal static class ByteLevelAlphabet
{
    public static readonly char[] ByteToChar = Build();
    static readonly short[] CharToByte = BuildInverse();

    static char[] Build()
    {
        var table = new char[256];
        bool Printable(int b) => b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
        int shifted = 0;
        for (int b = 0; b < 256; b++)
            table[b] = Printable(b) ? (char)b : (char)(256 + shifted++);
        return table;
    }

    static short[] BuildInverse()
    {
        var inverse = new short[512];
        Array.Fill(inverse, (short)-1);
        for (int b = 0; b < 256; b++)
            inverse[ByteToChar[b]] = (short)b;
        return inverse;
    }

    /// <summary>The byte-level spelling of raw bytes.</summary>
    public static string Spell(ReadOnlySpan<byte> bytes)
    {
        return string.Create(bytes.Length, bytes.ToArray(), static (chars, b) =>
        {
            for (int i = 0; i < b.Length; i++)
                chars[i] = ByteToChar[b[i]];
        });
    }

    /// <summary>The bytes a byte-level spelling stands for, or null if it uses a character outside the alphabet.</summary>
    public static byte[]? TryUnspell(string spelling)
    {
        var bytes = new byte[spelling.Length];
        for (int i = 0; i < spelling.Length; i++)
        {
            char c = spelling[i];
            if (c >= CharToByte.Length || CharToByte[c] < 0)
                return null;
            bytes[i] = (byte)CharToByte[c];
        }
        return bytes;
    }
}
