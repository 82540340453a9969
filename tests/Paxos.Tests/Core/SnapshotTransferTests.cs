using Appliance.Paxos.Core;
using Appliance.Paxos.Tests.Simulation;

namespace Appliance.Paxos.Tests.Core;

/// <summary>Snapshots travel in bounded pieces, each asked for by the receiver; a lost piece is asked for again from
/// where the transfer stopped.</summary>
public sealed class SnapshotTransferTests
{
    private static readonly PaxosOptions Small = Harness.Options with { SnapshotInterval = 10, KeepEntries = 2, MaxSnapshotChunkBytes = 16 };

    /// <summary>Member 1 alone commits 30 entries (its log trimmed), then member 2 joins: it needs a snapshot.</summary>
    private static Harness Lagging()
    {
        var h = new Harness(1, joiners: 1, options: Small);
        h.Elect(1);
        for (var i = 1; i <= 30; i++)
        {
            h[1].Propose(i, 1, KvMachine.Put(i % 5, i), h.Now);
        }
        h.Collect(1);
        h.Completions.Clear();
        h[1].ProposeMembership(new MemberSet([1, 2]), h.Now);
        h.Collect(1);
        h.InFlight.Clear();
        return h;
    }

    [Fact]
    public void A_snapshot_arrives_in_pieces_no_larger_than_the_bound()
    {
        var h = Lagging();
        h[2].Handle(1, new Heartbeat(h[1].CurrentBallot, 1, h[1].CommitIndex), h.Now);
        h.Collect(2);
        var pieces = new List<SnapshotChunk>();
        h.Deliver(filter: (_, _, m) =>
        {
            if (m is SnapshotChunk c)
            {
                pieces.Add(c);
            }
            return m is CatchUpRequest or SnapshotChunk or SnapshotChunkRequest or CatchUp;
        }, maxRounds: 1000);
        Assert.True(pieces.Count > 3, $"{pieces.Count} pieces");
        Assert.All(pieces, p => Assert.True(p.Data.Length <= Small.MaxSnapshotChunkBytes));
        Assert.Equal(pieces[0].Total, pieces.Sum(p => p.Data.Length));
        Assert.Equal(h[1].CommitIndex, h[2].CommitIndex);
        Assert.Equal(h.Machines[1].Describe(), h.Machines[2].Describe());
        Assert.Equal(new MemberSet([1, 2]), h[2].Members);
    }

    [Fact]
    public void A_lost_piece_is_asked_for_again_from_where_the_transfer_stopped()
    {
        var h = Lagging();
        h[1].Handle(2, new CatchUpRequest(1), h.Now);
        var first = (SnapshotChunk)h[1].TakeOutput().Messages.Single().Message;
        h[2].Handle(1, first, h.Now);
        var ask = Assert.IsType<SnapshotChunkRequest>(h[2].TakeOutput().Messages.Single().Message);
        Assert.Equal(first.Data.Length, ask.Offset);
        h[1].Handle(2, ask, h.Now);
        h[1].TakeOutput(); // the second piece is lost

        // Member 2's timer asks again for the same offset, not from the start.
        h.Advance(Small.RetransmitInterval);
        h[2].Tick(h.Now);
        var again = h[2].TakeOutput().Messages.Select(m => m.Message).OfType<SnapshotChunkRequest>().Single();
        Assert.Equal(ask, again);
        h.InFlight.Add((2, 1, again));
        h.Deliver(filter: (_, _, m) => m is SnapshotChunk or SnapshotChunkRequest or CatchUpRequest or CatchUp, maxRounds: 1000);
        Assert.Equal(h[1].CommitIndex, h[2].CommitIndex);
        Assert.Equal(h.Machines[1].Describe(), h.Machines[2].Describe());
    }

    [Fact]
    public void A_sender_that_no_longer_serves_the_copy_starts_over_and_the_receiver_follows()
    {
        var h = Lagging();
        h[1].Handle(2, new CatchUpRequest(1), h.Now);
        var first = (SnapshotChunk)h[1].TakeOutput().Messages.Single().Message;
        h[2].Handle(1, first, h.Now);
        var ask = (SnapshotChunkRequest)h[2].TakeOutput().Messages.Single().Message;

        // A request for a copy the sender does not hold (it moved on): the first piece of its current copy.
        h[1].Handle(2, ask with { TransferId = ask.TransferId + 1 }, h.Now);
        var restart = Assert.IsType<SnapshotChunk>(h[1].TakeOutput().Messages.Single().Message);
        Assert.Equal((0L, first.TransferId), (restart.Offset, restart.TransferId));

        // The receiver takes a new copy from the same sender at once: it asks for the new copy's second piece.
        var other = restart with { TransferId = 77 };
        h[2].Handle(1, other, h.Now);
        var next = Assert.IsType<SnapshotChunkRequest>(h[2].TakeOutput().Messages.Single().Message);
        Assert.Equal((77L, (long)other.Data.Length), (next.TransferId, next.Offset));

        // A first piece of another copy from another sender does not interrupt a transfer that is moving.
        h[2].Handle(3, restart with { TransferId = 5 }, h.Now);
        Assert.Empty(h[2].TakeOutput().Messages);
    }

    [Fact]
    public void A_transfer_resumes_where_it_stopped_across_a_restart_of_the_sender()
    {
        var h = Lagging();
        h[1].Handle(2, new CatchUpRequest(1), h.Now);
        var first = (SnapshotChunk)h[1].TakeOutput().Messages.Single().Message;
        h[2].Handle(1, first, h.Now);
        var ask = (SnapshotChunkRequest)h[2].TakeOutput().Messages.Single().Message;

        // Member 1 restarts with nothing new: its fresh copy holds the same bytes, so it serves the asked offset.
        h.Crash(1);
        h.Start(1, new MemberSet([1, 2]));
        h[1].Handle(2, ask, h.Now);
        var second = Assert.IsType<SnapshotChunk>(h[1].TakeOutput().Messages.Single().Message);
        Assert.Equal((ask.Offset, first.TransferId), (second.Offset, second.TransferId));
        h.InFlight.Add((1, 2, second));
        h.Deliver(filter: (_, _, m) => m is SnapshotChunk or SnapshotChunkRequest or CatchUpRequest or CatchUp, maxRounds: 1000);
        Assert.Equal(h[1].CommitIndex, h[2].CommitIndex);
        Assert.Equal(h.Machines[1].Describe(), h.Machines[2].Describe());
    }

    [Fact]
    public void A_snapshot_larger_than_the_bound_is_refused()
    {
        var h = new Harness(3, options: Harness.Options with { MaxSnapshotBytes = 100 });
        h[2].Handle(1, new SnapshotChunk(5, 1, new MemberSet([1, 2, 3]), 101, 0, new byte[10]), h.Now);
        Assert.Empty(h[2].TakeOutput().Messages);
        h[2].Handle(1, new SnapshotChunk(5, 1, new MemberSet([1, 2, 3]), 100, 95, new byte[10]), h.Now); // past its end
        Assert.Empty(h[2].TakeOutput().Messages);
        Assert.Equal(0, h[2].CommitIndex);
    }
}
