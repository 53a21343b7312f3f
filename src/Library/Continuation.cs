using System.Text;
using IlgpuLlm.Model.Tokenizers;

namespace IlgpuLlm;

/// <summary>
/// The text of one request's generated tokens, decoded once each as they arrive: as the
/// continuation of the prompt (so a SentencePiece vocabulary keeps the space before the first
/// word, and a character begun in the prompt completes), cut before the first stop string.
/// It also answers whether a token ended the request for a reason of this request alone: its
/// stop strings, or the chat template's end-of-turn id.
/// </summary>
internal sealed class Continuation
{
    readonly StreamingDecoder decoder;
    readonly StopStringMatcher matcher;
    readonly int? endOfTurn;
    readonly StringBuilder text = new();

    public Continuation(ITokenizer tokenizer, IReadOnlyList<int> prompt, IReadOnlyList<string> stopStrings, int? endOfTurn)
    {
        decoder = tokenizer.CreateStreamingDecoder();
        decoder.Prime(prompt is int[] ids ? ids : [.. prompt]);
        matcher = new StopStringMatcher(stopStrings);
        this.endOfTurn = endOfTurn;
    }

    /// <summary>Whether the last token ended the request: a stop string completed, or the end-of-turn id.</summary>
    public bool Stopped { get; private set; }

    /// <summary>All the text released so far.</summary>
    public string Text => text.ToString();

    /// <summary>Adds a generated token; returns the text it released (possibly empty).</summary>
    public string Append(int token)
    {
        if (token == endOfTurn)
            Stopped = true;
        var released = matcher.Append(decoder.Append(token));
        Stopped |= matcher.Stopped;
        text.Append(released);
        return released;
    }

    /// <summary>Ends the text: an unfinished character and the text held back as a possible stop string come out.</summary>
    public string Finish()
    {
        var released = matcher.Append(decoder.Flush()) + matcher.Flush();
        text.Append(released);
        return released;
    }
}
