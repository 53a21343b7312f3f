namespace IlgpuLlm.Model.Formats;

/// <summary>
/// The layout of a GGUF's tensor data, checked as strictly as llama.cpp's gguf.cpp does: the
/// tensors lie in the order of their infos, each at the offset where the one before it ends,
/// rounded up to the alignment. A file whose offsets were swapped (or that leaves gaps) is
/// refused rather than loaded with each name bound to another tensor's bytes.
/// </summary>
internal static class GgufLayout
{
    public static void Check(string path, IReadOnlyList<GgufTensorInfo> tensors, int alignment)
    {
        long expected = 0;
        foreach (var tensor in tensors)
        {
            if (tensor.RelativeOffset != expected)
                throw new ModelFormatException(path,
                    $"tensor '{tensor.Name}': data at offset {tensor.RelativeOffset} of the data section, expected {expected} " +
                    $"(tensors lie in the order of their infos, each {alignment}-byte aligned right after the one before, as llama.cpp requires)");
            expected = checked(expected + AlignUp(tensor.ByteLength, alignment));
        }
    }

    static long AlignUp(long value, int alignment) => checked((value + alignment - 1) / alignment * alignment);
}
