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
        /// <summary>Copy-on-write data, written to fresh blocks before the record (which points at them).</summary>
        public List<(long Phys, byte[] Data)> Cow { get; init; } = [];
        /// <summary>Deferred data: in the record; written in place once the record is durable.</summary>
        public List<(long Phys, byte[] Data)> Deferred { get; } = [];
        /// <summary>Blocks the transaction stopped referencing: reusable only once it is durable.</summary>
        public List<long> Freed { get; } = [];
        public Task DataWritten { get; set; } = Task.CompletedTask;
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>
    /// Applies <paramref name="txn"/> atomically after every transaction submitted before it. Returns once it is
    /// durable. A transaction that breaks a rule (a missing collection or object, no space) throws a typed
    /// <see cref="StoreException"/> and has no effect. Cancelling stops the wait only: a transaction that was
    /// accepted may still become durable.
    /// </summary>
    public async Task SubmitAsync(Transaction txn, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(txn);
        ThrowIfFailed();
        var clientBytes = txn.DataBytes();
        var budget = _budget.Clamp(clientBytes + B);
        Pending p;
        // The submit lock is the ordering point (SemaphoreSlim queues waiters first come, first served). Every wait
        // under it is for something the writer frees without ever taking this lock, so nothing waits in a circle.
        await _submitLock.WaitAsync(ct);
        try
        {
            ThrowIfFailed();
            await _budget.WaitAsync(budget, ct);
            long journal = 0;
            try
            {
                var draft = new Draft(this);
                try
                {
                    await draft.RunAsync(txn);
                    journal = draft.Redo.Length + 4L;
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
                    draft.Rollback();
                    throw;
                }
                p = new Pending(draft.Redo.Written.ToArray(), budget, journal) { Cow = draft.Cow };
                // The gate keeps a checkpoint's snapshot between two publications.
                await _publishGate.WaitAsync(CancellationToken.None);
                try
                {
                    Publish(p, clientBytes);
                    if (p.Cow.Count > 0)
                    {
                        p.DataWritten = WriteCowAsync(p.Cow);
                    }
                    if (!_queue.Writer.TryWrite(p))
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
            _submitLock.Release();
        }
        await p.Done.Task.WaitAsync(ct);
    }

    /// <summary>Makes a prepared transaction visible: applies its redo entries to the metadata and puts its data in
    /// the overlay, atomically for readers.</summary>
    private void Publish(Pending p, long clientBytes)
    {
        lock (_stateLock)
        {
            try
            {
                _meta.Apply(p.Redo, new RuntimeSink(this, p), "transaction");
            }
            catch (Exception e)
            {
                // The preparer emitted an entry the state rejects: a bug. Memory may be half-changed: stop.
                Fail(e);
                throw new StoreFailedException("internal error applying a transaction; the store stopped (mount again to recover)", e);
            }
            foreach (var (phys, data) in p.Cow)
            {
                _overlay[phys] = data;
            }
            _meta.ClientBytesWritten += clientBytes;
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

    /// <summary>Writes copy-on-write data to its fresh blocks, coalescing adjacent blocks into one device write.</summary>
    private async Task WriteCowAsync(List<(long Phys, byte[] Data)> blocks)
    {
        blocks.Sort((a, b) => a.Phys.CompareTo(b.Phys));
        var runs = new List<Task>();
        var start = 0;
        for (var i = 1; i <= blocks.Count; i++)
        {
            if (i == blocks.Count || blocks[i].Phys != blocks[i - 1].Phys + 1 || i - start >= 1024)
            {
                runs.Add(WriteRunAsync(blocks, start, i - start));
                start = i;
            }
        }
        await Task.WhenAll(runs);
    }

    /// <summary>Writes <paramref name="count"/> entries of <paramref name="blocks"/> (adjacent device blocks) and
    /// then drops their overlay entries, if still the same.</summary>
    private async Task WriteRunAsync(List<(long Phys, byte[] Data)> blocks, int first, int count)
    {
        var buf = BufferPool.Rent(count * B);
        try
        {
            var span = buf.GetSpan();
            for (var i = 0; i < count; i++)
            {
                blocks[first + i].Data.CopyTo(span[(i * B)..]);
            }
            await DeviceWriteAsync(blocks[first].Phys * B, buf.Memory[..(count * B)]);
        }
        catch
        {
            buf.Dispose();
            throw;
        }
        BufferPool.Return(buf);
        lock (_stateLock)
        {
            for (var i = 0; i < count; i++)
            {
                var (phys, data) = blocks[first + i];
                if (_overlay.TryGetValue(phys, out var cur) && ReferenceEquals(cur, data))
                {
                    _overlay.Remove(phys);
                }
            }
        }
    }

    private async ValueTask DeviceWriteAsync(long offset, ReadOnlyMemory<byte> data)
    {
        await _device.WriteAsync(offset, data);
        Interlocked.Add(ref _deviceBytes, data.Length);
    }
}
