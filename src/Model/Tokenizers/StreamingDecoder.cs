using System.Text;

namespace IlgpuLlm.Model.Tokenizers;

/// <summary>
/// Turns ids into text one id at a time, for printing tokens as they are generated. A character whose
/// UTF-8 bytes are spread over several tokens (SentencePiece byte fallback, byte-level BPE pieces of a
/// CJK character or an emoji) is held back until its last byte arrives, so no call ever returns half a
/// character; the concatenation of all returned strings plus <see cref="Flush"/> equals
/// <see cref="ITokenizer.Decode"/> of the same ids.
/// </summary>
public sealed class StreamingDecoder
{
    readonly TokenizerBase tokenizer;
    readonly bool renderSpecial;
    // A stateful UTF-8 decoder keeps an incomplete trailing sequence between calls and replaces invalid
    // bytes exactly as a one-shot decode of the whole byte string would.
    readonly Decoder utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false).GetDecoder();
    bool atStart = true;
    char[] chars = new char[64];

    internal StreamingDecoder(TokenizerBase tokenizer, bool renderSpecial)
    {
        this.tokenizer = tokenizer;
        this.renderSpecial = renderSpecial;
    }

    /// <summary>Adds one id and returns the text that became complete (possibly empty).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The id is outside the vocabulary; the decoder's state is unchanged.</exception>
    public string Append(int id) => Convert(tokenizer.TokenBytes(id, renderSpecial, ref atStart), flush: false);

    /// <summary>
    /// Feeds ids whose text was already shown (the prompt) so that decoding continues from them: the
    /// SentencePiece leading-space rule applies only at the real start, and a character begun in the
    /// prompt completes in the output. The text they complete is discarded.
    /// </summary>
    public void Prime(ReadOnlySpan<int> ids)
    {
        foreach (var id in ids)
            Append(id);
    }

    /// <summary>Ends the stream: bytes of an unfinished character come out as U+FFFD, and the decoder starts afresh.</summary>
    public string Flush()
    {
        var text = Convert([], flush: true);
        atStart = true;
        return text;
    }

    string Convert(ReadOnlySpan<byte> bytes, bool flush)
    {
        int count = utf8.GetCharCount(bytes, flush);
        if (count == 0 && !flush && bytes.Length == 0)
            return string.Empty;
        if (count > chars.Length)
            chars = new char[Math.Max(count, chars.Length * 2)];
        int written = utf8.GetChars(bytes, chars, flush);
        return written == 0 ? string.Empty : new string(chars, 0, written);
    }
}
