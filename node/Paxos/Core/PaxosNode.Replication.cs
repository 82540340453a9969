namespace Appliance.Paxos.Core;

// Phase 2: the leader's queue and batches, accepts, commits, and applying committed entries.
public sealed partial class PaxosNode
{
    private long _nextIndex;
    private long _recoveredMax;
    private readonly Dictionary<long, HashSet<int>> _acks = [];
    private readonly Queue<ClientCommand> _queue = new();
    private readonly HashSet<(long, long)> _queuedKeys = [];
    private MemberSet? _queuedConfig;
    private TimeSpan _lastRetransmit;

    private AcceptedEntry[] UncommittedEntries() => Above(_commitIndex).ToArray();

    /// <summary>The member set governing <paramref name="index"/> (above the commit index): the committed one,
    /// changed by any configuration entry below <paramref name="index"/>.</summary>
    private MemberSet ConfigFor(long index)
    {
        var config = _committedConfig;
        foreach (var e in Above(_commitIndex))
        {
            if (e.Index >= index)
            {
                break;
            }
            if (e.Value.Kind == EntryKind.Config)
            {
                config = e.Value.Members!;
            }
        }
        return config;
    }

    private bool HasUncommittedConfig() => Above(_commitIndex).Any(e => e.Value.Kind == EntryKind.Config);

    /// <summary>The committed configuration and any in flight: leases and message fan-out cover all of them.</summary>
    private List<MemberSet> ActiveConfigs()
    {
        var configs = new List<MemberSet> { _committedConfig };
        foreach (var e in Above(_commitIndex))
        {
            if (e.Value.Kind == EntryKind.Config)
            {
                configs.Add(e.Value.Members!);
            }
        }
        return configs;
    }

    private IEnumerable<int> Peers() => ActiveConfigs().SelectMany(c => c.Ids).Distinct().Where(id => id != Id);

    private void Enqueue(ClientCommand cmd)
    {
        if (_sessions.TryGetValue(cmd.ClientId, out var s) && cmd.Seq <= s.LastSeq)
        {
            return; // already applied; its proposer learns the outcome when it applies the entry
        }
        if (_queuedKeys.Add((cmd.ClientId, cmd.Seq)))
        {
            _queue.Enqueue(cmd);
        }
    }

    private void OnForward(ClientCommand cmd)
    {
        if (_role == PaxosRole.Leader)
        {
            Enqueue(cmd);
        }
        // Otherwise drop it: the proposer resends to whoever it believes leads.
    }

    /// <summary>Queues a membership change at the leader: true if queued (or already queued, in flight or applied —
    /// a resent change), false if refused (not a single change of the latest configuration, or another change is
    /// queued or in flight).</summary>
    private bool TryQueueConfig(MemberSet members, long clientId, long seq)
    {
        if (_role != PaxosRole.Leader)
        {
            return false;
        }
        if (clientId != 0)
        {
            if (_sessions.TryGetValue(clientId, out var s) && seq <= s.LastSeq)
            {
                return true; // applied already; its proposer learns the outcome when it applies the entry
            }
            if ((_queuedConfigId == (clientId, seq) && _queuedConfig is not null)
                || Above(_commitIndex).Any(e => e.Value.Kind == EntryKind.Config && e.Value.ConfigClientId == clientId && e.Value.ConfigSeq == seq))
            {
                return true;
            }
        }
        if (_queuedConfig is not null || HasUncommittedConfig() || !IsSingleChange(members))
        {
            return false;
        }
        _queuedConfig = members;
        _queuedConfigId = (clientId, seq);
        return true;
    }

    private (long Client, long Seq) _queuedConfigId;

    /// <summary>Whether <paramref name="members"/> adds or removes exactly one member of the latest configuration this
    /// member knows (committed or accepted).</summary>
    private bool IsSingleChange(MemberSet members) => members.Count > 0 && members.Distance(ActiveConfigs()[^1]) == 1;

    /// <summary>Proposes queued work while the in-flight window has room. Commands share entries (batching); a
    /// configuration entry travels alone and nothing is proposed after it until it commits.</summary>
    private void FlushQueue()
    {
        var fresh = new List<AcceptedEntry>();
        while ((_queue.Count > 0 || _queuedConfig is not null)
               && _nextIndex - 1 - _commitIndex < _options.MaxInflightEntries
               && !HasUncommittedConfig())
        {
            LogValue value;
            if (_queuedConfig is { } config)
            {
                value = _queuedConfigId.Client != 0
                    ? LogValue.OfConfig(config, _queuedConfigId.Client, _queuedConfigId.Seq)
                    : LogValue.OfConfig(config);
                _queuedConfig = null;
            }
            else
            {
                var batch = new List<ClientCommand>();
                while (_queue.Count > 0 && batch.Count < _options.MaxBatchCommands)
                {
                    batch.Add(_queue.Dequeue());
                }
                value = LogValue.OfCommands(batch);
            }
            var entry = new AcceptedEntry(_nextIndex++, _ballot, value);
            _log[entry.Index] = entry;
            StageEntry(entry);
            _acks[entry.Index] = [Id];
            fresh.Add(entry);
        }
        if (fresh.Count == 0)
        {
            return;
        }
        foreach (var peer in Peers())
        {
            SendEntries(peer, fresh);
        }
        TryAdvanceCommit();
    }

