using Appliance.Paxos.Core;
using Appliance.Paxos.Encoding;
using Appliance.Paxos.Storage;

namespace Appliance.Paxos.Tests.Simulation;

/// <summary>What one schedule did and what its checkers found.</summary>
public sealed class SimResult
{
    public required int Seed { get; init; }

    public List<string> Violations { get; } = [];

    public long Events { get; set; }

    public long Messages { get; set; }

    public long Committed { get; set; }

    public long Crashes { get; set; }

    public long LeaderChanges { get; set; }

    /// <summary>Snapshot transfers begun (first pieces sent), pieces sent, and requests for a piece sent again after
    /// a loss (a transfer resumed where it stopped).</summary>
    public long SnapshotsSent { get; set; }

    public long SnapshotChunks { get; set; }

    public long SnapshotResumes { get; set; }

    /// <summary>Last pieces of transfers that took more than one piece.</summary>
    public long MultiPieceTransfers { get; set; }

    /// <summary>The most client commands seen in one committed entry.</summary>
    public int LargestBatch { get; set; }

    public long MembershipChanges { get; set; }

    /// <summary>Outcomes of identified membership proposals: committed (each checked against what was chosen), and
    /// timed out.</summary>
    public long MembershipCommittedOutcomes { get; set; }

    public long MembershipTimeouts { get; set; }

    /// <summary>Leaders that handed off after their removal committed, and successors they named that then led.</summary>
    public long Handoffs { get; set; }

    public long HandoffSuccessions { get; set; }

    /// <summary>Batch scopes (BeginBatch..EndBatch) the simulated hosts ran, and the most events one of them held.</summary>
    public long Scopes { get; set; }

    public int LargestScope { get; set; }

    /// <summary>Crashes between BeginBatch and EndBatch (the scope's writes and outputs lost).</summary>
    public long ScopeCrashes { get; set; }

    /// <summary>Commits reported to clients before a write that followed them (PaxosNode.BeforeWrite).</summary>
    public long EarlyCompletions { get; set; }

    /// <summary>Writes before which a leader handed its Accept messages out early (PaxosNode.BeforeWrite).</summary>
    public long EarlyReleases { get; set; }

    /// <summary>Crashes between such an early release and the write.</summary>
    public long CrashesAfterEarlyRelease { get; set; }

    public int ReadsOk { get; set; }

    public int WritesOk { get; set; }

    public int Unknown { get; set; }

    /// <summary>A digest of everything observable, to show a seed replays the same schedule.</summary>
    public long Trace { get; set; }

    public override string ToString() =>
        $"seed {Seed}: {Events} events, {Messages} msgs, {Committed} entries, {WritesOk} writes ok, {ReadsOk} reads ok, " +
        $"{Unknown} unknown, {Crashes} crashes, {LeaderChanges} leader changes, {SnapshotsSent} snapshots sent ({SnapshotChunks} pieces, {SnapshotResumes} resumed), largest batch {LargestBatch}, " +
        $"{MembershipChanges} membership changes ({MembershipCommittedOutcomes} reported committed, {MembershipTimeouts} timed out), " +
        $"{Handoffs} hand-offs ({HandoffSuccessions} to the named successor), {Scopes} scopes (largest {LargestScope} events), {ScopeCrashes} crashes inside one, {EarlyReleases} early releases ({CrashesAfterEarlyRelease} crashed before the write), {EarlyCompletions} commits reported before a write";
}

/// <summary>
/// A seeded discrete-event simulation of a Paxos cluster in one process: simulated real time, a clock per node
/// running at a rate within the drift bound (and restarting from an arbitrary value after a crash), a network that
/// loses, delays, duplicates and reorders messages and can be partitioned both ways or one way, crashes that lose
/// whatever storage did not make durable, restarts, and clients that write (put, compare-and-set) and read (lease reads
/// at the leader) and record what they saw. Checkers run at every event (agreement at every commit, one lease holder
/// at a time, one leader per ballot) and at the end (linearizability, progress after healing, convergence).
/// Everything random comes from one seed.
/// A node runs in one of two host modes (chosen at each boot, see <see cref="SimConfig.Batching"/>): one call per
/// event, or a host loop that queues the events reaching the node while it is busy and handles each queue in one
/// batch scope (BeginBatch, the calls, EndBatch), busy again for the length of a write after a scope that wrote.
/// A crash may strike inside a scope, after any of its calls.
/// </summary>
public sealed class Simulation
{
    private const long TickPeriod = 10_000;

    private readonly SimConfig _config;
    private readonly Random _rng;
    private readonly PriorityQueue<Action, (long, long)> _events = new();
    private readonly SimNode[] _nodes;
    private readonly SimClient[] _clients;
    private readonly HashSet<(int, int)> _blocked = [];
    private readonly Dictionary<long, LogValue> _chosen = [];
    private readonly List<KvOp> _history = [];
    private readonly int[] _opsPerKey;
    private readonly SimResult _result;
    private readonly MemberSet _initialMembers;
    private readonly HashSet<(long, long)> _chosenConfigs = [];
    private readonly Dictionary<(long Client, long Seq), (int Node, long At)> _configProposals = [];
    private long _configSeq;
    private (int Successor, Ballot Ballot)? _lastHandoff;
    private readonly HashSet<Ballot> _handoffBallots = [];
    private readonly HashSet<(int, int, long, long, long)> _chunkRequests = [];

