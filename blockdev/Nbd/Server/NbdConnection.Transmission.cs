using Appliance.Platform.Concurrency;
using System.Buffers;
using System.Diagnostics;
using System.Net.Sockets;
using System.Numerics;
using Appliance.BlockDev.Images;
using Appliance.BlockDev.Nbd.Protocol;

namespace Appliance.BlockDev.Nbd.Server;

/// <summary>
/// Transmission: the connection's thread reads the socket into one buffer and handles every complete request in it
/// (page-cache I/O inline, slow requests on the thread pool); handlers queue their replies, and the queue goes out
/// in one gathering send (sendmsg) before the thread reads again. Replies leave in completion order. Every request
/// holds a slot (<see cref="NbdServerOptions.MaxRequestsInFlight"/>) and its bytes (<see
/// cref="NbdServerOptions.MaxBytesInFlight"/>) until its reply is sent; when either runs out the thread stops
/// reading, so a client cannot make us buffer more.
/// </summary>
internal sealed partial class NbdConnection
{
    /// <summary>Structured reads at least this long describe holes with OFFSET_HOLE chunks instead of zeroes.</summary>
    private const int SparseReadThreshold = 64 << 10;
    /// <summary>Most content chunks in one sparse read reply; past that the rest is sent as data.</summary>
    private const int MaxReadChunks = 64;
    /// <summary>Most extents in one block-status reply (the spec allows 2^20; a reply this size is 128 KiB).</summary>
    private const int MaxStatusExtents = 16 << 10;
    /// <summary>Error messages on the wire are cut to this many bytes.</summary>
    private const int MaxErrorMessage = 200;
    /// <summary>The receive buffer: many small requests per recv; a longer WRITE payload is received into its own buffer.</summary>
    private const int ReceiveBufferSize = 128 << 10;
    /// <summary>Queued replies are sent as soon as they add up to this much, without waiting for the end of the batch.</summary>
    private const int ReplyFlushBytes = 256 << 10;
    /// <summary>Replies per sendmsg (well under IOV_MAX).</summary>
    private const int MaxRepliesPerSend = 64;
    /// <summary>Reads without polling after a poll that ran out.</summary>
    private const int SpinBackoff = 16;

    private readonly ByteBudget _budget;
    private readonly SemaphoreSlim _slots;
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    // Requests taken in (each holding a slot) whose reply is not yet sent or dropped.
    private int _pending;
    private int _draining;
    private IImage _image = null!;
    private TransmissionState _state;
    private int _receiveThreadId;
    private long _spinTicks;
    private int _spinOff;

    // The reply queue. Whoever finds no flush under way sends everything queued (one sender at a time, so replies
    // never interleave on the wire); replies queued meanwhile are picked up by that sender's next round.
    private readonly Lock _replyLock = new();
    private List<QueuedReply> _queued = new(MaxRepliesPerSend);
    private List<QueuedReply> _sending = new(MaxRepliesPerSend);
    private readonly List<ArraySegment<byte>> _segments = new(MaxRepliesPerSend);
    private long _queuedBytes;
    private bool _flushing;
    // Replies queued or being sent (for the server's high-water figure; the slots are what bound it).
    private int _repliesHeld;

    /// <summary>A reply ready to send: the wire bytes (a pooled buffer) and the budget its request holds.</summary>
    private readonly record struct QueuedReply(byte[] Buffer, int Length, long Cost);

    /// <summary>A reply built by a handler: <see cref="Length"/> bytes of a pooled <see cref="Buffer"/>.</summary>
    private readonly record struct Reply(byte[] Buffer, int Length);

