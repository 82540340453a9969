using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Appliance.Erasure.Kernels;

internal static unsafe partial class GfRegion
{
    /// <summary>
    /// AVX2, 64 bytes (two vectors) per step: c*x = c*(x &amp; 15) + c*(x &amp; 0xf0), each half a 16-entry table looked up with
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
        // Two vectors per step: each table pair loaded once serves 64 bytes (the loads, not the shuffles, bound
        // the one-vector loop).
        for (var pos = start; pos < end; pos += 64)
        {
            Vector256<byte> a0 = default, a1 = default, a2 = default, a3 = default;
            Vector256<byte> b0 = default, b1 = default, b2 = default, b3 = default;
            if (TAcc.Value)
            {
                a0 = Vector256.Load(o0 + pos);
                b0 = Vector256.Load(o0 + pos + 32);
                if (TN.Value > 1) { a1 = Vector256.Load(o1 + pos); b1 = Vector256.Load(o1 + pos + 32); }
                if (TN.Value > 2) { a2 = Vector256.Load(o2 + pos); b2 = Vector256.Load(o2 + pos + 32); }
                if (TN.Value > 3) { a3 = Vector256.Load(o3 + pos); b3 = Vector256.Load(o3 + pos + 32); }
            }
            var t = tables;
            for (var c = 0; c < cols; c++, t += 64)
            {
                var input = inputs[c] + pos;
                var v = Vector256.Load(input);
                var w = Vector256.Load(input + 32);
                var vlo = v & mask;
                var vhi = Avx2.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask;
                var wlo = w & mask;
                var whi = Avx2.ShiftRightLogical(w.AsUInt16(), 4).AsByte() & mask;
                var tlo = Vector256.Load(t);
                var thi = Vector256.Load(t + 32);
                a0 ^= Avx2.Shuffle(tlo, vlo) ^ Avx2.Shuffle(thi, vhi);
                b0 ^= Avx2.Shuffle(tlo, wlo) ^ Avx2.Shuffle(thi, whi);
                if (TN.Value > 1)
                {
                    tlo = Vector256.Load(t + rowStride);
                    thi = Vector256.Load(t + rowStride + 32);
                    a1 ^= Avx2.Shuffle(tlo, vlo) ^ Avx2.Shuffle(thi, vhi);
                    b1 ^= Avx2.Shuffle(tlo, wlo) ^ Avx2.Shuffle(thi, whi);
                }
                if (TN.Value > 2)
                {
                    tlo = Vector256.Load(t + (2 * rowStride));
                    thi = Vector256.Load(t + (2 * rowStride) + 32);
                    a2 ^= Avx2.Shuffle(tlo, vlo) ^ Avx2.Shuffle(thi, vhi);
                    b2 ^= Avx2.Shuffle(tlo, wlo) ^ Avx2.Shuffle(thi, whi);
                }
                if (TN.Value > 3)
                {
                    tlo = Vector256.Load(t + (3 * rowStride));
                    thi = Vector256.Load(t + (3 * rowStride) + 32);
                    a3 ^= Avx2.Shuffle(tlo, vlo) ^ Avx2.Shuffle(thi, vhi);
                    b3 ^= Avx2.Shuffle(tlo, wlo) ^ Avx2.Shuffle(thi, whi);
                }
            }
            a0.Store(o0 + pos);
            b0.Store(o0 + pos + 32);
            if (TN.Value > 1) { a1.Store(o1 + pos); b1.Store(o1 + pos + 32); }
            if (TN.Value > 2) { a2.Store(o2 + pos); b2.Store(o2 + pos + 32); }
            if (TN.Value > 3) { a3.Store(o3 + pos); b3.Store(o3 + pos + 32); }
        }
    }
}
