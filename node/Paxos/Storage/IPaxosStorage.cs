using Appliance.Paxos.Core;

namespace Appliance.Paxos.Storage;

/// <summary>
/// Durable acceptor state. <see cref="Write"/> applies a batch atomically (all of it or none of it survives a crash)
/// and returns only when the batch is durable: the node sends no reply that depends on a batch before Write returns.
/// </summary>
public interface IPaxosStorage
{
    /// <summary>Reads what was durably written (an empty state for a new member).</summary>
    PaxosDurableState Load();

    /// <summary>Applies <paramref name="batch"/> atomically and durably.</summary>
    void Write(PaxosWriteBatch batch);
}

/// <summary>Everything an acceptor must remember across a crash.</summary>
public sealed class PaxosDurableState
{
    /// <summary>The highest ballot promised.</summary>
    public Ballot Promised { get; set; } = Ballot.Zero;

    /// <summary>Every entry at or below this index is chosen (and present in <see cref="Entries"/> or covered by
    /// <see cref="Snapshot"/>).</summary>
    public long CommitIndex { get; set; }

    /// <summary>The latest snapshot of the applied state, if one was taken or received.</summary>
    public SnapshotData? Snapshot { get; set; }

    /// <summary>Accepted entries by index (committed or not). Entries at or below a trim point are gone.</summary>
    public SortedDictionary<long, AcceptedEntry> Entries { get; } = [];

    public PaxosDurableState Clone()
    {
        var c = new PaxosDurableState { Promised = Promised, CommitIndex = CommitIndex, Snapshot = Snapshot };
        foreach (var (k, v) in Entries)
        {
            c.Entries[k] = v;
        }
        return c;
    }

    /// <summary>Applies a batch in the order its parts are documented on <see cref="PaxosWriteBatch"/>.</summary>
    public void Apply(PaxosWriteBatch b)
    {
        if (b.Promised is { } p)
        {
            Promised = p;
        }
        if (b.Snapshot is { } s)
        {
            Snapshot = s;
        }
        if (b.TrimThrough is { } t)
        {
            foreach (var k in Entries.Keys.TakeWhile(k => k <= t).ToArray())
            {
                Entries.Remove(k);
            }
        }
        foreach (var e in b.Entries)
        {
            Entries[e.Index] = e;
        }
        if (b.CommitIndex is { } ci)
        {
            CommitIndex = ci;
        }
    }
}

/// <summary>One atomic change to the durable state: a new promise, a snapshot, a trim (drop entries at or below an
/// index), entries to put (replacing any at the same index), a new commit index — applied in that order.</summary>
public sealed class PaxosWriteBatch
{
    public Ballot? Promised { get; set; }

    public SnapshotData? Snapshot { get; set; }

    public long? TrimThrough { get; set; }

    public List<AcceptedEntry> Entries { get; } = [];

    public long? CommitIndex { get; set; }

    public bool IsEmpty => Promised is null && Snapshot is null && TrimThrough is null && Entries.Count == 0 && CommitIndex is null;
}
