using Appliance.Paxos.Core;
using Appliance.Paxos.Storage;
using Appliance.Paxos.Tests.Simulation;

namespace Appliance.Paxos.Tests.Core;

/// <summary>BeginBatch/EndBatch: one write for many calls, nothing released before it, the leader packing a scope's
/// proposals into few entries and messages.</summary>
public sealed class BatchScopeTests
{
    private static readonly MemberSet Three = new([1, 2, 3]);

    [Fact]
    public void A_scope_writes_once_and_releases_nothing_before_its_end()
    {
        var h = new Harness(3);
        var storage = h.Storage[2];
        var before = storage.WriteCount;
        var node = h[2];
        node.BeginBatch();
        h.Advance(Harness.Options.LeaseDuration); // past the restart guard
        node.Handle(1, new Prepare(new Ballot(5, 1), 1), h.Now);
        node.Handle(3, new Prepare(new Ballot(6, 3), 1), h.Now);
        node.Handle(3, new Accept(new Ballot(6, 3), 0, [new AcceptedEntry(1, new Ballot(6, 3), LogValue.Noop)]), h.Now);
        Assert.True(node.TakeOutput().IsEmpty);
        Assert.Equal(before, storage.WriteCount);
        Assert.Equal(Ballot.Zero, storage.DurablePromised);

        node.EndBatch();
        Assert.Equal(before + 1, storage.WriteCount);
        Assert.Equal(new Ballot(6, 3), storage.DurablePromised);
        Assert.True(storage.DurablyAccepted(1, new Ballot(6, 3)));
        var sent = node.TakeOutput().Messages.Select(m => (m.To, m.Message.GetType().Name)).ToList();
        Assert.Equal([(1, nameof(Promise)), (3, nameof(Promise)), (3, nameof(Accepted))], sent);
    }

    [Fact]
    public void Scopes_cannot_nest_and_must_be_opened_before_they_are_closed()
    {
        var node = new Harness(3)[1];
        Assert.Throws<InvalidOperationException>(node.EndBatch);
        node.BeginBatch();
        Assert.True(node.InBatch);
        Assert.Throws<InvalidOperationException>(node.BeginBatch);
        node.EndBatch();
        Assert.False(node.InBatch);
    }

    [Fact]
    public void The_leader_packs_a_scope_of_proposals_into_few_entries_and_one_accept_per_peer()
    {
        var h = new Harness(3, options: Harness.Options with { MaxBatchCommands = 64, MaxInflightEntries = 8 });
        h.Elect(1);
        var leader = h[1];
        var before = leader.CommitIndex;
        leader.BeginBatch();
        for (var c = 1; c <= 200; c++)
        {
            Assert.Equal(ProposeStatus.Pending, leader.Propose(c, 1, KvMachine.Put(c % 5, c), h.Now));
        }
        // Followers forward more, in the same scope.
        for (var c = 201; c <= 230; c++)
        {
            leader.Handle(2, new Forward(new ClientCommand(c, 1, KvMachine.Put(1, c))), h.Now);
        }
        Assert.True(leader.TakeOutput().IsEmpty);
        leader.EndBatch();
        var accepts = leader.TakeOutput().Messages.Where(m => m.Message is Accept { Entries.Count: > 0 }).ToList();
        Assert.Equal(2, accepts.Count); // one per peer
        var entries = ((Accept)accepts[0].Message).Entries;
        Assert.Equal(4, entries.Count); // 230 commands, 64 per entry
        Assert.Equal(230, entries.Sum(e => e.Value.Commands.Count));

        foreach (var m in accepts)
        {
            h.InFlight.Add((1, m.To, m.Message));
        }
        h.Deliver();
        Assert.Equal(before + 4, leader.CommitIndex);
        Assert.Equal(200, h.Completions.Count(c => c.Node == 1 && c.Outcome.Status == ProposalStatus.Committed)); // forwarded ones complete where proposed
    }

    [Fact]
    public void A_scope_of_acknowledgements_sends_one_commit_notice_per_peer()
    {
        var h = new Harness(3, options: Harness.Options with { MaxBatchCommands = 1, MaxInflightEntries = 8 });
        h.Elect(1);
        for (var c = 1; c <= 6; c++)
        {
            h[1].Propose(c, 1, KvMachine.Put(1, c), h.Now);
        }
        h.Collect(1);
        h.Deliver(filter: (_, to, _) => to == 2); // member 2 accepts each of the six entries
        var acks = h.InFlight.Where(m => m.Message is Accepted).ToList();
        Assert.Equal(6, acks.Count);
        h.InFlight.Clear();
        var leader = h[1];
        var before = leader.CommitIndex;
        leader.BeginBatch();
        foreach (var (from, _, message) in acks)
        {
            leader.Handle(from, message, h.Now);
        }
        leader.EndBatch();
        Assert.Equal(before + 6, leader.CommitIndex);
        var notices = leader.TakeOutput().Messages.Where(m => m.Message is Accept { Entries.Count: 0 }).ToList();
        Assert.Equal([2, 3], notices.Select(m => m.To).Order());
        Assert.All(notices, m => Assert.Equal(leader.CommitIndex, ((Accept)m.Message).CommitIndex));
    }

