using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using System.Runtime.Intrinsics;

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

    /// <summary>
    /// The crc32c (seed 0) of each <paramref name="blockSize"/>-byte block of <paramref name="data"/> into
    /// <paramref name="crcs"/> (the object store's per-4 KiB checksums). With folding each block is one folded
    /// pass; without it, four blocks go side by side through the instruction (one block's crc is a chain of dependent
    /// instructions bound by their latency; four independent chains keep the unit busy).
    /// </summary>
    public static void ComputeBlocks(ReadOnlySpan<byte> data, int blockSize, Span<uint> crcs)
    {
        if (blockSize <= 0 || blockSize % 8 != 0 || data.Length % blockSize != 0 || crcs.Length < data.Length / blockSize)
        {
            throw new ArgumentException($"{data.Length} bytes do not split into whole {blockSize}-byte blocks for {crcs.Length} crcs");
        }
        if (Folding && blockSize >= FoldMinimum)
        {
            for (var b = 0; b < data.Length / blockSize; b++)
            {
                crcs[b] = ~Folded(~0u, data.Slice(b * blockSize, blockSize));
            }
            return;
        }
        BlocksByInstruction(data, blockSize, crcs);
    }

    /// <summary><see cref="ComputeBlocks"/> without folding (validated arguments).</summary>
    internal static void BlocksByInstruction(ReadOnlySpan<byte> data, int blockSize, Span<uint> crcs)
    {
        var blocks = data.Length / blockSize;
        var words = MemoryMarshal.Cast<byte, ulong>(data);
        var per = blockSize / 8;
        var b = 0;
        for (; b + 4 <= blocks; b += 4)
        {
            uint c0 = ~0u, c1 = ~0u, c2 = ~0u, c3 = ~0u;
            var w0 = words.Slice(b * per, per);
            var w1 = words.Slice((b + 1) * per, per);
            var w2 = words.Slice((b + 2) * per, per);
            var w3 = words.Slice((b + 3) * per, per);
            for (var i = 0; i < per; i++)
            {
                c0 = BitOperations.Crc32C(c0, LittleEndian(w0[i]));
                c1 = BitOperations.Crc32C(c1, LittleEndian(w1[i]));
                c2 = BitOperations.Crc32C(c2, LittleEndian(w2[i]));
                c3 = BitOperations.Crc32C(c3, LittleEndian(w3[i]));
            }
            crcs[b] = ~c0;
            crcs[b + 1] = ~c1;
            crcs[b + 2] = ~c2;
            crcs[b + 3] = ~c3;
        }
        for (; b < blocks; b++)
        {
            crcs[b] = ~Instruction(~0u, data.Slice(b * blockSize, blockSize));
        }
    }

    private static ulong LittleEndian(ulong v) => BitConverter.IsLittleEndian ? v : BinaryPrimitives.ReverseEndianness(v);

    /// <summary>Advances a raw crc register (no pre/post inversion) over <paramref name="data"/>.</summary>
    private static uint Update(uint crc, ReadOnlySpan<byte> data)
    {
        if (data.Length >= FoldMinimum && Folding)
        {
            return Folded(crc, data);
        }
        return Instruction(crc, data);
    }

    /// <summary>The crc32-instruction path (striped for long inputs): used where carry-less folding is unavailable,
    /// for short inputs, and by the tests as the second implementation to compare with.</summary>
    internal static uint Instruction(uint crc, ReadOnlySpan<byte> data)
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

    /// <summary>The folding path runs on this machine (AVX-512 with VPCLMULQDQ); tests compare both paths.</summary>
    internal static bool Folding { get; } = Pclmulqdq.V512.IsSupported && Avx512F.IsSupported;

    // Below this the folding path's fixed costs (loading the accumulators, the final 64 bytes by instruction) are
    // not repaid.
    private const int FoldMinimum = 256;

    // Folding constants (see Folded): (x^(63+n) mod P, x^(n-1) mod P) for a fold over n bits, bit-reflected.
    private static readonly Vector512<ulong> Fold2048 = FoldConstants(2048);
    private static readonly Vector512<ulong> Fold512 = FoldConstants(512);

    /// <summary>
    /// crc32c by carry-less multiplication ("folding", after Intel's paper on CRC with PCLMULQDQ), four 512-bit
    /// accumulators at a time. The crc register is linear over GF(2): a 16-byte block A = H·x^64 + L that has n
    /// more bits after it contributes exactly what A·x^n mod P would contribute in the place n bits later, and
    /// H·(x^(64+n) mod P) + L·(x^n mod P) is such a value of 96 bits, which is simply xored into the block found
    /// there. In the bit-reflected order of crc32c (the first bit is the least significant) the 64-bit halves swap
    /// roles and a carry-less product comes out shifted by one, hence the constants' exponents 63+n and n-1.
    /// Each accumulator lane folds over the 256 bytes the four accumulators cover; at the end they fold into one,
    /// that one over the rest in 64-byte steps, and the last 64 bytes it stands for, with the tail, go through the
    /// crc32 instruction. The register's starting value is xored into the first four bytes (what the instruction
    /// does too), so the result equals <see cref="Instruction"/> for every input.
    /// </summary>
    private static uint Folded(uint crc, ReadOnlySpan<byte> data)
    {
        ref var p = ref MemoryMarshal.GetReference(data);
        var length = data.Length;
        var x0 = Vector512.LoadUnsafe(ref p).AsUInt64() ^ Vector512.CreateScalar((ulong)crc);
        int at;
        if (length >= 512)
        {
            var x1 = Vector512.LoadUnsafe(ref p, 64).AsUInt64();
            var x2 = Vector512.LoadUnsafe(ref p, 128).AsUInt64();
            var x3 = Vector512.LoadUnsafe(ref p, 192).AsUInt64();
            for (at = 256; at + 256 <= length; at += 256)
            {
                x0 = Fold(x0, Fold2048, Vector512.LoadUnsafe(ref p, (nuint)at).AsUInt64());
                x1 = Fold(x1, Fold2048, Vector512.LoadUnsafe(ref p, (nuint)(at + 64)).AsUInt64());
                x2 = Fold(x2, Fold2048, Vector512.LoadUnsafe(ref p, (nuint)(at + 128)).AsUInt64());
                x3 = Fold(x3, Fold2048, Vector512.LoadUnsafe(ref p, (nuint)(at + 192)).AsUInt64());
            }
            x0 = Fold(Fold(Fold(x0, Fold512, x1), Fold512, x2), Fold512, x3);
        }
        else
        {
            at = 64;
        }
        for (; at + 64 <= length; at += 64)
        {
            x0 = Fold(x0, Fold512, Vector512.LoadUnsafe(ref p, (nuint)at).AsUInt64());
        }
        // x0 now stands for 64 bytes of data that end where the folded part ends: the instruction finishes.
        Span<ulong> last = stackalloc ulong[8];
        x0.CopyTo(last);
        return Serial(Serial(0, MemoryMarshal.AsBytes(last)), data[at..]);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<ulong> Fold(Vector512<ulong> x, Vector512<ulong> k, Vector512<ulong> next) =>
        Avx512F.TernaryLogic(Pclmulqdq.V512.CarrylessMultiply(x, k, 0x00), Pclmulqdq.V512.CarrylessMultiply(x, k, 0x11), next, 0x96);

    private static Vector512<ulong> FoldConstants(int n)
    {
        var lane = Vector128.Create(Reflected(XPowModP(63 + n)), Reflected(XPowModP(n - 1)));
        var half = Vector256.Create(lane, lane);
        return Vector512.Create(half, half);
    }

    /// <summary>x^e mod P for crc32c's polynomial P = 0x1EDC6F41 (plus x^32), in the usual bit order.</summary>
    private static uint XPowModP(int e)
    {
        ulong r = 1;
        for (var i = 0; i < e; i++)
        {
            r <<= 1;
            if ((r & (1UL << 32)) != 0)
            {
                r ^= 0x1_1EDC_6F41UL;
            }
        }
        return (uint)r;
    }

    /// <summary>A polynomial of degree below 32 in a 64-bit register of the reflected order: x^d at bit 63-d.</summary>
    private static ulong Reflected(uint poly)
    {
        ulong r = 0;
        for (var d = 0; d < 32; d++)
        {
            if ((poly & (1u << d)) != 0)
            {
                r |= 1UL << (63 - d);
            }
        }
        return r;
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
