using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Security.Cryptography;
using AesNi = System.Runtime.Intrinsics.X86.Aes;

namespace Appliance.Platform.Crypto;

/// <summary>
/// AES-GCM (NIST SP 800-38D) with a 96-bit nonce and a 16-byte tag on the CPU's AES instructions (eight blocks in
/// flight) and 512-bit carry-less multiplication (GHASH eight blocks per reduction), the two stitched into one loop
/// so the AES units and the multiplier work side by side. What it produces is AES-GCM, byte for byte what
/// <see cref="AesGcm"/> produces (the tests hold it to that on random inputs and to the specification's vectors);
/// it exists because OpenSSL 3.0's GCM, behind <see cref="AesGcm"/> on Linux, does not use VPCLMULQDQ and is the
/// secure messenger's bottleneck (1 MiB, this machine, one core: AES-128 7.8 GB/s vs OpenSSL's 5.0).
/// Constant time: no table lookups and no branches on secret data; the tag is compared with
/// <see cref="CryptographicOperations.FixedTimeEquals"/>; a failed decryption zeroes its output, as
/// <see cref="AesGcm"/> does. Only where <see cref="IsSupported"/>; elsewhere use <see cref="AesGcm"/>.
/// An instance holds the expanded key and the hash key's powers, read-only after construction: it may be used
/// from several threads at once.
/// </summary>
public sealed class AesGcmNi : IDisposable
{
    public const int NonceSize = 12;
    public const int TagSize = 16;

    // Round keys (11 for AES-128, 15 for AES-256) and the hash key H in POLYVAL form (RFC 8452, appendix A: GHASH
    // is POLYVAL over byte-reversed blocks with H multiplied by x), with its powers for eight blocks at a time:
    // (H^8, H^7, H^6, H^5) and (H^4, H^3, H^2, H^1), the first block meeting the highest power.
    private readonly Vector128<byte>[] _roundKeys;
    private readonly int _rounds;
    private Vector128<ulong> _h;
    private Vector512<ulong> _powersHigh;
    private Vector512<ulong> _powersLow;

    public static bool IsSupported =>
        AesNi.IsSupported && Pclmulqdq.IsSupported && Pclmulqdq.V512.IsSupported && Avx512BW.IsSupported;

    public AesGcmNi(ReadOnlySpan<byte> key)
    {
        if (!IsSupported)
        {
            throw new PlatformNotSupportedException("AES-GCM on AES-NI and VPCLMULQDQ needs a CPU with both");
        }
        _roundKeys = key.Length switch
        {
            16 => Expand128(key),
            32 => Expand256(key),
            _ => throw new CryptographicException($"AES-GCM keys are 16 or 32 bytes, not {key.Length}"),
        };
        _rounds = _roundKeys.Length - 1;
        var h = Reverse(EncryptBlock(Vector128<byte>.Zero)).AsUInt64();
        // mulX_POLYVAL: H times x, reduced by x^128 + x^127 + x^126 + x^121 + 1.
        var carry = h.GetElement(1) >> 63;
        var lo = h.GetElement(0) << 1;
        var hi = (h.GetElement(1) << 1) | (h.GetElement(0) >> 63);
        var hx = Vector128.Create(lo ^ carry, hi ^ (carry * 0xC200000000000000UL));
        _h = hx;
        Span<Vector128<ulong>> powers = stackalloc Vector128<ulong>[8];
        powers[0] = hx;
        for (var i = 1; i < 8; i++)
        {
            // dot(H^i, H) = H^(i+1) in the Montgomery form that one reduction per product keeps consistent.
            powers[i] = Dot(powers[i - 1], hx);
        }
        _powersHigh = Vector512.Create(Vector256.Create(powers[7], powers[6]), Vector256.Create(powers[5], powers[4]));
        _powersLow = Vector512.Create(Vector256.Create(powers[3], powers[2]), Vector256.Create(powers[1], powers[0]));
    }

