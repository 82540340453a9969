using Appliance.Paxos.Core;
using Appliance.Paxos.Tests.Simulation;

namespace Appliance.Paxos.Tests.Core;

public sealed class PhaseOneTests
{
    private static readonly LogValue SomeValue = LogValue.OfCommands([new ClientCommand(7, 1, KvMachine.Put(1, 42))]);

    [Fact]
    public void A_promise_refuses_lower_ballots_and_is_durable_before_the_reply()
    {
        var h = new Harness(3);
        h.Advance(Harness.Options.LeaseDuration * 2);
        h[1].Handle(2, new Prepare(new Ballot(5, 2), 1), h.Now);
        var output = h[1].TakeOutput();
        var promise = Assert.IsType<Promise>(Assert.Single(output.Messages).Message);
        Assert.Equal(new Ballot(5, 2), promise.Ballot);
        Assert.Equal(new Ballot(5, 2), h.Storage[1].DurablePromised);

        h[1].Handle(3, new Prepare(new Ballot(4, 3), 1), h.Now);
        var nack = Assert.IsType<Nack>(Assert.Single(h[1].TakeOutput().Messages).Message);
        Assert.Equal(new Ballot(4, 3), nack.Refused);
        Assert.Equal(new Ballot(5, 2), nack.Promised);

        h[1].Handle(3, new Accept(new Ballot(4, 3), 0, [new AcceptedEntry(1, new Ballot(4, 3), SomeValue)]), h.Now);
        Assert.IsType<Nack>(Assert.Single(h[1].TakeOutput().Messages).Message);
        Assert.Empty(h.Storage[1].DurableImage.Entries);

        // After a crash the promise still holds.
        h.Crash(1);
        var restarted = h.Start(1, h[2].Members);
        h.Advance(Harness.Options.LeaseDuration * 2);
        restarted.Handle(3, new Prepare(new Ballot(5, 1), 1), h.Now);
        Assert.IsType<Nack>(Assert.Single(restarted.TakeOutput().Messages).Message);
    }

    [Fact]
    public void An_accept_is_durable_before_the_accepted_reply()
    {
        var h = new Harness(3);
        var b = new Ballot(1, 2);
        h[1].Handle(2, new Accept(b, 0, [new AcceptedEntry(1, b, SomeValue)]), h.Now);
        var accepted = Assert.IsType<Accepted>(Assert.Single(h[1].TakeOutput().Messages).Message);
        Assert.Equal([1L], accepted.Indices);
        var image = h.Storage[1].DurableImage;
        Assert.Equal(b, image.Promised);
        Assert.Equal(SomeValue, image.Entries[1].Value);
    }

    [Fact]
    public void A_new_leader_reproposes_the_value_a_promise_reported_in_the_highest_ballot()
    {
        var h = new Harness(3);
        h.Advance(Harness.Options.ElectionTimeout * 2.1);
        h.Tick(3);
        Assert.Equal(PaxosRole.Candidate, h[3].Role);
        var prepare = (Prepare)h.InFlight.First(m => m.To == 2).Message;
        h.InFlight.Clear();

        // Member 2 accepted two different values at index 1 in different ballots (an older leader's and a newer's).
        var older = LogValue.OfCommands([new ClientCommand(1, 1, KvMachine.Put(1, 1))]);
        h[3].Handle(2, new Promise(prepare.Ballot, 0, 1,
            [new AcceptedEntry(1, new Ballot(1, 1), older), new AcceptedEntry(2, new Ballot(1, 1), SomeValue)]), h.Now);
        h.Collect(3);
        Assert.Equal(PaxosRole.Leader, h[3].Role);
        var accept = h.InFlight.Select(m => m.Message).OfType<Accept>().First(a => a.Entries.Count > 0);
        Assert.Equal(prepare.Ballot, accept.Ballot);
        Assert.Equal(older, accept.Entries.Single(e => e.Index == 1).Value);
        Assert.Equal(SomeValue, accept.Entries.Single(e => e.Index == 2).Value);
        Assert.All(accept.Entries, e => Assert.Equal(prepare.Ballot, e.Ballot));

        // The recovered values commit as they were, not as anything the new leader wanted.
        h.Deliver();
        Assert.Equal(2, h[3].CommitIndex);
        Assert.Equal(SomeValue, h.Applied[2]);
    }