    /// <summary>The client id the simulated administrator proposes membership changes as.</summary>
    private const long MembershipClient = 1_000_000;
    private long _now;
    private long _seq;
    private double _loss;
    private double _dup;
    private long _maxDelay;
    private bool _healed;
    private int? _lastLeader;

    public Simulation(int seed, SimConfig config)
    {
        _config = config;
        _rng = new Random(seed);
        _result = new SimResult { Seed = seed };
        _initialMembers = new MemberSet(Enumerable.Range(1, config.Members));
        _nodes = new SimNode[config.Members + config.Joiners + 1];
        _clients = new SimClient[config.Clients];
        _opsPerKey = new int[config.Keys];
    }

    public static SimResult Run(int seed, SimConfig config, Action<string>? log = null) => new Simulation(seed, config) { _log = log }.Run();

    private Action<string>? _log;

    private void Log(string what) => _log?.Invoke($"{_now / 1000.0:F1}ms {what}");

    private SimResult Run()
    {
        for (var id = 1; id < _nodes.Length; id++)
        {
            _nodes[id] = new SimNode(id, new MemoryPaxosStorage { LiesAboutSync = _config.LyingStorage });
            Boot(_nodes[id]);
        }
        for (var c = 0; c < _clients.Length; c++)
        {
            var client = _clients[c] = new SimClient(c + 1);
            Schedule(_rng.NextInt64(0, 50_000), () => ClientStep(client));
        }
        SetNetworkWeather();
        Schedule(_rng.NextInt64(50_000, 200_000), Chaos);
        Schedule(_config.FaultPhase, Heal);

        var end = _config.End;
        while (_events.TryDequeue(out var action, out var key))
        {
            if (key.Item1 > end)
            {
                break;
            }
            _now = key.Item1;
            action();
            _result.Events++;
            CheckLeaders();
            if (_result.Violations.Count > 0)
            {
                return _result;
            }
        }
        FinalChecks();
        return _result;
    }

    private void Schedule(long at, Action action) => _events.Enqueue(action, (at, _seq++));

    private void Violation(string what)
    {
        _result.Violations.Add($"t={_now}us: {what}");
        foreach (var n in _nodes.Skip(1))
        {
            _result.Violations.Add("  " + (n.Node?.Describe() ?? $"node {n.Id} down"));
        }
    }

    private void Mix(long v) => _result.Trace = unchecked(_result.Trace * 1_000_003 + v);

    // ---- nodes ----

    private TimeSpan Local(SimNode n) => TimeSpan.FromTicks(n.ClockOffset + (long)((_now - n.BootTime) * n.Rate * 10));

    private void Boot(SimNode n)
    {
        Log($"boot {n.Id}");
        n.Incarnation++;
        n.BootTime = _now;
        n.ClockOffset = _rng.NextInt64(0, 10_000_000_000); // monotonic clocks start anywhere after a reboot
        var drift = _config.Options.MaxClockDrift;
        n.Rate = 1 - drift + 2 * drift * _rng.NextDouble();
        n.Machine = new KvMachine();
        var initial = n.Id <= _config.Members ? _initialMembers : MemberSet.Empty;
        var id = n.Id;
        n.Batched = _config.Batching switch
        {
            BatchMode.Always => true,
            BatchMode.Never => false,
            _ => _rng.Next(2) == 0,
        };
        n.Inbox.Clear();
        n.InboxScheduled = false;
        n.BusyUntil = 0;
        n.AppliedAt.Clear();
        n.Node = new PaxosNode(n.Id, initial, n.Storage, n.Machine, _config.Options, new Random(_rng.Next()), Local(n),
            (index, value) => OnApplied(id, index, value));
        n.EarlyAccepts = _config.EarlyAccepts && _rng.Next(2) == 0;
        if (n.EarlyAccepts)
        {
            n.Node.BeforeWrite = () => ReleaseEarly(n);
        }
        CheckApplied(n); // replayed from storage: durable
        var incarnation = n.Incarnation;
        Schedule(_now + _rng.NextInt64(1, TickPeriod), () => Tick(n, incarnation));
    }

    private void Tick(SimNode n, int incarnation)
    {
        if (n.Node is null || n.Incarnation != incarnation)
        {
            return;
        }
        if (_now < n.PausedUntil)
        {
            Schedule(n.PausedUntil, () => Tick(n, incarnation));
            return;
        }
        RunOn(n, node => node.Tick(Local(n)));
        Schedule(_now + TickPeriod - 2_000 + _rng.NextInt64(0, 4_000), () => Tick(n, incarnation));
    }

    /// <summary>Runs one call on a node as its host would: at once (then takes the output), or queued for the node's
    /// next batch scope.</summary>
    private void RunOn(SimNode n, Action<PaxosNode> call)
    {
        if (!n.Batched)
        {
            call(n.Node!);
            Drain(n);
            return;
        }
        n.Inbox.Add(call);
        if (!n.InboxScheduled)
        {
            n.InboxScheduled = true;
            var incarnation = n.Incarnation;
            Schedule(Math.Max(_now, n.BusyUntil) + _rng.NextInt64(0, 300), () => RunScope(n, incarnation));
        }
    }