    private static Vector128<byte>[] Expand128(ReadOnlySpan<byte> key)
    {
        var rk = new Vector128<byte>[11];
        var k = Vector128.Create(key);
        rk[0] = k;
        rk[1] = k = Step128(k, AesNi.KeygenAssist(k, 0x01));
        rk[2] = k = Step128(k, AesNi.KeygenAssist(k, 0x02));
        rk[3] = k = Step128(k, AesNi.KeygenAssist(k, 0x04));
        rk[4] = k = Step128(k, AesNi.KeygenAssist(k, 0x08));
        rk[5] = k = Step128(k, AesNi.KeygenAssist(k, 0x10));
        rk[6] = k = Step128(k, AesNi.KeygenAssist(k, 0x20));
        rk[7] = k = Step128(k, AesNi.KeygenAssist(k, 0x40));
        rk[8] = k = Step128(k, AesNi.KeygenAssist(k, 0x80));
        rk[9] = k = Step128(k, AesNi.KeygenAssist(k, 0x1B));
        rk[10] = Step128(k, AesNi.KeygenAssist(k, 0x36));
        return rk;
    }

    // One step of the key schedule: each word is the XOR of all words before it in the previous round key and the
    // assist word (SubWord(RotWord(w3)) ^ rcon for the even steps, SubWord(w3) for AES-256's odd steps).
    private static Vector128<byte> Step(Vector128<byte> k, Vector128<byte> assistWord)
    {
        k ^= Sse2.ShiftLeftLogical128BitLane(k, 4);
        k ^= Sse2.ShiftLeftLogical128BitLane(k, 4);
        k ^= Sse2.ShiftLeftLogical128BitLane(k, 4);
        return k ^ assistWord;
    }

    private static Vector128<byte> Step128(Vector128<byte> k, Vector128<byte> assist) =>
        Step(k, Sse2.Shuffle(assist.AsUInt32(), 0xFF).AsByte());

    private static Vector128<byte>[] Expand256(ReadOnlySpan<byte> key)
    {
        var rk = new Vector128<byte>[15];
        var a = Vector128.Create(key[..16]);
        var b = Vector128.Create(key[16..]);
        rk[0] = a;
        rk[1] = b;
        ReadOnlySpan<byte> rcon = [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40];
        for (var i = 0; i < 7; i++)
        {
            a = Step(a, Sse2.Shuffle(KeygenAssist(b, rcon[i]).AsUInt32(), 0xFF).AsByte());
            rk[2 + 2 * i] = a;
            if (i == 6)
            {
                break;
            }
            b = Step(b, Sse2.Shuffle(AesNi.KeygenAssist(a, 0x00).AsUInt32(), 0xAA).AsByte());
            rk[3 + 2 * i] = b;
        }
        return rk;
    }

    // The instruction wants its round constant as an immediate.
    private static Vector128<byte> KeygenAssist(Vector128<byte> k, byte rcon) => rcon switch
    {
        0x01 => AesNi.KeygenAssist(k, 0x01),
        0x02 => AesNi.KeygenAssist(k, 0x02),
        0x04 => AesNi.KeygenAssist(k, 0x04),
        0x08 => AesNi.KeygenAssist(k, 0x08),
        0x10 => AesNi.KeygenAssist(k, 0x10),
        0x20 => AesNi.KeygenAssist(k, 0x20),
        _ => AesNi.KeygenAssist(k, 0x40),
    };

    private Vector128<byte> EncryptBlock(Vector128<byte> block)
    {
        var rk = _roundKeys;
        block ^= rk[0];
        for (var r = 1; r < _rounds; r++)
        {
            block = AesNi.Encrypt(block, rk[r]);
        }
        return AesNi.EncryptLast(block, rk[_rounds]);
    }

    private static readonly Vector128<byte> ReverseMask = Vector128.Create((byte)15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);

    // Initialised after ReverseMask (static initialisers run in the order they are written).
    private static readonly Vector512<byte> ReverseMask512 = Vector512.Create(Vector256.Create(ReverseMask, ReverseMask), Vector256.Create(ReverseMask, ReverseMask));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<byte> Reverse(Vector128<byte> v) => Ssse3.Shuffle(v, ReverseMask);

