using Appliance.Paxos.Storage;

namespace Appliance.Paxos.Core;

/// <summary>
/// One member of a Multi-Paxos replicated log, as a deterministic state machine. It never reads a clock, never
/// sleeps, owns no thread or socket: the host calls <see cref="Handle"/> for each message received,
/// <see cref="Tick"/> periodically (every 10 ms or so), <see cref="Propose"/> and <see cref="Read"/> for clients, all
/// with the current monotonic time; then it takes the node's <see cref="TakeOutput"/> and sends the messages.
/// Not thread-safe: one caller at a time. Every call writes the state it changed to <see cref="IPaxosStorage"/>
/// (one atomic batch) before any message or completion produced by the call appears in the output, so a reply is
/// only ever sent for durable state. Between <see cref="BeginBatch"/> and <see cref="EndBatch"/> the calls share one
/// write instead (group commit): their outputs are held until EndBatch has persisted it. If the storage throws, the
/// call throws, nothing it produced is released, and the instance refuses further calls: discard it and start a new
/// one from storage. See README.md for the protocol.
/// </summary>
public sealed partial class PaxosNode
{
    private readonly PaxosOptions _options;
    private readonly IPaxosStorage _storage;
    private readonly IStateMachine _machine;
    private readonly Random _random;
    private readonly Action<long, LogValue>? _onApplied;

    // Acceptor state (durable).
    private Ballot _promised;
    private readonly SortedList<long, AcceptedEntry> _log = [];
    private long _commitIndex;

    // Applied state (rebuilt from snapshot + committed entries at start).
    private long _firstIndex;
    private MemberSet _committedConfig;
    private SnapshotData? _lastSnapshot;
    private readonly Dictionary<long, Session> _sessions = [];

    // Who leads, as far as this member knows.
    private PaxosRole _role = PaxosRole.Follower;
    private int? _leaderId;
    private TimeSpan _lastLeaderContact;
    private TimeSpan _electionTimeout;
    private TimeSpan _guardUntil;
    private Ballot _maxSeen;
    private TimeSpan? _lastCatchUpRequest;
    private TimeSpan _now;
    private bool _failed;

    // Proposals made on this member, until they are applied here.
    private readonly Dictionary<(long Client, long Seq), PendingProposal> _pending = [];

    // The effects of the current call (or of every call in an open batch scope): the batch to persist, then the
    // messages and completions it allows. Nothing staged reaches _output before the batch is durable, except a
    // leader's Accept messages and the completions of entries already durable here (see BeforeWrite).
    private PaxosWriteBatch _batch = new();
    private readonly Dictionary<long, int> _batchSlots = [];
    private readonly List<OutgoingMessage> _staged = [];
    private readonly List<ProposalOutcome> _stagedCompletions = [];
    // Commits of entries that earlier writes made durable here (not in the batch being built): they depend on nothing
    // this batch holds, so BeforeWrite may hand them out before its write.
    private readonly List<ProposalOutcome> _durableCompletions = [];
    // The state machine holds something applied from state this member's disk does not hold yet (an entry or a
    // snapshot in the batch being built): until the write, its state must not be shown (see AppliedStateDurable).
    private bool _appliedAheadOfDisk;
    private PaxosOutput _output = new();
    private bool _inBatch;

    // Whether the batch holds state that replies depend on (a promise, accepted entries, an installed snapshot):
    // then it is written before anything is released. A batch holding only a commit index (and a snapshot/trim of
    // our own applied state) records what is already chosen — durable on a quorum — and may be written later.
    private bool _batchGating;
    private TimeSpan? _lazySince;

