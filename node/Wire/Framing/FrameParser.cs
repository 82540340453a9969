using System.Buffers;
using System.Buffers.Binary;

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
        error = null;
        if (input.Length < FrameHeader.Size)
        {
            // An early look at the magic lets garbage be refused without waiting for 40 bytes.
            if (input.Length >= 4 && ReadU32(input) != FrameHeader.Magic)
            {
                error = "bad magic";
                return FrameStatus.Invalid;
            }
            return FrameStatus.NeedMore;
        }
        Span<byte> head = stackalloc byte[FrameHeader.Size];
        input.Slice(0, FrameHeader.Size).CopyTo(head);
        if (!FrameHeader.TryRead(head, maxPayload, out header, out error))
        {
            return FrameStatus.Invalid;
        }
        var total = (long)FrameHeader.Size + header.PayloadLength + TrailerSize;
        if (input.Length < total)
        {
            return FrameStatus.NeedMore;
        }
        payload = input.Slice(FrameHeader.Size, header.PayloadLength);
        var crc = ComputeCrc(payload);
        var trailer = input.Slice(FrameHeader.Size + header.PayloadLength, TrailerSize);
        if (ReadU32(trailer) != crc)
        {
            error = $"payload checksum mismatch in frame seq {header.Seq}";
            return FrameStatus.Invalid;
        }
        consumed = input.GetPosition(total);
        return FrameStatus.Complete;
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

    private static uint ReadU32(in ReadOnlySequence<byte> s)
    {
        Span<byte> b = stackalloc byte[4];
        s.Slice(0, 4).CopyTo(b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }
}