    /// <summary>Transmission on the connection's thread until DISC, the end of the stream or a violation.</summary>
    private void ServeTransmission(ExportLease lease)
    {
        _image = lease.Image;
        _state = new TransmissionState(_image.Size, FlagsFor(lease), _structuredReplies, _metaContextExport == lease.Name);
        _receiveThreadId = Environment.CurrentManagedThreadId;
        _spinTicks = (long)(_options.ReceiveSpin.TotalSeconds * Stopwatch.Frequency);
        byte[] rx;
        var end = 0;
        // Whatever the negotiation reader already buffered (a client may pipeline requests after GO) comes first.
        if (_reader.TryRead(out var early))
        {
            rx = ArrayPool<byte>.Shared.Rent((int)Math.Max(ReceiveBufferSize, early.Buffer.Length));
            early.Buffer.CopyTo(rx);
            end = (int)early.Buffer.Length;
            _reader.AdvanceTo(early.Buffer.End);
        }
        else
        {
            rx = ArrayPool<byte>.Shared.Rent(ReceiveBufferSize);
        }
        _reader.Complete();
        try
        {
            ReceiveRequests(rx, end);
            // DISC or the end of the stream: every request taken in is answered before we close.
            FlushReplies();
            Drain(TimeSpan.FromSeconds(30));
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException or OperationCanceledException)
        {
            // The connection was closed (by the client, the watchdog or the server).
        }
        finally
        {
            // A violation or a dead socket: replies still queued are dropped. Handlers still running finish before
            // the export lease is given back (they use the image).
            Abort("");
            FlushReplies();
            Drain(TimeSpan.FromSeconds(30));
            ArrayPool<byte>.Shared.Return(rx);
        }
    }

    /// <summary>
    /// The request loop: handles every complete request in <paramref name="rx"/>[..end], sends the replies that
    /// produced, reads more. Returns at DISC or the end of the stream; throws when the connection breaks.
    /// </summary>
    private void ReceiveRequests(byte[] rx, int end)
    {
        var start = 0;
        long discard = 0;
        while (true)
        {
            while (true)
            {
                if (discard > 0)
                {
                    // The payload of a refused WRITE: skipped as it streams in, never held.
                    var skip = (int)Math.Min(discard, end - start);
                    start += skip;
                    discard -= skip;
                    if (discard > 0)
                    {
                        break;
                    }
                }
                var status = RequestParser.Parse(rx.AsSpan(start, end - start), out var request, out var consumed);
                if (status == OperationStatus.NeedMoreData)
                {
                    break;
                }
                if (status == OperationStatus.InvalidData)
                {
                    throw new ProtocolViolationException("bad request magic");
                }
                start += consumed;
                var error = RequestParser.Validate(request, _state);
                if (error == NbdError.None && request.Command == NbdCommand.Disc)
                {
                    // NBD_CMD_DISC: no reply; the caller answers everything outstanding, then we close.
                    return;
                }
                // Every reply, refusals included, holds a slot until it is sent: the reply queue is bounded too.
                TakeSlot();
                if (error != NbdError.None)
                {
                    if (request.HasPayload)
                    {
                        discard = request.Length;
                    }
                    Queue(ErrorReply(request, error, RefusalMessage(request, error), null), 0);
                    continue;
                }
                var cost = Cost(request);
                byte[]? payload = null;
                var held = 0L;
                try
                {
                    TakeBudget(cost);
                    held = cost;
                    if (request.HasPayload && request.Length > 0)
                    {
                        var length = (int)request.Length;
                        payload = ArrayPool<byte>.Shared.Rent(length);
                        var have = Math.Min(length, end - start);
                        rx.AsSpan(start, have).CopyTo(payload);
                        start += have;
                        if (have < length)
                        {
                            // The rest of a long payload goes straight into its buffer (no copy through rx).
                            FlushReplies();
                            ReceiveExactly(payload.AsSpan(have, length - have));
                        }
                    }
                }
                catch
                {
                    if (payload is not null)
                    {
                        ArrayPool<byte>.Shared.Return(payload);
                    }
                    // The slot is held; the bytes only if the budget wait got them.
                    Release(held);
                    throw;
                }
                if (IsSlow(request))
                {
                    // fdatasync, hole punching or a long prefetch would hold up the reader: run it off the loop.
                    // (Handing page-cache requests to the pool as well measured slower on 2 cores than running them
                    // inline: 4 KiB writes on the pool cost about twice the server CPU per I/O, 1 MiB reads and
                    // writes 1.5-3x per MiB, and did not raise throughput — pool threads spin between items. A
                    // dedicated per-connection thread for 1 MiB writes, to overlap the copy into the page cache with
                    // receiving the next payload, cost 1.3-2.5x the CPU per MiB too and was no faster.)
                    ThreadPool.UnsafeQueueUserWorkItem(new Work(this, request, payload, cost), preferLocal: false);
                }
                else
                {
                    // Runs synchronously until its first real wait (none at all for page-cache I/O), so a local
                    // read or write costs no thread hop; an image that really waits frees this thread.
                    _ = HandleAsync(request, payload, cost);
                }
                if (Volatile.Read(ref _queuedBytes) >= ReplyFlushBytes)
                {
                    FlushReplies();
                }
            }
            // Nothing more can be handled without reading: send what this batch produced, then read. What is left
            // in rx is at most a partial request header, moved to the front.
            FlushReplies();
            var left = end - start;
            rx.AsSpan(start, left).CopyTo(rx);
            start = 0;
            end = left;
            PollBriefly();
            var n = _stream.Read(rx.AsSpan(end));
            if (n == 0)
            {
                return;
            }
            end += n;
        }
    }

