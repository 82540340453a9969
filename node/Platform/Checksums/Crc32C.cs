using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace Appliance.Platform.Checksums;

/// <summary>
/// crc32c (Castagnoli, the checksum of iSCSI, ext4 metadata and Ceph) with the CPU's crc32 instruction. The
/// instruction has a latency of three cycles but accepts one new input per cycle, so long inputs are cut into three
/// stripes checksummed side by side, and the stripes' results are joined with precomputed "append n zero bytes"
/// operators (the crc register is linear over GF(2): the state after A‖B is shift(state after A, |B|) xor the
/// state of B from zero). Short inputs take the plain loop. The result equals one pass over the whole input.
/// </summary>
public static class Crc32C
{
    // Stripe lengths (bytes) with a zero-append operator each: long inputs use the long stripes first.
    private const int LongStripe = 8192;
    private const int ShortStripe = 256;
    private static readonly uint[] LongShift = ZeroOperator(LongStripe);
    private static readonly uint[] ShortShift = ZeroOperator(ShortStripe);

    /// <summary>The crc32c of <paramref name="data"/>; pass a previous result as <paramref name="seed"/> to continue
    /// over a following piece (the result equals one pass over both).</summary>
    public static uint Compute(ReadOnlySpan<byte> data, uint seed = 0) => ~Update(~seed, data);

    /// <summary>Advances a raw crc register (no pre/post inversion) over <paramref name="data"/>.</summary>
    private static uint Update(uint crc, ReadOnlySpan<byte> data)
    {
        while (data.Length >= 3 * LongStripe)
        {
            crc = Striped(crc, data, LongStripe, LongShift);
            data = data[(3 * LongStripe)..];
        }
        while (data.Length >= 3 * ShortStripe)
        {
            crc = Striped(crc, data, ShortStripe, ShortShift);
            data = data[(3 * ShortStripe)..];
        }
        return Serial(crc, data);
    }

    private static uint Striped(uint crc, ReadOnlySpan<byte> data, int stripe, uint[] shift)
    {
        var a = data[..stripe];
        var b = data.Slice(stripe, stripe);
        var c = data.Slice(2 * stripe, stripe);
        uint crcB = 0;
        uint crcC = 0;
        ref var ra = ref Unsafe.AsRef(in a[0]);
        ref var rb = ref Unsafe.AsRef(in b[0]);
        ref var rc = ref Unsafe.AsRef(in c[0]);
        for (var i = 0; i < stripe; i += 8)
        {
            crc = BitOperations.Crc32C(crc, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref ra, i)));
            crcB = BitOperations.Crc32C(crcB, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref rb, i)));
            crcC = BitOperations.Crc32C(crcC, Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref rc, i)));
        }
        return Apply(shift, Apply(shift, crc) ^ crcB) ^ crcC;
    }

    private static uint Serial(uint crc, ReadOnlySpan<byte> data)
    {
        var i = 0;
        for (; i + 8 <= data.Length; i += 8)
        {
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(data[i..]));
        }
        for (; i < data.Length; i++)
        {
            crc = BitOperations.Crc32C(crc, data[i]);
        }
        return crc;
    }

    /// <summary>Applies a zero-append operator stored as four 256-entry tables, one per byte of the register.</summary>
    private static uint Apply(uint[] op, uint crc) =>
        op[crc & 0xff] ^ op[256 + ((crc >> 8) & 0xff)] ^ op[512 + ((crc >> 16) & 0xff)] ^ op[768 + (crc >> 24)];

    /// <summary>The operator "append <paramref name="zeros"/> zero bytes to the raw register", built by linearity
    /// from its effect on the 32 single-bit registers.</summary>
    private static uint[] ZeroOperator(int zeros)
    {
        Span<uint> basis = stackalloc uint[32];
        for (var bit = 0; bit < 32; bit++)
        {
            var r = 1u << bit;
            for (var n = 0; n < zeros; n += 8)
            {
                r = BitOperations.Crc32C(r, 0UL);
            }
            basis[bit] = r;
        }
        var table = new uint[4 * 256];
        for (var k = 0; k < 4; k++)
        {
            for (var v = 0; v < 256; v++)
            {
                var r = 0u;
                for (var bit = 0; bit < 8; bit++)
                {
                    if ((v & (1 << bit)) != 0)
                    {
                        r ^= basis[8 * k + bit];
                    }
                }
                table[256 * k + v] = r;
            }
        }
        return table;
    }
}
