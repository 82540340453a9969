using System.Runtime.InteropServices;
using Appliance.Platform.Devices;
using Appliance.Store.Meta;

namespace Appliance.Store;

public sealed partial class ObjectStore
{
    /// <summary>A prepared transaction on its way to the disk, or (with no redo) a checkpoint request.</summary>
    private sealed class Pending(byte[]? redo, long budget, long journalBudget)
    {
        public byte[]? Redo { get; } = redo;
        public long Budget { get; } = budget;
        public long JournalBudget { get; } = journalBudget;
        /// <summary>Copy-on-write data, written to fresh blocks beside the record (which points at them and lists
        /// their crcs in its manifest); one flush makes both durable.</summary>
        public List<CowBlock> Cow { get; init; } = [];
        /// <summary>Deferred data: in the record; written in place once the record is durable.</summary>
        public List<(long Phys, ReadOnlyMemory<byte> Data)> Deferred { get; } = [];
        /// <summary>Blocks the transaction stopped referencing: reusable only once it is durable.</summary>
        public List<long> Freed { get; } = [];
        /// <summary>The copy-on-write data written since publication (large data streams to the device at once).</summary>
        public Task DataWritten { get; set; } = Task.CompletedTask;
        /// <summary>The copy-on-write data is small and goes to the device with the record, in the writer's batch.</summary>
        public bool CowWithRecord { get; set; }
        /// <summary>Completed by the writer, whose thread runs what waited on it (up to its next wait): the OSD's
        /// reply or acknowledgement goes out from there, without a hop to the thread pool per transaction.</summary>
        public TaskCompletionSource Done { get; } = new();
        public int Finished;
    }

    /// <summary>New content for a fresh device block: 4 KiB (a slice of the transaction's own copy of the data)
    /// and its crc32c. <paramref name="Pinned"/>: the slice is pinned and 4 KiB-aligned (written without a copy).
    /// <paramref name="Started"/>: already on its way to the device (an early write of the draft).</summary>
    private readonly record struct CowBlock(long Phys, ReadOnlyMemory<byte> Data, uint Crc, bool Pinned = false, bool Started = false);

