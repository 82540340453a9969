using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Appliance.Erasure.Kernels;

internal static unsafe partial class GfRegion
{
    /// <summary>
    /// AVX2, 32 bytes per step: c*x = c*(x &amp; 15) + c*(x &amp; 0xf0), each half a 16-entry table looked up with
    /// VPSHUFB (which works per 128-bit lane, hence the tables stored twice). <paramref name="tables"/> points at the
    /// group's first row: 64 bytes per coefficient, <paramref name="cols"/> coefficients per row.
    /// </summary>
    private static void Avx2Group<TN, TAcc>(byte* tables, int cols, byte** inputs, byte** outputs, nuint start, nuint end)
        where TN : struct, ICount
        where TAcc : struct, IFlag
    {
        var mask = Vector256.Create((byte)0x0f);
        var rowStride = cols * 64;
        byte* o0 = outputs[0], o1 = TN.Value > 1 ? outputs[1] : null, o2 = TN.Value > 2 ? outputs[2] : null, o3 = TN.Value > 3 ? outputs[3] : null;
        for (var pos = start; pos < end; pos += 32)
        {
            Vector256<byte> a0 = default, a1 = default, a2 = default, a3 = default;
            if (TAcc.Value)
            {
                a0 = Vector256.Load(o0 + pos);
                if (TN.Value > 1) { a1 = Vector256.Load(o1 + pos); }
                if (TN.Value > 2) { a2 = Vector256.Load(o2 + pos); }
                if (TN.Value > 3) { a3 = Vector256.Load(o3 + pos); }
            }
            var t = tables;
            for (var c = 0; c < cols; c++, t += 64)
            {
                var v = Vector256.Load(inputs[c] + pos);
                var lo = v & mask;
                var hi = Avx2.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask;
                a0 ^= Avx2.Shuffle(Vector256.Load(t), lo) ^ Avx2.Shuffle(Vector256.Load(t + 32), hi);
                if (TN.Value > 1)
                {
                    var t1 = t + rowStride;
                    a1 ^= Avx2.Shuffle(Vector256.Load(t1), lo) ^ Avx2.Shuffle(Vector256.Load(t1 + 32), hi);
                }
                if (TN.Value > 2)
                {
                    var t2 = t + (2 * rowStride);
                    a2 ^= Avx2.Shuffle(Vector256.Load(t2), lo) ^ Avx2.Shuffle(Vector256.Load(t2 + 32), hi);
                }
                if (TN.Value > 3)
                {
                    var t3 = t + (3 * rowStride);
                    a3 ^= Avx2.Shuffle(Vector256.Load(t3), lo) ^ Avx2.Shuffle(Vector256.Load(t3 + 32), hi);
                }
            }
            a0.Store(o0 + pos);
            if (TN.Value > 1) { a1.Store(o1 + pos); }
            if (TN.Value > 2) { a2.Store(o2 + pos); }
            if (TN.Value > 3) { a3.Store(o3 + pos); }
        }
    }
}