    /// <summary>Starts (or restarts) a member from what <paramref name="storage"/> holds.</summary>
    /// <param name="id">This member's id (positive).</param>
    /// <param name="initialMembers">The bootstrap member set (the configuration before index 1). A member that joins
    /// a running cluster passes an empty set and learns the configuration by catch-up.</param>
    /// <param name="storage">Durable acceptor state.</param>
    /// <param name="machine">The replicated state machine, in its initial (empty) state.</param>
    /// <param name="options">Timing and sizing (validated).</param>
    /// <param name="random">The only randomness (election back-off): seed it for a reproducible run.</param>
    /// <param name="now">The monotonic time now.</param>
    /// <param name="onApplied">Called for every log entry as it is applied, in index order (audit, tests).</param>
    public PaxosNode(int id, MemberSet initialMembers, IPaxosStorage storage, IStateMachine machine, PaxosOptions options,
        Random random, TimeSpan now, Action<long, LogValue>? onApplied = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(id);
        options.Validate();
        Id = id;
        _options = options;
        _storage = storage;
        _machine = machine;
        _random = random;
        _onApplied = onApplied;
        _committedConfig = initialMembers;

        var state = storage.Load();
        _promised = state.Promised;
        _maxSeen = _promised;
        var snapIndex = 0L;
        if (state.Snapshot is { } snap)
        {
            RestoreNodeState(snap.Data);
            _committedConfig = snap.Members;
            _lastSnapshot = snap;
            snapIndex = snap.Index;
        }
        foreach (var (index, entry) in state.Entries)
        {
            _log[index] = entry;
        }
        _commitIndex = snapIndex;
        _firstIndex = FirstContiguousIndex(snapIndex);
        for (var i = snapIndex + 1; i <= state.CommitIndex && _log.ContainsKey(i); i++)
        {
            ApplyEntry(i, _log[i].Value);
            _commitIndex = i;
        }
        _batch = new PaxosWriteBatch();

        // A lease this member granted before it went down may still be held by a leader: refuse new ballots for a
        // full lease duration from now, which ends after any promise made before the crash.
        _guardUntil = options.BugNoLeaseGuard ? now : now + options.LeaseDuration;
        ResetElectionTimer(now);
    }

    public int Id { get; }

    public PaxosRole Role => _role;

    /// <summary>The leader this member follows (itself when leading), if any.</summary>
    public int? Leader => _role == PaxosRole.Leader ? Id : _leaderId;

    /// <summary>The highest ballot promised.</summary>
    public Ballot Promised => _promised;

    /// <summary>Every entry up to here is chosen and applied on this member.</summary>
    public long CommitIndex => _commitIndex;

    /// <summary>The lowest log index this member still holds (older ones are covered by its snapshot).</summary>
    public long FirstIndex => _firstIndex;

    /// <summary>The committed member set (it governs the next index).</summary>
    public MemberSet Members => _committedConfig;

    /// <summary>The monitor's view: whether this member is the leader and may serve reads at <paramref name="now"/>.</summary>
    public bool HoldsLease(TimeSpan now) => _role == PaxosRole.Leader && now < _leaseUntil;

    /// <summary>A one-line description of this member's state, for logs and failing tests.</summary>
    public string Describe() =>
        $"node {Id} {_role} ballot {_ballot} promised {_promised} leader {_leaderId} commit {_commitIndex} first {_firstIndex} " +
        $"next {_nextIndex} members {_committedConfig} queue {_queue.Count} pending {_pending.Count} " +
        $"log [{string.Join(" ", Above(_commitIndex).Select(e => $"{e.Index}@{e.Ballot}:{e.Value}"))}]";

    /// <summary>
    /// Called just before this member writes a batch, when the write holds back output that does not depend on it:
    /// that output is already in <see cref="TakeOutput"/>, so the host can send it while this member writes.
    /// (1) Accept messages of this member as leader: the followers write their acceptance while this member writes its
    /// own (one flush time per round instead of two in a row). Safe because an Accept depends on nothing this write
    /// holds: its ballot's promise is already durable (a restarted member never leads that ballot again, so no other
    /// value is ever proposed in it), and this member's own acceptance is counted only when acknowledgements are
    /// handled, which the host does after this write returns. If the write fails, the followers hold acceptances the
    /// leader lacks, which Paxos allows (as for any acceptor that missed an Accept).
    /// (2) Completions of commands committed at indices whose entries an earlier write made durable here (so neither
    /// in this batch nor accepted by this batch's caller in a newer ballot): the value is chosen and on this disk, the
    /// commit index itself need not be (see <see cref="PaxosOptions.DeferCommitWrites"/>). Without this, a client's
    /// reply would wait for a write of other clients' newer proposals.
    /// Null (the default): everything waits for the write.
    /// </summary>
    public Action? BeforeWrite { get; set; }

