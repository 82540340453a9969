namespace Appliance.Paxos.Core;

// Phase 1: ballots, promises, and becoming leader.
public sealed partial class PaxosNode
{
    private Ballot _ballot;

    /// <summary>The ballot this member last ran or leads in (tests: no two leaders share a ballot).</summary>
    internal Ballot CurrentBallot => _ballot;
    private readonly Dictionary<int, Promise> _promises = [];
    private TimeSpan _candidateDeadline;
    private TimeSpan _lastPrepareSent;
    private readonly HashSet<int> _asked = [];

    private void StartElection(TimeSpan now)
    {
        var round = Math.Max(_promised.Round, _maxSeen.Round) + 1;
        _ballot = new Ballot(round, Id);
        SetPromised(_ballot);
        StepDown(now);
        _role = PaxosRole.Candidate;
        _leaderId = null;
        _candidateDeadline = now + _electionTimeout;
        _promises[Id] = new Promise(_ballot, _commitIndex, _firstIndex, UncommittedEntries());
        _asked.Clear();
        _lastPrepareSent = now;
        SendPrepares(now, retransmit: false);
        TryFinishPhase1(now);
    }

    private void CandidateTick(TimeSpan now)
    {
        if (now >= _candidateDeadline)
        {
            // This round failed (lost messages, a competing candidate, acceptors still bound by a lease): back off
            // for a fresh random timeout, then try a higher round.
            StepDown(now);
            return;
        }
        if (now - _lastPrepareSent >= _options.RetransmitInterval)
        {
            SendPrepares(now, retransmit: true);
        }
    }

    /// <summary>Asks every member of every configuration phase 1 needs that has not promised yet: all of them on a
    /// retransmission, otherwise only those not asked yet (a promise can reveal a configuration with new members).</summary>
    private void SendPrepares(TimeSpan now, bool retransmit)
    {
        if (retransmit)
        {
            _lastPrepareSent = now;
        }
        foreach (var member in RecoveryConfigs(MergedSuffix()).SelectMany(c => c.Ids).Distinct())
        {
            if (member != Id && !_promises.ContainsKey(member) && (_asked.Add(member) || retransmit))
            {
                Send(member, new Prepare(_ballot, _commitIndex + 1));
            }
        }
    }

    private void OnPrepare(int from, Prepare m, TimeSpan now)
    {
        NoteBallot(m.Ballot);
        if (m.FromIndex <= _commitIndex)
        {
            // The candidate lacks entries we know are chosen (it may even have been removed without hearing of it):
            // send them whatever we answer, so it catches up instead of campaigning on a stale log.
            OnCatchUpRequest(from, new CatchUpRequest(m.FromIndex));
        }
        if (m.Ballot < _promised)
        {
            Send(from, new Nack(m.Ballot, _promised));
            return;
        }
        if (m.Ballot == _promised)
        {
            // A duplicate or retransmitted prepare for the ballot we already promised: promise again (idempotent).
            if (_role == PaxosRole.Follower && m.Ballot.Node == from)
            {
                Send(from, MakePromise(m));
            }
            return;
        }
        if (!CanPromiseNewBallot(now))
        {
            // A leader may hold a lease on our word: say nothing; the candidate retries after the lease is over.
            return;
        }
        SetPromised(m.Ballot);
        if (_role != PaxosRole.Follower)
        {
            StepDown(now);
        }
        _leaderId = null;
        ResetElectionTimer(now);
        Send(from, MakePromise(m));
    }

    private Promise MakePromise(Prepare m)
    {
        // Entries at or below our commit index are chosen; a candidate behind us catches up instead of recovering them.
        var from = Math.Max(m.FromIndex, _commitIndex + 1);
        var entries = Above(from - 1).ToArray();
        return new Promise(m.Ballot, _commitIndex, _firstIndex, entries);
    }

    private void OnPromise(int from, Promise m, TimeSpan now)
    {
        if (_role != PaxosRole.Candidate || m.Ballot != _ballot)
        {
            return;
        }
        if (m.CommitIndex > _commitIndex)
        {
            // We are missing chosen entries: catch up first (the acceptor already sent what it has), then ask again
            // in this ballot from the new commit index (RestartPhase1). The promise binds its giver all the same.
            RequestCatchUp(from, now, force: true);
            return;
        }
        _promises[from] = m;
        TryFinishPhase1(now);
    }

