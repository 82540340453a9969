using Appliance.Paxos.Core;
using Appliance.Paxos.Tests.Simulation;

namespace Appliance.Paxos.Tests.Core;

public sealed class MembershipTests
{
    [Fact]
    public void An_added_member_counts_in_quorums_from_the_index_after_the_change_and_catches_up()
    {
        var h = new Harness(1, joiners: 1);
        h.Elect(1);
        h[1].Propose(1, 1, KvMachine.Put(1, 1), h.Now);
        h.Collect(1);
        Assert.Equal(ProposeStatus.Pending, h[1].ProposeMembership(new MemberSet([1, 2]), h.Now));
        h.Collect(1);
        // The change itself is decided by the old configuration {1}: committed at once.
        Assert.Equal(new MemberSet([1, 2]), h[1].Members);
        var afterChange = h[1].CommitIndex;

        // From the next index on, {1,2} decides: nothing commits without member 2.
        h[1].Propose(1, 2, KvMachine.Put(1, 2), h.Now);
        h.Collect(1);
        Assert.Equal(afterChange, h[1].CommitIndex);
        h.Deliver();
        Assert.Equal(afterChange + 1, h[1].CommitIndex);

        // Member 2 learned everything (by snapshot, since it had nothing) and knows it is a member.
        h.Advance(Harness.Options.HeartbeatInterval);
        h.Tick(1);
        h.Deliver();
        Assert.Equal(h[1].CommitIndex, h[2].CommitIndex);
        Assert.Equal(new MemberSet([1, 2]), h[2].Members);
        Assert.Equal(2, h.Machines[2].Map[1]);
    }

    [Fact]
    public void Only_single_member_changes_one_at_a_time_are_accepted()
    {
        var h = new Harness(3, joiners: 2);
        h.Elect(1);
        Assert.Equal(ProposeStatus.Rejected, h[1].ProposeMembership(new MemberSet([1, 2, 3, 4, 5]), h.Now));
        Assert.Equal(ProposeStatus.Rejected, h[1].ProposeMembership(new MemberSet([1, 4]), h.Now));
        Assert.Equal(ProposeStatus.Pending, h[1].ProposeMembership(new MemberSet([1, 2, 3, 4]), h.Now));
        Assert.Equal(ProposeStatus.Rejected, h[1].ProposeMembership(new MemberSet([1, 2, 3, 4, 5]), h.Now));
        h.Collect(1);
        h.Deliver();
        Assert.Equal(new MemberSet([1, 2, 3, 4]), h[1].Members);
        Assert.Equal(ProposeStatus.Pending, h[1].ProposeMembership(new MemberSet([1, 2, 3, 4, 5]), h.Now));
    }

    [Fact]
    public void A_leader_that_removes_itself_steps_down_and_the_rest_elect_a_leader()
    {
        var h = new Harness(3);
        h.Elect(1);
        Assert.Equal(ProposeStatus.Pending, h[1].ProposeMembership(new MemberSet([2, 3]), h.Now));
        h.Collect(1);
        h.Deliver();
        Assert.Equal(new MemberSet([2, 3]), h[1].Members);
        Assert.NotEqual(PaxosRole.Leader, h[1].Role);
        Assert.Equal(ProposeStatus.NoQuorum, h[1].Propose(9, 1, KvMachine.Put(1, 1), h.Now));
        h.Advance(Harness.Options.HeartbeatInterval);
        h.Tick(1);
        h.Deliver();

        h.Elect(2);
        h[2].Propose(9, 1, KvMachine.Put(1, 5), h.Now);
        h.Collect(2);
        h.Deliver();
        Assert.Equal(5, h.Machines[2].Map[1]);
        Assert.Equal(5, h.Machines[3].Map[1]);
    }

    [Fact]
    public void A_candidate_needs_a_majority_of_every_configuration_in_the_log_it_recovers()
    {
        var h = new Harness(3, joiners: 2);
        h.Advance(Harness.Options.ElectionTimeout * 2.1);
        h.Tick(1);
        var ballot = ((Prepare)h.InFlight.First().Message).Ballot;
        h.InFlight.Clear();
        // Member 2 reports an accepted change to {1,2,3,4}: a majority of {1,2,3} promised ({1,2}), but not yet a
        // majority of {1,2,3,4} (needs three).
        var change = LogValue.OfConfig(new MemberSet([1, 2, 3, 4]));
        h[1].Handle(2, new Promise(ballot, 0, 1, [new AcceptedEntry(1, new Ballot(1, 2), change)]), h.Now);
        Assert.Equal(PaxosRole.Candidate, h[1].Role);
        // The candidate now asks member 4 as well.
        Assert.Contains(h[1].TakeOutput().Messages, m => m.To == 4 && m.Message is Prepare);
        h[1].Handle(4, new Promise(ballot, 0, 1, []), h.Now);
        Assert.Equal(PaxosRole.Leader, h[1].Role);
    }
}