    [Fact]
    public void Holes_in_the_recovered_log_become_noops_and_the_highest_ballot_wins()
    {
        var h = new Harness(5);
        h.Advance(Harness.Options.ElectionTimeout * 2.1);
        h.Tick(1);
        var ballot = ((Prepare)h.InFlight.First().Message).Ballot;
        h.InFlight.Clear();
        var low = LogValue.OfCommands([new ClientCommand(1, 1, KvMachine.Put(1, 1))]);
        var high = LogValue.OfCommands([new ClientCommand(2, 1, KvMachine.Put(1, 2))]);
        h[1].Handle(2, new Promise(ballot, 0, 1, [new AcceptedEntry(3, new Ballot(1, 2), low)]), h.Now);
        Assert.Equal(PaxosRole.Candidate, h[1].Role);
        h[1].Handle(3, new Promise(ballot, 0, 1, [new AcceptedEntry(3, new Ballot(2, 3), high)]), h.Now);
        h.Collect(1);
        var accept = h.InFlight.Select(m => m.Message).OfType<Accept>().First(a => a.Entries.Count > 0);
        Assert.Equal(LogValue.Noop, accept.Entries.Single(e => e.Index == 1).Value);
        Assert.Equal(LogValue.Noop, accept.Entries.Single(e => e.Index == 2).Value);
        Assert.Equal(high, accept.Entries.Single(e => e.Index == 3).Value);
    }

    [Fact]
    public void A_candidate_behind_a_promiser_catches_up_instead_of_leading_then_asks_again_in_the_same_ballot()
    {
        var h = new Harness(3);
        h.Advance(Harness.Options.ElectionTimeout * 2.1);
        h.Tick(1);
        var ballot = ((Prepare)h.InFlight.First().Message).Ballot;
        h.InFlight.Clear();
        h[1].Handle(2, new Promise(ballot, 5, 1, []), h.Now);
        Assert.Equal(PaxosRole.Candidate, h[1].Role); // a majority promised, but it must not lead on a stale log
        var request = Assert.IsType<CatchUpRequest>(Assert.Single(h[1].TakeOutput().Messages, m => m.To == 2).Message);
        Assert.Equal(1, request.FromIndex);

        // The chosen entries arrive: it asks every member again, in the same ballot, from its new commit index.
        var chosen = Enumerable.Range(1, 5).Select(i => new AcceptedEntry(i, new Ballot(1, 2), LogValue.Noop)).ToList();
        h[1].Handle(2, new CatchUp(5, null, chosen), h.Now);
        Assert.Equal(5, h[1].CommitIndex);
        Assert.Equal(PaxosRole.Candidate, h[1].Role);
        var prepares = h[1].TakeOutput().Messages.Where(m => m.Message is Prepare).ToList();
        Assert.Equal([2, 3], prepares.Select(m => m.To).Order());
        Assert.All(prepares, m => Assert.Equal(new Prepare(ballot, 6), m.Message));

        // The fresh promise reports from index 6 on: now it leads.
        h[1].Handle(2, new Promise(ballot, 5, 1, []), h.Now);
        Assert.Equal(PaxosRole.Leader, h[1].Role);
        Assert.Equal(ballot, h[1].CurrentBallot);
    }

    [Fact]
    public void A_higher_ballot_deposes_the_leader()
    {
        var h = new Harness(3);
        h.Elect(1);
        h.Advance(Harness.Options.LeaseDuration * 2);
        h[1].Handle(2, new Nack(h[1].CurrentBallot, new Ballot(99, 2)), h.Now);
        Assert.Equal(PaxosRole.Follower, h[1].Role);
        Assert.False(h[1].HoldsLease(h.Now));
    }
}
