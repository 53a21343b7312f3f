namespace IlgpuLlm.Model.Tokenizers;

/// <summary>
/// A vocabulary that parses but cannot work: no token with any text, or only control tokens, so
/// nothing can be encoded or decoded. Such files are refused where every tokenizer is opened
/// (<see cref="TokenizerFactory"/>), not left to produce empty output.
/// </summary>
public static class TokenizerChecks
{
    public static ITokenizer EnsureUsable(ITokenizer tokenizer, string source)
    {
        if (tokenizer.VocabSize == 0)
            throw new TokenizerLoadException(source, "the vocabulary has no tokens");
        int withText = 0, controls = 0;
        for (int id = 0; id < tokenizer.VocabSize; id++)
        {
            var kind = tokenizer.GetKind(id);
            if (kind == TokenKind.Control)
                controls++;
            else if (!string.IsNullOrEmpty(tokenizer.GetPiece(id)))
                withText++;
        }
        if (controls == tokenizer.VocabSize)
            throw new TokenizerLoadException(source, $"every one of its {tokenizer.VocabSize} tokens is a control token, so no text can be encoded or decoded");
        if (withText == 0)
            throw new TokenizerLoadException(source, $"none of its {tokenizer.VocabSize} tokens has any text, so no text can be encoded or decoded");
        return tokenizer;
    }
}
