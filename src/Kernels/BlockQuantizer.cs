using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace IlgpuLlm.Kernels;

/// <summary>
/// f32 weights → blocks, operation for operation as ggml's reference quantizers
/// (<c>quantize_row_*_ref</c> in ggml-quants.c, which llama-quantize runs when no importance
/// matrix is given). llama.cpp compiles them into ggml-base without fused multiply-adds, and C#
/// never contracts either, so each f32 operation below rounds exactly as the C one does; the order
/// of every sum and product is the C source's.
/// </summary>
public static class BlockQuantizer
{
    /// <summary>Quantizes whole blocks: values.Length must be a multiple of the block size.</summary>
    public static void Quantize(QuantFormat format, ReadOnlySpan<float> values, Span<byte> blocks)
    {
        int size = format.BlockSize(), bytes = format.BlockBytes();
        if (values.Length % size != 0)
            throw new ArgumentException($"{values.Length} values is not a whole number of {size}-weight {format.Name()} blocks");
        int count = values.Length / size;
        Shapes.Expect($"{format.Name()} quantization: blocks", blocks.Length, (long)count * bytes, $"{count} blocks × {bytes} bytes");
        var scratch = new Scratch();
        for (int b = 0; b < count; b++)
        {
            var x = values.Slice(b * size, size);
            var y = blocks.Slice(b * bytes, bytes);
            switch (format)
            {
                case QuantFormat.Q4_0: Q4_0(x, y); break;
                case QuantFormat.Q4_1: Q4_1(x, y); break;
                case QuantFormat.Q5_0: Q5_0(x, y); break;
                case QuantFormat.Q5_1: Q5_1(x, y); break;
                case QuantFormat.Q8_0: Q8_0(x, y); break;
                case QuantFormat.Q4_K: QK(x, y, scratch, fifthBit: false); break;
                case QuantFormat.Q5_K: QK(x, y, scratch, fifthBit: true); break;
                case QuantFormat.Q6_K: Q6_K(x, y, scratch); break;
                default: throw new NotSupportedException($"quantizing to {format.Name()} is not implemented (Q2_K and Q3_K are read only)");
            }
        }
    }

    /// <summary>The formats <see cref="Quantize"/> writes.</summary>
    public static bool CanWrite(QuantFormat format) => format is not (QuantFormat.Q2_K or QuantFormat.Q3_K);

    static void WriteHalf(Span<byte> y, int at, float value) => BinaryPrimitives.WriteUInt16LittleEndian(y[at..], HalfBits.F32ToF16(value));

    static float ReadHalf(Span<byte> y, int at) => HalfBits.F16ToF32(BinaryPrimitives.ReadUInt16LittleEndian(y[at..]));

    /// <summary>ggml's nearest_int: round to nearest even through the 1.5·2^23 trick (bits as C computes them for any input).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static int NearestInt(float value)
    {
        float shifted = value + 12582912f;
        return (BitConverter.SingleToInt32Bits(shifted) & 0x007FFFFF) - 0x00400000;
    }

    /// <summary>C's roundf: half away from zero.</summary>
    static float RoundF(float value) => MathF.Round(value, MidpointRounding.AwayFromZero);

    static void Q8_0(ReadOnlySpan<float> x, Span<byte> y)
    {
        float amax = 0f;
        for (int j = 0; j < 32; j++)
            amax = amax > MathF.Abs(x[j]) ? amax : MathF.Abs(x[j]); // MAX(amax, fabsf(v))
        float d = amax / 127;
        float id = d != 0 ? 1.0f / d : 0.0f;
        WriteHalf(y, 0, d);
        for (int j = 0; j < 32; j++)
            y[2 + j] = (byte)(sbyte)RoundF(x[j] * id);
    }

    /// <summary>The value of largest magnitude, the first one on ties (ggml's "if (amax &lt; fabsf(v))").</summary>
    static float SignedAbsMax(ReadOnlySpan<float> x)
    {
        float amax = 0f, max = 0f;
        foreach (float v in x)
            if (amax < MathF.Abs(v))
            {
                amax = MathF.Abs(v);
                max = v;
            }
        return max;
    }

    static void Q4_0(ReadOnlySpan<float> x, Span<byte> y)
    {
        float d = SignedAbsMax(x) / -8;
        float id = d != 0 ? 1.0f / d : 0.0f;
        WriteHalf(y, 0, d);
        for (int j = 0; j < 16; j++)
        {
            float x0 = x[j] * id, x1 = x[16 + j] * id;
            int xi0 = Math.Min(15, (int)(sbyte)(x0 + 8.5f));
            int xi1 = Math.Min(15, (int)(sbyte)(x1 + 8.5f));
            y[2 + j] = (byte)(xi0 | (xi1 << 4));
        }
    }