    private void SendEntries(int peer, IReadOnlyList<AcceptedEntry> entries)
    {
        for (var i = 0; i < entries.Count; i += _options.MaxEntriesPerMessage)
        {
            var chunk = entries.Skip(i).Take(_options.MaxEntriesPerMessage).ToArray();
            Send(peer, new Accept(_ballot, _commitIndex, chunk));
        }
    }

    private void LeaderTick(TimeSpan now)
    {
        if (now - _lastHeartbeat >= _options.HeartbeatInterval)
        {
            SendHeartbeats(now);
        }
        if (now - _lastRetransmit >= _options.RetransmitInterval)
        {
            _lastRetransmit = now;
            var uncommitted = UncommittedEntries();
            foreach (var peer in Peers())
            {
                var missing = uncommitted.Where(e => !_acks.TryGetValue(e.Index, out var a) || !a.Contains(peer)).ToArray();
                if (missing.Length > 0)
                {
                    SendEntries(peer, missing);
                }
            }
        }
        if (!_inBatch)
        {
            FlushQueue();
        }
    }

    private void OnAccept(int from, Accept m, TimeSpan now)
    {
        NoteBallot(m.Ballot);
        if (m.Ballot < _promised)
        {
            Send(from, new Nack(m.Ballot, _promised));
            return;
        }
        FollowLeader(from, m.Ballot, now);
        var indices = new List<long>();
        foreach (var e in m.Entries)
        {
            if (e.Index > _commitIndex && !(_log.TryGetValue(e.Index, out var old) && old.Ballot == m.Ballot))
            {
                var entry = new AcceptedEntry(e.Index, m.Ballot, e.Value);
                _log[e.Index] = entry;
                StageEntry(entry);
            }
            // At or below our commit index the entry is chosen here already, and the leader's value is the chosen one.
            indices.Add(e.Index);
        }
        if (indices.Count > 0)
        {
            Send(from, new Accepted(m.Ballot, indices, _commitIndex));
        }
        LearnCommit(from, m.Ballot, m.CommitIndex, now);
    }

    /// <summary>A message in ballot <paramref name="b"/> (not below our promise) came from its leader: promise it,
    /// step down if we were leading or running in a lower ballot, and note who leads.</summary>
    private void FollowLeader(int from, Ballot b, TimeSpan now)
    {
        if (b > _promised)
        {
            SetPromised(b);
        }
        if (_role != PaxosRole.Follower && b != _ballot)
        {
            StepDown(now);
        }
        _leaderId = from;
        ResetElectionTimer(now);
    }

    private void OnAccepted(int from, Accepted m)
    {
        if (_role != PaxosRole.Leader || m.Ballot != _ballot)
        {
            return;
        }
        NotePeerProgress(from, m.Indices.Count > 0 ? Math.Max(m.CommitIndex, m.Indices.Max()) : m.CommitIndex);
        foreach (var i in m.Indices)
        {
            if (_acks.TryGetValue(i, out var set))
            {
                set.Add(from);
            }
        }
        TryAdvanceCommit();
    }

    private void TryAdvanceCommit()
    {
        var c = _commitIndex;
        while (c + 1 < _nextIndex && _acks.TryGetValue(c + 1, out var set) && ConfigFor(c + 1).IsQuorum(set))
        {
            c++;
        }
        if (c == _commitIndex)
        {
            return;
        }
        // Everyone who may need to hear it, including members a committed change removes (and, if this removes us,
        // the members that must now elect a leader among themselves).
        var peers = Peers().ToArray();
        var ballot = _ballot;
        ApplyThrough(c);
        AnnounceCommit(ballot, c, peers.Union(Peers()));
    }

    // A commit notice a batch scope holds back, so that a scope that commits many times sends one per peer.
    private (Ballot Ballot, long Commit)? _commitNotice;
    private readonly HashSet<int> _commitNoticePeers = [];

    /// <summary>Tells <paramref name="peers"/> that ballot <paramref name="ballot"/> committed through
    /// <paramref name="commit"/>: at once, or inside a batch scope once at its end. A notice is only ever sent for
    /// the ballot and commit index it was made for (a later commit index learned from another leader must not be
    /// announced in this ballot: receivers apply what they accepted in the notice's ballot).</summary>
    private void AnnounceCommit(Ballot ballot, long commit, IEnumerable<int> peers)
    {
        if (!_inBatch)
        {
            foreach (var peer in peers)
            {
                Send(peer, new Accept(ballot, commit, []));
            }
            return;
        }
        if (_commitNotice is { } held && held.Ballot != ballot)
        {
            SendPendingCommitNotice();
        }
        _commitNotice = (ballot, commit);
        _commitNoticePeers.UnionWith(peers);
    }

