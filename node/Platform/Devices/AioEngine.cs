using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;
using Appliance.Platform.Native;

namespace Appliance.Platform.Devices;

/// <summary>
/// Positional asynchronous I/O on one descriptor through Linux native AIO: callers submit from any thread, one
/// reaper thread collects completions and resumes the callers on the thread pool. In-flight I/Os are bounded by
/// the queue depth (callers wait for a slot: back-pressure, never an unbounded queue). Operation objects and their
/// control blocks are pooled, so an I/O allocates nothing on the steady path.
/// </summary>
internal sealed class AioEngine : IDisposable
{
    private static readonly TimeSpan ReapTimeout = TimeSpan.FromMilliseconds(100);
    private const int ReapBatch = 64;

    private readonly ulong _ctx;
    private readonly Op[] _ops;
    private readonly ConcurrentStack<Op> _free = new();
    private readonly SemaphoreSlim _slots;
    private readonly Thread _reaper;
    private readonly string _subject;
    private volatile bool _stopping;
    private int _inflight;

    public AioEngine(int depth, string subject)
    {
        _subject = subject;
        _ctx = Aio.io_setup(depth);
        _ops = new Op[depth];
        for (var i = 0; i < depth; i++)
        {
            _ops[i] = new Op(this, i);
            _free.Push(_ops[i]);
        }
        _slots = new SemaphoreSlim(depth, depth);
        _reaper = new Thread(Reap) { IsBackground = true, Name = $"aio-reaper {subject}" };
        _reaper.Start();
    }

    /// <summary>Submits one I/O and returns the kernel's result (bytes transferred). The buffer stays pinned by
    /// <paramref name="pin"/> until completion. Cancellation applies while waiting for a slot only: once submitted,
    /// an I/O runs to completion (the kernel cannot take back a write half-way).</summary>
    public async ValueTask<long> SubmitAsync(ushort opcode, int fd, MemoryHandle pin, long length, long offset, CancellationToken ct)
    {
        try
        {
            await _slots.WaitAsync(ct);
        }
        catch
        {
            pin.Dispose();
            throw;
        }
        if (!_free.TryPop(out var op))
        {
            // Impossible while slots == free ops; a failure here is a bug in this class, not an I/O error.
            pin.Dispose();
            _slots.Release();
            throw new InvalidOperationException("AIO operation pool is empty while a slot was free");
        }
        op.Prepare(opcode, fd, pin, length, offset);
        Interlocked.Increment(ref _inflight);
        try
        {
            // EAGAIN means the kernel's AIO ring is full (other users of fs.aio-max-nr); wait for room and retry.
            while (!op.Submit(_ctx, _subject))
            {
                await Task.Delay(1, CancellationToken.None);
            }
        }
        catch
        {
            Interlocked.Decrement(ref _inflight);
            op.Abandon();
            throw;
        }
        return await new ValueTask<long>(op, op.Version);
    }

    /// <summary>
    /// Submits several I/Os of one kind with as few io_submit calls as the ring allows (the kernel plugs the block
    /// layer around each call: the device sees the batch at once, a virtual disk is notified once instead of once
    /// per I/O) and returns each one's result (bytes transferred), in order. At most half the queue depth of the
    /// batch is in flight unawaited at a time, so a batch larger than the queue cannot wait for itself. Returns or
    /// throws only once every submitted I/O has completed (the buffers are the caller's again); the first error
    /// (a failed I/O, a refused submission, cancellation while waiting for slots) is thrown after that.
    /// </summary>
    public async Task<long[]> SubmitManyAsync(ushort opcode, int fd, IReadOnlyList<(ReadOnlyMemory<byte> Buffer, long Offset)> ios, CancellationToken ct)
    {
        var results = new long[ios.Count];
        var pending = new Queue<(int Index, ValueTask<long> Io)>();
        var window = Math.Max(1, _ops.Length / 2);
        var prepared = new List<Op>(Math.Min(ios.Count, window));
        Exception? error = null;
        var next = 0;
        while (next < ios.Count && error is null)
        {
            var chunk = Math.Min(ios.Count - next, window);
            try
            {
                // Earlier I/Os of this batch give their slots back only when awaited: collect them first.
                while (pending.Count + chunk > window)
                {
                    var (index, io) = pending.Dequeue();
                    results[index] = await io;
                }
                var taken = 0;
                try
                {
                    for (; taken < chunk; taken++)
                    {
                        await _slots.WaitAsync(ct);
                    }
                }
                catch
                {
                    if (taken > 0)
                    {
                        _slots.Release(taken);
                    }
                    throw;
                }
                prepared.Clear();
                for (var k = 0; k < chunk; k++)
                {
                    if (!_free.TryPop(out var op))
                    {
                        foreach (var p in prepared)
                        {
                            p.Abandon();
                        }
                        _slots.Release(chunk - prepared.Count);
                        throw new InvalidOperationException("AIO operation pool is empty while a slot was free");
                    }
                    var (buffer, offset) = ios[next + k];
                    op.Prepare(opcode, fd, buffer.Pin(), buffer.Length, offset);
                    prepared.Add(op);
                }
                Interlocked.Add(ref _inflight, chunk);
                var submitted = 0;
                try
                {
                    while (submitted < chunk)
                    {
                        var n = SubmitPrepared(prepared, submitted);
                        if (n == 0)
                        {
                            // EAGAIN: the kernel's AIO ring is full (other users of fs.aio-max-nr); wait for room.
                            await Task.Delay(1, CancellationToken.None);
                        }
                        submitted += n;
                    }
                }
                finally
                {
                    for (var k = 0; k < chunk; k++)
                    {
                        if (k < submitted)
                        {
                            pending.Enqueue((next + k, new ValueTask<long>(prepared[k], prepared[k].Version)));
                        }
                        else
                        {
                            Interlocked.Decrement(ref _inflight);
                            prepared[k].Abandon();
                        }
                    }
                }
                next += chunk;
            }
            catch (Exception e)
            {
                error = e;
            }
        }
        while (pending.TryDequeue(out var p))
        {
            try
            {
                results[p.Index] = await p.Io;
            }
            catch (Exception e)
            {
                error ??= e;
            }
        }
        return error is null ? results : throw error;
    }

