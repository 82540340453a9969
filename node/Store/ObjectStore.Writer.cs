using System.Buffers.Binary;
using System.Diagnostics;
using Appliance.Platform.Checksums;
using Appliance.Platform.Devices;
using Appliance.Store.Format;
using Appliance.Store.Index;
using Appliance.Store.Journal;
using Appliance.Store.Meta;

namespace Appliance.Store;

public sealed partial class ObjectStore
{
    /// <summary>
    /// The one writer: takes every pending transaction off the queue, turns them into one journal record, writes
    /// it with one device write and makes it durable with one flush (group commit), completes them, then writes
    /// their deferred data in place and releases the blocks they freed. Exactly one record is ever unflushed (the
    /// one being written), which is what lets mount tell a torn tail from damage in the middle.
    /// </summary>
    private async Task WriterLoopAsync()
    {
        var batch = new List<Pending>();
        var checkpoint = new List<Pending>();
        var reader = _queue.Reader;
        try
        {
            while (true)
            {
                // Something queued while the last commit ran: submitters are concurrent, gather them. Else the
                // one that wakes the writer is alone so far (QD1): no wait.
                var busy = reader.TryPeek(out _);
                if (!await reader.WaitToReadAsync())
                {
                    break;
                }
                if (busy)
                {
                    await GatherAsync();
                }
                batch.Clear();
                checkpoint.Clear();
                long bytes = 0;
                // Group commit: everything queued now, up to an eighth of the journal per record.
                while (bytes < _geo.JournalSize / 8 && reader.TryRead(out var p))
                {
                    if (p.Redo is null)
                    {
                        checkpoint.Add(p);
                        break;
                    }
                    batch.Add(p);
                    bytes += p.JournalBudget;
                }
                if (batch.Count > 0)
                {
                    var started = Stopwatch.GetTimestamp();
                    await CommitAsync(batch);
                    _lastCommitTicks = Stopwatch.GetTimestamp() - started;
                }
                // Also when the blocks kept for the index's next commit grow past a quarter of what is free: the
                // commit returns them (a transaction short of space would otherwise wait for one).
                // And when the index changes held in memory pass their budget (onodes changed since the last commit).
                if (checkpoint.Count > 0 || _journalHead > _geo.JournalSize / 2 || _alloc.Reserved > _alloc.Free / 4 || DeltaBytes() > _options.DeltaBytes)
                {
                    await CheckpointUnderLockAsync(checkpoint);
                }
                foreach (var c in checkpoint)
                {
                    Finish(c);
                }
            }
        }
        catch (Exception e)
        {
            Fail(e);
            var err = new StoreFailedException($"the store on {_device.Name} stopped after an error: {e.Message}", e);
            foreach (var p in batch.Concat(checkpoint))
            {
                Finish(p, err);
            }
            while (reader.TryRead(out var p))
            {
                Finish(p, err);
            }
        }
    }

    /// <summary>
    /// Lets the transactions on their way join the next record: first the submitters that the last commit just
    /// completed (their continuations were queued before this one), then, while any submitter is still preparing
    /// a transaction and none waits for budget (which only a commit returns), a little longer: at most a quarter of
    /// the last commit's duration and 2 ms. One record and one flush then carry what would have taken two, for a
    /// bounded delay; a lone submitter (QD1) is already queued and costs one yield.
    /// </summary>
    private async Task GatherAsync()
    {
        await Task.Yield();
        var limit = Math.Min(_lastCommitTicks / 4, Stopwatch.Frequency / 500);
        var start = Stopwatch.GetTimestamp();
        while (Volatile.Read(ref _preparing) > 0 && !_budget.HasWaiters && !_journalBudget.HasWaiters
            && Stopwatch.GetTimestamp() - start < limit)
        {
            await Task.Yield();
        }
    }

    private void Finish(Pending p, Exception? error = null)
    {
        if (Interlocked.Exchange(ref p.Finished, 1) == 1)
        {
            return;
        }
        // The budgets first: what waited on the transaction runs inline below and may submit the next one.
        _budget.Release(p.Budget);
        _journalBudget.Release(p.JournalBudget);
        if (error is null)
        {
            p.Done.TrySetResult();
        }
        else
        {
            p.Done.TrySetException(error);
        }
    }

    /// <summary>At least the bytes the batch's record occupies (each transaction's journal budget covers its
    /// redo, its length and its manifest entries).</summary>
    private static long RecordSize(IEnumerable<Pending> batch) =>
        JournalRecord.SizeOnDisk(4 + batch.Sum(p => p.JournalBudget));

