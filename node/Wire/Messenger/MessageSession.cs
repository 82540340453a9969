using System.Threading.Channels;
using Appliance.Wire.Framing;

namespace Appliance.Wire.Messenger;

/// <summary>
/// An application message delivered by a session. The payload given to a message handler is valid until the
/// handler's returned task completes (its buffer is pooled and reused afterwards): copy what must outlive it. A
/// reply returned by <see cref="MessageSession.RequestAsync"/> belongs to the caller.
/// </summary>
public readonly record struct Message(ushort Type, ulong Seq, ulong ReplyTo, ReadOnlyMemory<byte> Payload);

/// <summary>
/// A reliable, ordered message stream between two daemons that outlives TCP connections: every message gets a
/// sequence number; the sender keeps it until the peer acknowledges it; after a reconnect each side tells how far
/// it received and the other resends the rest in order. The receiver delivers seq = last + 1 only, drops
/// duplicates (seq ≤ last, which a resend can produce) and treats a gap as a protocol error. So each message is
/// delivered exactly once and in order, whatever happens to the connections.
///
/// Back-pressure: at most <see cref="SessionOptions.MaxUnackedBytes"/> / <see cref="SessionOptions.MaxUnackedMessages"/>
/// may wait for acknowledgement; senders beyond that wait (bounded by their cancellation token). On the receiving
/// side at most as many messages and bytes wait for the handler; beyond that the read loop waits, and TCP pushes
/// back on the peer. (So two handlers that each block on sending to the other while both inboxes are full wait
/// for each other: a handler that sends must not depend on the peer's handler sending back first.)
/// </summary>
public sealed class MessageSession : IAsyncDisposable
{
    private readonly SessionOptions _options;
    private readonly Func<MessageSession, Message, ValueTask> _deliver;
    private readonly Channel<(Message Message, Frame Frame)> _inbox;
    private readonly Task _dispatcher;
    private readonly Action<string> _log;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly SemaphoreSlim _window;
    private readonly LinkedList<OutgoingFrame> _unacked = new();
    private readonly Lock _lock = new();
    private readonly Dictionary<ulong, TaskCompletionSource<Message>> _requests = [];
    private long _unackedBytes;
    private long _inboxBytes;
    private TaskCompletionSource _inboxDrained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _resent;
    private ulong _nextSeq = 1;
    private bool _disposed;
    private ulong _lastDelivered;
    private ulong _lastAckSent;
    private long _bytesSinceAck;
    private Connection? _connection;
    private TaskCompletionSource _bytesFreed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public MessageSession(Guid id, string peerEntity, SessionOptions options, Func<MessageSession, Message, ValueTask> deliver, Action<string> log)
    {
        Id = id;
        PeerEntity = peerEntity;
        _options = options;
        _deliver = deliver;
        _log = log;
        _window = new SemaphoreSlim(options.MaxUnackedMessages, options.MaxUnackedMessages);
        // Delivery runs on its own task, so a handler that waits (even for this session's send window) never
        // stops the read loop from processing the acknowledgements it is waiting for. Bounded: when the handler
        // falls behind by a whole window, the read loop waits, and TCP pushes back on the peer.
        _inbox = Channel.CreateBounded<(Message, Frame)>(new BoundedChannelOptions(options.MaxUnackedMessages) { SingleReader = true, SingleWriter = false });
        _dispatcher = DispatchAsync();
    }

    private async Task DispatchAsync()
    {
        await foreach (var (message, frame) in _inbox.Reader.ReadAllAsync())
        {
            try
            {
                await _deliver(this, message);
            }
            catch (Exception e)
            {
                // The handler is application code: its bug must not end the session; it is reported loudly.
                _log($"BUG in the message handler of session {Id} with {PeerEntity} (type {message.Type}, seq {message.Seq}): {e}");
            }
            finally
            {
                frame.Release();
                TaskCompletionSource drained;
                lock (_lock)
                {
                    _inboxBytes -= message.Payload.Length;
                    drained = _inboxDrained;
                    _inboxDrained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                }
                drained.TrySetResult();
            }
        }
    }

    public Guid Id { get; }
    public string PeerEntity { get; }

    /// <summary>The highest sequence delivered to the application (what a reconnect tells the peer).</summary>
    public ulong LastDelivered
    {
        get
        {
            lock (_lock)
            {
                return _lastDelivered;
            }
        }
    }

    /// <summary>Messages sent again on a new connection because the peer had not acknowledged them.</summary>
    public long Resent => Interlocked.Read(ref _resent);

    public int UnackedMessages
    {
        get
        {
            lock (_lock)
            {
                return _unacked.Count;
            }
        }
    }

