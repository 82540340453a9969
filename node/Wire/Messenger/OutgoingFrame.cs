using System.Buffers.Binary;
using Appliance.Wire.Framing;
using Appliance.Platform.Checksums;

namespace Appliance.Wire.Messenger;

/// <summary>
/// One application message laid out once for every time it is sent. Copied (the usual case), it lives in a pooled
/// buffer: <c>[4 spare | 40-byte header | payload | 4-byte crc32c]</c>; crc mode sends bytes 4.. as they are (the
/// header is rewritten in place before each send, because the piggybacked ack changes); secure mode seals header +
/// payload, which are contiguous. Handed over (<see cref="MessageSession.SendWithoutCopyAsync"/>), the payload
/// stays where the caller had it and only <c>[4 spare | header | crc32c]</c> is pooled: crc mode sends the three
/// pieces with one gathered write, secure mode seals them into the sealed frame's buffer (a copy it makes anyway).
/// The payload's crc32c is computed once, when the frame is made (not at all for a secure session's frames). The
/// pooled buffer goes back only when nothing refers to it any more: the session's unacknowledged list holds one
/// reference, and every send in progress holds one, so a frame being resent on a new connection is never recycled
/// under the send even when the acknowledgement arrives meanwhile.
/// </summary>
internal sealed class OutgoingFrame
{
    private const int HeaderOffset = 4;
    private byte[]? _buffer;
    private readonly ReadOnlyMemory<byte> _handedOver;
    private readonly bool _isHandedOver;
    private int _refs = 1;

    /// <param name="type">The message type.</param>
    /// <param name="replyTo">The sequence this message answers (0: none).</param>
    /// <param name="payload">Copied into the frame.</param>
    /// <param name="checksum">Compute the crc32c while copying (crc-mode sessions). A secure session's frames are
    /// sealed with AES-GCM instead and skip it; should such a frame ever go out in crc mode, the crc is computed then.</param>
    public OutgoingFrame(ushort type, ulong replyTo, ReadOnlySpan<byte> payload, bool checksum = true)
    {
        Type = type;
        ReplyTo = replyTo;
        PayloadLength = payload.Length;
        _buffer = FrameBuffers.Rent(HeaderOffset + FrameHeader.Size + payload.Length + FrameParser.TrailerSize);
        var destination = _buffer.AsSpan(HeaderOffset + FrameHeader.Size, payload.Length);
        if (!checksum)
        {
            payload.CopyTo(destination);
            return;
        }
        // Copy and checksum piece by piece, so the checksum reads what was just copied while it is still in cache.
        var crc = 0u;
        for (var at = 0; at < payload.Length; at += CachePiece)
        {
            var n = Math.Min(CachePiece, payload.Length - at);
            payload.Slice(at, n).CopyTo(destination[at..]);
            crc = Crc32C.Compute(destination.Slice(at, n), crc);
        }
        BinaryPrimitives.WriteUInt32LittleEndian(_buffer.AsSpan(HeaderOffset + FrameHeader.Size + payload.Length), crc);
        _hasCrc = true;
    }