    static (float Min, float Max) MinMax(ReadOnlySpan<float> x)
    {
        float min = float.MaxValue, max = -float.MaxValue;
        foreach (float v in x)
        {
            if (v < min) min = v;
            if (v > max) max = v;
        }
        return (min, max);
    }

    static void Q4_1(ReadOnlySpan<float> x, Span<byte> y)
    {
        var (min, max) = MinMax(x);
        float d = (max - min) / 15;
        float id = d != 0 ? 1.0f / d : 0.0f;
        WriteHalf(y, 0, d);
        WriteHalf(y, 2, min);
        for (int j = 0; j < 16; j++)
        {
            float x0 = (x[j] - min) * id, x1 = (x[16 + j] - min) * id;
            int xi0 = Math.Min(15, (int)(sbyte)(x0 + 0.5f));
            int xi1 = Math.Min(15, (int)(sbyte)(x1 + 0.5f));
            y[4 + j] = (byte)(xi0 | (xi1 << 4));
        }
    }

    static void Q5_0(ReadOnlySpan<float> x, Span<byte> y)
    {
        float d = SignedAbsMax(x) / -16;
        float id = d != 0 ? 1.0f / d : 0.0f;
        WriteHalf(y, 0, d);
        uint qh = 0;
        for (int j = 0; j < 16; j++)
        {
            float x0 = x[j] * id, x1 = x[16 + j] * id;
            int xi0 = Math.Min(31, (int)(sbyte)(x0 + 16.5f));
            int xi1 = Math.Min(31, (int)(sbyte)(x1 + 16.5f));
            y[6 + j] = (byte)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
            qh |= (uint)((xi0 & 0x10) >> 4) << j;
            qh |= (uint)((xi1 & 0x10) >> 4) << (j + 16);
        }
        BinaryPrimitives.WriteUInt32LittleEndian(y[2..], qh);
    }

    static void Q5_1(ReadOnlySpan<float> x, Span<byte> y)
    {
        var (min, max) = MinMax(x);
        float d = (max - min) / 31;
        float id = d != 0 ? 1.0f / d : 0.0f;
        WriteHalf(y, 0, d);
        WriteHalf(y, 2, min);
        uint qh = 0;
        for (int j = 0; j < 16; j++)
        {
            float x0 = (x[j] - min) * id, x1 = (x[16 + j] - min) * id;
            int xi0 = (byte)(x0 + 0.5f), xi1 = (byte)(x1 + 0.5f);
            y[8 + j] = (byte)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
            qh |= (uint)((xi0 & 0x10) >> 4) << j;
            qh |= (uint)((xi1 & 0x10) >> 4) << (j + 16);
        }
        BinaryPrimitives.WriteUInt32LittleEndian(y[4..], qh);
    }

    /// <summary>Per-call buffers of the K-quant searches (ggml keeps them on the stack).</summary>
    sealed class Scratch
    {
        public readonly byte[] L = new byte[QuantFormats.SuperBlock];
        public readonly byte[] Laux = new byte[32];
        public readonly float[] Weights = new float[32];
        public readonly float[] Scales = new float[16];
        public readonly float[] Mins = new float[16];
        public readonly sbyte[] SignedL = new sbyte[QuantFormats.SuperBlock];
    }

