using System.Buffers.Binary;
using System.Text;

namespace IlgpuLlm.Model.Tokenizers;

/// <summary>
/// Reads SentencePiece's <c>tokenizer.model</c> (a protobuf <c>sentencepiece.ModelProto</c>) and
/// llama2.c's <c>tokenizer.bin</c>. The protobuf is read with a small wire-format reader of our own: only
/// a dozen fields matter, and every malformed byte can then be reported with the file's name.
/// </summary>
public static class SentencePieceModelFile
{
    // sentencepiece_model.proto field numbers.
    const int ModelPieces = 1, ModelTrainerSpec = 2, ModelNormalizerSpec = 3;
    const int PiecePiece = 1, PieceScore = 2, PieceType = 3;
    const int TrainerModelType = 3, TrainerTreatWhitespaceAsSuffix = 24, TrainerUnkId = 40, TrainerBosId = 41,
        TrainerEosId = 42, TrainerPadId = 43, TrainerUnkSurface = 44;
    const int NormalizerName = 1, NormalizerCharsMap = 2, NormalizerAddDummyPrefix = 3,
        NormalizerRemoveExtraWhitespaces = 4, NormalizerEscapeWhitespaces = 5;
    const int ModelTypeBpe = 2;

    /// <summary>Loads a SentencePiece BPE <c>tokenizer.model</c> (Llama 2, Gemma).</summary>
    /// <exception cref="TokenizerLoadException">The file is missing, not a ModelProto, or a model kind this engine does not run.</exception>
    public static SentencePieceBpeTokenizer Load(string path)
    {
        var data = TokenizerFiles.ReadAllBytes(path);
        try
        {
            return Parse(data, path);
        }
        catch (FormatException e)
        {
            throw new TokenizerLoadException(path, $"not a SentencePiece model (protobuf ModelProto): {e.Message}", e);
        }
    }

    static SentencePieceBpeTokenizer Parse(byte[] data, string path)
    {
        var pieces = new List<string>();
        var scores = new List<float>();
        var kinds = new List<TokenKind>();
        int modelType = 1; // proto default: UNIGRAM
        bool suffixWhitespace = false;
        int unkId = 0, bosId = 1, eosId = 2, padId = -1;
        string unkSurface = " \u2047 ";
        string normalizerName = "";
        int charsMapLength = 0;
        bool addDummyPrefix = true, removeExtraWhitespaces = true, escapeWhitespaces = true; // proto defaults

        var model = new WireReader(data);
        while (model.Next(out int field, out int wire))
        {
            switch (field)
            {
                case ModelPieces when wire == WireReader.LengthDelimited:
                    var piece = model.ReadMessage();
                    string text = "";
                    float score = 0;
                    var kind = TokenKind.Normal;
                    while (piece.Next(out int f, out int w))
                    {
                        if (f == PiecePiece && w == WireReader.LengthDelimited) text = piece.ReadString();
                        else if (f == PieceScore && w == WireReader.Fixed32) score = piece.ReadFloat();
                        else if (f == PieceType && w == WireReader.Varint) kind = (TokenKind)piece.ReadVarint();
                        else piece.Skip(w);
                    }
                    if (!Enum.IsDefined(kind))
                        throw new FormatException($"piece {pieces.Count} ('{text}') has unknown type {(int)kind}");
                    pieces.Add(text);
                    scores.Add(score);
                    kinds.Add(kind);
                    break;
                case ModelTrainerSpec when wire == WireReader.LengthDelimited:
                    var trainer = model.ReadMessage();
                    while (trainer.Next(out int f, out int w))
                    {
                        if (w == WireReader.Varint && f is TrainerModelType or TrainerTreatWhitespaceAsSuffix or TrainerUnkId or TrainerBosId or TrainerEosId or TrainerPadId)
                        {
                            int value = (int)trainer.ReadVarint(); // int32 fields: -1 arrives as a 64-bit varint
                            switch (f)
                            {
                                case TrainerModelType: modelType = value; break;
                                case TrainerTreatWhitespaceAsSuffix: suffixWhitespace = value != 0; break;
                                case TrainerUnkId: unkId = value; break;
                                case TrainerBosId: bosId = value; break;
                                case TrainerEosId: eosId = value; break;
                                case TrainerPadId: padId = value; break;
                            }
                        }
                        else if (f == TrainerUnkSurface && w == WireReader.LengthDelimited) unkSurface = trainer.ReadString();
                        else trainer.Skip(w);
                    }
                    break;
                case ModelNormalizerSpec when wire == WireReader.LengthDelimited:
                    var normalizer = model.ReadMessage();
                    while (normalizer.Next(out int f, out int w))
                    {
                        if (f == NormalizerName && w == WireReader.LengthDelimited) normalizerName = normalizer.ReadString();
                        else if (f == NormalizerCharsMap && w == WireReader.LengthDelimited) charsMapLength = normalizer.ReadBytes().Length;
                        else if (f == NormalizerAddDummyPrefix && w == WireReader.Varint) addDummyPrefix = normalizer.ReadVarint() != 0;
                        else if (f == NormalizerRemoveExtraWhitespaces && w == WireReader.Varint) removeExtraWhitespaces = normalizer.ReadVarint() != 0;
                        else if (f == NormalizerEscapeWhitespaces && w == WireReader.Varint) escapeWhitespaces = normalizer.ReadVarint() != 0;
                        else normalizer.Skip(w);
                    }
                    break;
                default:
                    model.Skip(wire);
                    break;
            }
        }

        if (pieces.Count == 0)
            throw new TokenizerLoadException(path, "the SentencePiece model has no pieces");
        if (modelType != ModelTypeBpe)
            throw new TokenizerLoadException(path, $"SentencePiece model type {(modelType == 1 ? "UNIGRAM" : modelType.ToString())} is not supported; only BPE models (Llama 2, Gemma) are");
        if (suffixWhitespace)
            throw new TokenizerLoadException(path, "treat_whitespace_as_suffix SentencePiece models are not supported");
        // Llama and Gemma use the "identity" normalizer; NFKC-style rules come as a compiled character map.
        if (charsMapLength > 0 && normalizerName != "identity")
            throw new TokenizerLoadException(path, $"the SentencePiece normalization rule '{normalizerName}' (a precompiled character map) is not supported; only 'identity' is");

        int? Id(int id) => id >= 0 && id < pieces.Count ? id : null;
        try
        {
            return new SentencePieceBpeTokenizer(pieces, scores, kinds, new SentencePieceOptions
            {
                AddDummyPrefix = addDummyPrefix,
                RemoveExtraWhitespaces = removeExtraWhitespaces,
                EscapeWhitespaces = escapeWhitespaces,
                UnkId = Id(unkId),
                BosId = Id(bosId),
                EosId = Id(eosId),
                PadId = Id(padId),
                UnknownSurface = unkSurface,
            });
        }
        catch (ArgumentException e)
        {
            throw new TokenizerLoadException(path, e.Message, e);
        }
    }

