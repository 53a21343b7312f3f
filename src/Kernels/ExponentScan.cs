using System.Numerics;
using System.Runtime.Intrinsics;

namespace IlgpuLlm.Kernels;

/// <summary>
/// The finiteness scan of stored values (see <see cref="StorageFormat.IndexOfNonFinite"/>): NaN and
/// ±inf are the patterns whose exponent bits are all ones. It runs over whole models (GBs), so it
/// tests 64 bytes per step with Vector512/Vector256 and looks at single elements only inside a
/// block that failed.
/// </summary>
public static unsafe class ExponentScan
{
    /// <summary>First element whose bits under <paramref name="exponentMask"/> are all ones (NaN or ±inf).</summary>
    public static long IndexOfAllOnes<T>(T* data, long count, T exponentMask)
        where T : unmanaged, IBinaryInteger<T>
    {
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var mask = Vector512.Create(exponentMask);
            long step = Vector512<T>.Count;
            for (; i + step <= count; i += step)
                if (Vector512.EqualsAny(Vector512.Load(data + i) & mask, mask))
                    return i + Scalar(data + i, step, exponentMask);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var mask = Vector256.Create(exponentMask);
            long step = Vector256<T>.Count;
            for (; i + 2 * step <= count; i += 2 * step)
            {
                var a = Vector256.Load(data + i) & mask;
                var b = Vector256.Load(data + i + step) & mask;
                if (Vector256.EqualsAny(a, mask) || Vector256.EqualsAny(b, mask))
                    return i + Scalar(data + i, 2 * step, exponentMask);
            }
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            var mask = Vector128.Create(exponentMask);
            long step = Vector128<T>.Count;
            for (; i + step <= count; i += step)
                if (Vector128.EqualsAny(Vector128.Load(data + i) & mask, mask))
                    return i + Scalar(data + i, step, exponentMask);
        }
        long rest = Scalar(data + i, count - i, exponentMask);
        return rest < 0 ? -1 : i + rest;
    }

    static long Scalar<T>(T* data, long count, T exponentMask) where T : unmanaged, IBinaryInteger<T>
    {
        for (long i = 0; i < count; i++)
            if ((data[i] & exponentMask) == exponentMask)
                return i;
        return -1;
    }

}
