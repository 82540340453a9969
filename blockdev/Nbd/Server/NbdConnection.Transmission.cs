using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Numerics;
using Appliance.BlockDev.Images;
using Appliance.BlockDev.Nbd.Protocol;

namespace Appliance.BlockDev.Nbd.Server;

/// <summary>
/// Transmission: one reader loop parses requests and starts a handler per request; handlers run concurrently
/// (bounded by <see cref="NbdServerOptions.MaxRequestsInFlight"/> and <see cref="NbdServerOptions.MaxBytesInFlight"/>:
/// when either is exhausted the reader stops reading, so a client cannot make us buffer more) and reply in
/// completion order.
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

    private readonly ByteBudget _budget;
    private readonly SemaphoreSlim _slots;
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _pending;
    private int _draining;
    private IImage _image = null!;
    private TransmissionState _state;

    /// <summary>
    /// The transmission pipe: fed by a dedicated receive thread, consumed inline on that thread (no thread hop
    /// between a request arriving and its handler running). It must hold a whole maximum request, or a reader
    /// waiting for a 32 MiB payload would wait forever on a paused writer.
    /// </summary>
    private static readonly PipeOptions TransmissionPipe = new(
        readerScheduler: PipeScheduler.Inline,
        writerScheduler: PipeScheduler.Inline,
        pauseWriterThreshold: NbdLimits.MaxPayload + (1 << 20),
        resumeWriterThreshold: NbdLimits.MaxPayload / 2,
        minimumSegmentSize: 64 << 10,
        useSynchronizationContext: false);

    /// <summary>
    /// Transmission on the connection's thread: this thread does blocking reads into the pipe, and the request
    /// loop (<see cref="TransmitAsync"/>) runs inline on it as data arrives.
    /// </summary>
    private void ServeTransmission(ExportLease lease)
    {
        var pipe = new Pipe(TransmissionPipe);
        // Whatever the negotiation reader already buffered (a client may pipeline requests after GO) comes first.
        if (_reader.TryRead(out var early))
        {
            foreach (var segment in early.Buffer)
            {
                pipe.Writer.Write(segment.Span);
            }
            _reader.AdvanceTo(early.Buffer.End);
            pipe.Writer.FlushAsync().AsTask().GetAwaiter().GetResult();
        }
        _reader.Complete();
        _reader = pipe.Reader;
        var requests = TransmitAsync(lease);
        ReceiveLoop(pipe.Writer);
        requests.GetAwaiter().GetResult();
    }

    private async Task TransmitAsync(ExportLease lease)
    {
        try
        {
            await TransmitCoreAsync(lease);
        }
        finally
        {
            // DISC, end of stream or a violation: close the socket so the receive loop's blocking read returns.
            Abort("");
        }
    }

    private async Task TransmitCoreAsync(ExportLease lease)
    {
        _image = lease.Image;
        _state = new TransmissionState(_image.Size, FlagsFor(lease), _structuredReplies, _metaContextExport == lease.Name);
        var ct = _cts.Token;
        long discard = 0;
        while (true)
        {
            var result = await _reader.ReadAsync(ct);
            var buffer = result.Buffer;
            var disconnect = false;
            try
            {
                while (true)
                {
                    if (discard > 0)
                    {
                        // The payload of a refused WRITE: skipped as it streams in, never held.
                        var skip = Math.Min(discard, buffer.Length);
                        buffer = buffer.Slice(skip);
                        discard -= skip;
                        if (discard > 0)
                        {
                            break;
                        }
                    }
                    var status = RequestParser.Parse(buffer, out var request, out var consumed);
                    if (status == OperationStatus.NeedMoreData)
                    {
                        break;
                    }
                    if (status == OperationStatus.InvalidData)
                    {
                        throw new ProtocolViolationException("bad request magic");
                    }
                    var error = RequestParser.Validate(request, _state);
                    if (error != NbdError.None)
                    {
                        buffer = buffer.Slice(consumed);
                        if (request.HasPayload)
                        {
                            discard = request.Length;
                        }
                        await ReplyErrorAsync(request, error, RefusalMessage(request, error), null);
                        continue;
                    }
                    if (request.Command == NbdCommand.Disc)
                    {
                        buffer = buffer.Slice(consumed);
                        disconnect = true;
                        break;
                    }
                    var payloadLength = request.HasPayload ? (int)request.Length : 0;
                    if (buffer.Length < consumed + payloadLength)
                    {
                        break;
                    }
                    var cost = Cost(request);
                    await _slots.WaitAsync(ct);
                    await _budget.WaitAsync(cost, ct);
                    _server.NoteBytesInFlight(_budget.HighWater);
                    byte[]? payload = null;
                    if (payloadLength > 0)
                    {
                        payload = ArrayPool<byte>.Shared.Rent(payloadLength);
                        buffer.Slice(consumed, payloadLength).CopyTo(payload);
                    }
                    buffer = buffer.Slice(consumed + payloadLength);
                    Interlocked.Increment(ref _pending);
                    if (IsSlow(request))
                    {
                        // fdatasync, hole punching or a long prefetch would hold up the reader: run it off the loop.
                        // (Handing pipelined page-cache requests to the pool as well measured slower at QD32 on
                        // 2 cores than running them inline: the hop costs more than the pread.)
                        ThreadPool.UnsafeQueueUserWorkItem(new Work(this, request, payload, cost), preferLocal: false);
                    }
                    else
                    {
                        // Runs synchronously until its first real wait (none at all for page-cache I/O), so a
                        // local read or write costs no thread hop; an image that really waits frees the reader.
                        _ = HandleAsync(request, payload, cost);
                    }
                }
            }
            finally
            {
                _reader.AdvanceTo(buffer.Start, buffer.End);
            }
            if (disconnect)
            {
                // NBD_CMD_DISC: every outstanding request is handled (and answered) before we close.
                await DrainAsync(TimeSpan.FromSeconds(30));
                return;
            }
            if (result.IsCompleted)
            {
                return;
            }
        }
    }

    /// <summary>The receive thread: blocking reads from the socket (or TLS stream) into the transmission pipe.</summary>
    private void ReceiveLoop(PipeWriter writer)
    {
        try
        {
            while (true)
            {
                var memory = writer.GetMemory(64 << 10);
                var n = _stream.Read(memory.Span);
                if (n == 0)
                {
                    break;
                }
                writer.Advance(n);
                // Runs the request loop inline; waits only when the pipe is full (the client is ahead of us).
                var flush = writer.FlushAsync();
                var result = flush.IsCompleted ? flush.Result : flush.AsTask().GetAwaiter().GetResult();
                if (result.IsCompleted || result.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException or OperationCanceledException)
        {
            // The connection was closed (by the client, or by Abort): the reader sees the end of the stream.
        }
        catch (Exception e)
        {
            Log($"internal error in the receive loop: {e}");
            Abort("internal error (logged above)");
        }
        writer.Complete();
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

    /// <summary>Runs one request and sends its reply. Never throws: a failed send closes the connection.</summary>
    private async Task HandleAsync(NbdRequest r, byte[]? payload, long cost)
    {
        try
        {
            if (r.Command == NbdCommand.Read)
            {
                await ReadAsync(r);
            }
            else if (r.Command == NbdCommand.BlockStatus)
            {
                await BlockStatusAsync(r);
            }
            else
            {
                var error = NbdError.None;
                string? message = null;
                long? offset = null;
                try
                {
                    error = await ExecuteAsync(r, payload);
                    message = error == NbdError.NotSup ? "zeroing this range is not faster than writing zeroes" : null;
                }
                catch (Exception e) when (NbdErrors.TryMap(e, out error, out offset))
                {
                    message = e.Message;
                }
                if (error == NbdError.None)
                {
                    await ReplyOkAsync(r);
                }
                else
                {
                    await ReplyErrorAsync(r, error, message ?? error.ToString(), offset);
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or IOException or SocketException)
        {
            // Only sends reach here (image failures were mapped above): the client is gone or stalled.
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
            _budget.Release(cost);
            _slots.Release();
            if (Interlocked.Decrement(ref _pending) == 0 && Volatile.Read(ref _draining) == 1)
            {
                _drained.TrySetResult();
            }
        }
    }

    private async ValueTask<NbdError> ExecuteAsync(NbdRequest r, byte[]? payload)
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

    private async Task ReadAsync(NbdRequest r)
    {
        var length = (int)r.Length;
        if (!_state.StructuredReplies)
        {
            var wire = ArrayPool<byte>.Shared.Rent(NbdLimits.SimpleReplyHeaderSize + length);
            try
            {
                try
                {
                    await _image.ReadAsync((long)r.Offset, wire.AsMemory(NbdLimits.SimpleReplyHeaderSize, length), _cts.Token);
                }
                catch (Exception e) when (NbdErrors.TryMap(e, out var error, out _))
                {
                    // A simple reply carries an error or the data, never both.
                    await ReplyErrorAsync(r, error, e.Message, null);
                    return;
                }
                NbdWire.WriteSimpleReply(wire, NbdError.None, r.Cookie);
                await SendAsync(new ArraySegment<byte>(wire, 0, NbdLimits.SimpleReplyHeaderSize + length));
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(wire);
            }
            return;
        }
        if (length == 0)
        {
            await ReplyOkAsync(r);
            return;
        }
        await StructuredReadAsync(r, length);
    }

    /// <summary>
    /// A structured READ reply: content chunks (data, and for long reads holes as OFFSET_HOLE) in offset order, the
    /// last flagged DONE; when a read fails, the chunks before it, then an ERROR_OFFSET chunk naming where. The
    /// chunks are laid out in one buffer exactly as they go on the wire (data read in place after its header), so
    /// the whole reply is one send.
    /// </summary>
    private async Task StructuredReadAsync(NbdRequest r, int length)
    {
        var start = (long)r.Offset;
        var sparse = length >= SparseReadThreshold && (r.Flags & CommandFlags.Df) == 0;
        // Short reads are one data chunk: no allocation map, no segment array.
        var segments = sparse ? ArrayPool<ImageExtent>.Shared.Rent(MaxReadChunks) : null;
        var wire = ArrayPool<byte>.Shared.Rent(ReadWireSize(length));
        try
        {
            var count = 1;
            if (sparse)
            {
                count = await SegmentsAsync(start, length, segments!);
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
            await SendAsync(new ArraySegment<byte>(wire, 0, p));
        }
        finally
        {
            if (segments is not null)
            {
                ArrayPool<ImageExtent>.Shared.Return(segments);
            }
            ArrayPool<byte>.Shared.Return(wire);
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

    private async Task BlockStatusAsync(NbdRequest r)
    {
        var max = (r.Flags & CommandFlags.ReqOne) != 0 ? 1 : MaxStatusExtents;
        var extents = ArrayPool<ImageExtent>.Shared.Rent(max);
        var wire = ArrayPool<byte>.Shared.Rent(24 + (8 * max));
        try
        {
            int n;
            try
            {
                n = await _image.GetExtentsAsync((long)r.Offset, r.Length, extents.AsMemory(0, max), _cts.Token);
            }
            catch (Exception e) when (NbdErrors.TryMap(e, out var error, out var at))
            {
                await ReplyErrorAsync(r, error, e.Message, at);
                return;
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
            var size = NbdWire.WriteBlockStatus(wire, ReplyFlags.Done, r.Cookie, NbdLimits.BaseAllocationId, descriptors.AsSpan(0, count));
            await SendAsync(new ArraySegment<byte>(wire, 0, size));
        }
        finally
        {
            ArrayPool<ImageExtent>.Shared.Return(extents);
            ArrayPool<byte>.Shared.Return(wire);
        }
    }

    /// <summary>Success without data: a simple reply (allowed for every command but a structured READ), or NONE/DONE.</summary>
    private async ValueTask ReplyOkAsync(NbdRequest r)
    {
        var wire = ArrayPool<byte>.Shared.Rent(NbdLimits.StructuredReplyHeaderSize);
        try
        {
            var n = r.Command == NbdCommand.Read && _state.StructuredReplies
                ? NbdWire.WriteChunkHeader(wire, ReplyFlags.Done, ReplyChunkType.None, r.Cookie, 0)
                : NbdWire.WriteSimpleReply(wire, NbdError.None, r.Cookie);
            await SendAsync(new ArraySegment<byte>(wire, 0, n));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(wire);
        }
    }

    /// <summary>An error reply: a structured error chunk (with the message, and the offset when known) if negotiated.</summary>
    private async ValueTask ReplyErrorAsync(NbdRequest r, NbdError error, string message, long? offset)
    {
        var text = NbdWire.Utf8Truncated(message);
        var m = text.AsMemory(0, Math.Min(text.Length, MaxErrorMessage));
        // ERROR_OFFSET is valid for these commands only, and the offset must lie inside the request.
        var withOffset = offset is { } o && o >= (long)r.Offset && (ulong)o < r.Offset + r.Length
            && r.Command is NbdCommand.Read or NbdCommand.Write or NbdCommand.Trim or NbdCommand.Cache or NbdCommand.WriteZeroes or NbdCommand.BlockStatus;
        var wire = ArrayPool<byte>.Shared.Rent(NbdWire.ErrorChunkSize(m.Length, true));
        try
        {
            var n = _state.StructuredReplies
                ? NbdWire.WriteErrorChunk(wire, r.Cookie, error, m.Span, withOffset ? (ulong)offset!.Value : null)
                : NbdWire.WriteSimpleReply(wire, error, r.Cookie);
            await SendAsync(new ArraySegment<byte>(wire, 0, n));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(wire);
        }
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

    /// <summary>
    /// Sends one reply, one sender at a time. The send itself blocks (a blocking socket: the kernel wakes us when the
    /// client drains, no epoll hop); waiting for the lock does not. The watchdog sees how long a send is blocked.
    /// </summary>
    private async ValueTask SendAsync(ArraySegment<byte> bytes)
    {
        await _writeLock.WaitAsync(_cts.Token);
        try
        {
            Volatile.Write(ref _writeStarted, Environment.TickCount64);
            if (_tls)
            {
                _stream.Write(bytes);
            }
            else
            {
                var sent = 0;
                while (sent < bytes.Count)
                {
                    sent += _socket.Send(bytes.AsSpan(sent), SocketFlags.None);
                }
            }
        }
        finally
        {
            Volatile.Write(ref _writeStarted, 0);
            _writeLock.Release();
        }
    }

    private async Task DrainAsync(TimeSpan limit)
    {
        Interlocked.Exchange(ref _draining, 1);
        if (Volatile.Read(ref _pending) == 0)
        {
            return;
        }
        try
        {
            await _drained.Task.WaitAsync(limit);
        }
        catch (TimeoutException)
        {
            Log($"{Volatile.Read(ref _pending)} requests still running after {limit.TotalSeconds:0} s; closing anyway");
        }
    }
}