    /// <summary>The batching host's loop iteration: everything queued, in one scope. The output is taken after every
    /// call as well (a correct node releases nothing before EndBatch, so that changes nothing unless it is wrong).</summary>
    private void RunScope(SimNode n, int incarnation)
    {
        if (n.Node is not { } node || n.Incarnation != incarnation)
        {
            return;
        }
        if (_now < n.PausedUntil)
        {
            Schedule(n.PausedUntil + _rng.NextInt64(0, 1_000), () => RunScope(n, incarnation));
            return;
        }
        n.InboxScheduled = false;
        var calls = n.Inbox.ToArray();
        n.Inbox.Clear();
        var crashAfter = !_healed && _config.Crashes && _rng.NextDouble() < _config.ScopeCrashChance ? _rng.Next(calls.Length + 1) : -1;
        var writes = n.Storage.WriteCount;
        _result.Scopes++;
        _result.LargestScope = Math.Max(_result.LargestScope, calls.Length);
        node.BeginBatch();
        for (var i = 0; i < calls.Length; i++)
        {
            if (i == crashAfter)
            {
                break;
            }
            calls[i](node);
            Drain(n);
        }
        if (crashAfter >= 0)
        {
            Log($"crash {n.Id} inside a scope after {crashAfter} of {calls.Length} calls");
            _result.ScopeCrashes++;
            Crash(n);
            return;
        }
        n.InEndBatch = true;
        try
        {
            node.EndBatch();
        }
        catch (SimulatedCrash)
        {
            Log($"crash {n.Id} after handing out Accepts, before its write");
            _result.CrashesAfterEarlyRelease++;
            Crash(n);
            return;
        }
        finally
        {
            n.InEndBatch = false;
        }
        Drain(n);
        if (n.Storage.WriteCount != writes)
        {
            // The host is busy writing (an fsync) for a while; events queue up meanwhile and form the next scope.
            n.BusyUntil = _now + _rng.NextInt64(100, 1_000);
        }
    }

    private void Crash(SimNode n)
    {
        Log($"crash {n.Id}");
        n.Node = null;
        n.Storage.Crash();
        n.Inbox.Clear();
        n.PendingApplied.Clear(); // applied in memory, never persisted, never observed
        _result.Crashes++;
        Mix(-n.Id);
        // Clients waiting on the crashed node see their connection drop: the outcome of their write is unknown.
        foreach (var c in _clients)
        {
            if (c.Busy && c.OpNode == n.Id)
            {
                FinishWrite(c, null);
            }
            else if (c.QueuedOn == n.Id)
            {
                // Its request was still in the host's queue: the connection drops before anything happened.
                c.QueuedOn = null;
                c.Preferred = null;
                _opsPerKey[c.QueuedKey]--;
                Schedule(_now + 20_000, () => ClientStep(c));
            }
        }
        foreach (var (key, p) in _configProposals.ToArray())
        {
            if (p.Node == n.Id)
            {
                _configProposals.Remove(key); // its outcome is lost with the process
            }
        }
        CheckDurableImage(n);
    }

    /// <summary>An entry a node applied. It is checked once the node has persisted it (outside a scope, at once;
    /// inside one, at the write that releases output): an apply lost with a scope that crashed was never durable nor observable, and
    /// another value may rightly be chosen at its index.</summary>
    private void OnApplied(int node, long index, LogValue value)
    {
        var n = _nodes[node];
        n.PendingApplied.Add((index, value));
        foreach (var cmd in value.Commands)
        {
            // The first index only: a command re-proposed by a new leader can sit in the log again further on, where
            // it is skipped as a duplicate; its completion belongs to where it was applied.
            n.AppliedAt.TryAdd((cmd.ClientId, cmd.Seq), index);
        }
    }

    private void CheckApplied(SimNode n)
    {
        foreach (var (index, value) in n.PendingApplied)
        {
            CheckChosen(n.Id, index, value);
        }
        n.PendingApplied.Clear();
    }

    private void CheckChosen(int node, long index, LogValue value)
    {
        _result.Committed = Math.Max(_result.Committed, index);
        if (_chosen.TryGetValue(index, out var chosen))
        {
            if (!chosen.Equals(value))
            {
                Violation($"node {node} committed {value} at index {index} where {chosen} was committed before");
            }
        }
        else
        {
            _chosen[index] = value;
            _result.LargestBatch = Math.Max(_result.LargestBatch, value.Commands.Count);
            if (value.Kind == EntryKind.Config)
            {
                Log($"committed {value} at {index}");
            }
            Mix(index);
            if (value.Kind == EntryKind.Config)
            {
                _result.MembershipChanges++;
                if (value.ConfigClientId != 0)
                {
                    _chosenConfigs.Add((value.ConfigClientId, value.ConfigSeq));
                }
            }
        }
    }

