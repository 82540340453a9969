using System.Runtime.InteropServices;
using Appliance.Wire.Codec;
using Appliance.Wire.Framing;
using Appliance.Platform.Checksums;

namespace Appliance.Wire.Messenger;

/// <summary>
/// A received frame: its header and its payload. The payload of a message frame usually lives in a pooled buffer:
/// whoever consumes the frame calls <see cref="Release"/> exactly once when done (the session does so after the
/// handler returns); a frame that is simply dropped is collected by the GC, which is correct, only slower.
/// </summary>
public readonly struct Frame
{
    private readonly byte[] _buffer;
    private readonly int _offset;
    private readonly PayloadOwner? _owner;

    internal Frame(FrameHeader header, byte[] buffer, int offset, bool pooled)
    {
        Header = header;
        _buffer = buffer;
        _offset = offset;
        _owner = pooled ? new PayloadOwner(buffer) : null;
    }

    public FrameHeader Header { get; }

    public ReadOnlyMemory<byte> Payload => _buffer.AsMemory(_offset, Header.PayloadLength);

    /// <summary>Who gives the payload's buffer back to the pool (null: the payload is empty, nothing is pooled).</summary>
    internal PayloadOwner? Owner => _owner;

    /// <summary>Drops the reader's reference to the payload's buffer; the payload must not be used afterwards (the
    /// buffer goes back to the pool once no handler keeps it, see <see cref="Message.Keep"/>).</summary>
    public void Release() => _owner?.Release();
}

/// <summary>
/// The references to one received payload's pooled buffer: the read path holds one until the handler's task
/// completes; a handler that keeps the payload past that (<see cref="Message.Keep"/>) holds another until it
/// disposes what Keep returned. The last release returns the buffer to the pool.
/// </summary>
internal sealed class PayloadOwner(byte[] buffer) : IDisposable
{
    private int _refs = 1;

    public void AddRef()
    {
        if (Interlocked.Increment(ref _refs) <= 1)
        {
            throw new InvalidOperationException("a received payload was kept after its buffer went back to the pool");
        }
    }

    public void Release()
    {
        var left = Interlocked.Decrement(ref _refs);
        if (left == 0)
        {
            FrameBuffers.Return(buffer);
        }
        else if (left < 0)
        {
            throw new InvalidOperationException("a received payload was released more often than kept");
        }
    }

    void IDisposable.Dispose() => Release();
}

/// <summary>The connection ended; <see cref="Exception.Message"/> is the logged reason.</summary>
public sealed class ConnectionClosedException(string reason) : IOException(reason);

/// <summary>
/// One transport connection (TCP or unix socket) carrying frames, in crc mode or, once keys exist, secure mode. The
/// I/O loop only moves bytes; frames are recognised by the pure stages of <see cref="FrameParser"/> and
/// <see cref="SecureFrameCodec"/>. Bounded: a 64 KiB receive buffer plus the one frame being read (at most
/// <see cref="MaxPayload"/> bytes, refused from its header before any of it is buffered); a large payload is read
/// straight from the socket into its own pooled buffer, not through the receive buffer. Any bad frame closes the
/// connection with a logged reason; no exception escapes to the caller other than
/// <see cref="ConnectionClosedException"/>. One reader at a time (<see cref="ReadFrameAsync"/>); any number of
/// senders (serialised).
/// </summary>
public sealed class Connection : IAsyncDisposable
{
    private const int ReceiveBufferSize = 64 << 10;
    private readonly Stream _stream;
    // The stream's socket when it has one: large handed-over frames leave through it in one gathered send.
    private readonly System.Net.Sockets.Socket? _socket;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly Action<string> _log;
    private readonly byte[] _in = new byte[ReceiveBufferSize];
    private readonly byte[] _prefix = new byte[4];
    private int _inStart;
    private int _inEnd;
    private byte[] _sealed = [];
    private byte[]? _gather;
    private SecureFrameCodec? _sealer;
    private SecureFrameCodec? _opener;
    private string? _closedReason;

    public Connection(Stream stream, string peer, int maxPayload, Action<string> log)
    {
        _stream = stream;
        _socket = (stream as System.Net.Sockets.NetworkStream)?.Socket;
        Peer = peer;
        MaxPayload = maxPayload;
        _log = log;
    }

