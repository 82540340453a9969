using System.Buffers.Binary;
using Appliance.Platform.Checksums;

namespace Appliance.Wire.Framing;

/// <summary>
/// The fixed 40-byte header of every frame, little-endian:
/// <code>
///  0 u32 magic "APF1"   4 u8 version   5 u8 flags   6 u16 type
///  8 u64 seq (per connection and direction, from 1)   16 u64 ack (highest seq received from the peer)
/// 24 u64 reply-to (seq of the request this answers, 0 if none)   32 u32 payload length   36 u32 crc32c of bytes 0..35
/// </code>
/// In crc mode the payload is followed by its crc32c; in secure mode header and payload are sealed together with
/// AES-GCM instead (see <see cref="SecureFrameCodec"/>).
/// </summary>
public readonly record struct FrameHeader(ushort Type, byte Flags, ulong Seq, ulong Ack, ulong ReplyTo, int PayloadLength)
{
    public const uint Magic = 0x31465041; // "APF1" little-endian
    public const byte Version = 1;
    public const int Size = 40;

    public void Write(Span<byte> destination)
    {
        var d = destination[..Size];
        BinaryPrimitives.WriteUInt32LittleEndian(d, Magic);
        d[4] = Version;
        d[5] = Flags;
        BinaryPrimitives.WriteUInt16LittleEndian(d[6..], Type);
        BinaryPrimitives.WriteUInt64LittleEndian(d[8..], Seq);
        BinaryPrimitives.WriteUInt64LittleEndian(d[16..], Ack);
        BinaryPrimitives.WriteUInt64LittleEndian(d[24..], ReplyTo);
        BinaryPrimitives.WriteInt32LittleEndian(d[32..], PayloadLength);
        BinaryPrimitives.WriteUInt32LittleEndian(d[36..], Crc32C.Compute(d[..36]));
    }

    /// <summary>Reads and validates a header; returns an error text instead of throwing.</summary>
    public static bool TryRead(ReadOnlySpan<byte> source, int maxPayload, out FrameHeader header, out string? error)
    {
        header = default;
        if (BinaryPrimitives.ReadUInt32LittleEndian(source) != Magic)
        {
            error = $"bad magic 0x{BinaryPrimitives.ReadUInt32LittleEndian(source):x8}";
            return false;
        }
        if (BinaryPrimitives.ReadUInt32LittleEndian(source[36..]) != Crc32C.Compute(source[..36]))
        {
            error = "header checksum mismatch";
            return false;
        }
        if (source[4] != Version)
        {
            error = $"frame version {source[4]} is not supported (this node speaks {Version})";
            return false;
        }
        var length = BinaryPrimitives.ReadInt32LittleEndian(source[32..]);
        if (length < 0 || length > maxPayload)
        {
            error = $"payload of {length} bytes exceeds the limit of {maxPayload}";
            return false;
        }
        header = new FrameHeader(
            BinaryPrimitives.ReadUInt16LittleEndian(source[6..]),
            source[5],
            BinaryPrimitives.ReadUInt64LittleEndian(source[8..]),
            BinaryPrimitives.ReadUInt64LittleEndian(source[16..]),
            BinaryPrimitives.ReadUInt64LittleEndian(source[24..]),
            length);
        error = null;
        return true;
    }
}
