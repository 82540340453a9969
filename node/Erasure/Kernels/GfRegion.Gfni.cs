using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Appliance.Erasure.Kernels;

internal static unsafe partial class GfRegion
{
    /// <summary>GFNI on 512-bit vectors: one GF2P8AFFINEQB per coefficient and 64 bytes. <paramref name="matrices"/>
    /// points at the group's first row, <paramref name="cols"/> bit matrices per row.</summary>
    private static void Gfni512Group<TN, TAcc>(ulong* matrices, int cols, byte** inputs, byte** outputs, nuint start, nuint end)
        where TN : struct, ICount
        where TAcc : struct, IFlag
    {
        byte* o0 = outputs[0], o1 = TN.Value > 1 ? outputs[1] : null, o2 = TN.Value > 2 ? outputs[2] : null, o3 = TN.Value > 3 ? outputs[3] : null;
        for (var pos = start; pos < end; pos += 64)
        {
            Vector512<byte> a0 = default, a1 = default, a2 = default, a3 = default;
            if (TAcc.Value)
            {
                a0 = Vector512.Load(o0 + pos);
                if (TN.Value > 1) { a1 = Vector512.Load(o1 + pos); }
                if (TN.Value > 2) { a2 = Vector512.Load(o2 + pos); }
                if (TN.Value > 3) { a3 = Vector512.Load(o3 + pos); }
            }
            var a = matrices;
            for (var c = 0; c < cols; c++, a++)
            {
                var v = Vector512.Load(inputs[c] + pos);
                a0 ^= Gfni.V512.GaloisFieldAffineTransform(v, Vector512.Create(a[0]).AsByte(), 0);
                if (TN.Value > 1) { a1 ^= Gfni.V512.GaloisFieldAffineTransform(v, Vector512.Create(a[cols]).AsByte(), 0); }
                if (TN.Value > 2) { a2 ^= Gfni.V512.GaloisFieldAffineTransform(v, Vector512.Create(a[2 * cols]).AsByte(), 0); }
                if (TN.Value > 3) { a3 ^= Gfni.V512.GaloisFieldAffineTransform(v, Vector512.Create(a[3 * cols]).AsByte(), 0); }
            }
            a0.Store(o0 + pos);
            if (TN.Value > 1) { a1.Store(o1 + pos); }
            if (TN.Value > 2) { a2.Store(o2 + pos); }
            if (TN.Value > 3) { a3.Store(o3 + pos); }
        }
    }

    /// <summary>GFNI on 256-bit vectors (CPUs with GFNI and AVX2 but not AVX-512), as <see cref="Gfni512Group"/>.</summary>
    private static void Gfni256Group<TN, TAcc>(ulong* matrices, int cols, byte** inputs, byte** outputs, nuint start, nuint end)
        where TN : struct, ICount
        where TAcc : struct, IFlag
    {
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
            var a = matrices;
            for (var c = 0; c < cols; c++, a++)
            {
                var v = Vector256.Load(inputs[c] + pos);
                a0 ^= Gfni.V256.GaloisFieldAffineTransform(v, Vector256.Create(a[0]).AsByte(), 0);
                if (TN.Value > 1) { a1 ^= Gfni.V256.GaloisFieldAffineTransform(v, Vector256.Create(a[cols]).AsByte(), 0); }
                if (TN.Value > 2) { a2 ^= Gfni.V256.GaloisFieldAffineTransform(v, Vector256.Create(a[2 * cols]).AsByte(), 0); }
                if (TN.Value > 3) { a3 ^= Gfni.V256.GaloisFieldAffineTransform(v, Vector256.Create(a[3 * cols]).AsByte(), 0); }
            }
            a0.Store(o0 + pos);
            if (TN.Value > 1) { a1.Store(o1 + pos); }
            if (TN.Value > 2) { a2.Store(o2 + pos); }
            if (TN.Value > 3) { a3.Store(o3 + pos); }
        }
    }
}