    [Fact]
    public void A_single_member_commits_a_scope_of_proposals_only_with_the_write_that_makes_them_durable()
    {
        var h = new Harness(1);
        h.Elect(1);
        var node = h[1];
        var storage = h.Storage[1];
        var commit = node.CommitIndex;
        node.BeginBatch();
        for (var c = 1; c <= 10; c++)
        {
            node.Propose(c, 1, KvMachine.Put(1, c), h.Now);
        }
        Assert.Equal(commit, node.CommitIndex);
        Assert.True(node.TakeOutput().IsEmpty);
        var writes = storage.WriteCount;

        // A crash now loses the scope: nothing of it was released, nothing is on disk.
        var image = storage.DurableImage;
        Assert.Equal(commit, image.CommitIndex);

        node.EndBatch();
        Assert.Equal(writes + 1, storage.WriteCount);
        Assert.Equal(node.CommitIndex, storage.DurableCommitIndex);
        Assert.Equal(10, node.TakeOutput().Completions.Count(c => c.Status == ProposalStatus.Committed));
    }

    [Fact]
    public void A_scope_that_only_commits_releases_at_once_and_writes_the_commit_index_later()
    {
        var h = new Harness(3);
        h.Elect(1);
        h[1].Propose(1, 1, KvMachine.Put(4, 44), h.Now);
        h.Collect(1);
        h.Deliver(filter: (_, to, m) => to == 2 && m is Accept);
        var ack = h.InFlight.Single(m => m.Message is Accepted);
        h.InFlight.Clear();
        var leader = h[1];
        var storage = h.Storage[1];
        var writes = storage.WriteCount;
        leader.BeginBatch();
        leader.Handle(ack.From, ack.Message, h.Now);
        // A read sees the commit without a write: the entry is on this disk (and a quorum's), only the index is not.
        var read = leader.Read(KvMachine.Get(4), h.Now);
        Assert.Equal((ReadStatus.Ok, 44L), (read.Status, KvMachine.DecodeValue(read.Value!)));
        leader.EndBatch();
        Assert.Equal(writes, storage.WriteCount);
        Assert.True(storage.DurableCommitIndex < leader.CommitIndex);
        Assert.True(storage.DurablyHolds(leader.CommitIndex));
        var output = leader.TakeOutput();
        Assert.Equal(ProposalStatus.Committed, Assert.Single(output.Completions).Status);

        // A later scope within the delay still defers; one past it writes.
        h.Advance(Harness.Options.MaxCommitWriteDelay / 2);
        leader.BeginBatch();
        leader.Tick(h.Now);
        leader.EndBatch();
        Assert.Equal(writes, storage.WriteCount);
        h.Advance(Harness.Options.MaxCommitWriteDelay);
        leader.BeginBatch();
        leader.Tick(h.Now);
        leader.EndBatch();
        Assert.Equal(writes + 1, storage.WriteCount);
        Assert.Equal(leader.CommitIndex, storage.DurableCommitIndex);
    }

    [Fact]
    public void Without_deferral_a_scope_that_only_commits_writes_before_it_releases()
    {
        var h = new Harness(3, options: Harness.Options with { DeferCommitWrites = false });
        h.Elect(1);
        h[1].Propose(1, 1, KvMachine.Put(4, 44), h.Now);
        h.Collect(1);
        h.Deliver(filter: (_, to, m) => to == 2 && m is Accept);
        var ack = h.InFlight.Single(m => m.Message is Accepted);
        var storage = h.Storage[1];
        var writes = storage.WriteCount;
        h[1].BeginBatch();
        h[1].Handle(ack.From, ack.Message, h.Now);
        h[1].EndBatch();
        Assert.Equal(writes + 1, storage.WriteCount);
        Assert.Equal(h[1].CommitIndex, storage.DurableCommitIndex);
    }

    [Fact]
    public void A_read_inside_a_scope_first_persists_entries_it_applied_in_that_scope()
    {
        // A lone member restarts with an accepted, uncommitted entry on disk. In one scope it elects itself,
        // re-proposes the entry in its new ballot and commits it at once (its own vote is a quorum): a read in that
        // scope sees it, so the new acceptance and promise must be written before the answer.
        var storage = new MemoryPaxosStorage();
        var put = LogValue.OfCommands([new ClientCommand(1, 1, KvMachine.Put(3, 33))]);
        var seed = new PaxosWriteBatch { Promised = new Ballot(1, 1) };
        seed.Entries.Add(new AcceptedEntry(1, new Ballot(1, 1), put));
        storage.Write(seed);
        var start = TimeSpan.FromSeconds(50);
        var node = new PaxosNode(1, new MemberSet([1]), storage, new KvMachine(), Harness.Options, new Random(1), start);
        var now = start + Harness.Options.ElectionTimeout * 3;
        node.BeginBatch();
        node.Tick(now);
        Assert.Equal(PaxosRole.Leader, node.Role);
        Assert.Equal(1, node.CommitIndex);
        var writes = storage.WriteCount;
        var read = node.Read(KvMachine.Get(3), now);
        Assert.Equal(writes + 1, storage.WriteCount);
        Assert.True(storage.DurablyAccepted(1, node.Promised));
        Assert.Equal(node.Promised, storage.DurablePromised);
        node.EndBatch();
        Assert.Equal((ReadStatus.Ok, 33L), (read.Status, KvMachine.DecodeValue(read.Value!)));
    }

