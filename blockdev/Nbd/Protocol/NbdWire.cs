using System.Buffers.Binary;
using System.Text;

namespace Appliance.BlockDev.Nbd.Protocol;

/// <summary>
/// Pure writers of the server's messages into a caller's buffer. Each returns the bytes written; the caller sizes
/// the buffer with the matching *Size constant or method.
/// </summary>
public static class NbdWire
{
    /// <summary>Size of the server greeting: NBDMAGIC, IHAVEOPT, handshake flags.</summary>
    public const int GreetingSize = 18;

    public static int WriteGreeting(Span<byte> b, HandshakeFlags flags)
    {
        BinaryPrimitives.WriteUInt64BigEndian(b, NbdMagic.NbdMagicValue);
        BinaryPrimitives.WriteUInt64BigEndian(b[8..], NbdMagic.IHaveOpt);
        BinaryPrimitives.WriteUInt16BigEndian(b[16..], (ushort)flags);
        return GreetingSize;
    }

    /// <summary>An option reply header; <paramref name="length"/> bytes of reply data follow it.</summary>
    public static int WriteOptionReplyHeader(Span<byte> b, NbdOption option, OptionReplyType type, uint length)
    {
        BinaryPrimitives.WriteUInt64BigEndian(b, NbdMagic.OptionReply);
        BinaryPrimitives.WriteUInt32BigEndian(b[8..], (uint)option);
        BinaryPrimitives.WriteUInt32BigEndian(b[12..], (uint)type);
        BinaryPrimitives.WriteUInt32BigEndian(b[16..], length);
        return NbdLimits.OptionReplyHeaderSize;
    }

    /// <summary>A whole option reply whose data is a UTF-8 string (error messages, NBD_REP_SERVER descriptions...).</summary>
    public static byte[] OptionReply(NbdOption option, OptionReplyType type, ReadOnlySpan<byte> data)
    {
        var reply = new byte[NbdLimits.OptionReplyHeaderSize + data.Length];
        WriteOptionReplyHeader(reply, option, type, (uint)data.Length);
        data.CopyTo(reply.AsSpan(NbdLimits.OptionReplyHeaderSize));
        return reply;
    }

    /// <summary>An error reply with a message for a human, truncated to the protocol's string limit.</summary>
    public static byte[] OptionError(NbdOption option, OptionReplyType type, string message) =>
        OptionReply(option, type, Utf8Truncated(message));

    /// <summary>NBD_REP_SERVER: a 32-bit name length, the name, then an optional description.</summary>
    public static byte[] ServerReply(string name, string? description)
    {
        var n = Encoding.UTF8.GetBytes(name);
        var d = description is null ? [] : Utf8Truncated(description);
        var data = new byte[4 + n.Length + d.Length];
        BinaryPrimitives.WriteUInt32BigEndian(data, (uint)n.Length);
        n.CopyTo(data, 4);
        d.CopyTo(data, 4 + n.Length);
        return OptionReply(NbdOption.List, OptionReplyType.Server, data);
    }

    /// <summary>NBD_REP_INFO with NBD_INFO_EXPORT: size and transmission flags.</summary>
    public static byte[] InfoExport(NbdOption option, long size, TransmissionFlags flags)
    {
        Span<byte> data = stackalloc byte[12];
        BinaryPrimitives.WriteUInt16BigEndian(data, (ushort)InfoType.Export);
        BinaryPrimitives.WriteUInt64BigEndian(data[2..], (ulong)size);
        BinaryPrimitives.WriteUInt16BigEndian(data[10..], (ushort)flags);
        return OptionReply(option, OptionReplyType.Info, data);
    }

    /// <summary>NBD_REP_INFO with NBD_INFO_BLOCK_SIZE.</summary>
    public static byte[] InfoBlockSize(NbdOption option, uint minimum, uint preferred, uint maximum)
    {
        Span<byte> data = stackalloc byte[14];
        BinaryPrimitives.WriteUInt16BigEndian(data, (ushort)InfoType.BlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(data[2..], minimum);
        BinaryPrimitives.WriteUInt32BigEndian(data[6..], preferred);
        BinaryPrimitives.WriteUInt32BigEndian(data[10..], maximum);
        return OptionReply(option, OptionReplyType.Info, data);
    }

    /// <summary>NBD_REP_INFO with NBD_INFO_NAME or NBD_INFO_DESCRIPTION.</summary>
    public static byte[] InfoString(NbdOption option, InfoType type, string value)
    {
        var s = Utf8Truncated(value);
        var data = new byte[2 + s.Length];
        BinaryPrimitives.WriteUInt16BigEndian(data, (ushort)type);
        s.CopyTo(data, 2);
        return OptionReply(option, OptionReplyType.Info, data);
    }

    /// <summary>NBD_REP_META_CONTEXT: a context id and its name.</summary>
    public static byte[] MetaContext(NbdOption option, uint id, string name)
    {
        var n = Encoding.UTF8.GetBytes(name);
        var data = new byte[4 + n.Length];
        BinaryPrimitives.WriteUInt32BigEndian(data, id);
        n.CopyTo(data, 4);
        return OptionReply(option, OptionReplyType.MetaContext, data);
    }

    /// <summary>The reply to NBD_OPT_EXPORT_NAME: size, flags, and 124 zeroes unless the client asked for none.</summary>
    public static byte[] ExportNameReply(long size, TransmissionFlags flags, bool noZeroes)
    {
        var reply = new byte[noZeroes ? 10 : 134];
        BinaryPrimitives.WriteUInt64BigEndian(reply, (ulong)size);
        BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(8), (ushort)flags);
        return reply;
    }

