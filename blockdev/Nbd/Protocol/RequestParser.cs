using System.Buffers;
using System.Buffers.Binary;

namespace Appliance.BlockDev.Nbd.Protocol;

/// <summary>One transmission request header. For <see cref="NbdCommand.Write"/>, <see cref="Length"/> bytes of data follow.</summary>
public readonly record struct NbdRequest(CommandFlags Flags, NbdCommand Command, ulong Cookie, ulong Offset, uint Length)
{
    /// <summary>True when the request carries a payload after its header (only WRITE, without extended headers).</summary>
    public bool HasPayload => Command == NbdCommand.Write;
}

/// <summary>What a connection knows when it checks a request: the export and what was negotiated.</summary>
public readonly record struct TransmissionState(long ExportSize, TransmissionFlags Flags, bool StructuredReplies, bool MetaContextSelected)
{
    public bool ReadOnly => (Flags & TransmissionFlags.ReadOnly) != 0;
}

/// <summary>Pure parser and checker of transmission requests.</summary>
public static class RequestParser
{
    /// <summary>Parses a 28-byte request header (the WRITE payload, if any, is not consumed).</summary>
    public static OperationStatus Parse(ReadOnlySequence<byte> input, out NbdRequest request, out int consumed)
    {
        request = default;
        consumed = 0;
        if (input.Length < NbdLimits.RequestHeaderSize)
        {
            return OperationStatus.NeedMoreData;
        }
        Span<byte> b = stackalloc byte[NbdLimits.RequestHeaderSize];
        input.Slice(0, NbdLimits.RequestHeaderSize).CopyTo(b);
        return Parse(b, out request, out consumed);
    }

    /// <summary>Span form of <see cref="Parse(ReadOnlySequence{byte}, out NbdRequest, out int)"/>.</summary>
    public static OperationStatus Parse(ReadOnlySpan<byte> b, out NbdRequest request, out int consumed)
    {
        request = default;
        consumed = 0;
        if (b.Length < NbdLimits.RequestHeaderSize)
        {
            return OperationStatus.NeedMoreData;
        }
        if (BinaryPrimitives.ReadUInt32BigEndian(b) != NbdMagic.Request)
        {
            return OperationStatus.InvalidData;
        }
        request = new NbdRequest(
            (CommandFlags)BinaryPrimitives.ReadUInt16BigEndian(b[4..]),
            (NbdCommand)BinaryPrimitives.ReadUInt16BigEndian(b[6..]),
            BinaryPrimitives.ReadUInt64BigEndian(b[8..]),
            BinaryPrimitives.ReadUInt64BigEndian(b[16..]),
            BinaryPrimitives.ReadUInt32BigEndian(b[24..]));
        consumed = NbdLimits.RequestHeaderSize;
        return OperationStatus.Done;
    }

    /// <summary>
    /// The error a request must be answered with before touching the image, or <see cref="NbdError.None"/>.
    /// Follows the spec's SHOULDs: unknown command or flag → EINVAL; write to a read-only export → EPERM; a write
    /// past the end → ENOSPC; a read/trim/status/cache past the end → EINVAL; a READ longer than the maximum payload
    /// → EOVERFLOW with structured replies (the spec permits rejecting it up front) and EINVAL otherwise.
    /// </summary>
    public static NbdError Validate(in NbdRequest r, in TransmissionState s)
    {
        var allowed = CommandFlags.Fua;
        switch (r.Command)
        {
            case NbdCommand.Read:
                if (s.StructuredReplies)
                {
                    allowed |= CommandFlags.Df;
                }
                break;
            case NbdCommand.WriteZeroes:
                allowed |= CommandFlags.NoHole | CommandFlags.FastZero;
                break;
            case NbdCommand.BlockStatus:
                allowed |= CommandFlags.ReqOne;
                break;
            case NbdCommand.Write or NbdCommand.Flush or NbdCommand.Trim or NbdCommand.Cache or NbdCommand.Disc:
                break;
            default:
                return NbdError.Inval;
        }
        if ((r.Flags & ~allowed) != 0)
        {
            return NbdError.Inval;
        }
        var isWrite = r.Command is NbdCommand.Write or NbdCommand.WriteZeroes or NbdCommand.Trim;
        if (isWrite && s.ReadOnly)
        {
            return NbdError.Perm;
        }
        switch (r.Command)
        {
            case NbdCommand.Disc:
                return NbdError.None;
            case NbdCommand.Flush:
                return r.Offset == 0 && r.Length == 0 ? NbdError.None : NbdError.Inval;
            case NbdCommand.Read when r.Length > NbdLimits.MaxPayload:
                return s.StructuredReplies ? NbdError.Overflow : NbdError.Inval;
            case NbdCommand.Write when r.Length > NbdLimits.MaxPayload:
                return NbdError.Inval;
            case NbdCommand.BlockStatus when !s.MetaContextSelected:
                return NbdError.Inval;
            case NbdCommand.BlockStatus when r.Length == 0:
                return NbdError.Inval;
        }
        // offset + length cannot overflow: offset < 2^64 is checked against a size below 2^63 first.
        var pastEnd = r.Offset > (ulong)s.ExportSize || r.Length > (ulong)s.ExportSize - r.Offset;
        if (pastEnd)
        {
            return r.Command is NbdCommand.Write or NbdCommand.WriteZeroes ? NbdError.NoSpc : NbdError.Inval;
        }
        return NbdError.None;
    }
}