    /// <summary>
    /// Loads llama2.c's <c>tokenizer.bin</c>: int32 max_token_length, then per token float32 score,
    /// int32 byte length and the bytes, until the end of the file. llama2.c's exporter wrote pieces with
    /// "▁" turned into a space and BOS/EOS as "\n&lt;s&gt;\n" and "\n&lt;/s&gt;\n"; both are undone here, so the
    /// vocabulary is the SentencePiece one again and run.c's encoder (dummy prefix, highest-score merges,
    /// byte fallback to id byte+3) is exactly the SentencePiece BPE above.
    /// </summary>
    public static SentencePieceBpeTokenizer LoadLlama2c(string path)
    {
        var data = TokenizerFiles.ReadAllBytes(path);
        if (!LooksLikeLlama2c(data))
            throw new TokenizerLoadException(path, "not a llama2.c tokenizer.bin (expected int32 max_token_length, then float32 score, int32 length and bytes per token)");
        int maxTokenLength = BinaryPrimitives.ReadInt32LittleEndian(data);
        var pieces = new List<string>();
        var scores = new List<float>();
        var kinds = new List<TokenKind>();
        var utf8 = new UTF8Encoding(false, throwOnInvalidBytes: true);
        int offset = 4;
        while (offset < data.Length)
        {
            if (data.Length - offset < 8)
                throw new TokenizerLoadException(path, $"truncated entry for token {pieces.Count} at byte {offset}");
            float score = BinaryPrimitives.ReadSingleLittleEndian(data.AsSpan(offset));
            int length = BinaryPrimitives.ReadInt32LittleEndian(data.AsSpan(offset + 4));
            offset += 8;
            if (length < 0 || length > data.Length - offset)
                throw new TokenizerLoadException(path, $"token {pieces.Count} claims {length} bytes at byte {offset - 4}, but {data.Length - offset} remain");
            if (length > maxTokenLength)
                throw new TokenizerLoadException(path, $"token {pieces.Count} is {length} bytes, longer than the header's max_token_length {maxTokenLength}");
            string text;
            try
            {
                text = utf8.GetString(data, offset, length);
            }
            catch (DecoderFallbackException e)
            {
                throw new TokenizerLoadException(path, $"token {pieces.Count} is not valid UTF-8", e);
            }
            offset += length;
            var kind = TokenKind.Normal;
            switch (text)
            {
                case "\n<s>\n": text = "<s>"; kind = TokenKind.Control; break;
                case "\n</s>\n": text = "</s>"; kind = TokenKind.Control; break;
                case "<unk>": kind = TokenKind.Unknown; break;
                default:
                    if (SentencePieceBpeTokenizer.TryParseBytePiece(text, out _))
                        kind = TokenKind.Byte;
                    else
                        text = text.Replace(' ', '\u2581');
                    break;
            }
            pieces.Add(text);
            scores.Add(score);
            kinds.Add(kind);
        }
        try
        {
            return new SentencePieceBpeTokenizer(pieces, scores, kinds, new SentencePieceOptions
            {
                AddDummyPrefix = true,
                RemoveExtraWhitespaces = false,
            });
        }
        catch (ArgumentException e)
        {
            throw new TokenizerLoadException(path, e.Message, e);
        }
    }