    /// <summary>Whether everything the state machine has applied is durable here (always true outside a batch scope;
    /// inside one, false once an entry or snapshot the scope has not written yet was applied). A host may show the
    /// state machine's state (from <see cref="BeforeWrite"/> on) only while this holds.</summary>
    public bool AppliedStateDurable => !_appliedAheadOfDisk;

    /// <summary>Whether a batch scope is open (between <see cref="BeginBatch"/> and <see cref="EndBatch"/>).</summary>
    public bool InBatch => _inBatch;

    /// <summary>Opens a batch scope: until <see cref="EndBatch"/>, the calls (Handle, Tick, Propose, ProposeMembership,
    /// Read) accumulate one write batch instead of writing one each, and hold back every message and completion
    /// they produce; the leader packs the proposals of the whole scope into as few entries and Accept messages as it
    /// can. A host that handles several events per loop iteration brackets them with BeginBatch/EndBatch, then takes
    /// the output: one storage write per iteration instead of one per event. A crash inside the scope loses the
    /// scope's effects, as if the events had never arrived (nothing of them was observable).</summary>
    /// <exception cref="InvalidOperationException">A scope is already open, or the member failed.</exception>
    public void BeginBatch()
    {
        ThrowIfFailed();
        if (_inBatch)
        {
            throw new InvalidOperationException("a batch scope is already open: call EndBatch first");
        }
        _inBatch = true;
    }

    /// <summary>Closes the batch scope: proposes what the scope queued (at the leader), persists the accumulated
    /// batch in one <see cref="IPaxosStorage.Write"/>, and only then releases the held messages and completions to
    /// <see cref="TakeOutput"/>. If the write throws, this throws, nothing is released and the member is failed (as
    /// for a failed write outside a scope). With <see cref="PaxosOptions.DeferCommitWrites"/>, a batch that only
    /// advances the commit index (nothing a reply depends on: the entries are durable here and chosen) is not written
    /// now but with the next write, at most <see cref="PaxosOptions.MaxCommitWriteDelay"/> later (a later scope with a
    /// tick writes it).</summary>
    /// <exception cref="InvalidOperationException">No scope is open, or the member failed.</exception>
    public void EndBatch()
    {
        ThrowIfFailed();
        if (!_inBatch)
        {
            throw new InvalidOperationException("no batch scope is open: call BeginBatch first");
        }
        _inBatch = false;
        SendPendingCommitNotice();
        if (_role == PaxosRole.Leader)
        {
            FlushQueue();
        }
        var lazyTooOld = _lazySince is { } since && _now - since >= _options.MaxCommitWriteDelay;
        Persist(allowDeferral: _options.DeferCommitWrites && !lazyTooOld);
    }

    /// <summary>Everything released since the last call: it depends only on durable state. Send the messages in
    /// order; report the completions. Inside a batch scope nothing is released before <see cref="EndBatch"/> (except
    /// what a <see cref="Read"/> had to persist early).</summary>
    public PaxosOutput TakeOutput()
    {
        var o = _output;
        _output = new PaxosOutput();
        return o;
    }

    /// <summary>Handles one message from member <paramref name="from"/>.</summary>
    public void Handle(int from, PaxosMessage message, TimeSpan now)
    {
        ThrowIfFailed();
        _now = now;
        switch (message)
        {
            case Prepare m: OnPrepare(from, m, now); break;
            case Promise m: OnPromise(from, m, now); break;
            case Nack m: OnNack(m, now); break;
            case Accept m: OnAccept(from, m, now); break;
            case Accepted m: OnAccepted(from, m); break;
            case Heartbeat m: OnHeartbeat(from, m, now); break;
            case HeartbeatAck m: OnHeartbeatAck(from, m); break;
            case CatchUpRequest m: OnCatchUpRequest(from, m); break;
            case CatchUp m: OnCatchUp(from, m, now); break;
            case Forward m: OnForward(m.Command); break;
            case ForwardConfig m: TryQueueConfig(m.Members, m.ClientId, m.Seq); break;
            case Handoff m: OnHandoff(from, m, now); break;
            case SnapshotChunk m: OnSnapshotChunk(from, m, now); break;
            case SnapshotChunkRequest m: OnSnapshotChunkRequest(from, m); break;
            default: throw new ArgumentException($"unknown message {message.GetType().Name}", nameof(message));
        }
        if (_role == PaxosRole.Leader && !_inBatch)
        {
            FlushQueue();
        }
        Flush();
    }

