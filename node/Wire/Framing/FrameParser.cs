using System.Buffers;
using System.Buffers.Binary;
using Appliance.Platform.Checksums;

namespace Appliance.Wire.Framing;

/// <summary>The outcome of looking at buffered bytes for one frame.</summary>
public enum FrameStatus
{
    /// <summary>A whole, valid frame was found.</summary>
    Complete,
    /// <summary>The bytes so far are a valid prefix; read more.</summary>
    NeedMore,
    /// <summary>The bytes cannot be a valid frame: close the connection with the error.</summary>
    Invalid,
}

/// <summary>
/// The crc-mode frame parser: a pure function over buffered bytes. It never throws on bad input, never reads past
/// the frame, and refuses an oversized payload from the header alone (before buffering it).
/// </summary>
public static class FrameParser
{
    public const int TrailerSize = 4;

    public static FrameStatus TryParse(
        in ReadOnlySequence<byte> input,
        int maxPayload,
        out FrameHeader header,
        out ReadOnlySequence<byte> payload,
        out SequencePosition consumed,
        out string? error)
    {
        header = default;
        payload = default;
        consumed = input.Start;
        Span<byte> head = stackalloc byte[FrameHeader.Size];
        var have = (int)Math.Min(input.Length, FrameHeader.Size);
        input.Slice(0, have).CopyTo(head);
        var status = TryParseHeader(head[..have], maxPayload, out header, out error);
        if (status != FrameStatus.Complete)
        {
            return status;
        }
        var total = FrameSize(header);
        if (input.Length < total)
        {
            return FrameStatus.NeedMore;
        }
        payload = input.Slice(FrameHeader.Size, header.PayloadLength);
        Span<byte> trailer = stackalloc byte[TrailerSize];
        input.Slice(FrameHeader.Size + header.PayloadLength, TrailerSize).CopyTo(trailer);
        if (!CheckPayload(header, ComputeCrc(payload), trailer, out error))
        {
            return FrameStatus.Invalid;
        }
        consumed = input.GetPosition(total);
        return FrameStatus.Complete;
    }

    /// <summary>
    /// Stage one, over the first bytes of a frame (fewer than <see cref="FrameHeader.Size"/> is fine): garbage is
    /// refused as soon as 4 bytes show a bad magic; a whole header is validated, including the payload limit, so an
    /// oversized frame is refused before any of it is buffered.
    /// </summary>
    public static FrameStatus TryParseHeader(ReadOnlySpan<byte> head, int maxPayload, out FrameHeader header, out string? error)
    {
        header = default;
        error = null;
        if (head.Length < FrameHeader.Size)
        {
            if (head.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(head) != FrameHeader.Magic)
            {
                error = "bad magic";
                return FrameStatus.Invalid;
            }
            return FrameStatus.NeedMore;
        }
        return FrameHeader.TryRead(head, maxPayload, out header, out error) ? FrameStatus.Complete : FrameStatus.Invalid;
    }

    /// <summary>Header, payload and trailer: the bytes a whole crc-mode frame takes.</summary>
    public static long FrameSize(in FrameHeader header) => (long)FrameHeader.Size + header.PayloadLength + TrailerSize;

    /// <summary>Stage two: the payload's crc32c (computed by the caller over wherever the payload is) against the
    /// frame's trailer.</summary>
    public static bool CheckPayload(in FrameHeader header, uint payloadCrc, ReadOnlySpan<byte> trailer, out string? error)
    {
        if (BinaryPrimitives.ReadUInt32LittleEndian(trailer) != payloadCrc)
        {
            error = $"payload checksum mismatch in frame seq {header.Seq}";
            return false;
        }
        error = null;
        return true;
    }

    /// <summary>Writes a whole crc-mode frame: header, payload, payload crc32c.</summary>
    public static void Write(Codec.WireWriter output, in FrameHeader header, ReadOnlySpan<byte> payload)
    {
        header.Write(output.GetSpan(FrameHeader.Size));
        output.Advance(FrameHeader.Size);
        output.WriteFixed(payload);
        output.WriteU32(Crc32C.Compute(payload));
    }

    private static uint ComputeCrc(in ReadOnlySequence<byte> data)
    {
        if (data.IsSingleSegment)
        {
            return Crc32C.Compute(data.FirstSpan);
        }
        // Feeding each segment's result in as the next seed gives the same value as one pass.
        var crc = 0u;
        foreach (var segment in data)
        {
            crc = Crc32C.Compute(segment.Span, crc);
        }
        return crc;
    }
}
