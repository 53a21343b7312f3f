using System.Buffers;
using System.Text.Unicode;

namespace IlgpuLlm.Model.Formats;

/// <summary>
/// UTF-8 checks for text read from files (JSON configs, safetensors headers, tokenizer files):
/// an invalid byte is reported with its offset, not left to surface later as .NET's bare
/// "cannot transcode" message when one string of the document is read.
/// </summary>
public static class Utf8Text
{
    /// <summary>The offset of the first byte that is not part of valid UTF-8, or −1 when all are.</summary>
    public static long FirstInvalidByte(ReadOnlySpan<byte> bytes)
    {
        Span<char> scratch = stackalloc char[1024];
        long consumed = 0;
        while (!bytes.IsEmpty)
        {
            var status = Utf8.ToUtf16(bytes, scratch, out int read, out _, replaceInvalidSequences: false, isFinalBlock: true);
            if (status == OperationStatus.InvalidData || status == OperationStatus.NeedMoreData)
                return consumed + read;
            consumed += read;
            bytes = bytes[read..];
            if (status == OperationStatus.Done)
                break;
        }
        return -1;
    }

    /// <summary>Null when the bytes are valid UTF-8, else "invalid UTF-8 at byte N (0xXX)" with the offset from <paramref name="baseOffset"/>.</summary>
    public static string? Problem(ReadOnlySpan<byte> bytes, long baseOffset = 0)
    {
        long at = FirstInvalidByte(bytes);
        return at < 0 ? null : $"invalid UTF-8 at byte {baseOffset + at} (0x{bytes[(int)at]:X2})";
    }
}
