namespace Appliance.Paxos.Core;

// Leader hand-off: a leader whose removal commits (or that is asked to, before an orderly stop) stops leading and
// tells the members, naming a successor that runs for leader at once instead of everyone waiting out the lease and
// an election timeout.
public sealed partial class PaxosNode
{
    private HandoffState? _handoff;

    // How far the leader knows each member's log reaches in this ballot (the highest index it accepted or committed),
    // to pick a successor.
    private readonly Dictionary<int, long> _peerProgress = [];

    /// <summary>An orderly hand-off (before stopping this member, or to move leadership): the leader stops leading and
    /// serving at once, and names the member known to be furthest along as successor, which campaigns immediately;
    /// the members drop the lease they granted. Proposals pending here are forwarded to the new leader as usual.
    /// Returns false (and changes nothing) when this member is not the leader or has no other member to hand to.</summary>
    public bool HandOff(TimeSpan now)
    {
        ThrowIfFailed();
        _now = now;
        if (_role != PaxosRole.Leader)
        {
            return false;
        }
        var successor = _committedConfig.Ids.Where(id => id != Id)
            .OrderByDescending(id => _peerProgress.GetValueOrDefault(id, -1)).ThenBy(id => id).FirstOrDefault();
        if (successor == 0)
        {
            return false;
        }
        HandOffTo(successor);
        // We stopped serving: the lease we hold on our own word binds us no longer either.
        if (now < _guardUntil)
        {
            _guardUntil = now;
        }
        Flush();
        return true;
    }

    private void NotePeerProgress(int peer, long index)
    {
        if (index > _peerProgress.GetValueOrDefault(peer, -1))
        {
            _peerProgress[peer] = index;
        }
    }

    /// <summary>Steps down after our removal committed in ballot <see cref="_ballot"/>, and hands off to a remaining
    /// member that acknowledged the last committed entry (so it holds the log up to the change), else the lowest.</summary>
    private void HandOff(HashSet<int>? lastAcks)
    {
        var members = _committedConfig;
        var candidates = lastAcks?.Where(id => id != Id && members.Contains(id)).ToArray() ?? [];
        HandOffTo(candidates.Length > 0 ? candidates.Min() : members.Ids.FirstOrDefault(id => id != Id));
    }

    private void HandOffTo(int successor)
    {
        var ballot = _ballot;
        if (_options.BugHandoffKeepsServing)
        {
            if (_handoff is not null)
            {
                return;
            }
        }
        else
        {
            StepDown(_now); // no lease any more: nothing is served from here on
            _leaderId = null;
        }
        if (successor == 0)
        {
            return;
        }
        _handoff = new HandoffState(ballot, _commitIndex, successor, _now + _options.LeaseDuration) { LastSent = _now };
        SendHandoff(_handoff);
    }

    private void SendHandoff(HandoffState h)
    {
        foreach (var member in _committedConfig.Ids)
        {
            Send(member, new Handoff(h.Ballot, h.CommitIndex, h.Successor));
        }
    }

    /// <summary>Resends the hand-off (it may be lost) until a lease duration has passed or someone leads a newer ballot.</summary>
    private void RetransmitHandoff(TimeSpan now)
    {
        if (_handoff is not { } h)
        {
            return;
        }
        if (now >= h.Until || _promised > h.Ballot)
        {
            _handoff = null;
            return;
        }
        if (now - h.LastSent >= _options.RetransmitInterval)
        {
            h.LastSent = now;
            SendHandoff(h);
        }
    }

    private void OnHandoff(int from, Handoff m, TimeSpan now)
    {
        NoteBallot(m.Ballot);
        if (from != m.Ballot.Node || m.Ballot != _promised || _role != PaxosRole.Follower)
        {
            return; // not from the leader we follow (or we moved on): nothing to release
        }
        LearnCommit(from, m.Ballot, m.CommitIndex, now);
        // The leader of m.Ballot stopped serving before it sent this, and no lease of a lower ballot can still run
        // (m.Ballot's leader finished phase 1 only after those expired): the lease we granted binds nothing now.
        if (now < _guardUntil)
        {
            _guardUntil = now;
        }
        if (_leaderId == from)
        {
            _leaderId = null;
        }
        if (m.Successor == Id && _committedConfig.Contains(Id) && _commitIndex >= m.CommitIndex)
        {
            StartElection(now);
        }
    }

    private sealed class HandoffState(Ballot ballot, long commitIndex, int successor, TimeSpan until)
    {
        public Ballot Ballot { get; } = ballot;

        public long CommitIndex { get; } = commitIndex;

        public int Successor { get; } = successor;

        public TimeSpan Until { get; } = until;

        public TimeSpan LastSent { get; set; }
    }
}