    private void SendPendingCommitNotice()
    {
        if (_commitNotice is not { } held)
        {
            return;
        }
        foreach (var peer in _commitNoticePeers)
        {
            Send(peer, new Accept(held.Ballot, held.Commit, []));
        }
        _commitNotice = null;
        _commitNoticePeers.Clear();
    }

    /// <summary>The leader of ballot <paramref name="b"/> says everything up to <paramref name="commit"/> is chosen.
    /// An entry we accepted in that same ballot is the chosen one (a leader proposes one value per index per ballot);
    /// anything else we fetch.</summary>
    private void LearnCommit(int leader, Ballot b, long commit, TimeSpan now)
    {
        if (commit <= _commitIndex)
        {
            return;
        }
        var target = _commitIndex;
        while (target < commit && _log.TryGetValue(target + 1, out var e) && e.Ballot == b)
        {
            target++;
        }
        if (target > _commitIndex)
        {
            ApplyThrough(target);
        }
        if (_commitIndex < commit)
        {
            RequestCatchUp(leader, now, force: false);
        }
    }

    private void ApplyThrough(long target)
    {
        HashSet<int>? successorAcks = null;
        for (var i = _commitIndex + 1; i <= target; i++)
        {
            var value = _log[i].Value;
            _appliedAheadOfDisk |= _batchSlots.ContainsKey(i);
            ApplyEntry(i, value);
            _bytesSinceSnapshot += SizeOf(value);
            _commitIndex = i;
            if (_acks.Remove(i, out var acked))
            {
                successorAcks = acked;
            }
        }
        _batch.CommitIndex = _commitIndex;
        MaybeSnapshot();
        if (_role == PaxosRole.Leader && !_committedConfig.Contains(Id))
        {
            // Our removal is committed: stop leading (and serving reads) and hand off to a remaining member.
            HandOff(successorAcks);
        }
    }

    private void ApplyEntry(long index, LogValue value)
    {
        switch (value.Kind)
        {
            case EntryKind.Config:
                // Always applied (quorums above this index were already counted in this configuration); the
                // at-most-once check for a resent change is made when the leader queues it.
                _committedConfig = value.Members!;
                if (value.ConfigClientId != 0)
                {
                    CompleteConfig(index, value.ConfigClientId, value.ConfigSeq);
                }
                break;
            case EntryKind.Commands:
                foreach (var cmd in value.Commands)
                {
                    ApplyCommand(index, cmd);
                }
                break;
        }
        if (index % SessionSweepInterval == 0)
        {
            ExpireSessions(index);
        }
        _onApplied?.Invoke(index, value);
    }

    private void CompleteConfig(long index, long clientId, long seq)
    {
        if (!_sessions.TryGetValue(clientId, out var s) || seq > s.LastSeq)
        {
            _sessions[clientId] = new Session(seq, [], index);
        }
        if (_pending.Remove((clientId, seq)))
        {
            Complete(new ProposalOutcome(clientId, seq, ProposalStatus.Committed, []));
        }
    }

    private const long SessionSweepInterval = 1024;

    /// <summary>Forgets clients that have applied nothing for <see cref="PaxosOptions.SessionRetention"/> entries. Done
    /// at fixed indices so every member forgets the same sessions at the same point of the log. A proposal retransmitted
    /// after that long would be applied again; proposals time out long before.</summary>
    private void ExpireSessions(long index)
    {
        List<long>? stale = null;
        foreach (var (client, s) in _sessions)
        {
            if (index - s.LastIndex > _options.SessionRetention)
            {
                (stale ??= []).Add(client);
            }
        }
        foreach (var client in stale ?? [])
        {
            _sessions.Remove(client);
        }
    }

    private void ApplyCommand(long index, ClientCommand cmd)
    {
        var key = (cmd.ClientId, cmd.Seq);
        _queuedKeys.Remove(key);
        ProposalOutcome outcome;
        if (_sessions.TryGetValue(cmd.ClientId, out var s) && cmd.Seq <= s.LastSeq)
        {
            // A duplicate (resent, forwarded twice, re-proposed by a new leader): applied once already.
            outcome = cmd.Seq == s.LastSeq
                ? new ProposalOutcome(cmd.ClientId, cmd.Seq, ProposalStatus.Committed, s.LastResult)
                : new ProposalOutcome(cmd.ClientId, cmd.Seq, ProposalStatus.Superseded, null);
        }
        else
        {
            var result = _machine.Apply(index, cmd.Payload);
            _sessions[cmd.ClientId] = new Session(cmd.Seq, result, index);
            outcome = new ProposalOutcome(cmd.ClientId, cmd.Seq, ProposalStatus.Committed, result);
        }
        if (_pending.Remove(key))
        {
            Complete(outcome, index);
        }
    }
}
