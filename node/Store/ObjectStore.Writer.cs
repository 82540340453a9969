using System.Buffers.Binary;
using Appliance.Platform.Devices;
using Appliance.Store.Format;
using Appliance.Store.Journal;

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
            while (await reader.WaitToReadAsync())
            {
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
                    bytes += p.Redo.Length + 4;
                }
                if (batch.Count > 0)
                {
                    await CommitAsync(batch);
                }
                if (checkpoint.Count > 0 || _journalHead > _geo.JournalSize / 4)
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

    private void Finish(Pending p, Exception? error = null)
    {
        var first = error is null ? p.Done.TrySetResult() : p.Done.TrySetException(error);
        if (first)
        {
            _budget.Release(p.Budget);
            _journalBudget.Release(p.JournalBudget);
        }
    }

    private static long RecordSize(IEnumerable<Pending> batch) =>
        JournalRecord.SizeOnDisk(batch.Sum(p => 4L + p.Redo!.Length));

    /// <summary>
    /// Room is guaranteed, not hoped for: transactions published but not yet journaled hold at most an eighth of
    /// the journal (the journal budget, taken before publishing, returned when durable), so a record holds at most
    /// that; a checkpoint follows any record that leaves the head past a quarter; and a checkpoint journals only
    /// what is queued behind its publish gate. So the head stays below 1/2 plus the padding of a few records.
    /// </summary>
    private async Task CommitAsync(List<Pending> batch)
    {
        if (_journalHead + RecordSize(batch) > _geo.JournalSize)
        {
            throw new InvalidOperationException($"journal overflow: head {_journalHead}, record {RecordSize(batch)}, size {_geo.JournalSize}");
        }
        await WriteRecordAsync(batch);
    }

    /// <summary>One record for the batch: its copy-on-write data made durable first, then the record written and
    /// flushed; then the transactions complete, their deferred data goes in place and their freed blocks become
    /// reusable.</summary>
    private async Task WriteRecordAsync(List<Pending> batch)
    {
        var payload = new ByteWriter(64 << 10);
        var cow = false;
        foreach (var p in batch)
        {
            payload.U32((uint)p.Redo!.Length);
            payload.Raw(p.Redo);
            cow |= p.Cow.Count > 0;
        }
        var size = JournalRecord.SizeOnDisk(payload.Length);
        foreach (var p in batch)
        {
            await p.DataWritten;
        }
        if (cow)
        {
            // Copy-on-write data must be durable before the record that points at it can be.
            await _device.FlushAsync();
        }
        var buf = BufferPool.Rent((int)size);
        try
        {
            var span = buf.GetSpan()[..(int)size];
            payload.Written.CopyTo(span[JournalRecord.HeaderSize..]);
            // Zero the padding: stale bytes from a reused buffer must not look like anything.
            span[(JournalRecord.HeaderSize + payload.Length)..].Clear();
            JournalRecord.WriteHeader(span, _nextSeq, payload.Written, batch.Count, _seed);
            await DeviceWriteAsync(_geo.JournalOffset + _journalHead, buf.Memory[..(int)size]);
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
        await _device.FlushAsync();
        _journalHead += size;
        _nextSeq++;
        foreach (var p in batch)
        {
            Finish(p);
        }
        if (batch.Any(p => p.Freed.Count > 0))
        {
            // Freed blocks become reusable only after the deferred writes of their batch are done; do it now, so
            // that space freed by a completed transaction is free when the caller looks.
            await ApplyDeferredAsync(batch);
            ReleaseFreed(batch);
        }
        else
        {
            _inPlace = ApplyDeferredAsync(batch);
        }
    }

    /// <summary>Writes the batch's deferred data in place (the last write of each block wins). Not flushed: the
    /// record holds the data until the next checkpoint, which flushes first.</summary>
    private async Task ApplyDeferredAsync(List<Pending> batch)
    {
        var last = new Dictionary<long, byte[]>();
        foreach (var p in batch)
        {
            foreach (var (phys, data) in p.Deferred)
            {
                last[phys] = data;
            }
        }
        if (last.Count > 0)
        {
            await WriteCowAsync([.. last.Select(kv => (kv.Key, kv.Value))]);
        }
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
        ByteWriter snapshot;
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
                bytes += p.Redo.Length + 4;
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

    /// <summary>The checkpoint payload of the state now (the caller keeps publications out).</summary>
    private ByteWriter Snapshot()
    {
        var payload = new ByteWriter((int)Math.Min(_meta.EncodedBytes + 64, int.MaxValue));
        lock (_stateLock)
        {
            _meta.DeviceBytesWritten += Interlocked.Exchange(ref _deviceBytes, 0);
            payload.I64(0);
            _meta.EncodeCheckpoint(payload);
            BinaryPrimitives.WriteInt64LittleEndian(payload.Span, payload.Length - 8);
        }
        // No deferred data travels with a checkpoint any more: every covered transaction is journaled first.
        payload.U32(0);
        return payload;
    }

    private async Task WriteCheckpointAsync(ByteWriter payload, CancellationToken ct)
    {
        // Makes the in-place writes of journaled records durable before the journal restarts over them.
        await _device.FlushAsync(ct);
        if (payload.Length > _geo.CheckpointCapacity)
        {
            throw new InvalidOperationException($"checkpoint of {payload.Length} bytes exceeds the slot capacity {_geo.CheckpointCapacity}");
        }
        var slot = 1 - _slot;
        var total = (int)((B + payload.Length + B - 1) / B * B);
        using (var buf = new AlignedBuffer(total, B))
        {
            var span = buf.GetSpan();
            payload.Written.CopyTo(span[B..]);
            var h = new CheckpointHeader.Header(_generation + 1, _nextSeq, payload.Length, Crc32C.Compute(payload.Written, _seed));
            CheckpointHeader.Write(span, h, _seed);
            await DeviceWriteAsync(slot == 0 ? _geo.CheckpointOffset0 : _geo.CheckpointOffset1, buf.Memory);
        }
        await _device.FlushAsync(ct);
        _generation++;
        _slot = slot;
        _journalHead = 0;
    }
}