    /// <summary>A plausible llama2.c header: small max_token_length, then a finite score and a length within it.</summary>
    internal static bool LooksLikeLlama2c(ReadOnlySpan<byte> data)
    {
        if (data.Length < 12)
            return false;
        int maxTokenLength = BinaryPrimitives.ReadInt32LittleEndian(data);
        float score = BinaryPrimitives.ReadSingleLittleEndian(data[4..]);
        int length = BinaryPrimitives.ReadInt32LittleEndian(data[8..]);
        return maxTokenLength is > 0 and <= 4096 && float.IsFinite(score) && length >= 0 && length <= maxTokenLength;
    }

    /// <summary>Protobuf wire format, enough for ModelProto. Throws <see cref="FormatException"/> on malformed input.</summary>
    ref struct WireReader(ReadOnlySpan<byte> data, int origin = 0)
    {
        public const int Varint = 0, Fixed64 = 1, LengthDelimited = 2, Fixed32 = 5;
        readonly ReadOnlySpan<byte> data = data;
        readonly int origin = origin; // where data starts in the file, for messages
        int pos;

        /// <summary>The file offset of the next byte.</summary>
        int At => origin + pos;

        public WireReader ReadMessage()
        {
            var bytes = ReadBytes();
            return new WireReader(bytes, At - bytes.Length);
        }

        public bool Next(out int field, out int wire)
        {
            field = wire = 0;
            if (pos >= data.Length)
                return false;
            ulong key = ReadVarint();
            field = (int)(key >> 3);
            wire = (int)(key & 7);
            if (field == 0)
                throw new FormatException($"field number 0 at byte {At}");
            return true;
        }

        public ulong ReadVarint()
        {
            ulong result = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (pos >= data.Length)
                    throw new FormatException($"truncated varint at byte {At}");
                byte b = data[pos++];
                result |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80)
                    return result;
            }
            throw new FormatException($"varint longer than 10 bytes at byte {At}");
        }

        public ReadOnlySpan<byte> ReadBytes()
        {
            ulong length = ReadVarint();
            if (length > (ulong)(data.Length - pos))
                throw new FormatException($"a field of {length} bytes at byte {At} runs past the end of its message ({data.Length - pos} bytes left)");
            var bytes = data.Slice(pos, (int)length);
            pos += (int)length;
            return bytes;
        }

        public string ReadString()
        {
            var bytes = ReadBytes();
            try
            {
                return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
            }
            catch (DecoderFallbackException e)
            {
                throw new FormatException($"invalid UTF-8 in a string field before byte {At}", e);
            }
        }

        public float ReadFloat()
        {
            if (data.Length - pos < 4)
                throw new FormatException($"truncated float at byte {At}");
            float value = BinaryPrimitives.ReadSingleLittleEndian(data[pos..]);
            pos += 4;
            return value;
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case Varint: ReadVarint(); break;
                case Fixed64: Advance(8); break;
                case LengthDelimited: ReadBytes(); break;
                case Fixed32: Advance(4); break;
                default: throw new FormatException($"unsupported wire type {wire} before byte {At}");
            }
        }

        void Advance(int count)
        {
            if (data.Length - pos < count)
                throw new FormatException($"truncated fixed-size field at byte {At}");
            pos += count;
        }
    }
}