    public static int WriteSimpleReply(Span<byte> b, NbdError error, ulong cookie)
    {
        BinaryPrimitives.WriteUInt32BigEndian(b, NbdMagic.SimpleReply);
        BinaryPrimitives.WriteUInt32BigEndian(b[4..], (uint)error);
        BinaryPrimitives.WriteUInt64BigEndian(b[8..], cookie);
        return NbdLimits.SimpleReplyHeaderSize;
    }

    public static int WriteChunkHeader(Span<byte> b, ReplyFlags flags, ReplyChunkType type, ulong cookie, uint length)
    {
        BinaryPrimitives.WriteUInt32BigEndian(b, NbdMagic.StructuredReply);
        BinaryPrimitives.WriteUInt16BigEndian(b[4..], (ushort)flags);
        BinaryPrimitives.WriteUInt16BigEndian(b[6..], (ushort)type);
        BinaryPrimitives.WriteUInt64BigEndian(b[8..], cookie);
        BinaryPrimitives.WriteUInt32BigEndian(b[16..], length);
        return NbdLimits.StructuredReplyHeaderSize;
    }

    /// <summary>Header and offset of an OFFSET_DATA chunk (28 bytes); <paramref name="dataLength"/> bytes follow.</summary>
    public static int WriteOffsetDataHeader(Span<byte> b, ReplyFlags flags, ulong cookie, ulong offset, int dataLength)
    {
        WriteChunkHeader(b, flags, ReplyChunkType.OffsetData, cookie, (uint)(8 + dataLength));
        BinaryPrimitives.WriteUInt64BigEndian(b[20..], offset);
        return 28;
    }

    /// <summary>An OFFSET_HOLE chunk (32 bytes).</summary>
    public static int WriteOffsetHole(Span<byte> b, ReplyFlags flags, ulong cookie, ulong offset, uint length)
    {
        WriteChunkHeader(b, flags, ReplyChunkType.OffsetHole, cookie, 12);
        BinaryPrimitives.WriteUInt64BigEndian(b[20..], offset);
        BinaryPrimitives.WriteUInt32BigEndian(b[28..], length);
        return 32;
    }

    /// <summary>Bytes an error chunk takes with this message (and the offset, for ERROR_OFFSET).</summary>
    public static int ErrorChunkSize(int messageBytes, bool withOffset) => 20 + 6 + messageBytes + (withOffset ? 8 : 0);

    /// <summary>An ERROR or ERROR_OFFSET chunk, always the last of its reply.</summary>
    public static int WriteErrorChunk(Span<byte> b, ulong cookie, NbdError error, ReadOnlySpan<byte> message, ulong? offset)
    {
        var length = 6 + message.Length + (offset.HasValue ? 8 : 0);
        WriteChunkHeader(b, ReplyFlags.Done, offset.HasValue ? ReplyChunkType.ErrorOffset : ReplyChunkType.Error, cookie, (uint)length);
        BinaryPrimitives.WriteUInt32BigEndian(b[20..], (uint)error);
        BinaryPrimitives.WriteUInt16BigEndian(b[24..], (ushort)message.Length);
        message.CopyTo(b[26..]);
        if (offset is { } o)
        {
            BinaryPrimitives.WriteUInt64BigEndian(b[(26 + message.Length)..], o);
        }
        return 20 + length;
    }

    /// <summary>A BLOCK_STATUS chunk for one context: context id then (length, flags) descriptors.</summary>
    public static int WriteBlockStatus(Span<byte> b, ReplyFlags flags, ulong cookie, uint contextId, ReadOnlySpan<(uint Length, uint Flags)> extents)
    {
        WriteChunkHeader(b, flags, ReplyChunkType.BlockStatus, cookie, (uint)(4 + (8 * extents.Length)));
        BinaryPrimitives.WriteUInt32BigEndian(b[20..], contextId);
        var p = 24;
        foreach (var (length, f) in extents)
        {
            BinaryPrimitives.WriteUInt32BigEndian(b[p..], length);
            BinaryPrimitives.WriteUInt32BigEndian(b[(p + 4)..], f);
            p += 8;
        }
        return p;
    }

    /// <summary>UTF-8 bytes of a message, cut at the protocol's 4096-byte string limit on a character boundary.</summary>
    public static byte[] Utf8Truncated(string message)
    {
        var bytes = Encoding.UTF8.GetBytes(message);
        if (bytes.Length <= NbdLimits.MaxString)
        {
            return bytes;
        }
        var cut = NbdLimits.MaxString;
        while (cut > 0 && (bytes[cut] & 0xC0) == 0x80)
        {
            cut--;
        }
        return bytes[..cut];
    }
}