    /// <summary>POLYVAL's dot(a, b) = a * b * x^-128 in GF(2^128).</summary>
    private static Vector128<ulong> Dot(Vector128<ulong> a, Vector128<ulong> b)
    {
        var lo = Pclmulqdq.CarrylessMultiply(a, b, 0x00);
        var hi = Pclmulqdq.CarrylessMultiply(a, b, 0x11);
        var mid = Pclmulqdq.CarrylessMultiply(a, b, 0x01) ^ Pclmulqdq.CarrylessMultiply(a, b, 0x10);
        return Reduce(lo, mid, hi);
    }

    private static readonly Vector128<ulong> Poly = Vector128.Create(0xC200000000000000UL, 0UL);

    /// <summary>(hi * x^128 + mid * x^64 + lo) * x^-128 mod the POLYVAL polynomial: two Montgomery steps of 64 bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<ulong> Reduce(Vector128<ulong> lo, Vector128<ulong> mid, Vector128<ulong> hi)
    {
        lo ^= Sse2.ShiftLeftLogical128BitLane(mid.AsByte(), 8).AsUInt64();
        hi ^= Sse2.ShiftRightLogical128BitLane(mid.AsByte(), 8).AsUInt64();
        lo = Sse2.Shuffle(lo.AsUInt32(), 0x4E).AsUInt64() ^ Pclmulqdq.CarrylessMultiply(lo, Poly, 0x00);
        lo = Sse2.Shuffle(lo.AsUInt32(), 0x4E).AsUInt64() ^ Pclmulqdq.CarrylessMultiply(lo, Poly, 0x00);
        return hi ^ lo;
    }