    /// <summary>
    /// ggml's make_qkx2_quants: codes 0..nmax for x ≈ scale · L − min, searching scales
    /// (rmin + rdelta·is + nmax) / (max − min) for the least weighted squared error. Returns the
    /// scale; <paramref name="theMin"/> receives −min.
    /// </summary>
    static float MakeQkx2Quants(int n, int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, Span<byte> L, out float theMin,
        Span<byte> Laux, float rmin, float rdelta, int nstep, bool useMad)
    {
        float min = x[0], max = x[0];
        float sumW = weights[0];
        float sumX = sumW * x[0];
        for (int i = 1; i < n; i++)
        {
            if (x[i] < min) min = x[i];
            if (x[i] > max) max = x[i];
            float w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }
        if (min > 0) min = 0;
        if (max == min)
        {
            L[..n].Clear();
            theMin = -min;
            return 0f;
        }
        float iscale = nmax / (max - min);
        float scale = 1 / iscale;
        float bestError = 0;
        for (int i = 0; i < n; i++)
        {
            int l = NearestInt(iscale * (x[i] - min));
            L[i] = (byte)Math.Max(0, Math.Min(nmax, l));
            float diff = scale * L[i] + min - x[i];
            diff = useMad ? MathF.Abs(diff) : diff * diff;
            bestError += weights[i] * diff;
        }
        if (nstep < 1)
        {
            theMin = -min;
            return scale;
        }
        for (int step = 0; step <= nstep; step++)
        {
            iscale = (rmin + rdelta * step + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXL = 0;
            for (int i = 0; i < n; i++)
            {
                int l = NearestInt(iscale * (x[i] - min));
                l = Math.Max(0, Math.Min(nmax, l));
                Laux[i] = (byte)l;
                float w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * x[i];
            }
            float D = sumW * sumL2 - sumL * sumL;
            if (D > 0)
            {
                float thisScale = (sumW * sumXL - sumX * sumL) / D;
                float thisMin = (sumL2 * sumX - sumL * sumXL) / D;
                if (thisMin > 0)
                {
                    thisMin = 0;
                    thisScale = sumXL / sumL2;
                }
                float curError = 0;
                for (int i = 0; i < n; i++)
                {
                    float diff = thisScale * Laux[i] + thisMin - x[i];
                    diff = useMad ? MathF.Abs(diff) : diff * diff;
                    curError += weights[i] * diff;
                }
                if (curError < bestError)
                {
                    Laux[..n].CopyTo(L);
                    bestError = curError;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }
        theMin = -min;
        return scale;
    }

    /// <summary>quantize_row_q4_K_ref / quantize_row_q5_K_ref for one super-block.</summary>
    static void QK(ReadOnlySpan<float> x, Span<byte> y, Scratch s, bool fifthBit)
    {
        int nmax = fifthBit ? 31 : 15;
        var L = s.L.AsSpan();
        var weights = s.Weights.AsSpan();
        float maxScale = 0, maxMin = 0;
        for (int j = 0; j < 8; j++)
        {
            var xj = x.Slice(32 * j, 32);
            float sumX2 = 0;
            for (int l = 0; l < 32; l++) sumX2 += xj[l] * xj[l];
            float avX = MathF.Sqrt(sumX2 / 32);
            for (int l = 0; l < 32; l++) weights[l] = avX + MathF.Abs(xj[l]);
            s.Scales[j] = fifthBit
                ? MakeQkx2Quants(32, nmax, xj, weights, L.Slice(32 * j, 32), out s.Mins[j], s.Laux, -0.5f, 0.1f, 15, false)
                : MakeQkx2Quants(32, nmax, xj, weights, L.Slice(32 * j, 32), out s.Mins[j], s.Laux, -1f, 0.1f, 20, false);
            if (s.Scales[j] > maxScale) maxScale = s.Scales[j];
            if (s.Mins[j] > maxMin) maxMin = s.Mins[j];
        }

        y.Clear();
        var scales = y.Slice(4, 12);
        float invScale = maxScale > 0 ? 63f / maxScale : 0f;
        float invMin = maxMin > 0 ? 63f / maxMin : 0f;
        for (int j = 0; j < 8; j++)
        {
            // uint8_t ls = nearest_int(…): the int wraps to a byte before MIN(63, ·).
            int ls = Math.Min(63, (int)(byte)NearestInt(invScale * s.Scales[j]));
            int lm = Math.Min(63, (int)(byte)NearestInt(invMin * s.Mins[j]));
            if (j < 4)
            {
                scales[j] = (byte)ls;
                scales[j + 4] = (byte)lm;
            }
            else
            {
                scales[j + 4] = (byte)((ls & 0xF) | ((lm & 0xF) << 4));
                scales[j - 4] |= (byte)((ls >> 4) << 6);
                scales[j] |= (byte)((lm >> 4) << 6);
            }
        }
        WriteHalf(y, 0, maxScale / 63f);
        WriteHalf(y, 2, maxMin / 63f);

        float dAll = ReadHalf(y, 0), dminAll = ReadHalf(y, 2);
        for (int j = 0; j < 8; j++)
        {
            var (sc, m) = QuantizedBlocks.ScaleMinK4(scales, j);
            float d = dAll * sc;
            if (d == 0) continue;
            float dm = dminAll * m;
            for (int ii = 0; ii < 32; ii++)
            {
                int l = NearestInt((x[32 * j + ii] + dm) / d);
                L[32 * j + ii] = (byte)Math.Max(0, Math.Min(nmax, l));
            }
        }

        if (!fifthBit)
        {
            var q = y[16..];
            for (int j = 0; j < QuantFormats.SuperBlock; j += 64, q = q[32..])
                for (int l = 0; l < 32; l++)
                    q[l] = (byte)(L[j + l] | (L[j + l + 32] << 4));
            return;
        }
        var qh = y.Slice(16, 32);
        var ql = y[48..];
        int m1 = 1, m2 = 2;
        for (int n = 0; n < QuantFormats.SuperBlock; n += 64, ql = ql[32..], m1 <<= 2, m2 <<= 2)
            for (int j = 0; j < 32; j++)
            {
                int l1 = L[n + j];
                if (l1 > 15)
                {
                    l1 -= 16;
                    qh[j] |= (byte)m1;
                }
                int l2 = L[n + j + 32];
                if (l2 > 15)
                {
                    l2 -= 16;
                    qh[j] |= (byte)m2;
                }
                ql[j] = (byte)(l1 | (l2 << 4));
            }
    }

    /// <summary>ggml's GROUP_MAX_EPS: a group whose largest magnitude is below it quantizes to zeros.</summary>
    const float GroupMaxEps = 1e-15f;

    /// <summary>ggml's make_qx_quants with rmse_type 1 and no importance weights (weights x²).</summary>
    static float MakeQxQuants(int n, int nmax, ReadOnlySpan<float> x, Span<sbyte> L)
    {
        float max = 0, amax = 0;
        for (int i = 0; i < n; i++)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax)
            {
                amax = ax;
                max = x[i];
            }
        }
        if (amax < GroupMaxEps)
        {
            L[..n].Clear();
            return 0f;
        }
        float iscale = -nmax / max;
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++)
        {
            int l = NearestInt(iscale * x[i]);
            l = Math.Max(-nmax, Math.Min(nmax - 1, l));
            L[i] = (sbyte)(l + nmax);
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
        float best = scale * sumlx;
        for (int step = -9; step <= 9; step++)
        {
            if (step == 0) continue;
            iscale = -(nmax + 0.1f * step) / max;
            sumlx = suml2 = 0;
            for (int i = 0; i < n; i++)
            {
                int l = NearestInt(iscale * x[i]);
                l = Math.Max(-nmax, Math.Min(nmax - 1, l));
                float w = x[i] * x[i];
                sumlx += w * x[i] * l;
                suml2 += w * l * l;
            }
            if (suml2 > 0 && sumlx * sumlx > best * suml2)
            {
                for (int i = 0; i < n; i++)
                {
                    int l = NearestInt(iscale * x[i]);
                    L[i] = (sbyte)(nmax + Math.Max(-nmax, Math.Min(nmax - 1, l)));
                }
                scale = sumlx / suml2;
                best = scale * sumlx;
            }
        }
        return scale;
    }

    static void Q6_K(ReadOnlySpan<float> x, Span<byte> y, Scratch s)
    {
        var L = s.SignedL.AsSpan();
        float maxScale = 0, maxAbsScale = 0;
        for (int ib = 0; ib < 16; ib++)
        {
            float scale = MakeQxQuants(16, 32, x.Slice(16 * ib, 16), L.Slice(16 * ib, 16));
            s.Scales[ib] = scale;
            float absScale = MathF.Abs(scale);
            if (absScale > maxAbsScale)
            {
                maxAbsScale = absScale;
                maxScale = scale;
            }
        }
        y.Clear();
        if (maxAbsScale < GroupMaxEps)
            return; // all zeros, d = +0
        float iscale = -128f / maxScale;
        WriteHalf(y, 208, 1 / iscale);
        var scales = y.Slice(192, 16);
        for (int ib = 0; ib < 16; ib++)
            scales[ib] = (byte)(sbyte)Math.Min(127, NearestInt(iscale * s.Scales[ib]));
        float dAll = ReadHalf(y, 208);
        for (int j = 0; j < 16; j++)
        {
            float d = dAll * (sbyte)scales[j];
            if (d == 0) continue;
            for (int ii = 0; ii < 16; ii++)
            {
                int l = NearestInt(x[16 * j + ii] / d);
                L[16 * j + ii] = (sbyte)(Math.Max(-32, Math.Min(31, l)) + 32);
            }
        }
        var ql = y[..128];
        var qh = y.Slice(128, 64);
        for (int j = 0; j < QuantFormats.SuperBlock; j += 128, ql = ql[64..], qh = qh[32..])
            for (int l = 0; l < 32; l++)
            {
                int q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF, q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
                ql[l] = (byte)(q1 | (q3 << 4));
                ql[l + 32] = (byte)(q2 | (q4 << 4));
                qh[l] = (byte)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
            }
    }
}
