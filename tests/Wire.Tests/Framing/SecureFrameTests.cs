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
}
