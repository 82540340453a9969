using System.Security.Cryptography;
using Appliance.Platform.Crypto;

namespace Appliance.Platform.Tests.Crypto;

/// <summary>
/// Our AES-GCM must be AES-GCM: the same cipher text and tag as the runtime's <see cref="AesGcm"/> (OpenSSL) for
/// every key size, length, split and associated data, the specification's test vectors, and no plain text for a
/// message that was changed in any way.
/// </summary>
public sealed class AesGcmNiTests
{
    // This project's CI machine has the instructions; should a machine lack them, the class is unused (callers fall
    // back to AesGcm) and these tests say so instead of passing vacuously.
    private static void RequireSupport() =>
        Assert.True(AesGcmNi.IsSupported, "this CPU lacks AES-NI, VPCLMULQDQ or AVX-512BW: AesGcmNi is not used here");

    // From "The Galois/Counter Mode of Operation (GCM)", McGrew and Viega, appendix B: test cases 1-4 (AES-128) and
    // 13-16 (AES-256; 16 has 20 bytes of associated data and 60 of text, so a partial last block on both).
    public static TheoryData<string, string, string, string, string, string> Vectors => new()
    {
        { "00000000000000000000000000000000", "000000000000000000000000", "", "", "", "58e2fccefa7e3061367f1d57a4e7455a" },
        { "00000000000000000000000000000000", "000000000000000000000000", "00000000000000000000000000000000", "", "0388dace60b6a392f328c2b971b2fe78", "ab6e47d42cec13bdf53a67b21257bddf" },
        {
            "feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
            "",
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
            "4d5c2af327cd64a62cf35abd2ba6fab4"
        },
        {
            "feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
            "feedfacedeadbeeffeedfacedeadbeefabaddad2",
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
            "5bc94fbc3221a5db94fae95ae7121a47"
        },
        { "0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000", "", "", "", "530f8afbc74536b9a963b4f1c4cb738b" },
        { "0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000", "00000000000000000000000000000000", "", "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919" },
        {
            "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
            "feedfacedeadbeeffeedfacedeadbeefabaddad2",
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
            "76fc6ece0f4e1768cddf8853bb2d551b"
        },
    };

    [Theory]
    [MemberData(nameof(Vectors))]
    public void Specification_vectors(string key, string nonce, string plain, string associated, string cipher, string tag)
    {
        RequireSupport();
        using var gcm = new AesGcmNi(Convert.FromHexString(key));
        var p = Convert.FromHexString(plain);
        var c = new byte[p.Length];
        var t = new byte[16];
        gcm.Encrypt(Convert.FromHexString(nonce), p, c, t, Convert.FromHexString(associated));
        Assert.Equal(cipher, Convert.ToHexStringLower(c));
        Assert.Equal(tag, Convert.ToHexStringLower(t));
        var back = new byte[c.Length];
        gcm.Decrypt(Convert.FromHexString(nonce), c, t, back, Convert.FromHexString(associated));
        Assert.Equal(plain, Convert.ToHexStringLower(back));
    }

    [Theory]
    [InlineData(16)]
    [InlineData(32)]
    public void Same_bytes_as_the_runtime_cipher_for_every_length_split_and_associated_data(int keySize)
    {
        RequireSupport();
        var rng = new Random(keySize);
        // Every length through several stitched steps (128 bytes each) and both block tails, then random larger
        // ones; every message also split in two at a random point (a header and a handed-over payload).
        var lengths = Enumerable.Range(0, 700).Concat(Enumerable.Range(0, 60).Select(_ => rng.Next(700, 300_000))).Append(1 << 20);
        foreach (var length in lengths)
        {
            var key = RandomBytes(rng, keySize);
            var nonce = RandomBytes(rng, 12);
            var associated = RandomBytes(rng, rng.Next(0, 40));
            var plain = RandomBytes(rng, length);
            var expected = new byte[length];
            var expectedTag = new byte[16];
            using (var reference = new AesGcm(key, 16))
            {
                reference.Encrypt(nonce, plain, expected, expectedTag, associated);
            }
            using var ours = new AesGcmNi(key);
            var cipher = new byte[length];
            var tag = new byte[16];
            ours.Encrypt(nonce, plain, cipher, tag, associated);
            Assert.True(expected.AsSpan().SequenceEqual(cipher) && expectedTag.AsSpan().SequenceEqual(tag), $"length {length}: cipher text or tag differs");

            var split = rng.Next(0, length + 1);
            Array.Clear(cipher);
            ours.EncryptTwoPieces(nonce, plain.AsSpan(0, split), plain.AsSpan(split), cipher, tag, associated);
            Assert.True(expected.AsSpan().SequenceEqual(cipher) && expectedTag.AsSpan().SequenceEqual(tag), $"length {length} split at {split}: differs");

            var back = new byte[length];
            ours.Decrypt(nonce, expected, expectedTag, back, associated);
            Assert.True(plain.AsSpan().SequenceEqual(back), $"length {length}: decryption differs");

            // In place, both ways.
            var inPlace = (byte[])plain.Clone();
            ours.Encrypt(nonce, inPlace, inPlace, tag, associated);
            Assert.True(expected.AsSpan().SequenceEqual(inPlace), $"length {length}: in-place encryption differs");
            ours.Decrypt(nonce, inPlace, tag, inPlace, associated);
            Assert.True(plain.AsSpan().SequenceEqual(inPlace), $"length {length}: in-place decryption differs");
        }
    }

