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

    public long SnapshotsSent { get; set; }

    /// <summary>The most client commands seen in one committed entry.</summary>
    public int LargestBatch { get; set; }

    public long MembershipChanges { get; set; }

    public int ReadsOk { get; set; }

    public int WritesOk { get; set; }

    public int Unknown { get; set; }

    /// <summary>A digest of everything observable, to show a seed replays the same schedule.</summary>
    public long Trace { get; set; }

    public override string ToString() =>
        $"seed {Seed}: {Events} events, {Messages} msgs, {Committed} entries, {WritesOk} writes ok, {ReadsOk} reads ok, " +
        $"{Unknown} unknown, {Crashes} crashes, {LeaderChanges} leader changes, {SnapshotsSent} snapshots sent, largest batch {LargestBatch}, " +
        $"{MembershipChanges} membership changes";
}

/// <summary>
/// A seeded discrete-event simulation of a Paxos cluster in one process: simulated real time, a clock per node
/// running at a rate within the drift bound (and restarting from an arbitrary value after a crash), a network that
/// loses, delays, duplicates and reorders messages and can be partitioned both ways or one way, crashes that lose
/// whatever storage did not make durable, restarts, and clients that write (put, compare-and-set) and read (lease reads
/// at the leader) and record what they saw. Checkers run at every event (agreement at every commit, one lease holder
/// at a time, one leader per ballot) and at the end (linearizability, progress after healing, convergence).
/// Everything random comes from one seed.
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
        n.Node = new PaxosNode(n.Id, initial, n.Storage, n.Machine, _config.Options, new Random(_rng.Next()), Local(n),
            (index, value) => OnApplied(id, index, value));
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
        n.Node.Tick(Local(n));
        Drain(n);
        Schedule(_now + TickPeriod - 2_000 + _rng.NextInt64(0, 4_000), () => Tick(n, incarnation));
    }

    private void Crash(SimNode n)
    {
        Log($"crash {n.Id}");
        n.Node = null;
        n.Storage.Crash();
        _result.Crashes++;
        Mix(-n.Id);
        // Clients waiting on the crashed node see their connection drop: the outcome of their write is unknown.
        foreach (var c in _clients)
        {
            if (c.Busy && c.OpNode == n.Id)
            {
                FinishWrite(c, null);
            }
        }
        CheckDurableImage(n);
    }

    private void OnApplied(int node, long index, LogValue value)
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
            }
        }
    }

    /// <summary>What a node's disk holds as committed must be what was chosen.</summary>
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
    }

    private void Drain(SimNode n)
    {
        var output = n.Node!.TakeOutput();
        foreach (var m in output.Messages)
        {
            if (m.Message is CatchUp { Snapshot: not null })
            {
                _result.SnapshotsSent++;
            }
            Transmit(n.Id, m.To, PaxosCodec.Encode(m.Message));
        }
        foreach (var c in output.Completions)
        {
            OnCompletion(n.Id, c);
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
        n.Node.Handle(from, message, Local(n));
        Drain(n);
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
        var st = leader.ProposeMembership(next, Local(_nodes[l]));
        Log($"propose members {next} at {l}: {st}");
        Drain(_nodes[l]);
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
        var target = c.Preferred is { } p && _rng.Next(4) != 0 ? p : _rng.Next(1, _nodes.Length);
        var n = _nodes[target];
        if (n.Node is not { } node)
        {
            c.Preferred = null;
            Schedule(_now + 20_000, () => ClientStep(c));
            return;
        }
        if (_now < n.PausedUntil)
        {
            // The request waits in the paused process's socket; it is served (and timed) when it resumes.
            Schedule(n.PausedUntil + 1, () => ClientStep(c));
            return;
        }
        if (_rng.Next(2) == 0)
        {
            var result = node.Read(KvMachine.Get(key), Local(n));
            switch (result.Status)
            {
                case ReadStatus.Ok:
                    var value = KvMachine.DecodeValue(result.Value!);
                    c.LastSeen[key] = value;
                    Record(new KvOp(c.Id, KvOpKind.Get, key, 0, 0, _now, _now, null, value, target));
                    _result.ReadsOk++;
                    Mix(value);
                    Schedule(_now + _rng.NextInt64(1_000, 30_000), () => ClientStep(c));
                    break;
                case ReadStatus.NotLeader:
                    c.Preferred = result.LeaderHint;
                    Schedule(_now + 1_000, () => ClientStep(c));
                    break;
                default:
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
            c.Preferred = null;
            Schedule(_now + 20_000, () => ClientStep(c));
            Drain(n);
            return;
        }
        c.Busy = true;
        c.Op = new KvOp(c.Id, cas ? KvOpKind.Cas : KvOpKind.Put, key, v, expected, _now, null, null, null, target);
        c.OpNode = target;
        _opsPerKey[key]++;
        var op = c.Op;
        // The node times the proposal out on its own clock (which may run slow by the drift bound).
        Schedule(_now + (long)(1.2 * _config.Options.ProposalTimeout.TotalMicroseconds), () =>
        {
            if (c.Busy && ReferenceEquals(c.Op, op))
            {
                FinishWrite(c, null);
            }
        });
        Drain(n);
    }

    private void OnCompletion(int node, ProposalOutcome outcome)
    {
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
        if (op.Kind == KvOpKind.Get)
        {
            _opsPerKey[op.Key]++;
        }
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
    }

    private sealed class SimClient(int id)
    {
        public int Id { get; } = id;

        public long Seq { get; set; }

        public int? Preferred { get; set; }

        public bool Busy { get; set; }

        public KvOp? Op { get; set; }

        public int OpNode { get; set; }

        public Dictionary<int, long> LastSeen { get; } = [];
    }
}
