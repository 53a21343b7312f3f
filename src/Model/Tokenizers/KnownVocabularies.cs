using System.Buffers.Binary;
using System.Security.Cryptography;

namespace IlgpuLlm.Model.Tokenizers;

/// <summary>
/// Recognises a byte-level vocabulary by content when no configuration names its split pattern (a bare
/// GPT-2-layout encoder.json + vocab.bpe carries none), the way llama.cpp's converter recognises
/// pre-tokenizers by a hash. The fingerprint is SHA-256 over every ordinary token's bytes in id order,
/// each preceded by its length as a little-endian int32.
/// </summary>
internal static class KnownVocabularies
{
    /// <summary>The 128000 base tokens shared by Llama 3, 3.1 and 3.2 (tiktoken file and GPT-2 layout alike).</summary>
    public const string Llama3Base = "5861169db03f237c50ae849a13788f96c746f9636d9722ed30a45b7e0675ce30";

    public static string Fingerprint(IEnumerable<byte[]> tokensInIdOrder)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> length = stackalloc byte[4];
        foreach (var token in tokensInIdOrder)
        {
            BinaryPrimitives.WriteInt32LittleEndian(length, token.Length);
            sha.AppendData(length);
            sha.AppendData(token);
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }
}
