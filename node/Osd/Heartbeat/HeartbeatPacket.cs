using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Appliance.Osd.Heartbeat;

public enum HeartbeatKind : byte
{
    Ping = 1,
    Reply = 2,
}

/// <summary>
/// One heartbeat: a ping from <see cref="From"/> to <see cref="To"/>, or the reply to one. <see cref="Stamp"/> is the
/// pinger's own timestamp (its TimeProvider's ticks), echoed unchanged in the reply: the pinger learns "the peer was
/// alive after I sent at Stamp", which a delayed or replayed reply can never make fresher than it was.
/// </summary>
public readonly record struct HeartbeatPacket(HeartbeatKind Kind, int From, int To, ulong Seq, long Stamp)
{
    public HeartbeatPacket ReplyFrom(int self) => new(HeartbeatKind.Reply, self, From, Seq, Stamp);
}

/// <summary>
/// The heartbeat datagram, fixed size so every buffer is preallocated: magic "APHB", version 1, kind, 2 reserved
/// bytes, from, to, seq, stamp, key id (little-endian), then a 16-byte HMAC-SHA256 (truncated) of the 36 bytes
/// before it, under a key derived (HKDF) from the `osd` service's rotating secret that every OSD holds. An OSD
/// therefore only believes heartbeats from holders of the cluster's OSD keys; a datagram with another magic, size,
/// version, an unknown key or a wrong MAC is dropped.
/// </summary>
public static class HeartbeatCodec
{
    public const int Size = 52;
    private const uint Magic = 0x42485041; // "APHB" little-endian
    private const byte Version = 1;
    private const int MacOffset = 36;
    private const int MacSize = 16;
    private static readonly byte[] KeyInfo = Encoding.ASCII.GetBytes("appliance osd heartbeat v1");

    /// <summary>The heartbeat key derived from a service secret's bytes.</summary>
    public static byte[] DeriveKey(ReadOnlySpan<byte> serviceSecret) =>
        HKDF.DeriveKey(HashAlgorithmName.SHA256, serviceSecret.ToArray(), 32, salt: [], info: KeyInfo);

    public static void Write(Span<byte> dest, in HeartbeatPacket p, uint keyId, ReadOnlySpan<byte> key)
    {
        if (dest.Length < Size)
        {
            throw new ArgumentException($"a heartbeat needs {Size} bytes");
        }
        BinaryPrimitives.WriteUInt32LittleEndian(dest, Magic);
        dest[4] = Version;
        dest[5] = (byte)p.Kind;
        dest[6] = 0;
        dest[7] = 0;
        BinaryPrimitives.WriteInt32LittleEndian(dest[8..], p.From);
        BinaryPrimitives.WriteInt32LittleEndian(dest[12..], p.To);
        BinaryPrimitives.WriteUInt64LittleEndian(dest[16..], p.Seq);
        BinaryPrimitives.WriteInt64LittleEndian(dest[24..], p.Stamp);
        BinaryPrimitives.WriteUInt32LittleEndian(dest[32..], keyId);
        Span<byte> mac = stackalloc byte[32];
        HMACSHA256.HashData(key, dest[..MacOffset], mac);
        mac[..MacSize].CopyTo(dest[MacOffset..]);
    }

    /// <summary>The key id a datagram claims, or null when it is not a heartbeat at all.</summary>
    public static uint? KeyIdOf(ReadOnlySpan<byte> datagram) =>
        datagram.Length == Size && BinaryPrimitives.ReadUInt32LittleEndian(datagram) == Magic && datagram[4] == Version
            ? BinaryPrimitives.ReadUInt32LittleEndian(datagram[32..])
            : null;

    /// <summary>Parses and authenticates a datagram with the key of its key id; false for anything else.</summary>
    public static bool TryRead(ReadOnlySpan<byte> datagram, ReadOnlySpan<byte> key, out HeartbeatPacket packet)
    {
        packet = default;
        if (KeyIdOf(datagram) is null)
        {
            return false;
        }
        Span<byte> mac = stackalloc byte[32];
        HMACSHA256.HashData(key, datagram[..MacOffset], mac);
        if (!CryptographicOperations.FixedTimeEquals(mac[..MacSize], datagram.Slice(MacOffset, MacSize)))
        {
            return false;
        }
        var kind = (HeartbeatKind)datagram[5];
        if (kind is not (HeartbeatKind.Ping or HeartbeatKind.Reply))
        {
            return false;
        }
        packet = new HeartbeatPacket(kind, BinaryPrimitives.ReadInt32LittleEndian(datagram[8..]), BinaryPrimitives.ReadInt32LittleEndian(datagram[12..]),
            BinaryPrimitives.ReadUInt64LittleEndian(datagram[16..]), BinaryPrimitives.ReadInt64LittleEndian(datagram[24..]));
        return true;
    }
}