    /// <summary>What a node's disk holds as committed must be what was chosen, and be complete: every index between
    /// the snapshot and the commit index present (a batch whose parts were applied out of order would lose some).</summary>
    private void CheckDurableImage(SimNode n)
    {
        var image = n.Storage.DurableImage;
        foreach (var (index, e) in image.Entries)
        {
            if (index <= image.CommitIndex && _chosen.TryGetValue(index, out var chosen) && !chosen.Equals(e.Value))
            {
                Violation($"node {n.Id}'s disk holds {e.Value} as committed at {index}; {chosen} was chosen");
            }
        }
        var from = image.Snapshot?.Index ?? 0;
        if (from > image.CommitIndex)
        {
            Violation($"node {n.Id}'s disk holds a snapshot at {from} above its commit index {image.CommitIndex}");
        }
        for (var i = from + 1; i <= image.CommitIndex; i++)
        {
            if (!image.Entries.ContainsKey(i))
            {
                Violation($"node {n.Id}'s disk says {image.CommitIndex} is committed but holds neither entry {i} nor a snapshot covering it");
                return;
            }
        }
    }

    /// <summary>The host's PaxosNode.BeforeWrite: send the leader's Accepts and report the commits of entries already
    /// on disk now; during the fault phase, sometimes crash before the write that follows (the followers then hold
    /// acceptances the leader's disk never got, and clients hold replies whose commit index was never written here).</summary>
    private void ReleaseEarly(SimNode n)
    {
        var output = n.Node!.TakeOutput();
        if (output.Messages.Any(m => m.Message is not Accept) || output.Completions.Any(c => c.Status != ProposalStatus.Committed))
        {
            Violation($"node {n.Id} released more than Accept messages and commits before a write");
        }
        if (_config.CheckReleasedDurable)
        {
            CheckReleasedDurable(n, output);
            if (n.Node.AppliedStateDurable)
            {
                // The host may publish its state machine now: everything applied must be on this disk already (the
                // last entries applied; older ones were checked when they were).
                for (var i = n.Node.CommitIndex; i > 0 && i > n.Node.CommitIndex - 64; i--)
                {
                    if (!n.Storage.DurablyHolds(i))
                    {
                        Violation($"node {n.Id} says its applied state is durable, but its disk does not hold index {i}");
                        return;
                    }
                }
            }
        }
        _result.EarlyReleases++;
        foreach (var m in output.Messages)
        {
            Transmit(n.Id, m.To, PaxosCodec.Encode(m.Message));
        }
        foreach (var c in output.Completions)
        {
            _result.EarlyCompletions++;
            OnCompletion(n.Id, c);
        }
        if (n.InEndBatch && !_healed && _config.Crashes && _rng.NextDouble() < 5 * _config.ScopeCrashChance)
        {
            throw new SimulatedCrash();
        }
    }

    private sealed class SimulatedCrash : Exception;

    private void Drain(SimNode n)
    {
        var output = n.Node!.TakeOutput();
        if (!n.Node.InBatch || !output.IsEmpty)
        {
            // Outside a scope every call persisted; inside one, output is only released by a write (a read's early
            // one) that covered everything applied so far.
            CheckApplied(n);
        }
        if (_config.CheckReleasedDurable)
        {
            CheckReleasedDurable(n, output);
        }
        foreach (var m in output.Messages)
        {
            switch (m.Message)
            {
                case CatchUp { Snapshot: not null }:
                case SnapshotChunk { Offset: 0 }:
                    _result.SnapshotsSent++;
                    break;
                case SnapshotChunkRequest r when r.Offset > 0 && !_chunkRequests.Add((n.Id, n.Incarnation, r.Index, r.TransferId, r.Offset)):
                    _result.SnapshotResumes++;
                    break;
            }
            if (m.Message is SnapshotChunk chunk)
            {
                _result.SnapshotChunks++;
                if (chunk.Offset > 0 && chunk.Offset + chunk.Data.Length == chunk.Total)
                {
                    _result.MultiPieceTransfers++;
                }
                if (chunk.Data.Length > _config.Options.MaxSnapshotChunkBytes)
                {
                    Violation($"node {n.Id} sent a snapshot piece of {chunk.Data.Length} bytes (bound {_config.Options.MaxSnapshotChunkBytes})");
                }
            }
            if (m.Message is Handoff h && _handoffBallots.Add(h.Ballot))
            {
                _result.Handoffs++;
                _lastHandoff = (h.Successor, h.Ballot);
                Log($"node {n.Id} hands off ballot {h.Ballot} to {h.Successor}");
            }
            Transmit(n.Id, m.To, PaxosCodec.Encode(m.Message));
        }
        foreach (var c in output.Completions)
        {
            OnCompletion(n.Id, c);
        }
    }