    /// <summary>
    /// Applies <paramref name="txn"/> atomically, after every transaction submitted before it (called before it)
    /// that names one of the same collections; transactions on disjoint collections are prepared concurrently and
    /// never wait for each other's preparation. Returns once it is durable. A transaction that breaks a rule (a
    /// missing collection or object, no space) throws a typed <see cref="StoreException"/> and has no effect.
    /// Cancelling stops the wait only: a transaction that was accepted may still become durable.
    /// </summary>
    public async Task SubmitAsync(Transaction txn, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(txn);
        ThrowIfFailed();
        var clientBytes = txn.DataBytes();
        var budget = _budget.Clamp(clientBytes + B);
        Pending p;
        Interlocked.Increment(ref _preparing);
        var preparing = true;
        // The turn is the ordering point: taken here, before the first await, so call order is submission order
        // on every collection the transaction names. Every later wait (budgets, reads, the publish gate) is for
        // something the writer or a turn-holder frees without waiting for a turn, so nothing waits in a circle.
        var turn = new Turn(this, txn.Collections());
        try
        {
            await WaitTurnAsync(this, turn, ct);
        }
        catch
        {
            Interlocked.Decrement(ref _preparing);
            throw;
        }
        try
        {
            ThrowIfFailed();
            // The budgets are FIFO and shared: a transaction on another collection waits here only until an
            // earlier request is granted (the writer's progress), never for that transaction's preparation.
            await _budget.WaitAsync(budget, ct);
            long journal = 0;
            try
            {
                var draft = new Draft(this);
                try
                {
                    try
                    {
                        await draft.RunAsync(txn);
                    }
                    catch (NoSpaceException) when (_alloc.Reserved > 0)
                    {
                        // The blocks kept for the index's next commit may be what is missing: commit the index (a
                        // checkpoint, which needs no turn) and prepare once more; our collections did not change.
                        await draft.RollbackAsync();
                        await CheckpointAsync(ct);
                        draft = new Draft(this);
                        await draft.RunAsync(txn);
                    }
                    // Its redo and length, and its share of the record's copy-on-write manifest (at most a run
                    // header and a crc per block).
                    journal = draft.Redo.Length + 4L + 16L * draft.Cow.Count;
                    if (journal > _journalBudget.Capacity)
                    {
                        throw new TransactionTooLargeException(
                            $"a transaction of {journal} journal bytes exceeds the limit of {_journalBudget.Capacity} (an eighth of the journal); split it");
                    }
                    await _journalBudget.WaitAsync(journal, ct);
                }
                catch
                {
                    journal = 0;
                    await draft.RollbackAsync();
                    throw;
                }
                p = new Pending(draft.Redo.Written.ToArray(), budget, journal) { Cow = draft.Cow };
                // The gate keeps a checkpoint's snapshot between two publications, and makes publication and
                // queueing one step: the journal holds transactions in the order memory applied them.
                await _publishGate.WaitAsync(CancellationToken.None);
                TxnApply applied;
                try
                {
                    applied = await ApplyDraftAsync(p, draft);
                    if (!IndexPagesFit(applied))
                    {
                        // The index's next commit might not find its pages: commit what the index has first (a
                        // checkpoint needs the gate, not our turns), then look again (the tree's height may differ).
                        _publishGate.Release();
                        await CheckpointAsync(CancellationToken.None);
                        await _publishGate.WaitAsync(CancellationToken.None);
                        applied = await ApplyDraftAsync(p, draft);
                        if (!IndexPagesFit(applied))
                        {
                            throw new NoSpaceException(
                                $"{_device.Name}: out of space: the index may need {applied.Pages} blocks of 4 KiB for this transaction's metadata changes and {_alloc.Free} are free; remove objects or omap entries");
                        }
                    }
                    // The checkpoint lists the index's blocks: at most 12 bytes per block it owns or may take.
                    var metadata = 12 * (_pages.Owned + IndexReserve(applied)) + 256;
                    if (metadata > _geo.CheckpointCapacity)
                    {
                        throw new NoSpaceException(
                            $"{_device.Name}: out of metadata space: the checkpoint would need {metadata} bytes of {_geo.CheckpointCapacity} to list the index's blocks; remove objects or omap entries");
                    }
                }
                catch (StoreException e) when (e is NoSpaceException or MetadataTooLargeException or StoreFailedException)
                {
                    _publishGate.Release();
                    _journalBudget.Release(journal);
                    journal = 0;
                    await draft.RollbackAsync();
                    throw;
                }
                try
                {
                    Publish(p, applied, clientBytes);
                    if (draft.Early is not null || p.Cow.Count * B >= StreamCowBytes)
                    {
                        p.DataWritten = WriteBlocksAsync([.. p.Cow], early: draft.Early is null ? null : Task.WhenAll(draft.Early));
                    }
                    else
                    {
                        p.CowWithRecord = p.Cow.Count > 0;
                    }
                    var queued = _queue.Writer.TryWrite(p);
                    Interlocked.Decrement(ref _preparing);
                    preparing = false;
                    if (!queued)
                    {
                        // Lost the race with a failing writer: the change is in memory only; the store is failed.
                        ThrowIfFailed();
                        throw new ObjectDisposedException(nameof(ObjectStore));
                    }
                }
                finally
                {
                    _publishGate.Release();
                }
            }
            catch
            {
                _budget.Release(budget);
                _journalBudget.Release(journal);
                throw;
            }
        }
        finally
        {
            // Published (or failed without effect): the next transaction on these collections sees our result.
            turn.End(this);
            if (preparing)
            {
                Interlocked.Decrement(ref _preparing);
            }
        }
        await p.Done.Task.WaitAsync(ct);
    }

    /// <summary>Applies the draft's redo entries to what the draft loaded (caller holds the publish gate: nids are
    /// given in journal order). Nothing shared changes. An entry the state rejects is a bug of the preparer: the
    /// store stops.</summary>
    private async Task<TxnApply> ApplyDraftAsync(Pending p, Draft draft)
    {
        var t = new TxnApply(_meta, draft.Source, "transaction");
        try
        {
            await t.RunAsync(p.Redo);
        }
        catch (Exception e) when (e is CorruptionException or InvalidOperationException)
        {
            Fail(e);
            throw new StoreFailedException("internal error applying a transaction; the store stopped (mount again to recover)", e);
        }
        return t;
    }

