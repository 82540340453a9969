namespace Appliance.Paxos.Core;

// The leader lease: heartbeats that acceptors acknowledge bind them (on their own clocks) not to promise another
// ballot for LeaseDuration; a quorum of acknowledgements lets the leader serve reads for the shorter LeaderLease,
// counted from when it sent the heartbeat. See PaxosOptions.LeaderLease for the drift arithmetic.
public sealed partial class PaxosNode
{
    private const int HeartbeatsRemembered = 16;

    private readonly Dictionary<long, (TimeSpan SentAt, HashSet<int> Acks)> _heartbeats = [];
    private long _heartbeatSeq;
    private TimeSpan _lastHeartbeat;
    private TimeSpan _leaseUntil;

    private void SendHeartbeats(TimeSpan now)
    {
        _lastHeartbeat = now;
        var seq = ++_heartbeatSeq;
        _heartbeats[seq] = (now, [Id]);
        _heartbeats.Remove(seq - HeartbeatsRemembered);
        foreach (var peer in Peers())
        {
            Send(peer, new Heartbeat(_ballot, seq, _commitIndex));
        }
        TryExtendLease(seq);
    }

    private void OnHeartbeat(int from, Heartbeat m, TimeSpan now)
    {
        NoteBallot(m.Ballot);
        if (m.Ballot < _promised)
        {
            Send(from, new Nack(m.Ballot, _promised));
            return;
        }
        FollowLeader(from, m.Ballot, now);
        // Granting: from now until now + LeaseDuration (our clock) we promise no other ballot.
        if (now + _options.LeaseDuration > _guardUntil)
        {
            _guardUntil = now + _options.LeaseDuration;
        }
        Send(from, new HeartbeatAck(m.Ballot, m.Seq, _commitIndex));
        LearnCommit(from, m.Ballot, m.CommitIndex, now);
    }

    private void OnHeartbeatAck(int from, HeartbeatAck m)
    {
        if (_role != PaxosRole.Leader || m.Ballot != _ballot || !_heartbeats.TryGetValue(m.Seq, out var hb))
        {
            return;
        }
        hb.Acks.Add(from);
        NotePeerProgress(from, m.CommitIndex);
        TryExtendLease(m.Seq);
    }

    private void TryExtendLease(long seq)
    {
        var (sentAt, acks) = _heartbeats[seq];
        foreach (var config in ActiveConfigs())
        {
            if (!config.IsQuorum(acks))
            {
                return;
            }
        }
        if (sentAt + _options.LeaderLease > _leaseUntil)
        {
            _leaseUntil = sentAt + _options.LeaderLease;
        }
        // The leader is part of its own quorum: it too must refuse other ballots while its lease may run.
        if (sentAt + _options.LeaseDuration > _guardUntil)
        {
            _guardUntil = sentAt + _options.LeaseDuration;
        }
    }
}