    /// <summary>Nothing a node releases may depend on state its disk does not hold yet: a promise or an acceptance it
    /// reports, entries it proposes, a commit it reports to a client (the committed entry must be on its disk; the
    /// commit index itself may follow later, see PaxosOptions.DeferCommitWrites). The end-to-end checkers catch the
    /// consequences only when a crash strikes in the short window between the release and the write and the lost
    /// state later matters; this catches the release itself.</summary>
    private void CheckReleasedDurable(SimNode n, PaxosOutput output)
    {
        var storage = n.Storage;
        var commit = n.Node!.CommitIndex;
        foreach (var (to, message) in output.Messages)
        {
            switch (message)
            {
                case Promise p when storage.DurablePromised < p.Ballot:
                    Violation($"node {n.Id} sent a promise of {p.Ballot} to {to}, but its disk holds the promise {storage.DurablePromised}");
                    return;
                case Accepted a:
                    foreach (var i in a.Indices)
                    {
                        // An index it knows is chosen it acknowledges on the strength of whatever value its disk holds there.
                        if (!storage.DurablyAccepted(i, a.Ballot) && !(i <= commit && storage.DurablyHolds(i)))
                        {
                            Violation($"node {n.Id} told {to} it accepted index {i} in {a.Ballot}, which its disk does not hold");
                            return;
                        }
                    }
                    break;
                case Accept a when n.EarlyAccepts:
                    // It may ask before its own disk holds the entries, never before the disk holds the promise of
                    // its ballot (else a restart could lead that ballot again with other values).
                    if (storage.DurablePromised < a.Ballot)
                    {
                        Violation($"node {n.Id} sent {to} an Accept in {a.Ballot} while its disk holds the promise {storage.DurablePromised}");
                        return;
                    }
                    break;
                case Accept a:
                    foreach (var e in a.Entries)
                    {
                        if (!storage.DurablyAccepted(e.Index, e.Ballot))
                        {
                            Violation($"node {n.Id} sent {to} entry {e.Index} in {e.Ballot} to accept before its own disk held it");
                            return;
                        }
                    }
                    break;
            }
        }
        foreach (var c in output.Completions)
        {
            if (c.Status == ProposalStatus.Committed && n.AppliedAt.TryGetValue((c.ClientId, c.Seq), out var index)
                && !storage.DurablyHolds(index))
            {
                Violation($"node {n.Id} reported {c.ClientId}:{c.Seq} committed at index {index}, which its disk does not hold");
                return;
            }
        }
    }

    // ---- network ----

    private void Transmit(int from, int to, byte[] bytes)
    {
        _result.Messages++;
        if (to <= 0 || to >= _nodes.Length || _blocked.Contains((from, to)) || _rng.NextDouble() < _loss)
        {
            return;
        }
        var copies = _rng.NextDouble() < _dup ? 2 : 1;
        for (var i = 0; i < copies; i++)
        {
            var delay = 50 + _rng.NextInt64(0, _maxDelay);
            Schedule(_now + delay, () => Deliver(from, to, bytes));
        }
    }

    private void Deliver(int from, int to, byte[] bytes)
    {
        var n = _nodes[to];
        if (n.Node is null)
        {
            return;
        }
        if (_now < n.PausedUntil)
        {
            // A paused process (GC, swapped out, SIGSTOP) handles what queued up when it resumes.
            Schedule(n.PausedUntil + _rng.NextInt64(0, 1_000), () => Deliver(from, to, bytes));
            return;
        }
        var message = PaxosCodec.Decode(bytes, out var consumed);
        if (consumed != bytes.Length)
        {
            Violation($"decoder consumed {consumed} of {bytes.Length} bytes of a {message.GetType().Name}");
        }
        RunOn(n, node => node.Handle(from, message, Local(n)));
    }

    private void SetNetworkWeather()
    {
        _loss = _rng.NextDouble() * _config.MaxLoss;
        _dup = _rng.NextDouble() * _config.MaxDuplication;
        _maxDelay = _rng.Next(3) == 0 ? _config.MaxDelay * 3 : _config.MaxDelay;
    }

    // ---- faults ----

    private void Chaos()
    {
        if (_healed)
        {
            return;
        }
        var ids = Enumerable.Range(1, _nodes.Length - 1).ToArray();
        switch (_rng.Next(10))
        {
            case 0 or 1 when _config.Crashes:
                var live = ids.Where(i => _nodes[i].Node is not null).ToArray();
                if (live.Length > 0)
                {
                    // Prefer the leader: that is where the interesting failovers are.
                    var victim = _rng.Next(2) == 0 && _lastLeader is { } l && _nodes[l].Node is not null ? l : live[_rng.Next(live.Length)];
                    Crash(_nodes[victim]);
                }
                break;
            case 2 or 3:
                foreach (var id in ids.Where(i => _nodes[i].Node is null))
                {
                    if (_rng.Next(2) == 0)
                    {
                        Boot(_nodes[id]);
                    }
                }
                break;
            case 4 when _config.Partitions:
                // Symmetric partition into two random sides.
                _blocked.Clear();
                var side = ids.Where(_ => _rng.Next(2) == 0).ToHashSet();
                foreach (var a in ids)
                {
                    foreach (var b in ids)
                    {
                        if (side.Contains(a) != side.Contains(b))
                        {
                            _blocked.Add((a, b));
                        }
                    }
                }
                break;
            case 5 when _config.Partitions:
                // One-way cuts: a few directed links fail.
                _blocked.Clear();
                for (var k = _rng.Next(1, 4); k > 0; k--)
                {
                    _blocked.Add((ids[_rng.Next(ids.Length)], ids[_rng.Next(ids.Length)]));
                }
                break;
            case 6:
                _blocked.Clear();
                if (_rng.Next(2) == 0 && _lastLeader is { } hl && _nodes[hl].Node is { Role: PaxosRole.Leader })
                {
                    // An orderly hand-off (as before a planned restart).
                    var hn = _nodes[hl];
                    RunOn(hn, node => Log($"hand-off at {hl}: {node.HandOff(Local(hn))}"));
                }
                break;
            case 7:
                SetNetworkWeather();
                if (_rng.Next(2) == 0)
                {
                    // Pause a process (preferably the leader) for up to a few lease durations.
                    var paused = _lastLeader is { } pl && _rng.Next(2) == 0 ? pl : ids[_rng.Next(ids.Length)];
                    _nodes[paused].PausedUntil = _now + _rng.NextInt64(10_000, 3 * (long)_config.Options.LeaseDuration.TotalMicroseconds);
                    Log($"pause {paused} until {_nodes[paused].PausedUntil}");
                }
                break;
            case 8 or 9 when _config.MembershipChanges:
                ProposeMembershipChange();
                break;
        }
        if (_config.LyingStorage)
        {
            foreach (var n in _nodes.Skip(1))
            {
                if (_rng.Next(3) == 0)
                {
                    n.Storage.Flush();
                }
            }
        }
        Schedule(_now + _rng.NextInt64(50_000, 250_000), Chaos);
    }