    /// <summary>One io_submit of <paramref name="ops"/>[<paramref name="from"/>..]; how many the kernel took.</summary>
    private unsafe int SubmitPrepared(List<Op> ops, int from)
    {
        var count = ops.Count - from;
        var list = stackalloc IoCb*[count];
        for (var k = 0; k < count; k++)
        {
            list[k] = ops[from + k].ControlBlock;
        }
        return Aio.io_submit(_ctx, list, count, _subject);
    }

    private unsafe void Reap()
    {
        var events = (IoEvent*)NativeMemory.Alloc((nuint)(sizeof(IoEvent) * ReapBatch));
        try
        {
            while (!_stopping || Volatile.Read(ref _inflight) > 0)
            {
                var n = Aio.io_getevents(_ctx, 1, ReapBatch, events, ReapTimeout);
                for (var i = 0; i < n; i++)
                {
                    var op = _ops[(int)events[i].data];
                    Interlocked.Decrement(ref _inflight);
                    op.Complete(events[i].res);
                }
            }
        }
        finally
        {
            NativeMemory.Free(events);
        }
    }

    private void Return(Op op)
    {
        _free.Push(op);
        _slots.Release();
    }

    /// <summary>Waits for every submitted I/O to complete, then releases the kernel context.</summary>
    public void Dispose()
    {
        if (_stopping)
        {
            return;
        }
        _stopping = true;
        _reaper.Join();
        Aio.io_destroy(_ctx);
        foreach (var op in _ops)
        {
            op.Free();
        }
        _slots.Dispose();
    }

    private sealed unsafe class Op : IValueTaskSource<long>
    {
        private readonly AioEngine _engine;
        private ManualResetValueTaskSourceCore<long> _core;
        private MemoryHandle _pin;

        public Op(AioEngine engine, int index)
        {
            _engine = engine;
            _core.RunContinuationsAsynchronously = true;
            ControlBlock = (IoCb*)NativeMemory.AllocZeroed((nuint)sizeof(IoCb));
            ControlBlock->aio_data = (ulong)index;
        }

        public IoCb* ControlBlock { get; private set; }

        public short Version => _core.Version;

        public void Prepare(ushort opcode, int fd, MemoryHandle pin, long length, long offset)
        {
            _pin = pin;
            var cb = ControlBlock;
            cb->aio_lio_opcode = opcode;
            cb->aio_fildes = (uint)fd;
            cb->aio_buf = (ulong)pin.Pointer;
            cb->aio_nbytes = (ulong)length;
            cb->aio_offset = offset;
        }

        public bool Submit(ulong ctx, string subject) => Aio.io_submit(ctx, ControlBlock, subject);

        public void Complete(long res)
        {
            _pin.Dispose();
            _pin = default;
            if (res < 0)
            {
                // Only reads and writes are submitted (a flush is fdatasync on the caller's thread, see FileDevice).
                var call = ControlBlock->aio_lio_opcode == Constants.IOCB_CMD_PREAD ? "pread" : "pwrite";
                _core.SetException(Throw.For($"{call} (aio)", (int)-res, _engine._subject));
            }
            else
            {
                _core.SetResult(res);
            }
        }

        /// <summary>The submission failed: nobody will await this op, so it goes straight back to the pool.</summary>
        public void Abandon()
        {
            _pin.Dispose();
            _pin = default;
            _core.Reset();
            _engine.Return(this);
        }

        public long GetResult(short token)
        {
            try
            {
                return _core.GetResult(token);
            }
            finally
            {
                _core.Reset();
                _engine.Return(this);
            }
        }

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);

        public void Free()
        {
            NativeMemory.Free(ControlBlock);
            ControlBlock = null;
        }
    }
}
