using System.Threading.Channels;
using Appliance.Wire.Framing;

namespace Appliance.Wire.Messenger;

/// <summary>
/// An application message delivered by a session. The payload given to a message handler is valid until the
/// handler's returned task completes (its buffer is pooled and reused afterwards): copy what must outlive it, or
/// <see cref="Keep"/> it. A reply returned by <see cref="MessageSession.RequestAsync"/> belongs to the caller.
/// </summary>
public readonly record struct Message(ushort Type, ulong Seq, ulong ReplyTo, ReadOnlyMemory<byte> Payload)
{
    internal PayloadOwner? Owner { get; init; }

    /// <summary>
    /// Keeps <see cref="Payload"/> valid past the handler, without a copy, until the returned object is disposed
    /// (then its pooled buffer may be reused: nothing may read the payload, or memory sliced from it, afterwards).
    /// For work a handler starts and does not wait for, e.g. a write whose data the store reads later. Dispose it
    /// exactly once.
    /// </summary>
    public IDisposable Keep()
    {
        if (Owner is null)
        {
            return NothingKept.Instance; // an empty payload: nothing is pooled
        }
        Owner.AddRef();
        return Owner;
    }

    private sealed class NothingKept : IDisposable
    {
        public static readonly NothingKept Instance = new();

        public void Dispose()
        {
        }
    }
}

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
    private readonly Channel<(Message Message, Frame Frame, Task? Running)> _inbox;
    private readonly Task _dispatcher;
    private readonly Action<string> _log;
    private readonly SemaphoreSlim _window;
    private readonly FrameWindow _unacked;
    private readonly Lock _lock = new();
    private readonly SemaphoreSlim _receiveGate = new(1, 1);
    private readonly Dictionary<ulong, TaskCompletionSource<Message>> _requests = [];
    private long _unackedBytes;
    private long _inboxBytes;
    // Messages handed to the handler and not yet finished (running inline, queued, or being handled).
    private int _inboxCount;
    private TaskCompletionSource? _inboxWaiter;
    private long _resent;
    private ulong _nextSeq = 1;
    private bool _disposed;
    private TaskCompletionSource? _writerWake;
    // The process's ack timer for this session's interval (set at each attach), whether the session is on its list,
    // and the newest delivery it had at the timer's previous tick.
    private AckTimer? _ackTimer;
    private bool _ackListed;
    private ulong _ackMark;
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
        _unacked = new FrameWindow(options.MaxUnackedMessages);
        // A handler runs on the read loop when nothing else is waiting for it (no thread hop); once it has to wait, or
        // when messages queue up, delivery continues on the dispatcher task, in order, so a handler that waits (even
        // for this session's send window) never stops the read loop from processing the acknowledgements it is
        // waiting for. Bounded: when the handler falls behind by a whole window, the read loop waits, and TCP pushes
        // back on the peer.
        _inbox = Channel.CreateBounded<(Message, Frame, Task?)>(new BoundedChannelOptions(options.MaxUnackedMessages) { SingleReader = true, SingleWriter = false });
        _dispatcher = DispatchAsync();
    }

    private async Task DispatchAsync()
    {
        await foreach (var (message, frame, running) in _inbox.Reader.ReadAllAsync())
        {
            try
            {
                // A handler that the read loop started inline and that went asynchronous is finished here, before
                // anything delivered after it.
                if (running is not null)
                {
                    await running;
                }
                else
                {
                    await _deliver(this, message);
                }
            }
            catch (Exception e)
            {
                // The handler is application code: its bug must not end the session; it is reported loudly.
                _log($"BUG in the message handler of session {Id} with {PeerEntity} (type {message.Type}, seq {message.Seq}): {e}");
            }
            finally
            {
                Delivered(message, frame);
            }
        }
    }

    /// <summary>After a handler returned: the payload's buffer goes back, its bytes leave the inbox's count.</summary>
    private void Delivered(in Message message, Frame frame)
    {
        frame.Release();
        TaskCompletionSource? drained = null;
        lock (_lock)
        {
            _inboxBytes -= message.Payload.Length;
            _inboxCount--;
            if (_inboxWaiter is not null)
            {
                drained = _inboxWaiter;
                _inboxWaiter = null;
            }
        }
        drained?.TrySetResult();
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

    /// <summary>What the peer may do, from the service ticket it authenticated with (a service authorizes its
    /// operations with <see cref="Auth.Authorizer"/> against these); null when it authenticated with its own key (the
    /// monitors, which hold the auth database, look its capabilities up there).</summary>
    public Auth.EntityCaps? PeerCaps { get; internal set; }

    /// <summary>The session's connections are secure: frames are sealed (AES-GCM), so no crc32c is computed for them.</summary>
    internal bool SealedFrames { get; set; }

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

    /// <summary>
    /// Sends a message whose payload is handed over instead of copied: the session reads it when the frame goes out
    /// and again for any resend after a reconnect, until the peer acknowledges it, so the caller must not change it
    /// until then (data read from a disk or received from elsewhere, sent on and dropped, is the use). Saves the copy
    /// of a large payload; one under <see cref="HandOverFrom"/> bytes is copied anyway (the write gathers small
    /// frames into one buffer, so a copy is made either way).
    /// </summary>
    public ValueTask<ulong> SendWithoutCopyAsync(ushort type, ReadOnlyMemory<byte> payload, ulong replyTo = 0, CancellationToken ct = default) =>
        SendCoreAsync(type, payload, replyTo, null, ct, handOver: payload.Length >= HandOverFrom);

    /// <summary>The size from which <see cref="SendWithoutCopyAsync"/> leaves the payload where it is.</summary>
    public const int HandOverFrom = 64 << 10;

    /// <summary>Sends a request and waits for the message that names it in reply-to. With
    /// <paramref name="withoutCopy"/> the payload is handed over as by <see cref="SendWithoutCopyAsync"/>.</summary>
    public async Task<Message> RequestAsync(ushort type, ReadOnlyMemory<byte> payload, TimeSpan timeout, CancellationToken ct = default, bool withoutCopy = false)
    {
        var reply = new TaskCompletionSource<Message>(TaskCreationOptions.RunContinuationsAsynchronously);
        var seq = await SendCoreAsync(type, payload, 0, reply, ct, handOver: withoutCopy && payload.Length >= HandOverFrom);
        try
        {
            return await reply.Task.WaitAsync(timeout, ct);
        }
        finally
        {
            lock (_lock)
            {
                // By value: a reset after a peer restart may have renumbered the request.
                if (!(_requests.TryGetValue(seq, out var mine) && mine == reply && _requests.Remove(seq)))
                {
                    foreach (var (k, v) in _requests)
                    {
                        if (v == reply)
                        {
                            _requests.Remove(k);
                            break;
                        }
                    }
                }
            }
        }
    }

    private async ValueTask<ulong> SendCoreAsync(ushort type, ReadOnlyMemory<byte> payload, ulong replyTo, TaskCompletionSource<Message>? reply, CancellationToken ct,
        bool handOver = false)
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

        // The one copy of the payload, into the frame that is kept (pooled) until the peer acknowledges it; or none.
        var frame = handOver
            ? new OutgoingFrame(type, replyTo, payload, checksum: !SealedFrames)
            : new OutgoingFrame(type, replyTo, payload.Span, checksum: !SealedFrames);
        TaskCompletionSource? wake;
        lock (_lock)
        {
            if (_disposed)
            {
                frame.Release();
                throw new ConnectionClosedException("session closed");
            }
            // The sequence number and the reply registration are made together, so no reply can miss its waiter.
            frame.Seq = _nextSeq++;
            _unacked.Add(frame);
            if (reply is not null)
            {
                _requests[frame.Seq] = reply;
            }
            wake = _writerWake;
            _writerWake = null;
        }
        // The writer continues on this thread when it was idle: a lone message goes out without a thread hop.
        wake?.TrySetResult();
        return frame.Seq;
    }

    /// <summary>
    /// The one writer of a connection: sends, in sequence order, every unacknowledged message after
    /// <paramref name="sentUpTo"/> — first what the peer missed (the resend after a reconnect is simply where the
    /// writer starts), then each new message as it is queued. Several queued messages go out in one write. Ends
    /// when the connection closes or the session moves to another one.
    /// </summary>
    private async Task WriterAsync(Connection connection, ulong sentUpTo)
    {
        var batch = new List<OutgoingFrame>(MaxBatchFrames);
        try
        {
            while (true)
            {
                Task? idle = null;
                ulong ack = 0;
                lock (_lock)
                {
                    if (_disposed || !ReferenceEquals(_connection, connection))
                    {
                        return;
                    }
                    // Frames at or below the peer's acknowledgement left the window; start after them.
                    var first = _unacked.Count > 0 ? _unacked.First.Seq : _nextSeq;
                    var next = Math.Max(sentUpTo + 1, first);
                    long bytes = 0;
                    while (next < _nextSeq && batch.Count < MaxBatchFrames && bytes < MaxBatchBytes)
                    {
                        var f = _unacked[(int)(next - first)];
                        // Each frame in flight holds a reference: an acknowledgement arriving meanwhile must not
                        // recycle it under the write.
                        f.AddRef();
                        batch.Add(f);
                        bytes += f.PayloadLength;
                        next++;
                    }
                    if (batch.Count == 0)
                    {
                        _writerWake = new TaskCompletionSource();
                        idle = _writerWake.Task;
                    }
                    else
                    {
                        ack = _lastDelivered;
                        _lastAckSent = ack;
                        _bytesSinceAck = 0;
                    }
                }
                if (idle is not null)
                {
                    await idle;
                    continue;
                }
                try
                {
                    sentUpTo = batch[^1].Seq;
                    await connection.SendAsync(batch, ack);
                }
                finally
                {
                    foreach (var f in batch)
                    {
                        f.Release();
                    }
                    batch.Clear();
                }
            }
        }
        catch (ConnectionClosedException)
        {
            // The connection dropped: what the peer did not acknowledge stays queued and the next writer resends it.
        }
        catch (Exception e)
        {
            // Our bug: say so loudly and drop the connection; the session resumes on the next one.
            _log($"BUG in the writer of session {Id} with {PeerEntity}: {e}");
            connection.Close($"internal error: {e.GetType().Name}");
        }
    }

    private const int MaxBatchFrames = 64;
    private const long MaxBatchBytes = 4 << 20;

    /// <summary>
    /// Puts the session on a new connection after a handshake: drops what the peer says it received and starts the
    /// connection's writer right after it, so the rest is resent in order before anything new.
    /// </summary>
    internal Task AttachAsync(Connection connection, ulong peerLastReceived)
    {
        TaskCompletionSource? oldWake;
        lock (_lock)
        {
            AckUpTo(peerLastReceived);
            _connection = connection;
            Interlocked.Add(ref _resent, _unacked.Count);
            // A writer idling on the previous connection wakes up, sees it is no longer current, and ends.
            oldWake = _writerWake;
            _writerWake = null;
        }
        oldWake?.TrySetResult();
        _ = WriterAsync(connection, peerLastReceived);
        return Task.CompletedTask;
    }

    /// <summary>
    /// Starts the session over with a peer that restarted and lost its side: nothing received from it counts any
    /// more (it numbers from 1 again), and the unacknowledged messages are renumbered from 1 in their order, so the
    /// next attach sends them all. Returns how many there are. Only while detached.
    /// </summary>
    internal int ResetForRestartedPeer()
    {
        lock (_lock)
        {
            if (_connection is not null)
            {
                throw new InvalidOperationException("a session is reset only between connections");
            }
            var renumbered = new Dictionary<ulong, TaskCompletionSource<Message>>();
            for (var i = 0; i < _unacked.Count; i++)
            {
                var f = _unacked[i];
                var seq = (ulong)i + 1;
                if (_requests.Remove(f.Seq, out var waiter))
                {
                    renumbered[seq] = waiter;
                }
                f.Seq = seq;
            }
            // Requests whose message was already acknowledged wait for replies the old peer will never send.
            foreach (var waiter in _requests.Values)
            {
                waiter.TrySetException(new ConnectionClosedException("the peer restarted before answering"));
            }
            _requests.Clear();
            foreach (var (seq, waiter) in renumbered)
            {
                _requests[seq] = waiter;
            }
            _nextSeq = (ulong)_unacked.Count + 1;
            _lastDelivered = 0;
            _lastAckSent = 0;
            _ackMark = 0;
            _bytesSinceAck = 0;
            return _unacked.Count;
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
        // One frame at a time from claiming its sequence number to handing it to the handler: after a reconnect the
        // previous connection's read loop may still be working through frames it had buffered while the new
        // connection's loop starts; without this, the old loop could claim seq n, the new loop claim n + 1 and hand
        // it over first, and the handler would see them out of order.
        await _receiveGate.WaitAsync();
        try
        {
            TaskCompletionSource<Message>? waiter = null;
            AckTimer? listOn = null;
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
                if (!_ackListed && _ackTimer is not null)
                {
                    _ackListed = true;
                    _ackMark = 0;
                    listOn = _ackTimer;
                }
            }
            listOn?.Add(this);
            if (waiter is not null)
            {
                // A reply outlives any handler: it gets an array of its own and the pooled buffer goes back; a large
                // one keeps the buffer it arrived in instead (the pool does not get it back, the GC takes it), which
                // saves copying it.
                if (h.PayloadLength >= HandOverFrom)
                {
                    waiter.TrySetResult(new Message(h.Type, h.Seq, h.ReplyTo, frame.Payload));
                }
                else
                {
                    waiter.TrySetResult(new Message(h.Type, h.Seq, h.ReplyTo, frame.Payload.ToArray()));
                    frame.Release();
                }
            }
            else
            {
                var message = new Message(h.Type, h.Seq, h.ReplyTo, frame.Payload) { Owner = frame.Owner };
                if (await WaitForInboxRoomAsync(h.PayloadLength))
                {
                    // Nothing else is waiting for the handler: run it right here, with no thread hop. If it has to wait,
                    // the dispatcher finishes it (in order, before anything delivered later) and the read loop goes on.
                    ValueTask running;
                    try
                    {
                        running = _deliver(this, message);
                    }
                    catch (Exception e)
                    {
                        _log($"BUG in the message handler of session {Id} with {PeerEntity} (type {message.Type}, seq {message.Seq}): {e}");
                        running = ValueTask.CompletedTask;
                    }
                    if (running.IsCompleted)
                    {
                        try
                        {
                            running.GetAwaiter().GetResult();
                        }
                        catch (Exception e)
                        {
                            _log($"BUG in the message handler of session {Id} with {PeerEntity} (type {message.Type}, seq {message.Seq}): {e}");
                        }
                        Delivered(message, frame);
                    }
                    else if (!_inbox.Writer.TryWrite((message, frame, running.AsTask())))
                    {
                        // Only a completed inbox refuses (the session is closing): the handler still finishes.
                        _ = FinishLateAsync(message, frame, running.AsTask());
                    }
                }
                else if (!_inbox.Writer.TryWrite((message, frame, null)))
                {
                    await _inbox.Writer.WriteAsync((message, frame, null));
                }
            }
        }
        finally
        {
            _receiveGate.Release();
        }
        await MaybeAckAsync(connection);
    }

    /// <summary>Waits until the messages waiting for the handler leave room for <paramref name="bytes"/> more (one
    /// message always fits), then counts this one in. True when nothing else is waiting for or in the handler: the
    /// caller may then run the handler itself.</summary>
    private async ValueTask<bool> WaitForInboxRoomAsync(int bytes)
    {
        while (true)
        {
            Task drained;
            lock (_lock)
            {
                if (_inboxBytes == 0 || _inboxBytes + bytes <= _options.MaxUnackedBytes)
                {
                    _inboxBytes += bytes;
                    return _inboxCount++ == 0;
                }
                _inboxWaiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                drained = _inboxWaiter.Task;
            }
            await drained;
        }
    }

    private async Task FinishLateAsync(Message message, Frame frame, Task running)
    {
        try
        {
            await running;
        }
        catch (Exception e)
        {
            _log($"BUG in the message handler of session {Id} with {PeerEntity} (type {message.Type}, seq {message.Seq}): {e}");
        }
        finally
        {
            Delivered(message, frame);
        }
    }

    /// <summary>Explicit acknowledgements go through the process's timer for <paramref name="interval"/> (see
    /// <see cref="AckTimer"/>); called at each attach.</summary>
    internal void AcknowledgeWithin(TimeSpan interval) => _ackTimer = AckTimer.For(interval);

    /// <summary>
    /// The ack timer's tick for this session: acknowledges everything delivered when a delivery it had at the
    /// previous tick is still unacknowledged (no outgoing message carried it meanwhile). True when the session stays
    /// on the timer's list (something delivered is still unacknowledged).
    /// </summary>
    internal bool AckTick()
    {
        Connection? connection;
        ulong ack;
        lock (_lock)
        {
            if (_disposed || _lastDelivered == _lastAckSent)
            {
                _ackListed = false;
                return false;
            }
            if (_lastAckSent >= _ackMark)
            {
                // What was there at the previous tick (if anything) went out with a message: look again next tick.
                _ackMark = _lastDelivered;
                return true;
            }
            _ackListed = false;
            connection = _connection;
            if (connection is null)
            {
                // Detached: the next handshake tells the peer how far this side got.
                return false;
            }
            ack = _lastDelivered;
            _lastAckSent = ack;
            _bytesSinceAck = 0;
        }
        _ = SendAckAsync(connection, ack);
        return false;
    }

    /// <summary>Acknowledges explicitly when enough deliveries have not been piggybacked on outgoing messages.</summary>
    private async ValueTask MaybeAckAsync(Connection connection)
    {
        ulong ack;
        lock (_lock)
        {
            if (_lastDelivered == _lastAckSent
                || (_lastDelivered - _lastAckSent < (ulong)_options.AckEvery && _bytesSinceAck < _options.AckBytes))
            {
                return;
            }
            ack = _lastDelivered;
            _lastAckSent = ack;
            _bytesSinceAck = 0;
        }
        await SendAckAsync(connection, ack);
    }

    private static async ValueTask SendAckAsync(Connection connection, ulong ack)
    {
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
        while (_unacked.Count > 0 && _unacked.First.Seq <= ack)
        {
            var first = _unacked.RemoveFirst();
            _unackedBytes -= first.PayloadLength;
            first.Release();
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
        TaskCompletionSource? wake;
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
            while (_unacked.Count > 0)
            {
                _unacked.RemoveFirst().Release();
            }
            wake = _writerWake;
            _writerWake = null;
        }
        wake?.TrySetResult();
        _log($"session {Id} with {PeerEntity} closed");
    }
}

