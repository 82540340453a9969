using Appliance.Paxos.Core;
using Appliance.Paxos.Storage;

namespace Appliance.Paxos.Tests.Storage;

public sealed class MemoryStorageTests
{
    private static PaxosWriteBatch Batch(Ballot promised, params long[] indices)
    {
        var b = new PaxosWriteBatch { Promised = promised };
        foreach (var i in indices)
        {
            b.Entries.Add(new AcceptedEntry(i, promised, LogValue.Noop));
        }
        return b;
    }

    [Fact]
    public void An_honest_store_keeps_every_batch_across_a_crash()
    {
        var s = new MemoryPaxosStorage();
        s.Write(Batch(new Ballot(1, 1), 1, 2));
        s.Crash();
        var state = s.Load();
        Assert.Equal(new Ballot(1, 1), state.Promised);
        Assert.Equal([1L, 2L], state.Entries.Keys);
    }

    [Fact]
    public void A_lying_store_loses_unflushed_batches_in_a_crash_but_not_flushed_ones()
    {
        var s = new MemoryPaxosStorage { LiesAboutSync = true };
        s.Write(Batch(new Ballot(1, 1), 1));
        s.Flush();
        s.Write(Batch(new Ballot(2, 1), 2));
        Assert.Equal(new Ballot(2, 1), s.Load().Promised); // still in the cache before the crash
        s.Crash();
        var state = s.Load();
        Assert.Equal(new Ballot(1, 1), state.Promised);
        Assert.Equal([1L], state.Entries.Keys);
    }

    [Fact]
    public void A_batch_trims_before_it_puts_and_sets_the_commit_index_last()
    {
        var s = new MemoryPaxosStorage();
        s.Write(Batch(new Ballot(1, 1), 1, 2, 3, 4));
        var b = new PaxosWriteBatch { TrimThrough = 3, CommitIndex = 5 };
        b.Entries.Add(new AcceptedEntry(5, new Ballot(1, 1), LogValue.Noop));
        s.Write(b);
        var state = s.Load();
        Assert.Equal([4L, 5L], state.Entries.Keys);
        Assert.Equal(5, state.CommitIndex);
    }
}
