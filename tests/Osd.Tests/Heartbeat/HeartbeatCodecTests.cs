using System.Security.Cryptography;
using Appliance.Osd.Heartbeat;

namespace Appliance.Osd.Tests.Heartbeat;

public sealed class HeartbeatCodecTests
{
    [Fact]
    public void A_heartbeat_round_trips_and_any_changed_byte_or_other_key_is_refused()
    {
        var key = HeartbeatCodec.DeriveKey(RandomNumberGenerator.GetBytes(32));
        var other = HeartbeatCodec.DeriveKey(RandomNumberGenerator.GetBytes(32));
        var packet = new HeartbeatPacket(HeartbeatKind.Ping, 3, 7, 0x1122334455667788, 987654321012345);
        var buffer = new byte[HeartbeatCodec.Size];
        HeartbeatCodec.Write(buffer, packet, 42, key);

        Assert.Equal(42u, HeartbeatCodec.KeyIdOf(buffer));
        Assert.True(HeartbeatCodec.TryRead(buffer, key, out var back));
        Assert.Equal(packet, back);
        Assert.False(HeartbeatCodec.TryRead(buffer, other, out _));
        for (var i = 0; i < buffer.Length; i++)
        {
            var tampered = (byte[])buffer.Clone();
            tampered[i] ^= 0x01;
            Assert.False(HeartbeatCodec.TryRead(tampered, key, out _), $"a flipped bit in byte {i} was accepted");
        }
        Assert.Null(HeartbeatCodec.KeyIdOf(buffer.AsSpan(0, HeartbeatCodec.Size - 1)));

        var reply = packet.ReplyFrom(7);
        Assert.Equal(new HeartbeatPacket(HeartbeatKind.Reply, 7, 3, packet.Seq, packet.Stamp), reply);
    }
}