    private void ProposeMembershipChange()
    {
        if (_lastLeader is not { } l || _nodes[l].Node is not { } leader || leader.Role != PaxosRole.Leader)
        {
            return;
        }
        var members = leader.Members;
        var outside = Enumerable.Range(1, _nodes.Length - 1).Where(i => !members.Contains(i)).ToArray();
        var next = outside.Length > 0 && (members.Count < 3 || _rng.Next(2) == 0)
            ? members.With(outside[_rng.Next(outside.Length)])
            : members.Count > 1 ? members.Without(members.Ids[_rng.Next(members.Count)]) : members;
        // Usually at the leader; sometimes at another member, which forwards it.
        var others = members.Ids.Where(id => id != l && _nodes[id].Node is not null).ToArray();
        var at = others.Length > 0 && _rng.Next(3) == 0 ? others[_rng.Next(others.Length)] : l;
        var n = _nodes[at];
        var seq = ++_configSeq;
        RunOn(n, node =>
        {
            var st = node.ProposeMembership(MembershipClient, seq, next, Local(n));
            Log($"propose members {next} as {MembershipClient}:{seq} at {at}: {st}");
            if (st == ProposeStatus.Pending)
            {
                _configProposals[(MembershipClient, seq)] = (at, _now);
            }
        });
    }

    private void OnMembershipCompletion(int node, ProposalOutcome outcome)
    {
        var key = (outcome.ClientId, outcome.Seq);
        if (!_configProposals.TryGetValue(key, out var p) || p.Node != node)
        {
            return;
        }
        _configProposals.Remove(key);
        switch (outcome.Status)
        {
            case ProposalStatus.Committed:
                if (!_chosenConfigs.Contains(key))
                {
                    Violation($"node {node} reported membership change {outcome.ClientId}:{outcome.Seq} committed, but no such change was chosen");
                }
                _result.MembershipCommittedOutcomes++;
                break;
            case ProposalStatus.Timeout:
                _result.MembershipTimeouts++;
                break;
        }
    }

    private void Heal()
    {
        _healed = true;
        _blocked.Clear();
        _loss = 0;
        _dup = 0;
        _maxDelay = Math.Min(_config.MaxDelay, 5_000);
        foreach (var n in _nodes.Skip(1))
        {
            if (n.Node is null)
            {
                Boot(n);
            }
            if (_config.LyingStorage)
            {
                n.Storage.Flush();
            }
        }
    }

    // ---- checkers that run at every event ----

    private void CheckLeaders()
    {
        SimNode? holder = null;
        SimNode? leader = null;
        foreach (var n in _nodes.AsSpan(1))
        {
            if (n.Node is not { } node)
            {
                continue;
            }
            if (node.HoldsLease(Local(n)))
            {
                if (holder is not null)
                {
                    Violation($"nodes {holder.Id} and {n.Id} both hold a lease");
                    return;
                }
                holder = n;
                if (_config.CheckPromisesUnderLease)
                {
                    CheckLeaseExclusive(n);
                }
            }
            if (node.Role == PaxosRole.Leader)
            {
                if (leader is not null && leader.Node!.CurrentBallot == node.CurrentBallot)
                {
                    Violation($"nodes {leader.Id} and {n.Id} both lead ballot {node.CurrentBallot}");
                }
                leader = n;
                if (_lastLeader != n.Id)
                {
                    Log($"leader {n.Id} ballot {node.CurrentBallot} commit {node.CommitIndex}");
                    _lastLeader = n.Id;
                    _result.LeaderChanges++;
                    if (_lastHandoff is { } h && h.Successor == n.Id && node.CurrentBallot > h.Ballot)
                    {
                        _result.HandoffSuccessions++;
                    }
                    _lastHandoff = null;
                }
            }
        }
    }

