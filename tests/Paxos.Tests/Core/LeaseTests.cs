using Appliance.Paxos.Core;
using Appliance.Paxos.Tests.Simulation;

namespace Appliance.Paxos.Tests.Core;

public sealed class LeaseTests
{
    [Fact]
    public void A_member_that_granted_a_lease_promises_no_other_ballot_until_it_expires()
    {
        var h = new Harness(3);
        h.Advance(Harness.Options.LeaseDuration * 2);
        var leader = new Ballot(1, 1);
        h[2].Handle(1, new Heartbeat(leader, 1, 0), h.Now);
        Assert.IsType<HeartbeatAck>(Assert.Single(h[2].TakeOutput().Messages).Message);
        var granted = h.Now;

        h.Now = granted + Harness.Options.LeaseDuration - TimeSpan.FromMilliseconds(1);
        h[2].Handle(3, new Prepare(new Ballot(2, 3), 1), h.Now);
        Assert.Empty(h[2].TakeOutput().Messages);
        Assert.Equal(leader, h[2].Promised);

        h.Now = granted + Harness.Options.LeaseDuration;
        h[2].Handle(3, new Prepare(new Ballot(2, 3), 1), h.Now);
        Assert.IsType<Promise>(Assert.Single(h[2].TakeOutput().Messages).Message);
        Assert.Equal(new Ballot(2, 3), h[2].Promised);
    }

    [Fact]
    public void A_restarted_member_promises_nothing_for_a_lease_duration()
    {
        var h = new Harness(3);
        h.Crash(2);
        var restarted = h.Start(2, h[1].Members);
        restarted.Handle(3, new Prepare(new Ballot(2, 3), 1), h.Now + Harness.Options.LeaseDuration - TimeSpan.FromMilliseconds(1));
        Assert.Empty(restarted.TakeOutput().Messages);
        restarted.Handle(3, new Prepare(new Ballot(2, 3), 1), h.Now + Harness.Options.LeaseDuration);
        Assert.IsType<Promise>(Assert.Single(restarted.TakeOutput().Messages).Message);
    }

    [Fact]
    public void The_leader_reads_only_under_a_quorum_lease_that_ends_early_by_the_drift_bound()
    {
        var h = new Harness(3);
        h.Advance(Harness.Options.ElectionTimeout * 2.1);
        h.Tick(1);
        h.Deliver(filter: (_, _, m) => m is Prepare or Promise);
        Assert.Equal(PaxosRole.Leader, h[1].Role);
        var sent = h.Now;
        // No acknowledgement yet: no lease, no reads.
        Assert.False(h[1].HoldsLease(h.Now));
        Assert.Equal(ReadStatus.NoQuorum, h[1].Read(KvMachine.Get(1), h.Now).Status);

        h.Deliver();
        Assert.True(h[1].HoldsLease(h.Now));
        Assert.Equal(ReadStatus.Ok, h[1].Read(KvMachine.Get(1), h.Now).Status);
        var peonRead = h[2].Read(KvMachine.Get(1), h.Now);
        Assert.Equal(ReadStatus.NotLeader, peonRead.Status);
        Assert.Equal(1, peonRead.LeaderHint);

        var lease = Harness.Options.LeaderLease;
        Assert.True(lease < Harness.Options.LeaseDuration * (1 - Harness.Options.MaxClockDrift) / (1 + Harness.Options.MaxClockDrift));
        Assert.True(h[1].HoldsLease(sent + lease - TimeSpan.FromTicks(1)));
        Assert.False(h[1].HoldsLease(sent + lease));
        Assert.Equal(ReadStatus.NoQuorum, h[1].Read(KvMachine.Get(1), sent + lease).Status);
    }

    [Fact]
    public void A_partitioned_member_answers_no_quorum_instead_of_stale_data()
    {
        var h = new Harness(3);
        h.Elect(1);
        h.Advance(Harness.Options.LeaseDuration + TimeSpan.FromMilliseconds(1));
        Assert.Equal(ReadStatus.NoQuorum, h[2].Read(KvMachine.Get(1), h.Now).Status);
        Assert.Equal(ReadStatus.NoQuorum, h[1].Read(KvMachine.Get(1), h.Now).Status);
    }

    [Fact]
    public void A_campaigning_member_cannot_win_while_the_leader_holds_its_lease()
    {
        var h = new Harness(3);
        h.Elect(1);
        // Member 3 stops hearing the leader (one-way cut 1 -> 3) while member 2 keeps renewing the lease.
        var renewedAt = h.Now;
        for (var t = TimeSpan.Zero; t < Harness.Options.ElectionTimeout * 2.1; t += Harness.Options.HeartbeatInterval)
        {
            h.Advance(Harness.Options.HeartbeatInterval);
            h.Tick(1);
            h.Drop((from, to, _) => from == 1 && to == 3);
            h.Deliver();
            renewedAt = h.Now;
        }
        h.Tick(3);
        Assert.Equal(PaxosRole.Candidate, h[3].Role);
        h.Deliver();
        Assert.NotEqual(PaxosRole.Leader, h[3].Role);
        Assert.Equal(h[1].CurrentBallot, h[2].Promised);
        Assert.True(h[1].HoldsLease(h.Now));

        // The leader dies. Member 3 keeps campaigning but wins only once member 2's promise to the leader has run out.
        h.Crash(1);
        var wonAt = TimeSpan.Zero;
        for (var i = 0; i < 200 && h[3].Role != PaxosRole.Leader; i++)
        {
            h.Advance(TimeSpan.FromMilliseconds(10));
            h.Tick(3);
            h.Deliver();
            wonAt = h.Now;
        }
        Assert.Equal(PaxosRole.Leader, h[3].Role);
        Assert.True(wonAt >= renewedAt + Harness.Options.LeaseDuration, $"won at {wonAt}, lease granted at {renewedAt}");
    }
}