    /// <summary>Drives timers: elections, heartbeats and leases, retransmissions, proposal timeouts.</summary>
    public void Tick(TimeSpan now)
    {
        ThrowIfFailed();
        _now = now;
        ExpireProposals(now);
        switch (_role)
        {
            case PaxosRole.Follower:
                if (_committedConfig.Contains(Id) && now - _lastLeaderContact >= _electionTimeout && CanPromiseNewBallot(now))
                {
                    StartElection(now);
                }
                else
                {
                    RetransmitForwards(now);
                    RetransmitHandoff(now);
                }
                ResumeSnapshotTransfer(now);
                break;
            case PaxosRole.Candidate:
                CandidateTick(now);
                ResumeSnapshotTransfer(now);
                break;
            case PaxosRole.Leader:
                LeaderTick(now);
                break;
        }
        Flush();
    }

    /// <summary>Proposes a client command. The command is identified by (clientId, seq); a client must use
    /// increasing sequence numbers, and may resend the same (clientId, seq) anywhere: it is applied at most once.
    /// A member that is not the leader forwards it to the leader. The outcome is reported in
    /// <see cref="PaxosOutput.Completions"/> of this member.</summary>
    public ProposeStatus Propose(long clientId, long seq, byte[] command, TimeSpan now)
    {
        ThrowIfFailed();
        _now = now;
        var key = (clientId, seq);
        if (_pending.ContainsKey(key))
        {
            return ProposeStatus.Pending;
        }
        if (_sessions.TryGetValue(clientId, out var session) && seq <= session.LastSeq)
        {
            // Applied here already (a client resending after a lost reply): answer from the session.
            Complete(seq == session.LastSeq
                ? new ProposalOutcome(clientId, seq, ProposalStatus.Committed, session.LastResult)
                : new ProposalOutcome(clientId, seq, ProposalStatus.Superseded, null));
            Flush();
            return ProposeStatus.Pending;
        }
        if (!_committedConfig.Contains(Id))
        {
            return ProposeStatus.NoQuorum; // not (or no longer) a member: nothing proposed here would be heard of again
        }
        var cmd = new ClientCommand(clientId, seq, command);
        if (_role == PaxosRole.Leader)
        {
            _pending[key] = new PendingProposal(clientId, seq, cmd, null, now + _options.ProposalTimeout, now);
            Enqueue(cmd);
            if (!_inBatch)
            {
                FlushQueue(); // in a scope, EndBatch packs everything the scope queued
            }
        }
        else if (_leaderId is { } leader && now - _lastLeaderContact < _options.ElectionTimeout)
        {
            _pending[key] = new PendingProposal(clientId, seq, cmd, null, now + _options.ProposalTimeout, now);
            Send(leader, new Forward(cmd));
        }
        else
        {
            return ProposeStatus.NoQuorum;
        }
        Flush();
        return ProposeStatus.Pending;
    }

    /// <summary>Proposes a new member set that adds or removes exactly one member of the latest configuration
    /// (committed or in flight), anonymously: no outcome is reported (watch <see cref="Members"/>). See the overload
    /// with a client id.</summary>
    public ProposeStatus ProposeMembership(MemberSet members, TimeSpan now) => ProposeMembership(0, 0, members, now);