    [Fact]
    public void A_snapshot_after_entries_in_one_scope_leaves_a_consistent_disk()
    {
        // Member 3 accepts entries 1..3 in ballot 2, then (same scope) learns by snapshot that 5 is committed, then
        // accepts 6 and 7; 6 is accepted twice, in two ballots.
        var h = new Harness(3);
        h.Advance(Harness.Options.LeaseDuration);
        var node = h[3];
        var storage = h.Storage[3];
        var b2 = new Ballot(2, 1);
        var b3 = new Ballot(3, 2);
        AcceptedEntry E(long i, Ballot b, int v) => new(i, b, LogValue.OfCommands([new ClientCommand(9, i * 10 + v, KvMachine.Put(1, v))]));

        // A snapshot at index 4 (key 1 = 4) from a one-member cluster.
        var snapshotData = new Harness(1);
        snapshotData.Elect(1);
        for (var i = 1; i <= 4; i++)
        {
            snapshotData[1].Propose(9, i, KvMachine.Put(1, i), snapshotData.Now);
        }
        var donor = snapshotData[1];
        donor.Handle(2, new CatchUpRequest(1), snapshotData.Now);
        var pieces = new List<SnapshotChunk> { (SnapshotChunk)donor.TakeOutput().Messages.Single().Message };
        while (pieces[^1].Offset + pieces[^1].Data.Length < pieces[^1].Total)
        {
            donor.Handle(2, new SnapshotChunkRequest(pieces[^1].Index, pieces[^1].TransferId, pieces[^1].Offset + pieces[^1].Data.Length), snapshotData.Now);
            pieces.Add((SnapshotChunk)donor.TakeOutput().Messages.Single().Message);
        }
        Assert.True(pieces.Count > 1);
        var snapIndex = pieces[0].Index;

        node.BeginBatch();
        node.Handle(1, new Accept(b2, 0, [E(1, b2, 1), E(2, b2, 2), E(3, b2, 3)]), h.Now);
        foreach (var piece in pieces)
        {
            node.Handle(1, piece with { Members = Three }, h.Now);
        }
        node.Handle(1, new Accept(b2, snapIndex, [E(snapIndex + 1, b2, 6), E(snapIndex + 2, b2, 7)]), h.Now);
        node.Handle(2, new Accept(b3, snapIndex, [E(snapIndex + 1, b3, 8)]), h.Now);
        node.EndBatch();

        var image = storage.DurableImage;
        Assert.Equal(snapIndex, image.Snapshot!.Index);
        Assert.Equal(snapIndex, image.CommitIndex);
        Assert.DoesNotContain(image.Entries.Keys, k => k <= snapIndex);
        Assert.Equal(b3, image.Entries[snapIndex + 1].Ballot);
        Assert.Equal(b2, image.Entries[snapIndex + 2].Ballot);

        // And a restart from that disk is the node the scope left.
        h.Crash(3);
        var restarted = h.Start(3, Three);
        Assert.Equal(node.CommitIndex, restarted.CommitIndex);
        Assert.Equal(4, h.Machines[3].Map[1]);
    }

    private sealed class FailingStorage : IPaxosStorage
    {
        public bool Fail { get; set; }

        public PaxosDurableState Load() => new();

        public void Write(PaxosWriteBatch batch)
        {
            if (Fail)
            {
                throw new IOException("disk gone");
            }
        }
    }

    [Fact]
    public void A_failed_write_at_the_end_of_a_scope_releases_nothing_and_stops_the_member()
    {
        var storage = new FailingStorage();
        var node = new PaxosNode(1, new MemberSet([1]), storage, new KvMachine(), Harness.Options, new Random(1), TimeSpan.FromSeconds(10));
        var now = TimeSpan.FromSeconds(20);
        node.Tick(now); // a single member elects itself
        Assert.Equal(PaxosRole.Leader, node.Role);
        node.TakeOutput();
        node.BeginBatch();
        node.Propose(1, 1, KvMachine.Put(1, 1), now);
        storage.Fail = true;
        Assert.Throws<IOException>(node.EndBatch);
        Assert.True(node.TakeOutput().IsEmpty);
        Assert.Throws<InvalidOperationException>(() => node.Tick(now));
        Assert.Throws<InvalidOperationException>(node.BeginBatch);
    }
}