    /// <summary>Sends a message; returns once it is queued for delivery (it survives reconnects from then on).
    /// Waits while the unacknowledged window is full.</summary>
    public ValueTask<ulong> SendAsync(ushort type, ReadOnlyMemory<byte> payload, ulong replyTo = 0, CancellationToken ct = default) =>
        SendCoreAsync(type, payload, replyTo, null, ct);

    /// <summary>Sends a request and waits for the message that names it in reply-to.</summary>
    public async Task<Message> RequestAsync(ushort type, ReadOnlyMemory<byte> payload, TimeSpan timeout, CancellationToken ct = default)
    {
        var reply = new TaskCompletionSource<Message>(TaskCreationOptions.RunContinuationsAsynchronously);
        var seq = await SendCoreAsync(type, payload, 0, reply, ct);
        try
        {
            return await reply.Task.WaitAsync(timeout, ct);
        }
        finally
        {
            lock (_lock)
            {
                _requests.Remove(seq);
            }
        }
    }

    private async ValueTask<ulong> SendCoreAsync(ushort type, ReadOnlyMemory<byte> payload, ulong replyTo, TaskCompletionSource<Message>? reply, CancellationToken ct)
    {
        if (type < FrameTypes.FirstMessageType)
        {
            throw new ArgumentOutOfRangeException(nameof(type), $"message types start at {FrameTypes.FirstMessageType}");
        }
        if (payload.Length > _options.MaxPayload)
        {
            throw new ArgumentException($"payload of {payload.Length} bytes exceeds the limit of {_options.MaxPayload}");
        }
        await _window.WaitAsync(ct);
        try
        {
            while (true)
            {
                Task freed;
                lock (_lock)
                {
                    if (_unackedBytes + payload.Length <= _options.MaxUnackedBytes || _unacked.Count == 0)
                    {
                        _unackedBytes += payload.Length;
                        break;
                    }
                    freed = _bytesFreed.Task;
                }
                await freed.WaitAsync(ct);
            }
        }
        catch
        {
            _window.Release();
            throw;
        }

        // The one copy of the payload, into the frame that is kept (pooled) until the peer acknowledges it.
        var frame = new OutgoingFrame(type, replyTo, payload.Span);
        await _sendLock.WaitAsync(CancellationToken.None);
        try
        {
            Connection? c;
            lock (_lock)
            {
                if (_disposed)
                {
                    frame.Release();
                    throw new ConnectionClosedException("session closed");
                }
                // The sequence number and the reply registration are made together, so no reply can miss its waiter.
                frame.Seq = _nextSeq++;
                _unacked.AddLast(frame);
                if (reply is not null)
                {
                    _requests[frame.Seq] = reply;
                }
                c = _connection;
                if (c is not null)
                {
                    frame.AddRef();
                }
            }
            if (c is not null)
            {
                await SendReferencedAsync(c, frame);
            }
            return frame.Seq;
        }
        finally
        {
            _sendLock.Release();
        }
    }

    /// <summary>Sends a frame on which the caller took a reference (under the lock) and drops that reference.</summary>
    private async ValueTask SendReferencedAsync(Connection c, OutgoingFrame frame)
    {
        ulong ack;
        lock (_lock)
        {
            ack = _lastDelivered;
            _lastAckSent = ack;
            _bytesSinceAck = 0;
        }
        try
        {
            await c.SendAsync(frame, ack);
        }
        catch (ConnectionClosedException)
        {
            // Lost the race with a dropped connection: the message stays unacked and is resent on reconnect.
        }
        finally
        {
            frame.Release();
        }
    }