    /// <summary>Proposes a new member set that adds or removes exactly one member of the latest configuration
    /// (committed or in flight). It takes effect at the index after its own once committed. Only one change can be
    /// in flight. Identified like a command by (<paramref name="clientId"/>, <paramref name="seq"/>) — the same
    /// sequence space as the client's commands, applied at most once — and, unless <paramref name="clientId"/> is 0,
    /// its outcome is reported in <see cref="PaxosOutput.Completions"/> of this member: <see cref="ProposalStatus.Committed"/>
    /// (with an empty result) once applied here, <see cref="ProposalStatus.Superseded"/>, or
    /// <see cref="ProposalStatus.Timeout"/> (unknown: it may still commit). A member that is not the leader forwards
    /// it (and resends it until it is applied or times out). A leader removed by a committed change hands off to a
    /// remaining member (see README).</summary>
    /// <returns><see cref="ProposeStatus.Pending"/> (an outcome follows when identified), <see cref="ProposeStatus.Rejected"/>
    /// (not a single add or remove of the latest configuration this member knows, or the leader has a change in
    /// flight), or <see cref="ProposeStatus.NoQuorum"/>.</returns>
    public ProposeStatus ProposeMembership(long clientId, long seq, MemberSet members, TimeSpan now)
    {
        ThrowIfFailed();
        _now = now;
        var key = (clientId, seq);
        var identified = clientId != 0;
        if (identified && _pending.ContainsKey(key))
        {
            return ProposeStatus.Pending;
        }
        if (identified && _sessions.TryGetValue(clientId, out var session) && seq <= session.LastSeq)
        {
            Complete(new ProposalOutcome(clientId, seq, seq == session.LastSeq ? ProposalStatus.Committed : ProposalStatus.Superseded,
                seq == session.LastSeq ? session.LastResult : null));
            Flush();
            return ProposeStatus.Pending;
        }
        ProposeStatus status;
        if (!_committedConfig.Contains(Id))
        {
            status = ProposeStatus.NoQuorum;
        }
        else if (_role == PaxosRole.Leader)
        {
            status = TryQueueConfig(members, clientId, seq) ? ProposeStatus.Pending : ProposeStatus.Rejected;
            if (status == ProposeStatus.Pending && identified)
            {
                _pending[key] = new PendingProposal(clientId, seq, null, members, now + _options.ProposalTimeout, now);
            }
            if (!_inBatch)
            {
                FlushQueue();
            }
        }
        else if (_leaderId is { } leader && now - _lastLeaderContact < _options.ElectionTimeout)
        {
            if (!IsSingleChange(members))
            {
                status = ProposeStatus.Rejected;
            }
            else
            {
                if (identified)
                {
                    _pending[key] = new PendingProposal(clientId, seq, null, members, now + _options.ProposalTimeout, now);
                }
                Send(leader, new ForwardConfig(members, clientId, seq));
                status = ProposeStatus.Pending;
            }
        }
        else
        {
            status = ProposeStatus.NoQuorum;
        }
        Flush();
        return status;
    }

    /// <summary>A linearizable read: served only by the leader, while it holds its lease and has applied everything
    /// any earlier leader could have committed. Others answer <see cref="ReadStatus.NotLeader"/> or
    /// <see cref="ReadStatus.NoQuorum"/> — never a possibly stale value. The answer is returned at once, so inside a
    /// batch scope a read first persists what it may depend on (accepted entries, a promise, an installed snapshot)
    /// if the scope changed it.</summary>
    public ReadResult Read(ReadOnlySpan<byte> query, TimeSpan now)
    {
        ThrowIfFailed();
        if (_role == PaxosRole.Leader)
        {
            if (_commitIndex < _recoveredMax || now >= _leaseUntil)
            {
                return new ReadResult(ReadStatus.NoQuorum, null, null);
            }
            if (_inBatch && _batchGating)
            {
                Persist(allowDeferral: true); // what the answer may depend on: entries applied in this scope, the promise
            }
            return new ReadResult(ReadStatus.Ok, _machine.Query(query), Id);
        }
        if (_options.BugFollowerReads)
        {
            return new ReadResult(ReadStatus.Ok, _machine.Query(query), _leaderId);
        }
        return _leaderId is { } leader && _committedConfig.Contains(Id) && now - _lastLeaderContact < _options.LeaseDuration
            ? new ReadResult(ReadStatus.NotLeader, null, leader)
            : new ReadResult(ReadStatus.NoQuorum, null, null);
    }

