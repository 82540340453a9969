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

    [Fact]
    public void A_membership_change_reports_its_outcome_where_it_was_proposed_at_the_leader_and_at_a_follower()
    {
        var h = new Harness(3, joiners: 2);
        h.Elect(1);
        Assert.Equal(ProposeStatus.Pending, h[1].ProposeMembership(77, 1, new MemberSet([1, 2, 3, 4]), h.Now));
        h.Collect(1);
        h.Deliver();
        var (node, outcome) = Assert.Single(h.Completions);
        Assert.Equal((1, 77L, 1L, ProposalStatus.Committed), (node, outcome.ClientId, outcome.Seq, outcome.Status));

        // At a follower: forwarded to the leader; reported by the follower once it applies the change.
        h.Completions.Clear();
        Assert.Equal(ProposeStatus.Pending, h[3].ProposeMembership(78, 1, new MemberSet([1, 2, 3, 4, 5]), h.Now));
        h.Collect(3);
        Assert.IsType<ForwardConfig>(Assert.Single(h.InFlight).Message);
        h.Deliver();
        h.Advance(Harness.Options.HeartbeatInterval);
        h.Tick(1);
        h.Deliver();
        (node, outcome) = Assert.Single(h.Completions);
        Assert.Equal((3, 78L, ProposalStatus.Committed), (node, outcome.ClientId, outcome.Status));
        Assert.Equal(new MemberSet([1, 2, 3, 4, 5]), h[3].Members);
    }

    [Fact]
    public void A_follower_refuses_a_change_that_is_not_a_single_add_or_remove_of_what_it_knows()
    {
        var h = new Harness(3, joiners: 2);
        h.Elect(1);
        Assert.Equal(ProposeStatus.Rejected, h[2].ProposeMembership(5, 1, new MemberSet([1, 2, 3, 4, 5]), h.Now));
        Assert.Equal(ProposeStatus.Rejected, h[2].ProposeMembership(5, 2, new MemberSet([1, 2, 3]), h.Now));
        Assert.Empty(h[2].TakeOutput().Messages);
    }

    [Fact]
    public void A_resent_membership_change_is_applied_at_most_once()
    {
        var h = new Harness(3, joiners: 1);
        h.Elect(1);
        h[1].ProposeMembership(9, 1, new MemberSet([1, 2, 3, 4]), h.Now);
        h.Collect(1);
        h.Deliver();
        h[1].ProposeMembership(9, 2, new MemberSet([1, 2, 3]), h.Now);
        h.Collect(1);
        h.Deliver();
        Assert.Equal(new MemberSet([1, 2, 3]), h[1].Members);
        // The first change arrives again, late (a follower's retransmission): it must not add member 4 back.
        h[1].Handle(2, new ForwardConfig(new MemberSet([1, 2, 3, 4]), 9, 1), h.Now);
        h.Collect(1);
        h.Deliver();
        h.Advance(Harness.Options.HeartbeatInterval);
        h.Tick(1);
        h.Deliver();
        Assert.Equal(new MemberSet([1, 2, 3]), h[1].Members);
        // And the proposer resending it is answered from the session: superseded by its later change.
        h.Completions.Clear();
        h[1].ProposeMembership(9, 1, new MemberSet([1, 2, 3, 4]), h.Now);
        h.Collect(1);
        Assert.Equal(ProposalStatus.Superseded, Assert.Single(h.Completions).Outcome.Status);
    }

    [Fact]
    public void A_membership_change_that_cannot_commit_times_out()
    {
        var h = new Harness(3, joiners: 1);
        h.Elect(1);
        h[2].ProposeMembership(4, 1, new MemberSet([1, 2, 3, 4]), h.Now);
        h.Collect(2);
        h.InFlight.Clear(); // the leader never hears of it
        h.Advance(Harness.Options.ProposalTimeout);
        h.Tick(2);
        var (node, outcome) = Assert.Single(h.Completions);
        Assert.Equal((2, ProposalStatus.Timeout), (node, outcome.Status));
    }

    [Fact]
    public void A_removed_leader_hands_off_and_its_successor_leads_without_waiting_out_the_lease()
    {
        var h = new Harness(3);
        h.Elect(1);
        Assert.True(h[1].HoldsLease(h.Now));
        h[1].ProposeMembership(1, 1, new MemberSet([2, 3]), h.Now);
        h.Collect(1);
        h.Deliver(); // commit, hand-off, the successor's election: no time passes
        Assert.NotEqual(PaxosRole.Leader, h[1].Role);
        Assert.False(h[1].HoldsLease(h.Now));
        var successor = new[] { 2, 3 }.Single(id => h[id].Role == PaxosRole.Leader);
        Assert.Equal(new MemberSet([2, 3]), h[successor].Members);

        // It commits at once and serves reads under its own lease.
        h[successor].Propose(5, 1, KvMachine.Put(1, 7), h.Now);
        h.Collect(successor);
        h.Deliver();
        Assert.Equal(7, h.Machines[2].Map[1]);
        Assert.Equal(7, h.Machines[3].Map[1]);
        Assert.Equal(ReadStatus.Ok, h[successor].Read(KvMachine.Get(1), h.Now).Status);
    }

    [Fact]
    public void A_hand_off_from_a_ballot_the_member_no_longer_follows_releases_nothing()
    {
        var h = new Harness(3);
        h.Advance(Harness.Options.LeaseDuration);
        // Member 2 grants ballot 5.3 a lease, then hears an old leader (ballot 4.1) hand off.
        h[2].Handle(3, new Heartbeat(new Ballot(5, 3), 1, 0), h.Now);
        h[2].Handle(1, new Handoff(new Ballot(4, 1), 0, 2), h.Now);
        h[2].TakeOutput();
        Assert.Equal(PaxosRole.Follower, h[2].Role);
        // Still bound by its grant to 5.3: a prepare for a higher ballot goes unanswered.
        h[2].Handle(1, new Prepare(new Ballot(6, 1), 1), h.Now + TimeSpan.FromMilliseconds(1));
        Assert.Empty(h[2].TakeOutput().Messages);
    }

    [Fact]
    public void A_leader_that_hands_off_stops_serving_at_once_and_its_successor_leads_without_waiting_out_the_lease()
    {
        var h = new Harness(3);
        h.Elect(1);
        h[1].Propose(1, 1, KvMachine.Put(1, 1), h.Now);
        h.Collect(1);
        h.Deliver(filter: (_, to, m) => to == 3 || m is Accepted); // member 3 is furthest along
        h.InFlight.Clear();
        Assert.True(h[1].HoldsLease(h.Now));
        Assert.True(h[1].HandOff(h.Now));
        Assert.False(h[1].HoldsLease(h.Now));
        Assert.Equal(ReadStatus.NoQuorum, h[1].Read(KvMachine.Get(1), h.Now).Status);
        h.Collect(1);
        var handoff = h.InFlight.Select(m => m.Message).OfType<Handoff>().First();
        Assert.Equal(3, handoff.Successor);
        h.Deliver(); // no time passes
        Assert.Equal(PaxosRole.Leader, h[3].Role);
        Assert.Equal(3, h[1].Leader);

        // A command proposed at the old leader still commits, through the new one.
        h[1].Propose(2, 1, KvMachine.Put(2, 2), h.Now);
        h.Collect(1);
        h.Deliver();
        Assert.Equal(2, h.Machines[3].Map[2]);
        Assert.Contains(h.Completions, c => c.Node == 1 && c.Outcome.ClientId == 2 && c.Outcome.Status == ProposalStatus.Committed);
        Assert.False(h[3].HandOff(h.Now) && h[2].HandOff(h.Now)); // only a leader hands off
    }
}
