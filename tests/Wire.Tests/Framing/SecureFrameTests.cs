using System.Buffers;
using System.Security.Cryptography;
using Appliance.Wire.Codec;
using Appliance.Wire.Framing;

namespace Appliance.Wire.Tests.Framing;

public sealed class SecureFrameTests
{
    private static (SecureFrameCodec Sender, SecureFrameCodec Receiver) Pair()
    {
        var key = RandomNumberGenerator.GetBytes(32);
        var salt = RandomNumberGenerator.GetBytes(64);
        return (SecureFrameCodec.Derive(key, salt, "c2s"), SecureFrameCodec.Derive(key, salt, "c2s"));
    }

    private static byte[] Seal(SecureFrameCodec codec, ulong seq, byte[] payload)
    {
        using var w = new WireWriter();
        codec.Seal(w, new FrameHeader(3, 0, seq, 0, 0, payload.Length), payload);
        return w.ToArray();
    }

    [Fact]
    public void Sealed_frames_open_in_order_and_hide_the_payload()
    {
        var (tx, rx) = Pair();
        var secret = "the quick brown fox"u8.ToArray();
        for (ulong seq = 1; seq <= 3; seq++)
        {
            var wire = Seal(tx, seq, secret);
            Assert.True(wire.AsSpan().IndexOf(secret) < 0, "the payload must not appear in clear on the wire");
            Assert.Equal(FrameStatus.Complete, rx.TryOpen(new ReadOnlySequence<byte>(wire), 1 << 20, out var header, out var payload, out _, out _));
            Assert.Equal(seq, header.Seq);
            Assert.Equal(secret, payload);
        }
    }

    [Fact]
    public void A_single_flipped_byte_anywhere_fails_authentication()
    {
        var (tx, _) = Pair();
        var key = RandomNumberGenerator.GetBytes(32);
        var salt = RandomNumberGenerator.GetBytes(8);
        var wire = Seal(SecureFrameCodec.Derive(key, salt, "x"), 1, new byte[100]);
        for (var i = 0; i < wire.Length; i++)
        {
            var copy = (byte[])wire.Clone();
            copy[i] ^= 0x01;
            using var rx = SecureFrameCodec.Derive(key, salt, "x");
            var status = rx.TryOpen(new ReadOnlySequence<byte>(copy), 1 << 20, out _, out var payload, out _, out var error);
            Assert.True(status is FrameStatus.Invalid or FrameStatus.NeedMore, $"byte {i}: {status}");
            Assert.Empty(payload);
        }
        tx.Dispose();
    }

    [Fact]
    public void A_replayed_or_reordered_frame_fails_authentication()
    {
        var (tx, rx) = Pair();
        var first = Seal(tx, 1, [1]);
        var second = Seal(tx, 2, [2]);
        Assert.Equal(FrameStatus.Complete, rx.TryOpen(new ReadOnlySequence<byte>(first), 1024, out _, out _, out _, out _));
        Assert.Equal(FrameStatus.Invalid, rx.TryOpen(new ReadOnlySequence<byte>(first), 1024, out _, out _, out _, out var replayError));
        Assert.Contains("failed authentication", replayError);

        var (tx2, rx2) = Pair();
        var a = Seal(tx2, 1, [1]);
        var b = Seal(tx2, 2, [2]);
        Assert.Equal(FrameStatus.Invalid, rx2.TryOpen(new ReadOnlySequence<byte>(b), 1024, out _, out _, out _, out _));
        GC.KeepAlive(a);
        GC.KeepAlive(second);
    }

    [Fact]
    public void Another_direction_s_key_cannot_open_a_frame()
    {
        var key = RandomNumberGenerator.GetBytes(32);
        var salt = RandomNumberGenerator.GetBytes(64);
        var wire = Seal(SecureFrameCodec.Derive(key, salt, "c2s"), 1, [42]);
        using var wrong = SecureFrameCodec.Derive(key, salt, "s2c");
        Assert.Equal(FrameStatus.Invalid, wrong.TryOpen(new ReadOnlySequence<byte>(wire), 1024, out _, out _, out _, out _));
    }

    [Theory]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void Either_cipher_opens_what_the_other_sealed_whole_or_from_two_pieces(bool sealWithRuntime, bool openWithRuntime)
    {
        var key = RandomNumberGenerator.GetBytes(32);
        var salt = RandomNumberGenerator.GetBytes(16);
        using var tx = SecureFrameCodec.Derive(key, salt, "c2s", sealWithRuntime);
        using var rx = SecureFrameCodec.Derive(key, salt, "c2s", openWithRuntime);
        var rng = new Random(7);
        ulong seq = 0;
        foreach (var length in new[] { 0, 1, 7, 8, 9, 100, 4096, 70_001, 1 << 20 })
        {
            var payload = new byte[length];
            rng.NextBytes(payload);
            // Whole (the header and payload written into one buffer first) and from two pieces (a handed-over payload).
            var whole = Seal(tx, ++seq, payload);
            var head = new byte[FrameHeader.Size];
            new FrameHeader(3, 0, ++seq, 0, 0, length).Write(head);
            var pieces = new byte[SecureFrameCodec.SealedFrameSize(length)];
            tx.Seal(head, payload, pieces);
            foreach (var (wire, expectedSeq) in new[] { (whole, seq - 1), (pieces, seq) })
            {
                Assert.Equal(FrameStatus.Complete, rx.TryOpen(new ReadOnlySequence<byte>(wire), 2 << 20, out var header, out var opened, out _, out var error));
                Assert.True(error is null, error);
                Assert.Equal(expectedSeq, header.Seq);
                Assert.True(payload.AsSpan().SequenceEqual(opened), $"payload of {length} bytes differs");
            }
        }
    }
}