    /// <summary>A candidate whose commit index moved while it collected promises (it caught up) asks every member
    /// again, in the same ballot, for what it accepted above the new commit index. The promises already given for
    /// this ballot still bind their givers; a fresh report from each covers everything it accepted that the candidate
    /// has not committed. Waiting out an election timeout instead left a quorum leaderless for seconds whenever
    /// every candidate was behind someone (seed 1322781198).</summary>
    private void RestartPhase1(TimeSpan now)
    {
        if (!_committedConfig.Contains(Id))
        {
            StepDown(now); // what we caught up on removed us
            return;
        }
        _promises.Clear();
        _promises[Id] = new Promise(_ballot, _commitIndex, _firstIndex, UncommittedEntries());
        _asked.Clear();
        _lastPrepareSent = now;
        SendPrepares(now, retransmit: false);
        TryFinishPhase1(now);
    }

    private void OnNack(Nack m, TimeSpan now)
    {
        NoteBallot(m.Promised);
        if (_role != PaxosRole.Follower && m.Refused == _ballot && m.Promised > _ballot)
        {
            StepDown(now);
        }
    }

    /// <summary>For every index above our commit index, the value accepted in the highest ballot by any member that
    /// promised (Paxos phase 1 rule).</summary>
    private SortedDictionary<long, AcceptedEntry> MergedSuffix()
    {
        var merged = new SortedDictionary<long, AcceptedEntry>();
        foreach (var (member, promise) in _promises)
        {
            if (_options.BugIgnoreAcceptedInPhase1 && member != Id)
            {
                continue;
            }
            foreach (var e in promise.Entries)
            {
                if (e.Index > _commitIndex && (!merged.TryGetValue(e.Index, out var cur) || e.Ballot > cur.Ballot))
                {
                    merged[e.Index] = e;
                }
            }
        }
        return merged;
    }

    /// <summary>The configurations that may govern an index the candidate recovers: the committed one and every one
    /// found in the recovered suffix. Phase 1 needs a majority of each.</summary>
    private List<MemberSet> RecoveryConfigs(SortedDictionary<long, AcceptedEntry> merged)
    {
        var configs = new List<MemberSet> { _committedConfig };
        foreach (var e in merged.Values)
        {
            if (e.Value.Kind == EntryKind.Config && !configs.Contains(e.Value.Members!))
            {
                configs.Add(e.Value.Members!);
            }
        }
        return configs;
    }

    private void TryFinishPhase1(TimeSpan now)
    {
        var merged = MergedSuffix();
        foreach (var config in RecoveryConfigs(merged))
        {
            if (!config.IsQuorum(_promises.Keys))
            {
                SendPrepares(now, retransmit: false);
                return;
            }
        }
        BecomeLeader(merged, now);
    }

    private void BecomeLeader(SortedDictionary<long, AcceptedEntry> merged, TimeSpan now)
    {
        _promises.Clear();
        _role = PaxosRole.Leader;
        _leaderId = Id;
        _leaseUntil = TimeSpan.Zero;
        _heartbeats.Clear();
        _acks.Clear();
        _peerProgress.Clear();
        _handoff = null;
        var max = merged.Count > 0 ? Math.Max(_commitIndex, merged.Keys.Max()) : _commitIndex;

        // Re-propose every recovered value in our ballot; holes become no-ops. Nothing above `max` can have been
        // chosen by an earlier ballot: a majority promised us and reported everything it accepted.
        var entries = new List<AcceptedEntry>();
        for (var i = _commitIndex + 1; i <= max; i++)
        {
            var value = merged.TryGetValue(i, out var e) ? e.Value : LogValue.Noop;
            var entry = new AcceptedEntry(i, _ballot, value);
            _log[i] = entry;
            StageEntry(entry);
            _acks[i] = [Id];
            entries.Add(entry);
        }
        _nextIndex = max + 1;
        _recoveredMax = max;

        // Proposals made here that may have been lost with the old leader: propose them again (applied at most once).
        foreach (var p in _pending.Values.OrderBy(p => p.ClientId).ThenBy(p => p.Seq))
        {
            if (p.Command is { } cmd)
            {
                Enqueue(cmd);
            }
            else
            {
                TryQueueConfig(p.Config!, p.ClientId, p.Seq); // refused if another change is in flight: it then times out
            }
        }
        foreach (var peer in Peers())
        {
            SendEntries(peer, entries);
        }
        _lastRetransmit = now;
        SendHeartbeats(now);
        TryAdvanceCommit();
    }
}
