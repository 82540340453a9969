using System.Buffers;
using System.IO.Pipelines;
using Appliance.Wire.Codec;
using Appliance.Wire.Framing;

namespace Appliance.Wire.Messenger;

/// <summary>A received frame: its header and a payload array owned by the receiver.</summary>
public readonly record struct Frame(FrameHeader Header, byte[] Payload);

/// <summary>The connection ended; <see cref="Exception.Message"/> is the logged reason.</summary>
public sealed class ConnectionClosedException(string reason) : IOException(reason);

/// <summary>
/// One transport connection (TCP or unix socket) carrying frames, in crc mode or, once keys exist, secure mode. The
/// I/O loop only moves bytes; frames are recognised by the pure parser (<see cref="FrameParser"/>) or opened by
/// <see cref="SecureFrameCodec"/>. Bounded: it never buffers more than one frame of at most
/// <see cref="MaxPayload"/> bytes beyond what the application has taken. Any bad frame closes the connection with a
/// logged reason; no exception escapes to the caller other than <see cref="ConnectionClosedException"/>.
/// One reader at a time (<see cref="ReadFrameAsync"/>); any number of senders (serialised).
/// </summary>
public sealed class Connection : IAsyncDisposable
{
    private readonly Stream _stream;
    private readonly PipeReader _reader;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly Action<string> _log;
    private SecureFrameCodec? _sealer;
    private SecureFrameCodec? _opener;
    private string? _closedReason;

    public Connection(Stream stream, string peer, int maxPayload, Action<string> log)
    {
        _stream = stream;
        Peer = peer;
        MaxPayload = maxPayload;
        _log = log;
        _reader = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 64 << 10, leaveOpen: true));
    }

    public string Peer { get; }
    public int MaxPayload { get; }
    public bool IsSecure => _sealer is not null;
    public string? ClosedReason => _closedReason;

    /// <summary>Switches sending to secure mode: every later frame is sealed.</summary>
    public void SecureSend(SecureFrameCodec sealer) => _sealer = sealer;

    /// <summary>Switches receiving to secure mode: every later frame must open with this codec.</summary>
    public void SecureReceive(SecureFrameCodec opener) => _opener = opener;

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
            if (_closedReason is not null)
            {
                throw new ConnectionClosedException(_closedReason);
            }
            if (_sealer is not null)
            {
                _sealer.Seal(w, header, payload.Span);
            }
            else
            {
                FrameParser.Write(w, header, payload.Span);
            }
            try
            {
                await _stream.WriteAsync(w.WrittenMemory, ct);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or System.Net.Sockets.SocketException
                || (e is OperationCanceledException && !ct.IsCancellationRequested))
            {
                throw Close($"send failed: {e.Message}");
            }
        }
        finally
        {
            _sendLock.Release();
        }
    }

    /// <summary>Returns the next valid frame, or throws <see cref="ConnectionClosedException"/> with the reason.</summary>
    public async ValueTask<Frame> ReadFrameAsync(CancellationToken ct = default)
    {
        while (true)
        {
            if (_closedReason is not null)
            {
                throw new ConnectionClosedException(_closedReason);
            }
            ReadResult result;
            try
            {
                result = await _reader.ReadAsync(ct);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or System.Net.Sockets.SocketException or InvalidOperationException
                || (e is OperationCanceledException && !ct.IsCancellationRequested))
            {
                // A socket closed under a pending read may surface as a cancellation we did not ask for.
                throw Close($"receive failed: {e.Message}");
            }
            var buffer = result.Buffer;
            FrameStatus status;
            FrameHeader header;
            byte[] payload;
            SequencePosition consumed;
            string? error;
            if (_opener is not null)
            {
                status = _opener.TryOpen(buffer, MaxPayload, out header, out payload, out consumed, out error);
            }
            else
            {
                status = FrameParser.TryParse(buffer, MaxPayload, out header, out var body, out consumed, out error);
                payload = status == FrameStatus.Complete ? body.ToArray() : [];
            }
            switch (status)
            {
                case FrameStatus.Complete:
                    _reader.AdvanceTo(consumed);
                    return new Frame(header, payload);
                case FrameStatus.Invalid:
                    _reader.AdvanceTo(buffer.Start);
                    throw Close($"bad frame from {Peer}: {error}");
                default:
                    if (result.IsCompleted)
                    {
                        _reader.AdvanceTo(buffer.End);
                        throw Close(buffer.Length == 0 ? $"{Peer} closed the connection" : $"{Peer} closed the connection in the middle of a frame");
                    }
                    _reader.AdvanceTo(buffer.Start, buffer.End);
                    break;
            }
        }
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
        await _reader.CompleteAsync();
        // A sender may be sealing a frame right now (it passed the closed check just before Close): wait for it,
        // so the codec is never disposed under its feet. Later senders see the closed reason and stop.
        await _sendLock.WaitAsync();
        try
        {
            _sealer?.Dispose();
            _opener?.Dispose();
        }
        finally
        {
            _sendLock.Release();
        }
    }
}
