using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Appliance.Crush.Hashing;

/// <summary>
/// The rjenkins1 hash family CRUSH uses (hash id 0): Bob Jenkins' 1996 32-bit mix with a fixed seed. All arithmetic
/// wraps modulo 2^32; negative ids enter as their unsigned 32-bit pattern.
/// </summary>
public static class CrushHash
{
    private const uint Seed = 1315423911;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Mix(ref uint a, ref uint b, ref uint c)
    {
        a = (a - b - c) ^ (c >> 13);
        b = (b - c - a) ^ (a << 8);
        c = (c - a - b) ^ (b >> 13);
        a = (a - b - c) ^ (c >> 12);
        b = (b - c - a) ^ (a << 16);
        c = (c - a - b) ^ (b >> 5);
        a = (a - b - c) ^ (c >> 3);
        b = (b - c - a) ^ (a << 10);
        c = (c - a - b) ^ (b >> 15);
    }

    public static uint Hash32(uint a)
    {
        // X and Y are ordinary variables that every mix modifies; later mixes see the modified values.
        uint h = Seed ^ a, b = a, x = 231232, y = 1232;
        Mix(ref b, ref x, ref h);
        Mix(ref y, ref a, ref h);
        return h;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Hash32(uint a, uint b)
    {
        uint h = Seed ^ a ^ b, x = 231232, y = 1232;
        Mix(ref a, ref b, ref h);
        Mix(ref x, ref a, ref h);
        Mix(ref b, ref y, ref h);
        return h;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Hash32(uint a, uint b, uint c)
    {
        uint h = Seed ^ a ^ b ^ c, x = 231232, y = 1232;
        Mix(ref a, ref b, ref h);
        Mix(ref c, ref x, ref h);
        Mix(ref y, ref a, ref h);
        Mix(ref b, ref x, ref h);
        Mix(ref y, ref c, ref h);
        return h;
    }

    public static uint Hash32(uint a, uint b, uint c, uint d)
    {
        uint h = Seed ^ a ^ b ^ c ^ d, x = 231232, y = 1232;
        Mix(ref a, ref b, ref h);
        Mix(ref c, ref d, ref h);
        Mix(ref a, ref x, ref h);
        Mix(ref y, ref b, ref h);
        Mix(ref c, ref x, ref h);
        Mix(ref y, ref d, ref h);
        return h;
    }

    public static uint Hash32(uint a, uint b, uint c, uint d, uint e)
    {
        uint h = Seed ^ a ^ b ^ c ^ d ^ e, x = 231232, y = 1232;
        Mix(ref a, ref b, ref h);
        Mix(ref c, ref d, ref h);
        Mix(ref e, ref x, ref h);
        Mix(ref y, ref a, ref h);
        Mix(ref b, ref x, ref h);
        Mix(ref y, ref c, ref h);
        Mix(ref d, ref x, ref h);
        Mix(ref y, ref e, ref h);
        return h;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Mix(ref Vector256<uint> a, ref Vector256<uint> b, ref Vector256<uint> c)
    {
        a = (a - b - c) ^ (c >>> 13);
        b = (b - c - a) ^ (a << 8);
        c = (c - a - b) ^ (b >>> 13);
        a = (a - b - c) ^ (c >>> 12);
        b = (b - c - a) ^ (a << 16);
        c = (c - a - b) ^ (b >>> 5);
        a = (a - b - c) ^ (c >>> 3);
        b = (b - c - a) ^ (a << 10);
        c = (c - a - b) ^ (b >>> 15);
    }

    /// <summary>Hash32(a, b[i], c) for 8 values of b at once (same result as the scalar form, lane by lane).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<uint> Hash32x8(uint a, Vector256<uint> b, uint c)
    {
        var va = Vector256.Create(a);
        var vc = Vector256.Create(c);
        var h = Vector256.Create(Seed ^ a ^ c) ^ b;
        var x = Vector256.Create(231232u);
        var y = Vector256.Create(1232u);
        Mix(ref va, ref b, ref h);
        Mix(ref vc, ref x, ref h);
        Mix(ref y, ref va, ref h);
        Mix(ref b, ref x, ref h);
        Mix(ref y, ref vc, ref h);
        return h;
    }

    /// <summary>
    /// Ceph's object-name hash (ceph_str_hash_rjenkins, pool hash type 2): Jenkins' lookup2 over the bytes with
    /// a = b = 0x9E3779B9, c = 0.
    /// </summary>
    public static uint StrHashRjenkins(ReadOnlySpan<byte> key)
    {
        uint a = 0x9e3779b9, b = a, c = 0;
        var k = key;
        while (k.Length >= 12)
        {
            a += k[0] | ((uint)k[1] << 8) | ((uint)k[2] << 16) | ((uint)k[3] << 24);
            b += k[4] | ((uint)k[5] << 8) | ((uint)k[6] << 16) | ((uint)k[7] << 24);
            c += k[8] | ((uint)k[9] << 8) | ((uint)k[10] << 16) | ((uint)k[11] << 24);
            Mix(ref a, ref b, ref c);
            k = k[12..];
        }
        c += (uint)key.Length;
        // The tail: bytes 8..10 go to c shifted by 8 (the low byte of c holds the length).
        switch (k.Length)
        {
            case 11: c += (uint)k[10] << 24; goto case 10;
            case 10: c += (uint)k[9] << 16; goto case 9;
            case 9: c += (uint)k[8] << 8; goto case 8;
            case 8: b += (uint)k[7] << 24; goto case 7;
            case 7: b += (uint)k[6] << 16; goto case 6;
            case 6: b += (uint)k[5] << 8; goto case 5;
            case 5: b += k[4]; goto case 4;
            case 4: a += (uint)k[3] << 24; goto case 3;
            case 3: a += (uint)k[2] << 16; goto case 2;
            case 2: a += (uint)k[1] << 8; goto case 1;
            case 1: a += k[0]; break;
        }
        Mix(ref a, ref b, ref c);
        return c;
    }

    /// <summary>
    /// 2^44 * log2(u + 1) in fixed point (crush_ln), for u in 0..65535, from Ceph's tables. Used by straw2.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Ln(uint u)
    {
        var v = (u & 0xFFFF) + 1;
        var e = 15;
        if ((v & 0x18000) == 0)
        {
            // Normalize so that bit 15 is set: shift by the number of leading zeros within 17 bits.
            var bits = System.Numerics.BitOperations.LeadingZeroCount(v & 0x1FFFF) - 16;
            v <<= bits;
            e = 15 - bits;
        }
        var index1 = (int)(v >> 8) << 1;
        var rhLh = CrushLnTables.RhLh;
        var rh = rhLh[index1 - 256];
        var lh = rhLh[index1 + 1 - 256];
        var t = ((ulong)v * rh) >> 48;
        var ll = CrushLnTables.Ll[(int)(t & 0xFF)];
        return ((ulong)e << 44) + ((lh + ll) >> 4);
    }
}