    /// <summary>Makes a prepared transaction visible: its effects become the metadata (the delta) and its data goes
    /// into the overlay, atomically for readers.</summary>
    private void Publish(Pending p, TxnApply applied, long clientBytes)
    {
        lock (_stateLock)
        {
            _meta.Commit(applied, new RuntimeSink(this, p));
            foreach (var c in p.Cow)
            {
                _overlay[c.Phys] = c.Data;
            }
            _meta.ClientBytesWritten += clientBytes;
            _alloc.Reserved = IndexReserve();
        }
    }

    /// <summary>Blocks the index may need to commit the changes not yet committed, with those of
    /// <paramref name="more"/> (caller holds the gate or the state lock): the smaller of two upper bounds, the sum of
    /// each change's own (its path copied and split up to a new root), and for many changes at once
    /// <see cref="IndexDelta.Bound"/>.</summary>
    private long IndexReserve(TxnApply? more = null)
    {
        var frozen = _meta.Frozen;
        var perChange = _meta.Delta.Pages + (frozen?.Pages ?? 0) + (more?.Pages ?? 0);
        var commits = frozen is null ? 1 : 2;
        var bound = _meta.Delta.Bound + (frozen?.Bound ?? 0) + (more?.Bound ?? 0);
        var whole = commits * 2 * (_pages.Owned + _meta.IndexHeight + 3) + (bound + B - 1) / B;
        return Math.Min(perChange, whole);
    }

    /// <summary>Whether the index pages <paramref name="applied"/> may need fit in what is free (caller holds the gate).</summary>
    private bool IndexPagesFit(TxnApply applied)
    {
        lock (_stateLock)
        {
            return IndexReserve(applied) <= _alloc.Free;
        }
    }

    private sealed class RuntimeSink(ObjectStore store, Pending p) : IRedoSink
    {
        public void Freed(long phys) => p.Freed.Add(phys);

        public void Data(long phys, ReadOnlySpan<byte> block)
        {
            var copy = block.ToArray();
            store._overlay[phys] = copy;
            p.Deferred.Add((phys, copy));
        }
    }