    public string Peer { get; }
    /// <summary>The largest payload a frame may declare; a larger one is refused from its header. A connection
    /// starts at <see cref="HandshakeMaxPayload"/> and is raised to the session's limit once the peer has
    /// authenticated, so an unauthenticated peer cannot make us buffer more than that per connection.</summary>
    public int MaxPayload { get; set; }

    /// <summary>The limit before authentication: handshake frames (a hello with a ticket, a challenge, a proof) are a
    /// few KiB at most.</summary>
    public const int HandshakeMaxPayload = 64 << 10;
    public bool IsSecure => _sealer is not null;

    /// <summary>Injected cuts (tests); null on a real network.</summary>
    public TransportFaults? Faults { get; init; }

    public string? ClosedReason => _closedReason;

    /// <summary>Switches sending to secure mode: every later frame is sealed.</summary>
    public void SecureSend(SecureFrameCodec sealer) => _sealer = sealer;

    /// <summary>Switches receiving to secure mode: every later frame must open with this codec.</summary>
    public void SecureReceive(SecureFrameCodec opener) => _opener = opener;

    /// <summary>Sends one frame built from a header and a payload (control frames, acks).</summary>
    public async ValueTask SendAsync(FrameHeader header, ReadOnlyMemory<byte> payload, CancellationToken ct = default)
    {
        if (payload.Length > MaxPayload)
        {
            throw new ArgumentException($"payload of {payload.Length} bytes exceeds the limit of {MaxPayload}");
        }
        using var w = new WireWriter(FrameHeader.Size + payload.Length + 32);
        await _sendLock.WaitAsync(ct);
        try
        {
            ThrowIfClosed();
            if (Faults?.ShouldCut(FaultPoint.BeforeSend) == true)
            {
                throw Abort($"fault injected: cut before sending frame type {header.Type}");
            }
            if (_sealer is not null)
            {
                _sealer.Seal(w, header, payload.Span);
            }
            else
            {
                FrameParser.Write(w, header, payload.Span);
            }
            await WriteAsync(w.WrittenMemory, ct);
            if (Faults?.ShouldCut(FaultPoint.AfterSend) == true)
            {
                // The write succeeded, as it would before a real reset: the failure shows on the next read or send.
                Abort($"fault injected: cut after sending frame type {header.Type}");
            }
        }
        finally
        {
            _sendLock.Release();
        }
    }

    /// <summary>
    /// Sends a session's message frames in order with <paramref name="ack"/> piggybacked on each. Small frames are
    /// gathered into one write; a large crc-mode frame is written from its own buffer without a copy. The caller
    /// holds a reference on every frame for the duration.
    /// </summary>
    internal async ValueTask SendAsync(IReadOnlyList<OutgoingFrame> frames, ulong ack)
    {
        await _sendLock.WaitAsync();
        try
        {
            ThrowIfClosed();
            _gather ??= FrameBuffers.Rent(GatherSize);
            var used = 0;
            foreach (var frame in frames)
            {
                if (Faults?.ShouldCut(FaultPoint.BeforeSend) == true)
                {
                    // The frames before this one leave; this one and the rest are lost with the connection.
                    await FlushGatherAsync(used);
                    throw Abort($"fault injected: cut before sending seq {frame.Seq}");
                }
                if (_sealer is null)
                {
                    var (head, payload, trailer) = frame.PrepareCrc(ack);
                    var length = head.Length + payload.Length + trailer.Length;
                    if (length > GatherSize / 4)
                    {
                        if (payload.IsEmpty)
                        {
                            await FlushGatherAsync(used);
                            await WriteAsync(head, CancellationToken.None);
                        }
                        else
                        {
                            // A handed-over payload: what is gathered so far, this frame's header, its payload and
                            // its trailer leave in one gathered write.
                            if (used + head.Length > GatherSize)
                            {
                                await FlushGatherAsync(used);
                                used = 0;
                            }
                            head.Span.CopyTo(_gather.AsSpan(used));
                            await WriteGatheredAsync(_gather.AsMemory(0, used + head.Length), payload, trailer);
                        }
                        used = 0;
                        continue;
                    }
                    if (used + length > GatherSize)
                    {
                        await FlushGatherAsync(used);
                        used = 0;
                    }
                    head.Span.CopyTo(_gather.AsSpan(used));
                    payload.Span.CopyTo(_gather.AsSpan(used + head.Length));
                    trailer.Span.CopyTo(_gather.AsSpan(used + head.Length + payload.Length));
                    used += length;
                }
                else
                {
                    var size = SecureFrameCodec.SealedFrameSize(frame.PayloadLength);
                    var (head, payload) = frame.PrepareSecure(ack);
                    if (size > GatherSize / 4)
                    {
                        await FlushGatherAsync(used);
                        used = 0;
                        if (_sealed.Length < size)
                        {
                            FrameBuffers.Return(_sealed);
                            _sealed = FrameBuffers.Rent(size);
                        }
                        Seal(head.Span, payload.Span, _sealed);
                        await WriteAsync(_sealed.AsMemory(0, size), CancellationToken.None);
                        continue;
                    }
                    if (used + size > GatherSize)
                    {
                        await FlushGatherAsync(used);
                        used = 0;
                    }
                    Seal(head.Span, payload.Span, _gather.AsSpan(used));
                    used += size;
                }
            }
            await FlushGatherAsync(used);
            if (Faults is { } faults)
            {
                foreach (var frame in frames)
                {
                    if (faults.ShouldCut(FaultPoint.AfterSend))
                    {
                        // The write succeeded, as it would before a real reset: the failure shows later.
                        Abort($"fault injected: cut after sending seq {frame.Seq}");
                        break;
                    }
                }
            }
        }
        finally
        {
            _sendLock.Release();
        }
    }