/// <summary>Limits of a session.</summary>
public sealed record SessionOptions
{
    /// <summary>Bytes sent and not yet acknowledged (and, on the receiving side, bytes waiting for the handler). It
    /// must cover what the kernel keeps in flight, or the sender stalls on the window while the pipe is not full:
    /// over loopback TCP (socket buffers autotuned to about 4 MiB send + 6 MiB receive) 8 MiB held 1 MiB messages to
    /// 0.79-0.81 of the CPU efficiency of plain TCP, 16 MiB gave 0.88-0.91.</summary>
    public long MaxUnackedBytes { get; init; } = 16 << 20;
    public int MaxUnackedMessages { get; init; } = 4096;
    /// <summary>Send an explicit acknowledgement after this many deliveries without outgoing traffic...</summary>
    public int AckEvery { get; init; } = 32;
    /// <summary>...or after this many delivered bytes, so large messages never wait for the ack timer.</summary>
    public long AckBytes { get; init; } = 4 << 20;
    public int MaxPayload { get; init; } = 16 << 20;
}

/// <summary>The unacknowledged messages of a session: consecutive sequence numbers in a ring of fixed capacity
/// (the window), so the writer finds any of them by its sequence number.</summary>
internal sealed class FrameWindow(int capacity)
{
    private readonly OutgoingFrame[] _ring = new OutgoingFrame[capacity];
    private int _head;

    public int Count { get; private set; }

    public OutgoingFrame First => this[0];

    public OutgoingFrame this[int index] => index >= 0 && index < Count
        ? _ring[(_head + index) % _ring.Length]
        : throw new ArgumentOutOfRangeException(nameof(index), $"index {index} outside the window of {Count}");

    public void Add(OutgoingFrame frame)
    {
        if (Count == _ring.Length)
        {
            throw new InvalidOperationException("the send window is full (the window semaphore should have held the sender)");
        }
        _ring[(_head + Count) % _ring.Length] = frame;
        Count++;
    }

    public OutgoingFrame RemoveFirst()
    {
        var f = First;
        _ring[_head] = null!;
        _head = (_head + 1) % _ring.Length;
        Count--;
        return f;
    }
}