    /// <summary>Absorbs whole 16-byte blocks one at a time (the associated data and the last blocks of a message).</summary>
    private Vector128<ulong> Absorb(Vector128<ulong> s, ReadOnlySpan<byte> blocks)
    {
        for (var i = 0; i + 16 <= blocks.Length; i += 16)
        {
            s = Dot(s ^ Reverse(Vector128.Create(blocks.Slice(i, 16))).AsUInt64(), _h);
        }
        return s;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<ulong> Fold(Vector512<ulong> v)
    {
        var half = v.GetLower() ^ v.GetUpper();
        return half.GetLower() ^ half.GetUpper();
    }

    /// <summary>Absorbs a tail of fewer than 16 bytes, zero-padded.</summary>
    private Vector128<ulong> AbsorbPartial(Vector128<ulong> s, ReadOnlySpan<byte> tail)
    {
        if (tail.IsEmpty)
        {
            return s;
        }
        Span<byte> block = stackalloc byte[16];
        block.Clear();
        tail.CopyTo(block);
        return Dot(s ^ Reverse(Vector128.Create((ReadOnlySpan<byte>)block)).AsUInt64(), _h);
    }

    private Vector128<ulong> AbsorbAll(Vector128<ulong> s, ReadOnlySpan<byte> data)
    {
        var whole = data.Length & ~15;
        s = Absorb(s, data[..whole]);
        return AbsorbPartial(s, data[whole..]);
    }

    private static readonly Vector128<byte> CounterMask = Vector128.Create((byte)0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 15, 14, 13, 12);

    /// <summary>XORs the key stream for counters from <paramref name="counter"/> on into <paramref name="output"/>,
    /// one block at a time (the last blocks of a message, fewer than eight); returns the next counter.</summary>
    private uint Ctr(Vector128<byte> j0, uint counter, ReadOnlySpan<byte> input, Span<byte> output)
    {
        var counterBlock = Ssse3.Shuffle(j0, CounterMask).AsUInt32().WithElement(3, counter);
        Span<byte> block = stackalloc byte[16];
        for (var i = 0; i < input.Length; i += 16)
        {
            var keyStream = EncryptBlock(Ssse3.Shuffle(counterBlock.AsByte(), CounterMask));
            counterBlock += Vector128.Create(0u, 0, 0, 1);
            var take = Math.Min(16, input.Length - i);
            block.Clear();
            input.Slice(i, take).CopyTo(block);
            (keyStream ^ Vector128.Create((ReadOnlySpan<byte>)block)).CopyTo(block);
            block[..take].CopyTo(output[i..]);
        }
        return counterBlock.GetElement(3);
    }

    /// <summary>
    /// The bulk of both directions, 128 bytes (eight blocks) per step with the counter mode and the hash stitched
    /// into one loop, so the AES units and the carry-less multiplier work side by side. Encrypting, the hash takes
    /// the cipher text written two steps earlier; decrypting, it takes this step's cipher text before the key stream
    /// overwrites it (in place). <paramref name="input"/> is a whole number of steps.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Stitched(Vector128<byte> j0, ref uint counter, ref Vector128<ulong> s, ReadOnlySpan<byte> input, Span<byte> output, bool encrypting)
    {
        var n = input.Length;
        if (n == 0)
        {
            return;
        }
        var baseBlock = Ssse3.Shuffle(j0, CounterMask).AsUInt32().WithElement(3, counter);
        var rk = _roundKeys;
        var rounds = _rounds;
        var k0 = rk[0];
        var last = rk[rounds];
        var h = s;
        ref var src = ref MemoryMarshal.GetReference(input);
        ref var dst = ref MemoryMarshal.GetReference(output);
        ref var hashed = ref encrypting ? ref dst : ref src;
        for (var i = 0; i < n; i += 128)
        {
            var c0 = Ssse3.Shuffle(baseBlock.AsByte(), CounterMask) ^ k0;
            var c1 = Ssse3.Shuffle((baseBlock + Vector128.Create(0u, 0, 0, 1)).AsByte(), CounterMask) ^ k0;
            var c2 = Ssse3.Shuffle((baseBlock + Vector128.Create(0u, 0, 0, 2)).AsByte(), CounterMask) ^ k0;
            var c3 = Ssse3.Shuffle((baseBlock + Vector128.Create(0u, 0, 0, 3)).AsByte(), CounterMask) ^ k0;
            var c4 = Ssse3.Shuffle((baseBlock + Vector128.Create(0u, 0, 0, 4)).AsByte(), CounterMask) ^ k0;
            var c5 = Ssse3.Shuffle((baseBlock + Vector128.Create(0u, 0, 0, 5)).AsByte(), CounterMask) ^ k0;
            var c6 = Ssse3.Shuffle((baseBlock + Vector128.Create(0u, 0, 0, 6)).AsByte(), CounterMask) ^ k0;
            var c7 = Ssse3.Shuffle((baseBlock + Vector128.Create(0u, 0, 0, 7)).AsByte(), CounterMask) ^ k0;
            baseBlock += Vector128.Create(0u, 0, 0, 8);
            // The eight blocks to hash in this step: this step's when decrypting; when encrypting, those written two
            // steps earlier (the stores of the step just before may still be on their way to the cache, and a wide load
            // over several pending narrow stores waits for them).
            var at = encrypting ? i - 256 : i;
            if (at >= 0)
            {
                h = Absorb8(h, ref Unsafe.Add(ref hashed, at));
            }
            for (var r = 1; r < rounds; r++)
            {
                var k = rk[r];
                c0 = AesNi.Encrypt(c0, k);
                c1 = AesNi.Encrypt(c1, k);
                c2 = AesNi.Encrypt(c2, k);
                c3 = AesNi.Encrypt(c3, k);
                c4 = AesNi.Encrypt(c4, k);
                c5 = AesNi.Encrypt(c5, k);
                c6 = AesNi.Encrypt(c6, k);
                c7 = AesNi.Encrypt(c7, k);
            }
            ref var sp = ref Unsafe.Add(ref src, i);
            ref var d = ref Unsafe.Add(ref dst, i);
            (AesNi.EncryptLast(c0, last) ^ Vector128.LoadUnsafe(ref sp, 0)).StoreUnsafe(ref d, 0);
            (AesNi.EncryptLast(c1, last) ^ Vector128.LoadUnsafe(ref sp, 16)).StoreUnsafe(ref d, 16);
            (AesNi.EncryptLast(c2, last) ^ Vector128.LoadUnsafe(ref sp, 32)).StoreUnsafe(ref d, 32);
            (AesNi.EncryptLast(c3, last) ^ Vector128.LoadUnsafe(ref sp, 48)).StoreUnsafe(ref d, 48);
            (AesNi.EncryptLast(c4, last) ^ Vector128.LoadUnsafe(ref sp, 64)).StoreUnsafe(ref d, 64);
            (AesNi.EncryptLast(c5, last) ^ Vector128.LoadUnsafe(ref sp, 80)).StoreUnsafe(ref d, 80);
            (AesNi.EncryptLast(c6, last) ^ Vector128.LoadUnsafe(ref sp, 96)).StoreUnsafe(ref d, 96);
            (AesNi.EncryptLast(c7, last) ^ Vector128.LoadUnsafe(ref sp, 112)).StoreUnsafe(ref d, 112);
        }
        if (encrypting)
        {
            for (var at = Math.Max(0, n - 256); at < n; at += 128)
            {
                h = Absorb8(h, ref Unsafe.Add(ref hashed, at));
            }
        }
        counter = baseBlock.GetElement(3);
        s = h;
    }

    /// <summary>Absorbs eight blocks (two 512-bit vectors against H^8..H^1) with one reduction.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Vector128<ulong> Absorb8(Vector128<ulong> s, ref byte blocks)
    {
        var mask = ReverseMask512;
        var hHigh = _powersHigh;
        var hLow = _powersLow;
        var x0 = Avx512BW.Shuffle(Vector512.LoadUnsafe(ref blocks), mask).AsUInt64();
        var x1 = Avx512BW.Shuffle(Vector512.LoadUnsafe(ref blocks, 64), mask).AsUInt64();
        x0 ^= s.ToVector256().ToVector512(); // zero-extended: s joins the first block only
        var lo = Pclmulqdq.V512.CarrylessMultiply(x0, hHigh, 0x00) ^ Pclmulqdq.V512.CarrylessMultiply(x1, hLow, 0x00);
        var hi = Pclmulqdq.V512.CarrylessMultiply(x0, hHigh, 0x11) ^ Pclmulqdq.V512.CarrylessMultiply(x1, hLow, 0x11);
        var mid = Pclmulqdq.V512.CarrylessMultiply(x0, hHigh, 0x01) ^ Pclmulqdq.V512.CarrylessMultiply(x1, hLow, 0x01)
            ^ Pclmulqdq.V512.CarrylessMultiply(x0, hHigh, 0x10) ^ Pclmulqdq.V512.CarrylessMultiply(x1, hLow, 0x10);
        return Reduce(Fold(lo), Fold(mid), Fold(hi));
    }

    /// <summary>Encrypts or decrypts a run of the stream that starts on a block boundary: whole steps stitched, the
    /// rest (the end of the message, or a whole number of blocks) block by block.</summary>
    private void Run(Vector128<byte> j0, ref uint counter, ref Vector128<ulong> s, ReadOnlySpan<byte> input, Span<byte> output, bool encrypting)
    {
        var whole = input.Length & ~127;
        Stitched(j0, ref counter, ref s, input[..whole], output[..whole], encrypting);
        var rest = input[whole..];
        if (rest.IsEmpty)
        {
            return;
        }
        if (!encrypting)
        {
            s = AbsorbAll(s, rest);
        }
        counter = Ctr(j0, counter, rest, output[whole..]);
        if (encrypting)
        {
            s = AbsorbAll(s, output[whole..]);
        }
    }

    public void Encrypt(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext, Span<byte> tag, ReadOnlySpan<byte> associatedData = default) =>
        EncryptTwoPieces(nonce, [], plaintext, ciphertext, tag, associatedData);

    /// <summary>
    /// Encrypts the concatenation of <paramref name="first"/> and <paramref name="second"/> (a header and a payload
    /// that lie apart) into <paramref name="ciphertext"/>, without first copying them together: only the bytes up to
    /// the block that straddles the two is gathered. Neither may overlap the cipher text
    /// except exactly (in place) at the same position.
    /// </summary>
    public void EncryptTwoPieces(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> first, ReadOnlySpan<byte> second, Span<byte> ciphertext, Span<byte> tag, ReadOnlySpan<byte> associatedData = default)
    {
        var length = first.Length + second.Length;
        Check(nonce, length, ciphertext.Length, tag.Length);
        CheckOverlap(first, ciphertext, 0);
        CheckOverlap(second, ciphertext, -first.Length);
        var j0 = J0(nonce);
        var s = AbsorbAll(Vector128<ulong>.Zero, associatedData);
        var counter = 2u;
        // The first piece's whole blocks in place; the rest of it and the start of the second, up to a block
        // boundary, gathered on the stack; then the second piece in place.
        var whole = first.Length & ~15;
        Run(j0, ref counter, ref s, first[..whole], ciphertext[..whole], encrypting: true);
        ciphertext = ciphertext[whole..];
        if (whole < first.Length)
        {
            var rest = first[whole..];
            var gathered = Math.Min(16, rest.Length + second.Length);
            Span<byte> block = stackalloc byte[16];
            rest.CopyTo(block);
            second[..(gathered - rest.Length)].CopyTo(block[rest.Length..]);
            Run(j0, ref counter, ref s, block[..gathered], ciphertext[..gathered], encrypting: true);
            second = second[(gathered - rest.Length)..];
            ciphertext = ciphertext[gathered..];
        }
        Run(j0, ref counter, ref s, second, ciphertext, encrypting: true);
        Finish(j0, s, associatedData.Length, length).CopyTo(tag);
    }

    public void Decrypt(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> ciphertext, ReadOnlySpan<byte> tag, Span<byte> plaintext, ReadOnlySpan<byte> associatedData = default)
    {
        Check(nonce, ciphertext.Length, plaintext.Length, tag.Length);
        CheckOverlap(ciphertext, plaintext, 0);
        var j0 = J0(nonce);
        var s = AbsorbAll(Vector128<ulong>.Zero, associatedData);
        var counter = 2u;
        Run(j0, ref counter, ref s, ciphertext, plaintext, encrypting: false);
        Span<byte> expected = stackalloc byte[16];
        Finish(j0, s, associatedData.Length, ciphertext.Length).CopyTo(expected);
        if (!CryptographicOperations.FixedTimeEquals(expected, tag))
        {
            CryptographicOperations.ZeroMemory(plaintext);
            throw new AuthenticationTagMismatchException();
        }
    }

    /// <summary>The input may be the output's own place (in place: the output starts <paramref name="inPlaceOffset"/>
    /// bytes from the input's start, 0 for one span, minus the first piece's length for the second of two), and must
    /// not overlap it otherwise.</summary>
    private static void CheckOverlap(ReadOnlySpan<byte> input, ReadOnlySpan<byte> output, int inPlaceOffset)
    {
        if (input.Overlaps(output, out var offset) && offset != inPlaceOffset)
        {
            throw new ArgumentException("the input and output may be the same memory (in place) but must not overlap otherwise");
        }
    }

    private static void Check(ReadOnlySpan<byte> nonce, int inLength, int outLength, int tagLength)
    {
        if (nonce.Length != NonceSize)
        {
            throw new ArgumentException($"the nonce must be {NonceSize} bytes", nameof(nonce));
        }
        if (inLength != outLength)
        {
            throw new ArgumentException("plain and cipher text must have the same length");
        }
        if (tagLength != TagSize)
        {
            throw new ArgumentException($"the tag must be {TagSize} bytes");
        }
    }

    private static Vector128<byte> J0(ReadOnlySpan<byte> nonce)
    {
        Span<byte> block = stackalloc byte[16];
        nonce.CopyTo(block);
        BinaryPrimitives.WriteUInt32BigEndian(block[12..], 1);
        return Vector128.Create((ReadOnlySpan<byte>)block);
    }

    private Vector128<byte> Finish(Vector128<byte> j0, Vector128<ulong> s, int aadLength, int textLength)
    {
        // The length block [len(A)]64 || [len(C)]64 in bits, big-endian; byte-reversed that is (len(C), len(A)).
        s = Dot(s ^ Vector128.Create((ulong)textLength * 8, (ulong)aadLength * 8), _h);
        return EncryptBlock(j0) ^ Reverse(s.AsByte());
    }

    public void Dispose()
    {
        for (var i = 0; i < _roundKeys.Length; i++)
        {
            _roundKeys[i] = default;
        }
        _h = default;
        _powersHigh = default;
        _powersLow = default;
    }
}
