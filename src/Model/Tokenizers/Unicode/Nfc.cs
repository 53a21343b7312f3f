using System.Text;

namespace IlgpuLlm.Model.Tokenizers.Unicode;

/// <summary>
/// Unicode Normalization Form C (UAX #15): canonical decomposition, canonical ordering, canonical
/// composition. Hand-written because the solution runs with InvariantGlobalization, where
/// <see cref="string.Normalize()"/> returns non-ASCII text unchanged, while Qwen2's tokenizer normalizes
/// its input to NFC. The tables in NfcTables.g.cs come from generate_nfc_tables.py.
/// </summary>
internal static partial class Nfc
{
    const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    static readonly Dictionary<int, int[]> Decompositions = BuildDecompositions();
    static readonly Dictionary<long, int> Compositions = BuildCompositions();
    static readonly ulong[] BmpNeedsWork = BuildBmpBitmap();

    /// <summary>The NFC form of <paramref name="text"/>; text that passes the quick check is returned as it is.</summary>
    public static string Normalize(ReadOnlySpan<char> text)
    {
        if (IsQuickYes(text))
            return text.ToString();

        var buffer = new List<int>(text.Length + 8);
        foreach (var rune in text.EnumerateRunes())
            Decompose(rune.Value, buffer);
        ReorderCanonically(buffer);
        Compose(buffer);

        var sb = new StringBuilder(buffer.Count);
        foreach (var cp in buffer)
            sb.Append(char.ConvertFromUtf32(cp));
        return sb.ToString();
    }

    /// <summary>True when every character is NFC_Quick_Check=Yes with combining class 0, so the text is already NFC.</summary>
    static bool IsQuickYes(ReadOnlySpan<char> text)
    {
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (c < 0x300)
                continue;
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                if (InRuns(NotQuickYesRuns, char.ConvertToUtf32(c, text[++i]), stride: 2) >= 0)
                    return false;
            }
            else if ((BmpNeedsWork[c >> 6] & (1UL << (c & 63))) != 0)
            {
                return false;
            }
        }
        return true;
    }

    static void Decompose(int cp, List<int> output)
    {
        if (cp >= SBase && cp < SBase + SCount)
        {
            int s = cp - SBase;
            output.Add(LBase + s / NCount);
            output.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0)
                output.Add(TBase + s % TCount);
        }
        else if (Decompositions.TryGetValue(cp, out var full))
        {
            output.AddRange(full);
        }
        else
        {
            output.Add(cp);
        }
    }

    /// <summary>Stable sort of every run of non-starters by combining class.</summary>
    static void ReorderCanonically(List<int> cps)
    {
        for (int i = 1; i < cps.Count; i++)
        {
            int cls = CombiningClass(cps[i]);
            if (cls == 0)
                continue;
            for (int j = i; j > 0; j--)
            {
                int before = CombiningClass(cps[j - 1]);
                if (before <= cls)
                    break;
                (cps[j - 1], cps[j]) = (cps[j], cps[j - 1]);
            }
        }
    }

    /// <summary>Canonical composition: each character joins the last starter unless a character between them blocks it.</summary>
    static void Compose(List<int> cps)
    {
        if (cps.Count == 0)
            return;
        int starterPos = 0;
        int lastClass = CombiningClass(cps[0]);
        if (lastClass != 0)
            lastClass = 256; // no starter yet: nothing may compose with it
        int write = 1;
        for (int read = 1; read < cps.Count; read++)
        {
            int ch = cps[read];
            int cls = CombiningClass(ch);
            int composite = Composite(cps[starterPos], ch);
            if (composite >= 0 && (lastClass < cls || lastClass == 0))
            {
                cps[starterPos] = composite;
                continue;
            }
            if (cls == 0)
                starterPos = write;
            lastClass = cls;
            cps[write++] = ch;
        }
        cps.RemoveRange(write, cps.Count - write);
    }

    static int Composite(int first, int second)
    {
        if (first >= LBase && first < LBase + LCount && second >= VBase && second < VBase + VCount)
            return SBase + ((first - LBase) * VCount + (second - VBase)) * TCount;
        if (first >= SBase && first < SBase + SCount && (first - SBase) % TCount == 0 && second > TBase && second < TBase + TCount)
            return first + (second - TBase);
        return Compositions.TryGetValue(((long)first << 21) | (uint)second, out int c) ? c : -1;
    }

    internal static int CombiningClass(int cp)
    {
        if (cp < 0x300)
            return 0;
        int run = InRuns(CombiningClassRuns, cp, stride: 3);
        return run < 0 ? 0 : CombiningClassRuns[run + 2];
    }

    /// <summary>Binary search over (first, last, …) runs; the offset of the run holding <paramref name="cp"/>, or -1.</summary>
    static int InRuns(ReadOnlySpan<int> runs, int cp, int stride)
    {
        int lo = 0, hi = runs.Length / stride - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            int at = mid * stride;
            if (cp < runs[at])
                hi = mid - 1;
            else if (cp > runs[at + 1])
                lo = mid + 1;
            else
                return at;
        }
        return -1;
    }

    static Dictionary<int, int[]> BuildDecompositions()
    {
        var table = DecompositionTable;
        var map = new Dictionary<int, int[]>();
        for (int i = 0; i < table.Length;)
        {
            int cp = table[i], length = table[i + 1];
            map[cp] = table.Slice(i + 2, length).ToArray();
            i += 2 + length;
        }
        return map;
    }

    static Dictionary<long, int> BuildCompositions()
    {
        var table = CompositionTable;
        var map = new Dictionary<long, int>(table.Length / 3);
        for (int i = 0; i < table.Length; i += 3)
            map[((long)table[i] << 21) | (uint)table[i + 1]] = table[i + 2];
        return map;
    }

    static ulong[] BuildBmpBitmap()
    {
        var bits = new ulong[0x10000 / 64];
        var runs = NotQuickYesRuns;
        for (int i = 0; i < runs.Length; i += 2)
            for (int cp = runs[i]; cp <= runs[i + 1] && cp < 0x10000; cp++)
                bits[cp >> 6] |= 1UL << (cp & 63);
        return bits;
    }
}