    /// <summary>
    /// Room is guaranteed, not hoped for: transactions published but not yet journaled hold at most an eighth of
    /// the journal (the journal budget, taken before publishing, returned when durable), so a record holds at most
    /// that; a checkpoint follows any record that leaves the head past a half; and a checkpoint journals only
    /// what is queued behind its publish gate. So the head stays below 3/4 plus the padding of a few records.
    /// </summary>
    private async Task CommitAsync(List<Pending> batch)
    {
        if (_journalHead + RecordSize(batch) > _geo.JournalSize)
        {
            throw new InvalidOperationException($"journal overflow: head {_journalHead}, record {RecordSize(batch)}, size {_geo.JournalSize}");
        }
        await WriteRecordAsync(batch);
    }

    /// <summary>
    /// One record for the batch, written beside the batch's copy-on-write data (those writes started when each
    /// transaction was published), then one flush for both; then the transactions complete, their deferred data
    /// goes in place and their freed blocks become reusable. The record's manifest lists the fresh blocks whose
    /// data must be on the device for the record to count (replay checks it on the last record).
    /// </summary>
    private async Task WriteRecordAsync(List<Pending> batch)
    {
        var manifest = Manifest(batch);
        var manifestBytes = JournalRecord.ManifestSize(manifest);
        long payloadLength = manifestBytes;
        foreach (var p in batch)
        {
            payloadLength += 4 + p.Redo!.Length;
        }
        var size = (int)JournalRecord.SizeOnDisk(payloadLength);
        var buf = BufferPool.Rent(size);
        try
        {
            var span = buf.GetSpan()[..size];
            var payload = span.Slice(JournalRecord.HeaderSize, (int)payloadLength);
            var pos = JournalRecord.WriteManifest(payload, manifest);
            foreach (var p in batch)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(payload[pos..], (uint)p.Redo!.Length);
                p.Redo.CopyTo(payload[(pos + 4)..]);
                pos += 4 + p.Redo.Length;
            }
            // Zero the padding: stale bytes from a reused buffer must not look like anything.
            span[(JournalRecord.HeaderSize + (int)payloadLength)..].Clear();
            JournalRecord.WriteHeader(span, _nextSeq, payload, batch.Count, _seed);
            // Small copy-on-write data goes with the record, in one batch; large data is on its way already.
            List<CowBlock>? small = null;
            foreach (var p in batch)
            {
                if (p.CowWithRecord)
                {
                    (small ??= []).AddRange(p.Cow);
                }
            }
            var at = _geo.JournalOffset + _journalHead;
            var record = small is null ? DeviceWriteAsync(at, buf.Memory[..size]).AsTask() : WriteBlocksAsync(small, (at, buf.Memory[..size]));
            // The data may still be on its way: the flush below must come after every write it is to cover.
            Exception? dataError = null;
            foreach (var p in batch)
            {
                try
                {
                    await p.DataWritten;
                }
                catch (Exception e)
                {
                    dataError ??= e;
                }
            }
            await record;
            if (dataError is not null)
            {
                // The record may be on the device, its data is not: never flushed, it is a torn tail to replay.
                throw dataError;
            }
        }
        catch
        {
            buf.Dispose();
            throw;
        }
        BufferPool.Return(buf);
        // The previous batch's in-place writes ran while this record was written; they finish before this
        // batch's start (same blocks keep their order) and this flush makes them durable too.
        await _inPlace;
        await FlushAsync();
        _journalHead += size;
        _nextSeq++;
        Interlocked.Increment(ref _records);
        Interlocked.Add(ref _transactions, batch.Count);
        var freed = batch.Any(p => p.Freed.Count > 0);
        if (freed)
        {
            // Freed blocks become reusable only after the deferred writes of their batch are done; do it before the
            // transactions complete, so that space freed by a completed transaction is free when the caller looks.
            // (A batch of copy-on-write overwrites frees blocks but has no deferred writes: nothing to wait for.)
            await ApplyDeferredAsync(batch);
            ReleaseFreed(batch);
        }
        foreach (var p in batch)
        {
            Finish(p);
        }
        if (!freed)
        {
            _inPlace = ApplyDeferredAsync(batch);
        }
    }

    /// <summary>
    /// The copy-on-write blocks of the batch whose content after the batch is the data written beside the record,
    /// sorted: not those a later transaction of the batch overwrites by a deferred write (written in place only once
    /// the record is durable: replay would see the old content) or frees (reusable once the record is durable and
    /// then overwritten while this record may still be the last one).
    /// </summary>
    private static List<(long Phys, uint Crc)> Manifest(List<Pending> batch)
    {
        HashSet<long>? later = null;
        var result = new List<(long, uint)>();
        foreach (var p in batch)
        {
            if (p.Deferred.Count + p.Freed.Count > 0)
            {
                later ??= [];
                foreach (var (phys, _) in p.Deferred)
                {
                    later.Add(phys);
                }
                later.UnionWith(p.Freed);
            }
        }
        foreach (var p in batch)
        {
            foreach (var c in p.Cow)
            {
                if (later is null || !later.Contains(c.Phys))
                {
                    result.Add((c.Phys, c.Crc));
                }
            }
        }
        result.Sort((a, b) => a.Item1.CompareTo(b.Item1));
        return result;
    }

    /// <summary>Writes the batch's deferred data in place (the last write of each block wins). Not flushed: the
    /// record holds the data until the next checkpoint, which flushes first.</summary>
    private async Task ApplyDeferredAsync(List<Pending> batch)
    {
        var last = new Dictionary<long, ReadOnlyMemory<byte>>();
        foreach (var p in batch)
        {
            foreach (var (phys, data) in p.Deferred)
            {
                last[phys] = data;
            }
        }
        if (last.Count > 0)
        {
            await WriteBlocksAsync([.. last.Select(kv => new CowBlock(kv.Key, kv.Value, 0))]);
        }
    }

    private async ValueTask FlushAsync(CancellationToken ct = default)
    {
        await _device.FlushAsync(ct);
        Interlocked.Increment(ref _flushes);
    }

    private void ReleaseFreed(List<Pending> batch)
    {
        var freed = batch.SelectMany(p => p.Freed).ToList();
        if (freed.Count > 0)
        {
            _alloc.Release(freed);
        }
    }

    /// <summary>
    /// A checkpoint: every queued transaction is journaled; then, holding the publish gate (nothing new becomes
    /// visible) with the queue empty, memory is exactly the journaled state with all its data on the device, and
    /// is encoded. Publication resumes at once (later transactions queue; their copy-on-write data goes to blocks
    /// free in the snapshot). The snapshot goes to the older slot after a flush that makes the in-place writes
    /// durable, and only once it is durable does the journal restart at offset 0.
    /// </summary>
    private async Task CheckpointUnderLockAsync(List<Pending> requests)
    {
        // Straight to the gate: journaling "until the queue is empty" without it could chase submitters forever
        // (and run the journal over); behind the gate at most the journal budget can be queued.
        CheckpointImage snapshot;
        await _publishGate.WaitAsync();
        try
        {
            // Nothing can be published now: journal what came meanwhile, and memory is exactly the journaled state.
            await JournalQueuedAsync(requests);
            await _inPlace;
            snapshot = Snapshot();
        }
        finally
        {
            _publishGate.Release();
        }
        await WriteCheckpointAsync(snapshot, CancellationToken.None);
    }

    private long DeltaBytes()
    {
        lock (_stateLock)
        {
            return _meta.Delta.Bytes;
        }
    }

    /// <summary>Journals everything queued now, in records; checkpoint requests found on the way join
    /// <paramref name="requests"/>.</summary>
    private async Task JournalQueuedAsync(List<Pending> requests)
    {
        var batch = new List<Pending>();
        while (true)
        {
            batch.Clear();
            long bytes = 0;
            while (bytes < _geo.JournalSize / 8 && _queue.Reader.TryRead(out var p))
            {
                if (p.Redo is null)
                {
                    requests.Add(p);
                    continue;
                }
                batch.Add(p);
                bytes += p.JournalBudget;
            }
            if (batch.Count == 0)
            {
                return;
            }
            try
            {
                await CommitAsync(batch);
            }
            catch (Exception e)
            {
                var err = new StoreFailedException($"the store on {_device.Name} stopped after an error: {e.Message}", e);
                foreach (var p in batch)
                {
                    Finish(p, err);
                }
                throw;
            }
        }
    }

    /// <summary>What a checkpoint writes: the counters (the payload without the index root, known after the commit) and
    /// the layer of index changes to commit.</summary>
    private sealed record CheckpointImage(ByteWriter Payload, IndexDelta Frozen);

    /// <summary>The checkpoint payload of the state now, and the omap changes since the last checkpoint frozen for
    /// the index (the caller keeps publications out).</summary>
    private CheckpointImage Snapshot()
    {
        var payload = new ByteWriter(256 + RootDescriptor.EncodedSize + 12 * (int)Math.Min(_pages.Owned, int.MaxValue / 16));
        IndexDelta frozen;
        lock (_stateLock)
        {
            _meta.DeviceBytesWritten += Interlocked.Exchange(ref _deviceBytes, 0);
            payload.I64(0);
            _meta.EncodeCheckpoint(payload);
            BinaryPrimitives.WriteInt64LittleEndian(payload.Span, payload.Length - 8);
            frozen = _meta.Freeze();
            _alloc.Reserved = IndexReserve();
        }
        // No deferred data travels with a checkpoint any more: every covered transaction is journaled first.
        payload.U32(0);
        return new CheckpointImage(payload, frozen);
    }

    /// <summary>
    /// Commits the frozen omap layer into the index (only the pages on the paths of its keys are written, then a
    /// flush), then writes the checkpoint with the new root to the older slot and flushes; only then may the journal
    /// restart and the pages the commit replaced be released — once the other slot no longer reaches them either.
    /// A crash before the checkpoint is durable leaves the previous root whole (copy-on-write) with its journal.
    /// </summary>
    private async Task WriteCheckpointAsync(CheckpointImage image, CancellationToken ct)
    {
        // Makes the in-place writes of journaled records durable before the journal restarts over them.
        await FlushAsync(ct);
        await image.Frozen.ApplyToAsync(_index, ct);
        var root = await _index.CommitAsync(ct);
        var slot = 1 - _slot;
        // Once this checkpoint is durable the slots hold the other slot's root and this one: pages replaced by
        // commits up to the older of the two are released then. The checkpoint lists what the index owns after
        // that (its tree, and the pages still waiting), so mount marks them without reading the tree.
        var olderGeneration = Math.Min(_slotIndexGeneration[_slot], root.Generation);
        var released = new HashSet<long>(_releaseAfterCheckpoint);
        var waiting = new List<long>();
        foreach (var (generation, pages) in _index.WaitingByGeneration())
        {
            if (generation <= olderGeneration)
            {
                released.UnionWith(pages);
            }
            else
            {
                waiting.AddRange(pages);
            }
        }
        var runs = _pages.OwnedRuns(released);
        var payload = image.Payload;
        var encoded = new byte[RootDescriptor.EncodedSize];
        root.Encode(encoded, _seed);
        payload.Raw(encoded);
        payload.U32((uint)runs.Count);
        foreach (var (first, length) in runs)
        {
            payload.I64(first);
            payload.U32((uint)length);
        }
        payload.U32((uint)waiting.Count);
        foreach (var p in waiting)
        {
            payload.I64(p);
        }
        if (payload.Length > _geo.CheckpointCapacity)
        {
            throw new InvalidOperationException($"checkpoint of {payload.Length} bytes exceeds the slot capacity {_geo.CheckpointCapacity}");
        }
        var total = (int)((B + payload.Length + B - 1) / B * B);
        using (var buf = new AlignedBuffer(total, B))
        {
            var span = buf.GetSpan();
            payload.Written.CopyTo(span[B..]);
            var h = new CheckpointHeader.Header(_generation + 1, _nextSeq, payload.Length, Crc32C.Compute(payload.Written, _seed));
            CheckpointHeader.Write(span, h, _seed);
            await DeviceWriteAsync(slot == 0 ? _geo.CheckpointOffset0 : _geo.CheckpointOffset1, buf.Memory);
        }
        await FlushAsync(ct);
        Interlocked.Increment(ref _checkpoints);
        _generation++;
        _slot = slot;
        _journalHead = 0;
        _slotIndexGeneration[slot] = root.Generation;
        // Mount falls back to the other slot when this one is torn: its root's pages stay until it is replaced.
        _index.ReleaseFreedPages(olderGeneration);
        if (_releaseAfterCheckpoint.Count > 0)
        {
            _pages.Free(_releaseAfterCheckpoint.ToArray());
            _releaseAfterCheckpoint = [];
        }
        lock (_stateLock)
        {
            _meta.DropFrozen();
            _meta.IndexHeight = _index.Height;
            _alloc.Reserved = IndexReserve();
        }
    }
}