    private const int GatherSize = 256 << 10;

    private void Seal(ReadOnlySpan<byte> head, ReadOnlySpan<byte> payload, Span<byte> destination)
    {
        if (payload.IsEmpty)
        {
            _sealer!.Seal(head, destination);
        }
        else
        {
            _sealer!.Seal(head, payload, destination);
        }
    }

    /// <summary>Writes three pieces as one stream of bytes: with one gathered send (sendmsg with an iovec) on a
    /// socket, else one write after the other.</summary>
    private async ValueTask WriteGatheredAsync(ReadOnlyMemory<byte> first, ReadOnlyMemory<byte> second, ReadOnlyMemory<byte> third)
    {
        if (_socket is null
            || !MemoryMarshal.TryGetArray(first, out var a) || !MemoryMarshal.TryGetArray(second, out var b) || !MemoryMarshal.TryGetArray(third, out var c))
        {
            await WriteAsync(first, CancellationToken.None);
            await WriteAsync(second, CancellationToken.None);
            await WriteAsync(third, CancellationToken.None);
            return;
        }
        var pieces = new List<ArraySegment<byte>>(3) { a, b, c };
        try
        {
            while (pieces.Count > 0)
            {
                var sent = await _socket.SendAsync(pieces, System.Net.Sockets.SocketFlags.None);
                // A stream socket's send normally takes everything; should it stop short, the rest follows.
                while (sent > 0 && pieces.Count > 0)
                {
                    var piece = pieces[0];
                    if (sent >= piece.Count)
                    {
                        sent -= piece.Count;
                        pieces.RemoveAt(0);
                    }
                    else
                    {
                        pieces[0] = piece.Slice(sent);
                        sent = 0;
                    }
                }
                pieces.RemoveAll(p => p.Count == 0);
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or System.Net.Sockets.SocketException or OperationCanceledException)
        {
            throw Close($"send failed: {e.Message}");
        }
    }

    private ValueTask FlushGatherAsync(int used) =>
        used == 0 ? ValueTask.CompletedTask : WriteAsync(_gather.AsMemory(0, used), CancellationToken.None);

    private void ThrowIfClosed()
    {
        if (_closedReason is not null)
        {
            throw new ConnectionClosedException(_closedReason);
        }
    }

    private async ValueTask WriteAsync(ReadOnlyMemory<byte> bytes, CancellationToken ct)
    {
        try
        {
            await _stream.WriteAsync(bytes, ct);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or System.Net.Sockets.SocketException
            || (e is OperationCanceledException && !ct.IsCancellationRequested))
        {
            throw Close($"send failed: {e.Message}");
        }
    }

    /// <summary>Returns the next valid frame, or throws <see cref="ConnectionClosedException"/> with the reason.</summary>
    public async ValueTask<Frame> ReadFrameAsync(CancellationToken ct = default)
    {
        ThrowIfClosed();
        Frame frame;
        try
        {
            frame = _opener is null ? await ReadCrcFrameAsync(ct) : await ReadSecureFrameAsync(_opener, ct);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or System.Net.Sockets.SocketException
            || (e is OperationCanceledException && !ct.IsCancellationRequested))
        {
            if (e is ConnectionClosedException closed)
            {
                throw closed;
            }
            // A socket closed under a pending read may surface as a cancellation we did not ask for.
            throw Close($"receive failed: {e.Message}");
        }
        if (Faults?.ShouldCut(FaultPoint.OnReceive) == true)
        {
            frame.Release();
            throw Abort($"fault injected: cut on receiving frame type {frame.Header.Type} seq {frame.Header.Seq}");
        }
        return frame;
    }

    private int Buffered => _inEnd - _inStart;

    private async ValueTask<Frame> ReadCrcFrameAsync(CancellationToken ct)
    {
        FrameHeader header;
        while (true)
        {
            var status = FrameParser.TryParseHeader(_in.AsSpan(_inStart, Math.Min(Buffered, FrameHeader.Size)), MaxPayload, out header, out var error);
            if (status == FrameStatus.Complete)
            {
                break;
            }
            if (status == FrameStatus.Invalid)
            {
                throw Close($"bad frame from {Peer}: {error}");
            }
            await ReadMoreAsync(ct);
        }
        var length = header.PayloadLength;
        var rest = length + FrameParser.TrailerSize;
        _inStart += FrameHeader.Size;
        if (length == 0)
        {
            await FillAsync(rest, ct);
            CheckCrc(header, [], _in.AsSpan(_inStart, FrameParser.TrailerSize));
            _inStart += rest;
            return new Frame(header, [], 0, pooled: false);
        }
        var payload = FrameBuffers.Rent(rest);
        try
        {
            if (rest <= ReceiveBufferSize / 4)
            {
                // A small frame comes through the receive buffer, so one read also brings the frames after it.
                await FillAsync(rest, ct);
            }
            // Each piece the socket hands over is checksummed at once, while it is still in cache.
            var fromBuffer = Math.Min(Buffered, rest);
            _in.AsSpan(_inStart, fromBuffer).CopyTo(payload);
            _inStart += fromBuffer;
            var crc = Crc32C.Compute(payload.AsSpan(0, Math.Min(fromBuffer, length)));
            var done = fromBuffer;
            while (done < rest)
            {
                var n = await _stream.ReadAsync(payload.AsMemory(done, rest - done), ct);
                if (n == 0)
                {
                    throw Close($"{Peer} closed the connection in the middle of a frame");
                }
                if (done < length)
                {
                    crc = Crc32C.Compute(payload.AsSpan(done, Math.Min(n, length - done)), crc);
                }
                done += n;
            }
            if (!FrameParser.CheckPayload(header, crc, payload.AsSpan(length, FrameParser.TrailerSize), out var error))
            {
                throw Close($"bad frame from {Peer}: {error}");
            }
        }
        catch
        {
            FrameBuffers.Return(payload);
            throw;
        }
        return new Frame(header, payload, 0, pooled: true);
    }

    private void CheckCrc(in FrameHeader header, ReadOnlySpan<byte> payload, ReadOnlySpan<byte> trailer)
    {
        if (!FrameParser.CheckPayload(header, Crc32C.Compute(payload), trailer, out var error))
        {
            throw Close($"bad frame from {Peer}: {error}");
        }
    }

    private async ValueTask<Frame> ReadSecureFrameAsync(SecureFrameCodec opener, CancellationToken ct)
    {
        await FillAsync(4, ct);
        _in.AsSpan(_inStart, 4).CopyTo(_prefix);
        if (!SecureFrameCodec.TryReadSealedLength(_prefix, MaxPayload, out var sealedLength, out var error))
        {
            throw Close($"bad frame from {Peer}: {error}");
        }
        _inStart += 4;
        var frame = FrameBuffers.Rent(sealedLength);
        try
        {
            await ReadExactAsync(frame.AsMemory(0, sealedLength), ct);
            if (!opener.TryOpenInPlace(_prefix, frame.AsSpan(0, sealedLength), MaxPayload, out var header, out error))
            {
                throw Close($"bad frame from {Peer}: {error}");
            }
            return new Frame(header, frame, FrameHeader.Size, pooled: true);
        }
        catch
        {
            FrameBuffers.Return(frame);
            throw;
        }
    }

    /// <summary>Reads at least one more byte into the receive buffer (making room first); a clean end of stream
    /// between frames and one in the middle of a frame are told apart in the reason.</summary>
    private async ValueTask ReadMoreAsync(CancellationToken ct)
    {
        if (_inStart > 0 && (_inEnd == _in.Length || Buffered == 0))
        {
            _in.AsSpan(_inStart, Buffered).CopyTo(_in);
            _inEnd = Buffered;
            _inStart = 0;
        }
        var n = await _stream.ReadAsync(_in.AsMemory(_inEnd), ct);
        if (n == 0)
        {
            throw Close(Buffered == 0 ? $"{Peer} closed the connection" : $"{Peer} closed the connection in the middle of a frame");
        }
        _inEnd += n;
    }

    private async ValueTask FillAsync(int count, CancellationToken ct)
    {
        if (_in.Length - _inStart < count)
        {
            _in.AsSpan(_inStart, Buffered).CopyTo(_in);
            _inEnd = Buffered;
            _inStart = 0;
        }
        while (Buffered < count)
        {
            await ReadMoreAsync(ct);
        }
    }

    /// <summary>Fills <paramref name="destination"/>: first from the receive buffer, the rest straight from the
    /// socket (a large payload is not copied twice).</summary>
    private async ValueTask ReadExactAsync(Memory<byte> destination, CancellationToken ct)
    {
        var fromBuffer = Math.Min(Buffered, destination.Length);
        _in.AsSpan(_inStart, fromBuffer).CopyTo(destination.Span);
        _inStart += fromBuffer;
        var done = fromBuffer;
        while (done < destination.Length)
        {
            var left = destination.Length - done;
            if (left < ReceiveBufferSize / 4)
            {
                // A short remainder goes through the buffer, so one read can also bring the next frames.
                await FillAsync(left, ct);
                _in.AsSpan(_inStart, left).CopyTo(destination.Span[done..]);
                _inStart += left;
                return;
            }
            var n = await _stream.ReadAsync(destination[done..], ct);
            if (n == 0)
            {
                throw Close($"{Peer} closed the connection in the middle of a frame");
            }
            done += n;
        }
    }

    /// <summary>Closes as a failing network does: the socket is reset (SO_LINGER 0: RST, unsent bytes dropped), so
    /// the peer sees the connection drop. Returns the exception to throw.</summary>
    public ConnectionClosedException Abort(string reason)
    {
        try
        {
            _socket?.LingerState = new System.Net.Sockets.LingerOption(true, 0);
        }
        catch (Exception e) when (e is System.Net.Sockets.SocketException or ObjectDisposedException)
        {
            // Already closed: closing below is all there is to do.
        }
        return Close(reason);
    }

    /// <summary>Closes with a reason, logged once; returns the exception to throw.</summary>
    public ConnectionClosedException Close(string reason)
    {
        if (Interlocked.CompareExchange(ref _closedReason, reason, null) is null)
        {
            _log($"connection {Peer} closed: {reason}");
            try
            {
                _stream.Dispose();
            }
            catch (IOException)
            {
                // Closing a broken socket may complain; it is closed either way.
            }
        }
        return new ConnectionClosedException(_closedReason!);
    }

    public async ValueTask DisposeAsync()
    {
        Close("closed locally");
        // A sender may be sealing a frame right now (it passed the closed check just before Close): wait for it,
        // so the codec is never disposed under its feet. Later senders see the closed reason and stop.
        await _sendLock.WaitAsync();
        try
        {
            _sealer?.Dispose();
            _opener?.Dispose();
            FrameBuffers.Return(_sealed);
            _sealed = [];
            if (_gather is not null)
            {
                FrameBuffers.Return(_gather);
                _gather = null;
            }
        }
        finally
        {
            _sendLock.Release();
        }
    }
}