    [Theory]
    [InlineData(16)]
    [InlineData(32)]
    public void A_changed_bit_anywhere_is_refused_and_no_plain_text_is_left(int keySize)
    {
        RequireSupport();
        var rng = new Random(100 + keySize);
        var key = RandomBytes(rng, keySize);
        using var gcm = new AesGcmNi(key);
        foreach (var length in new[] { 1, 15, 16, 127, 128, 129, 300, 4096, 70_000 })
        {
            var nonce = RandomBytes(rng, 12);
            var associated = RandomBytes(rng, 4);
            var plain = RandomBytes(rng, length);
            var cipher = new byte[length];
            var tag = new byte[16];
            gcm.Encrypt(nonce, plain, cipher, tag, associated);
            // Flip one bit in the cipher text, the tag, the associated data or the nonce: each must fail.
            for (var where = 0; where < 4; where++)
            {
                var c = (byte[])cipher.Clone();
                var t = (byte[])tag.Clone();
                var a = (byte[])associated.Clone();
                var n = (byte[])nonce.Clone();
                var target = where switch { 0 => c, 1 => t, 2 => a, _ => n };
                target[rng.Next(target.Length)] ^= (byte)(1 << rng.Next(8));
                var output = RandomBytes(rng, length);
                Assert.Throws<AuthenticationTagMismatchException>(() => gcm.Decrypt(n, c, t, output, a));
                Assert.True(output.All(b => b == 0), $"length {length}: output not cleared after a refused message");
            }
        }
    }

    [Fact]
    public void Wrong_sizes_are_refused()
    {
        RequireSupport();
        Assert.Throws<CryptographicException>(() => new AesGcmNi(new byte[24]));
        using var gcm = new AesGcmNi(new byte[16]);
        Assert.Throws<ArgumentException>(() => gcm.Encrypt(new byte[8], new byte[4], new byte[4], new byte[16]));
        Assert.Throws<ArgumentException>(() => gcm.Encrypt(new byte[12], new byte[4], new byte[5], new byte[16]));
        Assert.Throws<ArgumentException>(() => gcm.Encrypt(new byte[12], new byte[4], new byte[4], new byte[12]));
        // In place is fine; shifted by a byte is not (the key stream would overwrite input not yet read).
        var buffer = new byte[64];
        gcm.Encrypt(new byte[12], buffer.AsSpan(0, 32), buffer.AsSpan(0, 32), new byte[16]);
        Assert.Contains("overlap", Assert.Throws<ArgumentException>(() => gcm.Encrypt(new byte[12], buffer.AsSpan(0, 32), buffer.AsSpan(1, 32), new byte[16])).Message);
        Assert.Contains("overlap", Assert.Throws<ArgumentException>(() => gcm.Decrypt(new byte[12], buffer.AsSpan(1, 32), new byte[16], buffer.AsSpan(0, 32))).Message);
        Assert.Contains("overlap", Assert.Throws<ArgumentException>(() => gcm.EncryptTwoPieces(new byte[12], buffer.AsSpan(0, 8), buffer.AsSpan(16, 24), buffer.AsSpan(0, 32), new byte[16])).Message);
        gcm.EncryptTwoPieces(new byte[12], buffer.AsSpan(0, 8), buffer.AsSpan(8, 24), buffer.AsSpan(0, 32), new byte[16]);
    }

    private static byte[] RandomBytes(Random rng, int length)
    {
        var b = new byte[length];
        rng.NextBytes(b);
        return b;
    }
}