    /// <summary>Before a blocking read: polls the socket for up to <see cref="NbdServerOptions.ReceiveSpin"/> (plain
    /// sockets only: TLS may hold decrypted bytes the socket does not show). A poll that runs out turns polling off
    /// for the next <see cref="SpinBackoff"/> reads.</summary>
    private void PollBriefly()
    {
        if (_spinTicks <= 0 || _stream is not BlockingNetworkStream)
        {
            return;
        }
        if (_spinOff > 0)
        {
            _spinOff--;
            return;
        }
        var until = Stopwatch.GetTimestamp() + _spinTicks;
        while (_socket.Available == 0)
        {
            if (Stopwatch.GetTimestamp() >= until)
            {
                _spinOff = SpinBackoff;
                return;
            }
            Thread.SpinWait(20);
        }
    }

    private void ReceiveExactly(Span<byte> destination)
    {
        while (destination.Length > 0)
        {
            var n = _stream.Read(destination);
            if (n == 0)
            {
                throw new EndOfStreamException("the client closed the connection in the middle of a WRITE payload");
            }
            destination = destination[n..];
        }
    }

    /// <summary>Takes a request slot; when none is free, sends the queued replies (which free theirs) and waits.</summary>
    private void TakeSlot()
    {
        if (!_slots.Wait(0))
        {
            FlushReplies();
            _slots.Wait(_cts.Token);
        }
        Interlocked.Increment(ref _pending);
    }

    private void TakeBudget(long cost)
    {
        var wait = _budget.WaitAsync(cost, _cts.Token);
        if (!wait.IsCompletedSuccessfully)
        {
            FlushReplies();
            wait.AsTask().GetAwaiter().GetResult();
        }
        _server.NoteBytesInFlight(_budget.HighWater);
    }

    /// <summary>Gives back what a request held (its bytes and its slot) once its reply is sent or dropped.</summary>
    private void Release(long cost)
    {
        _budget.Release(_budget.Clamp(cost)); // what TakeBudget took: a request larger than the budget took all of it
        _slots.Release();
        if (Interlocked.Decrement(ref _pending) == 0 && Volatile.Read(ref _draining) == 1)
        {
            _drained.TrySetResult();
        }
    }

    private static bool IsSlow(in NbdRequest r) =>
        (r.Flags & CommandFlags.Fua) != 0 || r.Command is NbdCommand.Flush or NbdCommand.Trim or NbdCommand.WriteZeroes or NbdCommand.Cache;

    /// <summary>Bytes a request holds while in flight: its payload or its reply buffer.</summary>
    private static long Cost(in NbdRequest r) => r.Command switch
    {
        // What ArrayPool really hands out (it rounds up to a power of two).
        NbdCommand.Read => (long)BitOperations.RoundUpToPowerOf2((uint)ReadWireSize((int)Math.Min(r.Length, NbdLimits.MaxPayload))),
        NbdCommand.Write => (long)BitOperations.RoundUpToPowerOf2(Math.Max(r.Length, 16u)),
        NbdCommand.BlockStatus => 24 + (8L * MaxStatusExtents),
        _ => 0,
    };

    private sealed class Work(NbdConnection connection, NbdRequest request, byte[]? payload, long cost) : IThreadPoolWorkItem
    {
        public void Execute() => _ = connection.HandleAsync(request, payload, cost);
    }