    /// <summary>While a node holds a lease in ballot b, no majority of its members may have promised a higher ballot
    /// (that is what would let another leader be elected and commit behind its back). Crashed members count with
    /// the promise on their disk.</summary>
    private void CheckLeaseExclusive(SimNode holder)
    {
        var node = holder.Node!;
        var ballot = node.CurrentBallot;
        var above = new List<int>();
        foreach (var id in node.Members.Ids)
        {
            var n = _nodes[id];
            var promised = n.Node?.Promised ?? n.Storage.DurablePromised;
            if (promised > ballot)
            {
                above.Add(id);
            }
        }
        if (above.Count >= node.Members.Majority)
        {
            Violation($"node {holder.Id} holds a lease in ballot {ballot} while members {string.Join(",", above)} promised higher ballots");
        }
    }

    // ---- clients ----

    private void ClientStep(SimClient c)
    {
        if (c.Busy || _now >= _config.FaultPhase + _config.ProgressGrace + _config.ProgressWindow)
        {
            return;
        }
        var keys = Enumerable.Range(0, _config.Keys).Where(k => _opsPerKey[k] < Linearizability.MaxOpsPerKey).ToArray();
        if (keys.Length == 0)
        {
            return;
        }
        var key = keys[_rng.Next(keys.Length)];
        _opsPerKey[key]++; // reserved now (calls may wait in a host queue); given back if nothing is recorded
        var target = c.Preferred is { } p && _rng.Next(4) != 0 ? p : _rng.Next(1, _nodes.Length);
        var n = _nodes[target];
        if (n.Node is null)
        {
            _opsPerKey[key]--;
            c.Preferred = null;
            Schedule(_now + 20_000, () => ClientStep(c));
            return;
        }
        if (_now < n.PausedUntil)
        {
            // The request waits in the paused process's socket; it is served (and timed) when it resumes.
            _opsPerKey[key]--;
            Schedule(n.PausedUntil + 1, () => ClientStep(c));
            return;
        }
        if (n.Batched)
        {
            c.QueuedOn = target;
            c.QueuedKey = key;
        }
        RunOn(n, node =>
        {
            c.QueuedOn = null;
            ClientCall(c, node, n, key);
        });
    }

    /// <summary>The client's request reaches the node (inside the host's scope for a batching host): a lease read, or
    /// a put or compare-and-set proposed there. A read's answer is sent at once.</summary>
    private void ClientCall(SimClient c, PaxosNode node, SimNode n, int key)
    {
        var target = n.Id;
        if (_rng.Next(2) == 0)
        {
            var result = node.Read(KvMachine.Get(key), Local(n));
            switch (result.Status)
            {
                case ReadStatus.Ok:
                    if (_config.CheckReleasedDurable)
                    {
                        for (var i = n.Storage.DurableCommitIndex + 1; i <= node.CommitIndex; i++)
                        {
                            if (!n.Storage.DurablyHolds(i))
                            {
                                Violation($"node {n.Id} answered a read from state applied through {node.CommitIndex}, but its disk lacks entry {i}");
                                break;
                            }
                        }
                    }
                    var value = KvMachine.DecodeValue(result.Value!);
                    c.LastSeen[key] = value;
                    Record(new KvOp(c.Id, KvOpKind.Get, key, 0, 0, _now, _now, null, value, target));
                    _result.ReadsOk++;
                    Mix(value);
                    Schedule(_now + _rng.NextInt64(1_000, 30_000), () => ClientStep(c));
                    break;
                case ReadStatus.NotLeader:
                    _opsPerKey[key]--;
                    c.Preferred = result.LeaderHint;
                    Schedule(_now + 1_000, () => ClientStep(c));
                    break;
                default:
                    _opsPerKey[key]--;
                    c.Preferred = null;
                    Schedule(_now + 20_000, () => ClientStep(c));
                    break;
            }
            return;
        }

        var seq = ++c.Seq;
        var v = c.Id * 1_000_000L + seq;
        var cas = _rng.Next(5) < 2;
        var expected = c.LastSeen.GetValueOrDefault(key);
        var payload = cas ? KvMachine.Cas(key, expected, v) : KvMachine.Put(key, v);
        var status = node.Propose(c.Id, seq, payload, Local(n));
        if (status != ProposeStatus.Pending)
        {
            _opsPerKey[key]--;
            c.Preferred = null;
            Schedule(_now + 20_000, () => ClientStep(c));
            return;
        }
        c.Busy = true;
        c.Op = new KvOp(c.Id, cas ? KvOpKind.Cas : KvOpKind.Put, key, v, expected, _now, null, null, null, target);
        c.OpNode = target;
        var op = c.Op;
        // The node times the proposal out on its own clock (which may run slow by the drift bound).
        Schedule(_now + (long)(1.2 * _config.Options.ProposalTimeout.TotalMicroseconds), () =>
        {
            if (c.Busy && ReferenceEquals(c.Op, op))
            {
                FinishWrite(c, null);
            }
        });
    }

    private void OnCompletion(int node, ProposalOutcome outcome)
    {
        if (outcome.ClientId == MembershipClient)
        {
            OnMembershipCompletion(node, outcome);
            return;
        }
        var c = _clients[outcome.ClientId - 1];
        if (!c.Busy || c.Op is null || outcome.Seq != c.Seq || c.OpNode != node)
        {
            return;
        }
        FinishWrite(c, outcome);
    }