    /// <summary>
    /// Puts the session on a new connection after a handshake: drops what the peer says it received, resends the
    /// rest in order, then lets new messages through. Holding the send lock keeps new sends behind the resends.
    /// </summary>
    internal async Task AttachAsync(Connection connection, ulong peerLastReceived)
    {
        await _sendLock.WaitAsync();
        try
        {
            List<OutgoingFrame> resend;
            lock (_lock)
            {
                AckUpTo(peerLastReceived);
                _connection = connection;
                resend = [.. _unacked];
                // Each resend holds its frame: an acknowledgement arriving meanwhile must not recycle it.
                foreach (var f in resend)
                {
                    f.AddRef();
                }
            }
            foreach (var f in resend)
            {
                await SendReferencedAsync(connection, f);
            }
            Interlocked.Add(ref _resent, resend.Count);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    internal void Detach(Connection connection)
    {
        lock (_lock)
        {
            if (ReferenceEquals(_connection, connection))
            {
                _connection = null;
            }
        }
    }

    /// <summary>Handles one frame received on the current connection. Throws <see cref="ConnectionClosedException"/>
    /// on a sequence gap (the connection must then be dropped and the session resumed).</summary>
    internal async ValueTask ReceiveAsync(Connection connection, Frame frame)
    {
        var h = frame.Header;
        lock (_lock)
        {
            AckUpTo(h.Ack);
        }
        if (h.Type == FrameTypes.Ack)
        {
            frame.Release();
            return;
        }
        if (h.Type < FrameTypes.FirstMessageType)
        {
            frame.Release();
            throw connection.Close($"unexpected control frame {h.Type} in an established session");
        }
        TaskCompletionSource<Message>? waiter = null;
        lock (_lock)
        {
            if (h.Seq <= _lastDelivered)
            {
                frame.Release();
                return; // a resend of something already delivered: exactly once means drop it
            }
            if (h.Seq != _lastDelivered + 1)
            {
                frame.Release();
                throw connection.Close($"out-of-order frame: got seq {h.Seq}, expected {_lastDelivered + 1}");
            }
            _lastDelivered = h.Seq;
            _bytesSinceAck += h.PayloadLength;
            if (h.ReplyTo != 0)
            {
                _requests.Remove(h.ReplyTo, out waiter);
            }
        }
        if (waiter is not null)
        {
            // A reply outlives any handler: it gets an array of its own and the pooled buffer goes back.
            waiter.TrySetResult(new Message(h.Type, h.Seq, h.ReplyTo, frame.Payload.ToArray()));
            frame.Release();
        }
        else
        {
            await WaitForInboxRoomAsync(h.PayloadLength);
            if (!_inbox.Writer.TryWrite((new Message(h.Type, h.Seq, h.ReplyTo, frame.Payload), frame)))
            {
                await _inbox.Writer.WriteAsync((new Message(h.Type, h.Seq, h.ReplyTo, frame.Payload), frame));
            }
        }
        await MaybeAckAsync(connection, force: false);
    }

    /// <summary>Waits until the messages waiting for the handler leave room for <paramref name="bytes"/> more (one
    /// message always fits), then counts them in.</summary>
    private async ValueTask WaitForInboxRoomAsync(int bytes)
    {
        while (true)
        {
            Task drained;
            lock (_lock)
            {
                if (_inboxBytes == 0 || _inboxBytes + bytes <= _options.MaxUnackedBytes)
                {
                    _inboxBytes += bytes;
                    return;
                }
                drained = _inboxDrained.Task;
            }
            await drained;
        }
    }

    /// <summary>Acknowledges explicitly when enough deliveries have not been piggybacked on outgoing messages.</summary>
    internal async ValueTask MaybeAckAsync(Connection connection, bool force)
    {
        ulong ack;
        lock (_lock)
        {
            if (_lastDelivered == _lastAckSent
                || (!force && _lastDelivered - _lastAckSent < (ulong)_options.AckEvery && _bytesSinceAck < _options.AckBytes))
            {
                return;
            }
            ack = _lastDelivered;
            _lastAckSent = ack;
            _bytesSinceAck = 0;
        }
        try
        {
            await connection.SendAsync(new FrameHeader(FrameTypes.Ack, 0, 0, ack, 0, 0), ReadOnlyMemory<byte>.Empty);
        }
        catch (ConnectionClosedException)
        {
            // The peer learns how far we got when the session resumes.
        }
    }

    private void AckUpTo(ulong ack)
    {
        var released = 0;
        while (_unacked.First is { } first && first.Value.Seq <= ack)
        {
            _unackedBytes -= first.Value.PayloadLength;
            _unacked.RemoveFirst();
            first.Value.Release();
            released++;
        }
        if (released > 0)
        {
            _window.Release(released);
            var old = _bytesFreed;
            _bytesFreed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            old.TrySetResult();
        }
    }

    public async ValueTask DisposeAsync()
    {
        _inbox.Writer.TryComplete();
        await _dispatcher;
        lock (_lock)
        {
            foreach (var r in _requests.Values)
            {
                r.TrySetException(new ConnectionClosedException("session closed"));
            }
            _requests.Clear();
            _disposed = true;
            foreach (var f in _unacked)
            {
                f.Release();
            }
            _unacked.Clear();
        }
        _log($"session {Id} with {PeerEntity} closed");
    }
}

/// <summary>Limits of a session.</summary>
public sealed record SessionOptions
{
    public long MaxUnackedBytes { get; init; } = 8 << 20;
    public int MaxUnackedMessages { get; init; } = 4096;
    /// <summary>Send an explicit acknowledgement after this many deliveries without outgoing traffic...</summary>
    public int AckEvery { get; init; } = 32;
    /// <summary>...or after this many delivered bytes, so large messages never wait for the ack timer.</summary>
    public long AckBytes { get; init; } = 1 << 20;
    public int MaxPayload { get; init; } = 16 << 20;
}
