using System.Globalization;
using System.Runtime.InteropServices;
using IlgpuLlm.Tests.Support;

namespace IlgpuLlm.Tests.EndToEnd;

/// <summary>Reads the reference outputs in ../shared (llama2.c run.c for stories260K, llama.cpp for the families).</summary>
public static class References
{
    public static string Stories(params string[] parts) => SharedData.Path(["models", "stories260K", .. parts]);

    public static string Family(string set, string family, params string[] parts) =>
        SharedData.Path(["models", "families", set, family, .. parts]);

    public static int[] Tokens(string path) =>
        File.ReadAllText(path).Split([' ', '\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();

    public static float[] Floats(string path) => MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(path)).ToArray();

    /// <summary>run.c's per-position dump: (input token, argmax, first eight logits) per line.</summary>
    public static (int Input, int Argmax, float[] First8)[] StoriesPositions(string path) =>
        File.ReadLines(path).Where(l => l.StartsWith("pos ", StringComparison.Ordinal)).Select(line =>
        {
            var words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            int input = int.Parse(words[3]);
            int argmax = int.Parse(words[5]);
            int first = Array.IndexOf(words, "first8:") + 1;
            var logits = words[first..(first + 8)].Select(w => float.Parse(w, CultureInfo.InvariantCulture)).ToArray();
            return (input, argmax, logits);
        }).ToArray();

    public static float[] Lines(string path) =>
        File.ReadLines(path).Where(l => l.Trim().Length > 0).Select(l => float.Parse(l, CultureInfo.InvariantCulture)).ToArray();

    /// <summary>The largest |a − b| over two equally long arrays.</summary>
    public static float MaxAbsDifference(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(a.Length, b.Length);
        float max = 0;
        for (int i = 0; i < a.Length; i++)
            max = Math.Max(max, Math.Abs(a[i] - b[i]));
        return max;
    }
}
