using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using System.Text.Unicode;

namespace Appliance.BlockDev.Nbd.Protocol;

/// <summary>The header of one option the client sends during negotiation.</summary>
public readonly record struct OptionHeader(NbdOption Option, uint Length);

/// <summary>An NBD_OPT_INFO / NBD_OPT_GO payload: the export name and the information items asked for.</summary>
public sealed record InfoRequest(string ExportName, IReadOnlyList<InfoType> Items);

/// <summary>An NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT payload.</summary>
public sealed record MetaContextRequest(string ExportName, IReadOnlyList<string> Queries);

/// <summary>
/// Pure parsers of the handshake phase. Each takes the bytes received so far and says whether a whole message is
/// there (<see cref="OperationStatus.Done"/> with the bytes consumed), more is needed, or the bytes are invalid.
/// </summary>
public static class HandshakeParser
{
    /// <summary>The 4-byte client flags that follow the server's greeting.</summary>
    public static OperationStatus ParseClientFlags(ReadOnlySequence<byte> input, out ClientFlags flags, out int consumed)
    {
        flags = ClientFlags.None;
        consumed = 0;
        Span<byte> b = stackalloc byte[4];
        if (input.Length < 4)
        {
            return OperationStatus.NeedMoreData;
        }
        input.Slice(0, 4).CopyTo(b);
        var raw = BinaryPrimitives.ReadUInt32BigEndian(b);
        consumed = 4;
        flags = (ClientFlags)raw;
        // Clients MUST NOT set other flags; the server MUST drop the connection if they do.
        return (raw & ~(uint)(ClientFlags.FixedNewstyle | ClientFlags.NoZeroes)) != 0 ? OperationStatus.InvalidData : OperationStatus.Done;
    }

    /// <summary>The 16-byte option header: IHAVEOPT, the option, the length of its data (the data is not consumed).</summary>
    public static OperationStatus ParseOptionHeader(ReadOnlySequence<byte> input, out OptionHeader header, out int consumed)
    {
        header = default;
        consumed = 0;
        if (input.Length < NbdLimits.OptionHeaderSize)
        {
            return OperationStatus.NeedMoreData;
        }
        Span<byte> b = stackalloc byte[NbdLimits.OptionHeaderSize];
        input.Slice(0, NbdLimits.OptionHeaderSize).CopyTo(b);
        if (BinaryPrimitives.ReadUInt64BigEndian(b) != NbdMagic.IHaveOpt)
        {
            return OperationStatus.InvalidData;
        }
        header = new OptionHeader((NbdOption)BinaryPrimitives.ReadUInt32BigEndian(b[8..]), BinaryPrimitives.ReadUInt32BigEndian(b[12..]));
        consumed = NbdLimits.OptionHeaderSize;
        return OperationStatus.Done;
    }

    /// <summary>Parses the data of NBD_OPT_INFO / NBD_OPT_GO; null when it is malformed.</summary>
    public static InfoRequest? ParseInfoRequest(ReadOnlySpan<byte> data)
    {
        if (data.Length < 6)
        {
            return null;
        }
        var nameLength = BinaryPrimitives.ReadUInt32BigEndian(data);
        // The name length MUST be no larger than the option data length - 6.
        if (nameLength > (uint)(data.Length - 6) || !TryDecodeString(data.Slice(4, (int)nameLength), out var name))
        {
            return null;
        }
        var rest = data[(4 + (int)nameLength)..];
        var count = BinaryPrimitives.ReadUInt16BigEndian(rest);
        rest = rest[2..];
        if (rest.Length != count * 2)
        {
            return null;
        }
        var items = new InfoType[count];
        for (var i = 0; i < count; i++)
        {
            items[i] = (InfoType)BinaryPrimitives.ReadUInt16BigEndian(rest[(2 * i)..]);
        }
        return new InfoRequest(name, items);
    }

    /// <summary>Parses the data of LIST_META_CONTEXT / SET_META_CONTEXT; null when it is malformed.</summary>
    public static MetaContextRequest? ParseMetaContextRequest(ReadOnlySpan<byte> data)
    {
        if (data.Length < 8)
        {
            return null;
        }
        var nameLength = BinaryPrimitives.ReadUInt32BigEndian(data);
        if (nameLength > (uint)(data.Length - 8) || !TryDecodeString(data.Slice(4, (int)nameLength), out var name))
        {
            return null;
        }
        var rest = data[(4 + (int)nameLength)..];
        var count = BinaryPrimitives.ReadUInt32BigEndian(rest);
        rest = rest[4..];
        // Each query takes at least 4 bytes: a count that does not fit is malformed (and cannot make us allocate).
        if (count > (uint)rest.Length / 4)
        {
            return null;
        }
        var queries = new List<string>((int)count);
        for (var i = 0u; i < count; i++)
        {
            if (rest.Length < 4)
            {
                return null;
            }
            var length = BinaryPrimitives.ReadUInt32BigEndian(rest);
            rest = rest[4..];
            if (length > (uint)rest.Length || !TryDecodeString(rest[..(int)length], out var query))
            {
                return null;
            }
            queries.Add(query);
            rest = rest[(int)length..];
        }
        return rest.Length == 0 ? new MetaContextRequest(name, queries) : null;
    }

    /// <summary>The data of NBD_OPT_EXPORT_NAME: the whole payload is the name.</summary>
    public static string? ParseExportName(ReadOnlySpan<byte> data) => TryDecodeString(data, out var name) ? name : null;

    /// <summary>A protocol string: valid UTF-8, no NUL, at most 4096 bytes.</summary>
    public static bool TryDecodeString(ReadOnlySpan<byte> bytes, out string value)
    {
        value = "";
        if (bytes.Length > NbdLimits.MaxString || bytes.Contains((byte)0) || !Utf8.IsValid(bytes))
        {
            return false;
        }
        value = Encoding.UTF8.GetString(bytes);
        return true;
    }
}