    /// <summary>
    /// Runs one request and queues its reply; a handler not on the connection's thread also sends it (the
    /// connection's thread sends at the end of its batch). Never throws: a bug drops the connection.
    /// </summary>
    private async Task HandleAsync(NbdRequest r, byte[]? payload, long cost)
    {
        Reply? reply = null;
        try
        {
            reply = r.Command switch
            {
                NbdCommand.Read => await ReadAsync(r),
                NbdCommand.BlockStatus => await BlockStatusAsync(r),
                _ => await ExecuteAsync(r, payload),
            };
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
        {
            // The connection is closing (image failures were mapped to replies above).
            Abort("");
        }
        catch (Exception e)
        {
            Log($"internal error serving {r.Command} at {r.Offset}+{r.Length}: {e}");
            Abort("internal error (logged above)");
        }
        finally
        {
            if (payload is not null)
            {
                ArrayPool<byte>.Shared.Return(payload);
            }
            if (reply is { } ready)
            {
                Queue(ready, cost);
            }
            else
            {
                Release(cost);
            }
        }
        if (Environment.CurrentManagedThreadId != _receiveThreadId)
        {
            FlushReplies();
        }
    }

    /// <summary>Any command but READ and BLOCK_STATUS: success without data, or an error.</summary>
    private async ValueTask<Reply> ExecuteAsync(NbdRequest r, byte[]? payload)
    {
        NbdError error;
        string? message = null;
        long? offset = null;
        try
        {
            error = await ExecuteCoreAsync(r, payload);
            message = error == NbdError.NotSup ? "zeroing this range is not faster than writing zeroes" : null;
        }
        catch (Exception e) when (NbdErrors.TryMap(e, out error, out offset))
        {
            message = e.Message;
        }
        return error == NbdError.None ? OkReply(r) : ErrorReply(r, error, message ?? error.ToString(), offset);
    }

    private async ValueTask<NbdError> ExecuteCoreAsync(NbdRequest r, byte[]? payload)
    {
        var fua = (r.Flags & CommandFlags.Fua) != 0;
        var offset = (long)r.Offset;
        var ct = _cts.Token;
        switch (r.Command)
        {
            case NbdCommand.Write:
                await _image.WriteAsync(offset, payload.AsMemory(0, (int)r.Length), fua, ct);
                return NbdError.None;
            case NbdCommand.Flush:
                await _image.FlushAsync(ct);
                return NbdError.None;
            case NbdCommand.Trim:
                await _image.TrimAsync(offset, r.Length, fua, ct);
                return NbdError.None;
            case NbdCommand.WriteZeroes:
                var options = ((r.Flags & CommandFlags.NoHole) != 0 ? ZeroOptions.NoHole : ZeroOptions.None)
                    | ((r.Flags & CommandFlags.FastZero) != 0 ? ZeroOptions.FastOnly : ZeroOptions.None);
                return await _image.ZeroAsync(offset, r.Length, options, fua, ct) ? NbdError.None : NbdError.NotSup;
            case NbdCommand.Cache:
                await _image.CacheAsync(offset, r.Length, ct);
                return NbdError.None;
            default:
                // Validate() lets through only the commands above (READ and BLOCK_STATUS are handled apart).
                throw new InvalidOperationException($"unexpected command {r.Command}");
        }
    }

    private async ValueTask<Reply> ReadAsync(NbdRequest r)
    {
        var length = (int)r.Length;
        if (!_state.StructuredReplies)
        {
            var wire = ArrayPool<byte>.Shared.Rent(NbdLimits.SimpleReplyHeaderSize + length);
            try
            {
                await _image.ReadAsync((long)r.Offset, wire.AsMemory(NbdLimits.SimpleReplyHeaderSize, length), _cts.Token);
            }
            catch (Exception e)
            {
                ArrayPool<byte>.Shared.Return(wire);
                if (NbdErrors.TryMap(e, out var error, out _))
                {
                    // A simple reply carries an error or the data, never both.
                    return ErrorReply(r, error, e.Message, null);
                }
                throw;
            }
            NbdWire.WriteSimpleReply(wire, NbdError.None, r.Cookie);
            return new Reply(wire, NbdLimits.SimpleReplyHeaderSize + length);
        }
        return length == 0 ? OkReply(r) : await StructuredReadAsync(r, length);
    }

    /// <summary>
    /// A structured READ reply: content chunks (data, and for long reads holes as OFFSET_HOLE) in offset order, the
    /// last flagged DONE; when a read fails, the chunks before it, then an ERROR_OFFSET chunk naming where. The
    /// chunks are laid out in one buffer exactly as they go on the wire (data read in place after its header), so
    /// the whole reply is one buffer.
    /// </summary>
    private async ValueTask<Reply> StructuredReadAsync(NbdRequest r, int length)
    {
        var start = (long)r.Offset;
        var sparse = length >= SparseReadThreshold && (r.Flags & CommandFlags.Df) == 0;
        // Short reads are one data chunk: no allocation map, no segment array.
        var segments = sparse ? ArrayPool<ImageExtent>.Shared.Rent(MaxReadChunks) : null;
        var wire = ArrayPool<byte>.Shared.Rent(ReadWireSize(length));
        var handedOver = false;
        try
        {
            var count = 1;
            if (sparse)
            {
                try
                {
                    count = await SegmentsAsync(start, length, segments!);
                }
                catch (Exception e) when (NbdErrors.TryMap(e, out _, out _))
                {
                    // No allocation map: everything read as data is always a correct answer.
                    segments![0] = new ImageExtent(length, ExtentFlags.Data);
                }
            }
            var p = 0;
            long relative = 0;
            for (var i = 0; i < count; i++)
            {
                var segment = segments?[i] ?? new ImageExtent(length, ExtentFlags.Data);
                var flags = i == count - 1 ? ReplyFlags.Done : ReplyFlags.None;
                var offset = (ulong)(start + relative);
                if ((segment.Flags & ExtentFlags.Zero) != 0)
                {
                    p += NbdWire.WriteOffsetHole(wire.AsSpan(p), flags, r.Cookie, offset, (uint)segment.Length);
                }
                else
                {
                    try
                    {
                        await _image.ReadAsync(start + relative, wire.AsMemory(p + 28, (int)segment.Length), _cts.Token);
                    }
                    catch (Exception e) when (NbdErrors.TryMap(e, out var error, out var at))
                    {
                        // Report where it failed: inside this segment (the image may know the exact byte).
                        var failed = at is { } a && a >= start + relative && a < start + relative + segment.Length ? a : start + relative;
                        var message = NbdWire.Utf8Truncated(e.Message);
                        p += NbdWire.WriteErrorChunk(wire.AsSpan(p), r.Cookie, error, message.AsSpan(0, Math.Min(message.Length, MaxErrorMessage)), (ulong)failed);
                        break;
                    }
                    p += NbdWire.WriteOffsetDataHeader(wire.AsSpan(p), flags, r.Cookie, offset, (int)segment.Length) + (int)segment.Length;
                }
                relative += segment.Length;
            }
            handedOver = true;
            return new Reply(wire, p);
        }
        finally
        {
            if (segments is not null)
            {
                ArrayPool<ImageExtent>.Shared.Return(segments);
            }
            if (!handedOver)
            {
                ArrayPool<byte>.Shared.Return(wire);
            }
        }
    }

    /// <summary>Room for a structured read reply: the data, every chunk header, and an error chunk.</summary>
    private static int ReadWireSize(int length) =>
        length + (32 * (length >= SparseReadThreshold ? MaxReadChunks : 1)) + NbdWire.ErrorChunkSize(MaxErrorMessage, true);

    /// <summary>Splits a read into data and zero runs by the image's allocation map (at most MaxReadChunks).</summary>
    private async ValueTask<int> SegmentsAsync(long start, int length, ImageExtent[] segments)
    {
        var n = await _image.GetExtentsAsync(start, length, segments.AsMemory(0, MaxReadChunks), _cts.Token);
        // Merge neighbours of the same kind; anything the map did not reach is read as data.
        var count = 0;
        long covered = 0;
        for (var i = 0; i < n; i++)
        {
            var zero = (segments[i].Flags & ExtentFlags.Zero) != 0;
            var kind = zero ? ExtentFlags.Zero : ExtentFlags.Data;
            if (count > 0 && segments[count - 1].Flags == kind)
            {
                segments[count - 1] = new ImageExtent(segments[count - 1].Length + segments[i].Length, kind);
            }
            else
            {
                segments[count++] = new ImageExtent(segments[i].Length, kind);
            }
            covered += segments[i].Length;
        }
        if (covered < length)
        {
            if (count > 0 && segments[count - 1].Flags == ExtentFlags.Data)
            {
                segments[count - 1] = new ImageExtent(segments[count - 1].Length + (length - covered), ExtentFlags.Data);
            }
            else if (count < MaxReadChunks)
            {
                segments[count++] = new ImageExtent(length - covered, ExtentFlags.Data);
            }
            else
            {
                // No slot left: turn the last zero run into data (reading zeroes is always right).
                segments[count - 1] = new ImageExtent(segments[count - 1].Length + (length - covered), ExtentFlags.Data);
            }
        }
        return count == 0 ? Fallback(segments, length) : count;

        static int Fallback(ImageExtent[] s, int length)
        {
            s[0] = new ImageExtent(length, ExtentFlags.Data);
            return 1;
        }
    }

    private async ValueTask<Reply> BlockStatusAsync(NbdRequest r)
    {
        var max = (r.Flags & CommandFlags.ReqOne) != 0 ? 1 : MaxStatusExtents;
        var extents = ArrayPool<ImageExtent>.Shared.Rent(max);
        try
        {
            int n;
            try
            {
                n = await _image.GetExtentsAsync((long)r.Offset, r.Length, extents.AsMemory(0, max), _cts.Token);
            }
            catch (Exception e) when (NbdErrors.TryMap(e, out var error, out var at))
            {
                return ErrorReply(r, error, e.Message, at);
            }
            if (n == 0)
            {
                // The image described nothing: "allocated, contents unknown" is always a correct answer.
                extents[0] = new ImageExtent(r.Length, ExtentFlags.Data);
                n = 1;
            }
            var descriptors = new (uint Length, uint Flags)[n];
            var count = 0;
            for (var i = 0; i < n; i++)
            {
                var flags = (uint)extents[i].Flags & (uint)(AllocationFlags.Hole | AllocationFlags.Zero);
                if (count > 0 && descriptors[count - 1].Flags == flags)
                {
                    descriptors[count - 1].Length += (uint)extents[i].Length;
                }
                else
                {
                    descriptors[count++] = ((uint)extents[i].Length, flags);
                }
            }
            var wire = ArrayPool<byte>.Shared.Rent(24 + (8 * count));
            var size = NbdWire.WriteBlockStatus(wire, ReplyFlags.Done, r.Cookie, NbdLimits.BaseAllocationId, descriptors.AsSpan(0, count));
            return new Reply(wire, size);
        }
        finally
        {
            ArrayPool<ImageExtent>.Shared.Return(extents);
        }
    }

    /// <summary>Success without data: a simple reply (allowed for every command but a structured READ), or NONE/DONE.</summary>
    private Reply OkReply(in NbdRequest r)
    {
        var wire = ArrayPool<byte>.Shared.Rent(NbdLimits.StructuredReplyHeaderSize);
        var n = r.Command == NbdCommand.Read && _state.StructuredReplies
            ? NbdWire.WriteChunkHeader(wire, ReplyFlags.Done, ReplyChunkType.None, r.Cookie, 0)
            : NbdWire.WriteSimpleReply(wire, NbdError.None, r.Cookie);
        return new Reply(wire, n);
    }

    /// <summary>An error reply: a structured error chunk (with the message, and the offset when known) if negotiated.</summary>
    private Reply ErrorReply(in NbdRequest r, NbdError error, string message, long? offset)
    {
        var text = NbdWire.Utf8Truncated(message);
        var m = text.AsSpan(0, Math.Min(text.Length, MaxErrorMessage));
        // ERROR_OFFSET is valid for these commands only, and the offset must lie inside the request.
        var withOffset = offset is { } o && o >= (long)r.Offset && (ulong)o < r.Offset + r.Length
            && r.Command is NbdCommand.Read or NbdCommand.Write or NbdCommand.Trim or NbdCommand.Cache or NbdCommand.WriteZeroes or NbdCommand.BlockStatus;
        var wire = ArrayPool<byte>.Shared.Rent(NbdWire.ErrorChunkSize(m.Length, true));
        var n = _state.StructuredReplies
            ? NbdWire.WriteErrorChunk(wire, r.Cookie, error, m, withOffset ? (ulong)offset!.Value : null)
            : NbdWire.WriteSimpleReply(wire, error, r.Cookie);
        return new Reply(wire, n);
    }

    private string RefusalMessage(in NbdRequest r, NbdError error) => error switch
    {
        NbdError.Perm => "the export is read-only",
        NbdError.NoSpc => $"{r.Offset}+{r.Length} is past the end of the export ({_state.ExportSize} bytes)",
        NbdError.Overflow => $"a read of {r.Length} bytes is longer than the {NbdLimits.MaxPayload}-byte maximum",
        NbdError.Inval when r.Length > NbdLimits.MaxPayload && r.Command is NbdCommand.Read or NbdCommand.Write =>
            $"{r.Length} bytes is longer than the {NbdLimits.MaxPayload}-byte maximum payload",
        NbdError.Inval when r.Command is NbdCommand.BlockStatus && !_state.MetaContextSelected => "no metadata context was selected",
        NbdError.Inval when !Enum.IsDefined(r.Command) => $"unknown command {(ushort)r.Command}",
        NbdError.Inval => $"invalid {r.Command} request (flags {r.Flags}, {r.Offset}+{r.Length}, export {_state.ExportSize} bytes)",
        _ => error.ToString(),
    };

    /// <summary>Queues a reply; it is sent by the next <see cref="FlushReplies"/>, and then its request's hold is released.</summary>
    private void Queue(Reply reply, long cost)
    {
        lock (_replyLock)
        {
            _queued.Add(new QueuedReply(reply.Buffer, reply.Length, cost));
            _queuedBytes += reply.Length;
            _server.NoteRepliesHeld(++_repliesHeld);
        }
    }

    /// <summary>
    /// Sends every queued reply, batched into gathering sends, unless another thread is sending (it then takes the
    /// new replies in its next round). The send blocks (a blocking socket: the kernel wakes us when the client
    /// drains, no epoll hop); the watchdog sees how long. Never throws: a failed send closes the connection and
    /// the replies are dropped (their requests' holds released all the same).
    /// </summary>
    private void FlushReplies()
    {
        while (true)
        {
            List<QueuedReply> batch;
            lock (_replyLock)
            {
                if (_flushing || _queued.Count == 0)
                {
                    return;
                }
                _flushing = true;
                batch = _queued;
                _queued = _sending;
                _sending = batch;
                _queuedBytes = 0;
            }
            try
            {
                if (Volatile.Read(ref _aborted) == 0)
                {
                    Send(batch);
                }
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException or OperationCanceledException)
            {
                Abort("");
            }
            catch (Exception e)
            {
                Log($"internal error sending replies: {e}");
                Abort("internal error (logged above)");
            }
            finally
            {
                foreach (var q in batch)
                {
                    ArrayPool<byte>.Shared.Return(q.Buffer);
                    Release(q.Cost);
                }
                lock (_replyLock)
                {
                    // Emptied before the flag drops: the next sender swaps this list back in as the queue.
                    _repliesHeld -= batch.Count;
                    batch.Clear();
                    _flushing = false;
                }
            }
        }
    }

    private void Send(List<QueuedReply> batch)
    {
        try
        {
            if (_tls)
            {
                foreach (var q in batch)
                {
                    Volatile.Write(ref _writeStarted, Environment.TickCount64);
                    _stream.Write(q.Buffer, 0, q.Length);
                }
                return;
            }
            for (var i = 0; i < batch.Count;)
            {
                _segments.Clear();
                long total = 0;
                for (; i < batch.Count && _segments.Count < MaxRepliesPerSend; i++)
                {
                    _segments.Add(new ArraySegment<byte>(batch[i].Buffer, 0, batch[i].Length));
                    total += batch[i].Length;
                }
                SendAll(_segments, total);
            }
        }
        finally
        {
            Volatile.Write(ref _writeStarted, 0);
        }
    }

    /// <summary>Sends the segments whole (sendmsg may take part of them; the rest follows).</summary>
    private void SendAll(List<ArraySegment<byte>> segments, long total)
    {
        long sent = 0;
        while (true)
        {
            Volatile.Write(ref _writeStarted, Environment.TickCount64);
            sent += segments.Count == 1 ? _socket.Send(segments[0].AsSpan(), SocketFlags.None) : _socket.Send(segments, SocketFlags.None);
            if (sent >= total)
            {
                return;
            }
            // Drop what went out; the first segment left starts where the kernel stopped.
            var skip = sent;
            var keep = 0;
            for (var i = 0; i < segments.Count; i++)
            {
                var seg = segments[i];
                if (skip >= seg.Count)
                {
                    skip -= seg.Count;
                    continue;
                }
                segments[keep++] = skip > 0 ? seg.Slice((int)skip) : seg;
                skip = 0;
            }
            segments.RemoveRange(keep, segments.Count - keep);
            total -= sent;
            sent = 0;
        }
    }

    /// <summary>Waits (bounded) until every request taken in has had its reply sent or dropped.</summary>
    private void Drain(TimeSpan limit)
    {
        Interlocked.Exchange(ref _draining, 1);
        if (Volatile.Read(ref _pending) != 0 && !_drained.Task.Wait(limit))
        {
            Log($"{Volatile.Read(ref _pending)} requests still running after {limit.TotalSeconds:0} s; closing anyway");
        }
    }
}