    private void ThrowIfFailed()
    {
        if (_failed)
        {
            throw new InvalidOperationException($"Paxos member {Id} failed to persist its state; restart it from storage");
        }
    }

    private void Send(int to, PaxosMessage message)
    {
        if (to != Id)
        {
            _staged.Add(new OutgoingMessage(to, message));
        }
    }

    private void Complete(ProposalOutcome outcome) => _stagedCompletions.Add(outcome);

    /// <summary>The completion of a command applied from the entry at <paramref name="index"/>: released before the
    /// batch's write when that entry is already durable here (see <see cref="BeforeWrite"/>). An entry reaches the log
    /// only through the batch (StageEntry) or from the disk at start, and leaves the batch only by its write or by a
    /// trim that drops it from the log too: so "not in the batch being built" means "written".</summary>
    private void Complete(ProposalOutcome outcome, long index)
    {
        if (_inBatch && BeforeWrite is not null && !_batchSlots.ContainsKey(index))
        {
            _durableCompletions.Add(outcome);
        }
        else
        {
            _stagedCompletions.Add(outcome);
        }
    }

    /// <summary>The end of every public call: persist and release, unless a batch scope defers both to
    /// <see cref="EndBatch"/>.</summary>
    private void Flush()
    {
        if (!_inBatch)
        {
            Persist(allowDeferral: false);
        }
        else if (_options.BugReleaseBeforePersist)
        {
            Release();
        }
    }

    /// <summary>Persists the batch, then releases the messages and completions that depend on it: the one place
    /// that orders durability before replies. With <paramref name="allowDeferral"/>, a batch with nothing gating
    /// (only a commit index and our own snapshot/trim) stays pending for a later write.</summary>
    private void Persist(bool allowDeferral)
    {
        if (!_batch.IsEmpty && !_batchGating && allowDeferral)
        {
            _lazySince ??= _now;
        }
        else if (!_batch.IsEmpty)
        {
            ReleaseEarly();
            try
            {
                _storage.Write(_batch);
            }
            catch
            {
                // Memory is now ahead of the disk: nothing staged may leave, and this instance must not go on.
                _staged.Clear();
                _stagedCompletions.Clear();
                _durableCompletions.Clear();
                _failed = true;
                throw;
            }
            _batch = new PaxosWriteBatch();
            _batchSlots.Clear();
            _batchGating = false;
            _lazySince = null;
            _appliedAheadOfDisk = false;
        }
        Release();
    }

    /// <summary>Hands the host what may leave before the write (see <see cref="BeforeWrite"/>): this leader's Accept
    /// messages when the promise of its ballot is already durable (not part of this batch), and the completions of
    /// entries already durable here.</summary>
    private void ReleaseEarly()
    {
        if (BeforeWrite is not { } hook)
        {
            return;
        }
        var moved = 0;
        if (_role == PaxosRole.Leader && _batch.Promised is null)
        {
            for (var i = 0; i < _staged.Count; i++)
            {
                if (_staged[i].Message is Accept a && a.Ballot == _ballot)
                {
                    _output.Messages.Add(_staged[i]);
                    _staged[i] = default;
                    moved++;
                }
            }
            if (moved > 0)
            {
                _staged.RemoveAll(m => m.Message is null);
            }
        }
        moved += _durableCompletions.Count;
        _output.Completions.AddRange(_durableCompletions);
        _durableCompletions.Clear();
        if (moved > 0)
        {
            hook();
        }
    }

    private void Release()
    {
        _output.Messages.AddRange(_staged);
        _staged.Clear();
        _output.Completions.AddRange(_durableCompletions);
        _durableCompletions.Clear();
        _output.Completions.AddRange(_stagedCompletions);
        _stagedCompletions.Clear();
    }