    /// <summary>Writes 4 KiB block images to their device blocks, coalescing adjacent blocks into one device write,
    /// then drops their overlay entries if still the same. Adjacent pinned slices of one array go to the device as
    /// they are; the other blocks are copied, all into one pooled aligned buffer (a batch of scattered deferred
    /// writes costs one buffer, not one each). <paramref name="with"/>: one more write for the same batch (the
    /// journal record). <paramref name="early"/>: the draft's early writes of the blocks marked Started (those are
    /// not written again here); awaited before any overlay entry goes.</summary>
    private async Task WriteBlocksAsync(List<CowBlock> all, (long Offset, ReadOnlyMemory<byte> Data)? with = null, Task? early = null)
    {
        var blocks = early is null ? all : all.Where(b => !b.Started).ToList();
        blocks.Sort((a, b) => a.Phys.CompareTo(b.Phys));
        var runs = new List<(int First, int Count, ReadOnlyMemory<byte>? Direct)>();
        var copied = 0;
        var start = 0;
        for (var i = 1; i <= blocks.Count; i++)
        {
            if (i == blocks.Count || blocks[i].Phys != blocks[i - 1].Phys + 1 || i - start >= 1024)
            {
                var direct = Contiguous(blocks, start, i - start);
                runs.Add((start, i - start, direct));
                copied += direct is null ? i - start : 0;
                start = i;
            }
        }
        var buf = copied > 0 ? BufferPool.Rent(copied * B) : null;
        // Many scattered blocks go as one batch; a long copy goes piece by piece, each piece's write submitted as
        // soon as it is copied, so the device writes the first piece while the rest is copied.
        var pipelined = copied >= PipelineCopyBlocks;
        var writes = new List<(long, ReadOnlyMemory<byte>)>(runs.Count + 1);
        var started = pipelined ? new List<Task>() : null;
        var at = 0;
        long bytes = 0;
        try
        {
            InvalidateCached(blocks);
            foreach (var (first, count, direct) in runs)
            {
                if (direct is { } memory)
                {
                    Add(blocks[first].Phys * B, memory);
                    continue;
                }
                for (var piece = 0; piece < count; piece += PipelineCopyBlocks)
                {
                    var n = Math.Min(PipelineCopyBlocks, count - piece);
                    var span = buf!.GetSpan().Slice(at * B, n * B);
                    for (var k = 0; k < n; k++)
                    {
                        blocks[first + piece + k].Data.Span[..B].CopyTo(span[(k * B)..]);
                    }
                    Add(blocks[first + piece].Phys * B, buf.Memory.Slice(at * B, n * B));
                    at += n;
                }
            }
            if (with is { } extra)
            {
                Add(extra.Offset, extra.Data);
            }
            // One batch for the device (one io_submit on a FileDevice). Every write has completed (or failed) when
            // this returns or throws: the buffer is free again.
            if (started is null)
            {
                await _device.WriteManyAsync(writes);
            }
            else
            {
                await Task.WhenAll(started);
            }
            Interlocked.Add(ref _deviceBytes, bytes);
            InvalidateCached(blocks);
            if (early is not null)
            {
                await early;
            }
        }
        catch
        {
            if (started is not null)
            {
                // Those started must finish before their buffer can go.
                await Task.WhenAll(started).ContinueWith(_ => { }, TaskScheduler.Default);
            }
            buf?.Dispose();
            throw;
        }

        void Add(long offset, ReadOnlyMemory<byte> data)
        {
            bytes += data.Length;
            if (started is null)
            {
                writes.Add((offset, data));
            }
            else
            {
                started.Add(_device.WriteAsync(offset, data).AsTask());
            }
        }
        if (buf is not null)
        {
            BufferPool.Return(buf);
        }
        lock (_stateLock)
        {
            foreach (var b in all)
            {
                // Same entry: the same memory (a later transaction's data for the block is other memory).
                if (_overlay.TryGetValue(b.Phys, out var cur) && cur.Equals(b.Data))
                {
                    _overlay.Remove(b.Phys);
                }
            }
        }
    }

    /// <summary>The run's data as one piece of memory when its blocks are adjacent pinned slices of one array.</summary>
    private static ReadOnlyMemory<byte>? Contiguous(List<CowBlock> blocks, int first, int count)
    {
        if (!blocks[first].Pinned || !MemoryMarshal.TryGetArray(blocks[first].Data, out var head) || head.Array is null)
        {
            return null;
        }
        for (var i = 1; i < count; i++)
        {
            var b = blocks[first + i];
            if (!b.Pinned || !MemoryMarshal.TryGetArray(b.Data, out var seg) || seg.Array != head.Array || seg.Offset != head.Offset + i * B)
            {
                return null;
            }
        }
        return head.Array.AsMemory(head.Offset, count * B);
    }

    /// <summary>Writes <paramref name="length"/> bytes of a pooled buffer, then gives the buffer back.</summary>
    private async Task WritePieceAsync(long offset, AlignedBuffer buffer, int length)
    {
        try
        {
            await DeviceWriteAsync(offset, buffer.Memory[..length]);
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
        BufferPool.Return(buffer);
    }

    private async ValueTask DeviceWriteAsync(long offset, ReadOnlyMemory<byte> data)
    {
        _dataCache.Invalidate(offset / B, data.Length / B);
        await _device.WriteAsync(offset, data);
        _dataCache.Invalidate(offset / B, data.Length / B);
        Interlocked.Add(ref _deviceBytes, data.Length);
    }

    /// <summary>Drops the blocks from the data cache: before their device writes start and after they end (a
    /// reader that read a block in between does not cache it: <see cref="DataCache.Stamp"/>).</summary>
    private void InvalidateCached(List<CowBlock> blocks)
    {
        if (!_dataCache.Enabled)
        {
            return;
        }
        foreach (var b in blocks)
        {
            _dataCache.Invalidate(b.Phys, 1);
        }
    }
}