    /// <summary>A frame around a payload that is handed over, not copied: the caller does not change it until the
    /// frame is released (the peer acknowledged it).</summary>
    public OutgoingFrame(ushort type, ulong replyTo, ReadOnlyMemory<byte> handedOver, bool checksum)
    {
        Type = type;
        ReplyTo = replyTo;
        PayloadLength = handedOver.Length;
        _handedOver = handedOver;
        _isHandedOver = true;
        _buffer = FrameBuffers.Rent(HeaderOffset + FrameHeader.Size + FrameParser.TrailerSize);
        if (checksum)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(_buffer.AsSpan(HeaderOffset + FrameHeader.Size), Crc32C.Compute(handedOver.Span));
            _hasCrc = true;
        }
    }

    private volatile bool _hasCrc;

    /// <summary>How much is copied (or received) before it is checksummed: comfortably inside a core's L2 cache.</summary>
    internal const int CachePiece = 128 << 10;

    public ushort Type { get; }
    public ulong ReplyTo { get; }
    public int PayloadLength { get; }

    /// <summary>Set once, under the session lock, when the message takes its place in the order.</summary>
    public ulong Seq { get; set; }

    private byte[] Buffer => _buffer ?? throw new InvalidOperationException($"frame seq {Seq} used after it was recycled");

    /// <summary>Writes the header for this send (with the current ack) and returns header + payload: one piece when
    /// the payload was copied (then <c>Payload</c> is empty), the header and the handed-over payload otherwise.</summary>
    public (ReadOnlyMemory<byte> Head, ReadOnlyMemory<byte> Payload) PrepareSecure(ulong ack)
    {
        new FrameHeader(Type, 0, Seq, ack, ReplyTo, PayloadLength).Write(Buffer.AsSpan(HeaderOffset));
        return _isHandedOver
            ? (Buffer.AsMemory(HeaderOffset, FrameHeader.Size), _handedOver)
            : (Buffer.AsMemory(HeaderOffset, FrameHeader.Size + PayloadLength), ReadOnlyMemory<byte>.Empty);
    }

    /// <summary>Writes the header for this send (with the current ack) and returns the crc-mode frame: the whole frame
    /// in <c>Head</c> when the payload was copied, else header, handed-over payload and crc trailer.</summary>
    public (ReadOnlyMemory<byte> Head, ReadOnlyMemory<byte> Payload, ReadOnlyMemory<byte> Trailer) PrepareCrc(ulong ack)
    {
        var b = Buffer;
        var payload = _isHandedOver ? _handedOver.Span : b.AsSpan(HeaderOffset + FrameHeader.Size, PayloadLength);
        var trailerAt = HeaderOffset + FrameHeader.Size + (_isHandedOver ? 0 : PayloadLength);
        if (!_hasCrc)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(trailerAt), Crc32C.Compute(payload));
            _hasCrc = true;
        }
        new FrameHeader(Type, 0, Seq, ack, ReplyTo, PayloadLength).Write(b.AsSpan(HeaderOffset));
        return _isHandedOver
            ? (b.AsMemory(HeaderOffset, FrameHeader.Size), _handedOver, b.AsMemory(trailerAt, FrameParser.TrailerSize))
            : (b.AsMemory(HeaderOffset, FrameHeader.Size + PayloadLength + FrameParser.TrailerSize), ReadOnlyMemory<byte>.Empty, ReadOnlyMemory<byte>.Empty);
    }

    /// <summary>Takes a reference for a send in progress. Call it under the lock that guards the unacked list.</summary>
    public void AddRef()
    {
        if (Interlocked.Increment(ref _refs) <= 1)
        {
            throw new InvalidOperationException($"frame seq {Seq} was referenced after it was recycled");
        }
    }

    /// <summary>Drops a reference; the last one returns the buffer to the pool.</summary>
    public void Release()
    {
        var left = Interlocked.Decrement(ref _refs);
        if (left == 0)
        {
            var b = _buffer;
            _buffer = null;
            FrameBuffers.Return(b!);
        }
        else if (left < 0)
        {
            throw new InvalidOperationException($"frame seq {Seq} was released more often than referenced");
        }
    }
}

/// <summary>
/// The pool for frame buffers, sending and receiving. Power-of-two size classes from 1 KiB to 32 MiB; a buffer is
/// kept for reuse only while everything kept stays under <see cref="MaxRetainedBytes"/>, so the pool holds at most
/// that much memory however many connections came and went. (ArrayPool.Shared keeps only up to 1 MiB, and a
/// configurable ArrayPool keeps a fixed count per size: a window of thousands of 4 KiB frames would miss it on
/// almost every rent.) A miss allocates without zeroing: every user writes a buffer before reading it.
/// </summary>
internal static class FrameBuffers
{
    private const int MinShift = 10;
    private const int MaxShift = 25;
    // LIFO per class: the buffer used last is the one most likely still in the CPU's caches.
    private static readonly Stack<byte[]>[] Classes = [.. Enumerable.Range(MinShift, MaxShift - MinShift + 1).Select(_ => new Stack<byte[]>())];
    private static long _retained;

    /// <summary>The most memory the pool keeps for reuse.</summary>
    public static long MaxRetainedBytes { get; set; } = 64L << 20;

    /// <summary>Memory kept for reuse right now.</summary>
    public static long RetainedBytes => Interlocked.Read(ref _retained);

    public static byte[] Rent(int size)
    {
        var shift = Math.Max(MinShift, 32 - System.Numerics.BitOperations.LeadingZeroCount((uint)Math.Max(size - 1, 1)));
        if (shift > MaxShift)
        {
            return GC.AllocateUninitializedArray<byte>(size);
        }
        var stack = Classes[shift - MinShift];
        lock (stack)
        {
            if (stack.TryPop(out var buffer))
            {
                Interlocked.Add(ref _retained, -buffer.Length);
                return buffer;
            }
        }
        return GC.AllocateUninitializedArray<byte>(1 << shift);
    }

    public static void Return(byte[] buffer)
    {
        var length = buffer.Length;
        if (length < 1 << MinShift || length > 1 << MaxShift || (length & (length - 1)) != 0)
        {
            return; // not one of ours (or empty): the GC takes it
        }
        if (Interlocked.Add(ref _retained, length) > MaxRetainedBytes)
        {
            Interlocked.Add(ref _retained, -length);
            return;
        }
        var stack = Classes[System.Numerics.BitOperations.Log2((uint)length) - MinShift];
        lock (stack)
        {
            stack.Push(buffer);
        }
    }
}
