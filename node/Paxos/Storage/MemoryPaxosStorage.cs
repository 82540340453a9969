namespace Appliance.Paxos.Storage;

/// <summary>
/// Acceptor state in memory, for tests and simulations. It models a disk with a volatile cache: an honest instance
/// makes every batch durable before <see cref="Write"/> returns; with <see cref="LiesAboutSync"/> set it only caches
/// batches (like a disk that acknowledges a flush it did not do), and <see cref="Crash"/> loses every cached batch.
/// The simulation uses the lying mode to prove that its checkers catch a node that replies before it is durable.
/// </summary>
public sealed class MemoryPaxosStorage : IPaxosStorage
{
    private readonly PaxosDurableState _durable = new();
    private readonly List<PaxosWriteBatch> _cached = [];

    /// <summary>When set, writes stay in the volatile cache until <see cref="Flush"/>; a crash loses them.</summary>
    public bool LiesAboutSync { get; set; }

    /// <summary>How many batches were written (a test can assert that a handler persisted before replying).</summary>
    public long WriteCount { get; private set; }

    public PaxosDurableState Load()
    {
        // What a restarted process reads: the durable image plus whatever the cache still holds (nothing after a crash).
        var s = _durable.Clone();
        foreach (var b in _cached)
        {
            s.Apply(b);
        }
        return s;
    }

    public void Write(PaxosWriteBatch batch)
    {
        WriteCount++;
        if (LiesAboutSync)
        {
            _cached.Add(batch);
        }
        else
        {
            _durable.Apply(batch);
        }
    }

    /// <summary>Writes the cached batches to the durable image (the lying disk eventually flushes).</summary>
    public void Flush()
    {
        foreach (var b in _cached)
        {
            _durable.Apply(b);
        }
        _cached.Clear();
    }

    /// <summary>Power loss: the volatile cache is gone.</summary>
    public void Crash() => _cached.Clear();

    /// <summary>The promise that survives a crash now.</summary>
    public Core.Ballot DurablePromised => _durable.Promised;

    /// <summary>The commit index that survives a crash now.</summary>
    public long DurableCommitIndex => _durable.CommitIndex;

    /// <summary>Whether what survives a crash now covers an acceptance of <paramref name="index"/> in
    /// <paramref name="ballot"/>: an entry there accepted in that ballot or a later one, or a commit index or snapshot
    /// at or above it (the index is chosen and kept, or covered by the snapshot).</summary>
    public bool DurablyAccepted(long index, Core.Ballot ballot) =>
        (_durable.Entries.TryGetValue(index, out var e) && e.Ballot >= ballot)
        || index <= _durable.CommitIndex
        || index <= (_durable.Snapshot?.Index ?? 0);

    /// <summary>Whether what survives a crash now holds some value for <paramref name="index"/>: an entry there (in any
    /// ballot), or a commit index or snapshot at or above it.</summary>
    public bool DurablyHolds(long index) =>
        _durable.Entries.ContainsKey(index) || index <= _durable.CommitIndex || index <= (_durable.Snapshot?.Index ?? 0);

    /// <summary>A copy of the durable image (what survives a crash now).</summary>
    public PaxosDurableState DurableImage => _durable.Clone();
}