    /// <summary>Adds an accepted entry to the batch, replacing one the batch already holds at its index (a scope may
    /// accept an index twice, in two ballots).</summary>
    private void StageEntry(AcceptedEntry entry)
    {
        _batchGating = true;
        if (_batchSlots.TryGetValue(entry.Index, out var slot))
        {
            _batch.Entries[slot] = entry;
        }
        else
        {
            _batchSlots[entry.Index] = _batch.Entries.Count;
            _batch.Entries.Add(entry);
        }
    }

    private void NoteBallot(Ballot b)
    {
        if (b > _maxSeen)
        {
            _maxSeen = b;
        }
    }

    private void SetPromised(Ballot b)
    {
        _promised = b;
        _batch.Promised = b;
        _batchGating = true;
        NoteBallot(b);
    }

    private void ResetElectionTimer(TimeSpan now)
    {
        _lastLeaderContact = now;
        _electionTimeout = _options.ElectionTimeout + _options.ElectionTimeout * _random.NextDouble();
    }

    /// <summary>Whether this member may promise a ballot other than the one it follows: not while a lease it granted
    /// (or, as leader, holds) may still be in force.</summary>
    private bool CanPromiseNewBallot(TimeSpan now) => _options.BugNoLeaseGuard || now >= _guardUntil;

    /// <summary>The log entries above <paramref name="index"/>, in order (a binary search, then a walk).</summary>
    private IEnumerable<AcceptedEntry> Above(long index)
    {
        var keys = _log.Keys;
        int lo = 0, hi = keys.Count;
        while (lo < hi)
        {
            var mid = (lo + hi) >>> 1;
            if (keys[mid] <= index)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }
        var values = _log.Values;
        for (var i = lo; i < values.Count; i++)
        {
            yield return values[i];
        }
    }

    /// <summary>Drops every log entry at or below <paramref name="through"/> (in memory only).</summary>
    private void RemoveThrough(long through)
    {
        while (_log.Count > 0 && _log.Keys[0] <= through)
        {
            _log.RemoveAt(0);
        }
    }

    private long FirstContiguousIndex(long snapIndex)
    {
        var first = snapIndex + 1;
        while (_log.ContainsKey(first - 1))
        {
            first--;
        }
        return first;
    }

    private void ExpireProposals(TimeSpan now)
    {
        List<(long, long)>? expired = null;
        foreach (var (key, p) in _pending)
        {
            if (now >= p.Deadline)
            {
                (expired ??= []).Add(key);
            }
        }
        if (expired is null)
        {
            return;
        }
        foreach (var key in expired)
        {
            _pending.Remove(key);
            Complete(new ProposalOutcome(key.Item1, key.Item2, ProposalStatus.Timeout, null));
        }
    }

    private void RetransmitForwards(TimeSpan now)
    {
        if (_leaderId is not { } leader)
        {
            return;
        }
        foreach (var p in _pending.Values)
        {
            if (now - p.LastSent >= _options.RetransmitInterval)
            {
                p.LastSent = now;
                Send(leader, p.Command is { } cmd ? new Forward(cmd) : new ForwardConfig(p.Config!, p.ClientId, p.Seq));
            }
        }
    }

    private void StepDown(TimeSpan now)
    {
        _role = PaxosRole.Follower;
        _leaseUntil = TimeSpan.Zero;
        _queue.Clear();
        _queuedKeys.Clear();
        _queuedConfig = null;
        _acks.Clear();
        _promises.Clear();
        _heartbeats.Clear();
        ResetElectionTimer(now);
    }

    /// <summary>A proposal made on this member: a command, or a membership change.</summary>
    private sealed class PendingProposal(long clientId, long seq, ClientCommand? command, MemberSet? config, TimeSpan deadline, TimeSpan lastSent)
    {
        public long ClientId { get; } = clientId;

        public long Seq { get; } = seq;

        public ClientCommand? Command { get; } = command;

        public MemberSet? Config { get; } = config;

        public TimeSpan Deadline { get; } = deadline;

        public TimeSpan LastSent { get; set; } = lastSent;
    }

    private sealed record Session(long LastSeq, byte[] LastResult, long LastIndex);
}