    private void FinishWrite(SimClient c, ProposalOutcome? outcome)
    {
        var op = c.Op!;
        if (outcome is { Status: ProposalStatus.Committed, Result: { } r })
        {
            var ok = r[0] == 1;
            op = op with { Response = _now, CasOk = op.Kind == KvOpKind.Cas ? ok : null };
            if (ok)
            {
                c.LastSeen[op.Key] = op.Value;
            }
            _result.WritesOk++;
            Mix(op.Value * 3 + (ok ? 1 : 0));
        }
        else
        {
            _result.Unknown++;
            c.Preferred = null;
        }
        Record(op);
        c.Busy = false;
        c.Op = null;
        Schedule(_now + _rng.NextInt64(1_000, 30_000), () => ClientStep(c));
    }

    private void Record(KvOp op)
    {
        Log($"op {op}");
        _history.Add(op);
    }

    // ---- final checks ----

    private void FinalChecks()
    {
        // Writes still in flight at the end have an unknown outcome.
        foreach (var c in _clients)
        {
            if (c.Busy)
            {
                _history.Add(c.Op!);
            }
        }
        if (Linearizability.Check(_history) is { } why)
        {
            Violation(why);
        }
        var deadline = (long)(1.2 * _config.Options.ProposalTimeout.TotalMicroseconds);
        foreach (var (key, p) in _configProposals)
        {
            if (_now - p.At > deadline)
            {
                Violation($"membership change {key.Client}:{key.Seq} proposed at node {p.Node} at t={p.At}us never had an outcome");
            }
        }

        var leaderNode = _nodes.Skip(1).Select(n => n.Node).FirstOrDefault(n => n?.Role == PaxosRole.Leader);
        if (leaderNode is null)
        {
            Violation("no leader at the end, long after every fault healed");
            return;
        }
        var members = leaderNode.Members;

        // Progress: once healed (plus a grace for elections), every write to a member commits within the run.
        var healedAt = _config.FaultPhase + _config.ProgressGrace;
        var capped = _opsPerKey.Any(n => n >= Linearizability.MaxOpsPerKey - _clients.Length);
        if (!capped && !_history.Any(op => op.Kind != KvOpKind.Get && op.Invoke >= healedAt && op.Response is not null))
        {
            Violation("no write completed after the faults healed");
            return;
        }
        foreach (var op in _history)
        {
            if (op.Kind != KvOpKind.Get && op.Invoke >= healedAt && op.Response is null && members.Contains(op.Node))
            {
                Violation($"write {op} invoked after the faults healed did not complete by t={_config.End}us");
                return;
            }
        }

        // Convergence: every member has committed and applied the same state.
        foreach (var id in members.Ids)
        {
            var n = _nodes[id];
            if (n.Node!.CommitIndex != leaderNode.CommitIndex || n.Machine!.Describe() != _nodes[leaderNode.Id].Machine!.Describe())
            {
                Violation($"member {id} at commit {n.Node.CommitIndex} [{n.Machine!.Describe()}] differs from leader {leaderNode.Id} " +
                          $"at {leaderNode.CommitIndex} [{_nodes[leaderNode.Id].Machine!.Describe()}]");
            }
        }
        foreach (var n in _nodes.Skip(1))
        {
            CheckDurableImage(n);
        }
    }

    private sealed class SimNode(int id, MemoryPaxosStorage storage)
    {
        public int Id { get; } = id;

        public MemoryPaxosStorage Storage { get; } = storage;

        public PaxosNode? Node { get; set; }

        public KvMachine? Machine { get; set; }

        public int Incarnation { get; set; }

        public long BootTime { get; set; }

        public long ClockOffset { get; set; }

        public double Rate { get; set; } = 1;

        public long PausedUntil { get; set; }

        /// <summary>Whether this incarnation's host runs batch scopes.</summary>
        public bool Batched { get; set; }

        /// <summary>Whether this incarnation's host sends a leader's Accepts before its write (PaxosNode.BeforeWrite).</summary>
        public bool EarlyAccepts { get; set; }

        /// <summary>Whether the host is inside EndBatch (a crash may strike between an early release and the write).</summary>
        public bool InEndBatch { get; set; }

        /// <summary>Calls waiting for the host's next scope.</summary>
        public List<Action<PaxosNode>> Inbox { get; } = [];

        public bool InboxScheduled { get; set; }

        /// <summary>Until when the host is busy with its last scope's write.</summary>
        public long BusyUntil { get; set; }

        /// <summary>Where this incarnation applied each command.</summary>
        public Dictionary<(long, long), long> AppliedAt { get; } = [];

        /// <summary>Entries applied and not yet known to be persisted.</summary>
        public List<(long Index, LogValue Value)> PendingApplied { get; } = [];
    }

    private sealed class SimClient(int id)
    {
        public int Id { get; } = id;

        public long Seq { get; set; }

        public int? Preferred { get; set; }

        public bool Busy { get; set; }

        public KvOp? Op { get; set; }

        public int OpNode { get; set; }

        /// <summary>The node whose host queue holds this client's request, if any.</summary>
        public int? QueuedOn { get; set; }

        public int QueuedKey { get; set; }

        public Dictionary<int, long> LastSeen { get; } = [];
    }
}
