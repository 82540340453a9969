using Microsoft.Extensions.Logging;
using System.Buffers.Binary;
using System.Collections.Immutable;
using System.Diagnostics;
using System.Net;
using System.Threading.Channels;
using Appliance.Maps;
using Appliance.Maps.Client;
using Appliance.Maps.Protocol;
using Appliance.Monitor.Maps;
using Appliance.Monitor.Storage;
using Appliance.Paxos.Core;
using Appliance.Paxos.Encoding;
using Appliance.Wire.Auth;
using Appliance.Wire.Codec;
using Appliance.Wire.Messenger;

namespace Appliance.Monitor.Daemon;

/// <summary>How to run one monitor.</summary>
public sealed record MonitorDaemonOptions
{
    public required string Name { get; init; }
    public required string DataDirectory { get; init; }
    public required ClusterConf Conf { get; init; }
    public required Secret MonKey { get; init; }
    /// <summary>The admin entity every new cluster starts with (from client.admin.keyring).</summary>
    public required KeyringEntry Admin { get; init; }
    /// <summary>Paxos tuning. Four entries in flight (not eight): under load the proposals wait for a slot and go out
    /// in fuller entries, one flush per member for more commits (monitor bench, 64 proposers: +8%).</summary>
    public PaxosOptions Paxos { get; init; } = new() { MaxInflightEntries = 4 };
    /// <summary>How often the leader's loop ticks Paxos when no event wakes it: it sends heartbeats (every
    /// <see cref="PaxosOptions.HeartbeatInterval"/>), retransmits and expires proposals on ticks.</summary>
    public TimeSpan TickInterval { get; init; } = TimeSpan.FromMilliseconds(20);
    /// <summary>The same for a follower or candidate, whose timed duties (election timeout, retransmitting forwarded
    /// proposals) are ten times coarser. Every wake-up costs CPU all daemons of a node share, idle or not.</summary>
    public TimeSpan FollowerTickInterval { get; init; } = TimeSpan.FromMilliseconds(50);
    /// <summary>How often the leader checks whether OSDs must be marked down (beacons stopped) or out.</summary>
    public TimeSpan OsdCheckInterval { get; init; } = TimeSpan.FromSeconds(1);
}

/// <summary>
/// One monitor: a Paxos member (node/Paxos) whose acceptor state lives in the monitor's store (node/Monitor/Storage),
/// whose state machine is the cluster maps, and whose messages travel over the messenger (node/Wire). Everything
/// that touches the Paxos node runs on one loop task, in the order events arrive: messages from peers, client
/// requests, ticks. Peers get Paxos messages through one bounded queue each (a peer that is down costs at most that
/// queue; Paxos tolerates the loss). Clients get linearizable answers from the leader under its lease, or are told
/// where the leader is, or that this monitor has no quorum — never stale maps.
/// </summary>
public sealed class MonitorDaemon : IAsyncDisposable
{
    private readonly MonitorDaemonOptions _options;
    private readonly ILoggerFactory _loggers;
    private readonly ILogger _log;
    // Events for the loop thread (messages, requests, stop requests), in arrival order; _inboxGate guards them.
    private readonly Queue<Action> _inbox = new();
    private readonly object _inboxGate = new();
    private bool _loopWaiting;
    private bool _inboxClosed;
    private readonly Dictionary<(long, long), TaskCompletionSource<MonReply>> _pending = [];
    // Subscription polls waiting for a newer map (touched by the loop only).
    private readonly List<Watcher> _watchers = [];
    private readonly Dictionary<int, Peer> _peers = [];
    private readonly CancellationTokenSource _stop = new();
    // Monitor name → Paxos member id, from the committed monmap (and, while a joining monitor catches up, the monmap
    // it fetched at start). Replaced, never changed: read by the messenger's threads.
    private volatile IReadOnlyDictionary<string, int> _ids = new Dictionary<string, int>();
    // The monmap a joining monitor fetched from the cluster before it had caught up (null once its own is as new).
    private MonMap? _joinMap;
    private uint _peersForEpoch;
    private bool _peersBuilt;
    // Membership changes use a client session of their own (not the OSD ticks'): one sequence per kind, so neither
    // supersedes the other.
    private readonly long _membershipClientId = Random.Shared.NextInt64(1, long.MaxValue);
    private long _membershipSeq;
    private long _membershipLastSeq;
    private TimeSpan _membershipSince;
    private readonly long _startTimestamp = Stopwatch.GetTimestamp();
    // This monitor's own proposals (OSD ticks) use a client session of their own.
    private readonly long _selfClientId = Random.Shared.NextInt64(1, long.MaxValue);
    private long _selfSeq;
    private TimeSpan _lastOsdCheck;
    // The OSDs' PG statistics, kept by the leader only (loop state), and since when this monitor leads (the table's
    // completeness for quota decisions counts from there).
    private readonly PgStatsTable _pgStats = new();
    private long _leadingSinceMs = long.MaxValue;
    private MonitorStore? _store;
    private PaxosNode? _node;
    private MonitorStateMachine? _machine;
    private MessengerServer? _server;
    private Task? _loop;
    private volatile ClusterState? _published;
    private volatile string _statusLine = "starting";
    private volatile string _describe = "";
    // Completed at the end of the next Drain (a stop waiting until the hand-off's messages are handed to the peers).
    private TaskCompletionSource? _afterDrain;

    public MonitorDaemon(MonitorDaemonOptions options, ILoggerFactory loggers)
    {
        ArgumentNullException.ThrowIfNull(loggers);
        _options = options;
        _loggers = loggers;
        _log = loggers.CreateLogger<MonitorDaemon>();
        var self = options.Conf.Monitors.FirstOrDefault(m => m.Name == options.Name);
        if (self.Name is null)
        {
            throw new ArgumentException($"mon.{options.Name} is not in the cluster's {ClusterConf.FileName} (it lists {string.Join(", ", options.Conf.Monitors.Select(m => "mon." + m.Name))}); a new monitor is added with `appliance mon add {options.Name} ADDRESS:PORT`, which lists it");
        }
        Address = ClusterConf.ParseEndpoint(self.Address, $"mon.{options.Name}");
    }

    /// <summary>This monitor's Paxos member id (its id in the monmap: 1, 2, ... for the monitors the cluster was created
    /// with, in the conf's order; the next free id for one added later). Known once started.</summary>
    public int Id { get; private set; }

    public IPEndPoint Address { get; }

    private TimeSpan Now => Stopwatch.GetElapsedTime(_startTimestamp);

    /// <summary>The latest committed maps this monitor applied (may lag the leader's; for diagnostics and auth).</summary>
    public ClusterState? Committed => _published;

    /// <summary>Role, leader, commit index: one line for logs and `mon status`.</summary>
    public string StatusLine => _statusLine;

    /// <summary>The Paxos configuration (member ids) this monitor knows as committed, as of the last event.</summary>
    public IReadOnlyList<int> Members => _members;

    private volatile IReadOnlyList<int> _members = [];

    /// <summary>The Paxos member's full state, refreshed at most every <see cref="DescribeEvery"/> (for diagnostics).</summary>
    public string PaxosState => _describe;

    private static readonly TimeSpan DescribeEvery = TimeSpan.FromMilliseconds(100);
    private TimeSpan _describedAt = -DescribeEvery;
    private (PaxosRole, int?, long) _statusOf = (PaxosRole.Follower, -1, -1);

    public async Task StartAsync()
    {
        var o = _options;
        _store = MonitorStore.Open(o.DataDirectory);
        foreach (var note in _store.OpenNotes)
        {
            _log.LogInformation("mon.{Name}: store: {Note}", o.Name, note);
        }
        // Every member starts from the same first state: the monitors the cluster was created with (not monitors
        // added since, whatever the conf lists now).
        var initial = ClusterState.Bootstrap(o.Conf.Fsid, o.Conf.Initial, DateTimeOffset.FromUnixTimeMilliseconds(o.Conf.CreatedMs),
            [new AuthEntity(o.Admin.Entity, o.Admin.Key, o.Admin.Caps.ToImmutableSortedDictionary(StringComparer.Ordinal))]);
        _machine = new MonitorStateMachine(initial, o.MonKey);
        var isInitial = initial.Mon.Find(o.Name) is not null;
        if (_store.Get(IdPrefix, IdKey) is { Length: 4 } stored)
        {
            Id = BinaryPrimitives.ReadInt32LittleEndian(stored);
        }
        else
        {
            if (isInitial)
            {
                Id = initial.Mon.Find(o.Name)!.Id;
            }
            else
            {
                // A monitor added to a running cluster: its id is in the current monmap, which the others have.
                _joinMap = await FetchMonMapAsync();
                Id = _joinMap.Find(o.Name)?.Id
                    ?? throw new InvalidOperationException($"mon.{o.Name} is not in the cluster's monmap (epoch {_joinMap.Epoch}): add it first with `appliance mon add {o.Name} {Address}`");
            }
            var bytes = new byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(bytes, Id);
            _store.Apply(new WriteBatch().Put(IdPrefix, IdKey, bytes));
        }
        // The founding members start from the founding member set; a joining member from none (it learns the
        // configuration by catching up). Either way what the store holds wins.
        var members = isInitial ? new MemberSet(initial.Mon.Monitors.Select(m => m.Id)) : MemberSet.Empty;
        _node = new PaxosNode(Id, members, new MonitorPaxosStorage(_store), _machine, o.Paxos, new Random(), Now);
        // As leader, the Accepts go to the peers before this monitor's own flush, so their flushes overlap it.
        _node.BeforeWrite = SendEarly;
        _published = _machine.State;

        _server = new MessengerServer(LookupKey, new MessengerOptions(), OnMessageAsync, line => _log.LogDebug("messenger: {Line}", line));
        _server.ListenTcp(Address);
        ReconcilePeers();
        _loop = StartLoop();
        _log.LogInformation("mon.{Name} (id {Id}{Joined}) serving cluster {Fsid} on {Address}, store {Store}", o.Name, Id, isInitial ? "" : ", joined later", o.Conf.Fsid, Address, o.DataDirectory);
    }

    private const string IdPrefix = "mon";
    private const string IdKey = "id";

    /// <summary>The current monmap, from the other monitors listed in the conf (for a monitor joining a running
    /// cluster).</summary>
    private async Task<MonMap> FetchMonMapAsync()
    {
        var others = _options.Conf.Monitors.Where(m => m.Name != _options.Name).Select(m => ClusterConf.ParseEndpoint(m.Address, $"mon.{m.Name}")).ToList();
        if (others.Count == 0)
        {
            throw new InvalidOperationException($"mon.{_options.Name} joins a running cluster but its {ClusterConf.FileName} lists no other monitor to ask");
        }
        await using var client = new MonClient(others, $"mon.{_options.Name}", _options.MonKey, _loggers.CreateLogger<MonClient>()) { Deadline = TimeSpan.FromSeconds(60), PollWait = TimeSpan.FromMilliseconds(1) };
        await foreach (var map in client.WatchMonMapAsync(null, _stop.Token))
        {
            return map;
        }
        throw new InvalidOperationException("no monmap");
    }

    /// <summary>The monmap peers and names come from: the committed one, or the fetched one while that is newer.</summary>
    private MonMap CurrentMonMap()
    {
        var committed = _machine!.State.Mon;
        if (_joinMap is { } join && join.Epoch > committed.Epoch)
        {
            return join;
        }
        _joinMap = null;
        return committed;
    }

    /// <summary>A peer for every other monitor of the monmap (and of the Paxos configuration while a removal is in
    /// flight); names resolved to ids for the messages that arrive. Runs on the loop when the monmap changes.</summary>
    private void ReconcilePeers()
    {
        var map = CurrentMonMap();
        if (map.Epoch == _peersForEpoch && _peersBuilt)
        {
            return;
        }
        _peersForEpoch = map.Epoch;
        _peersBuilt = true;
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (name, id) in _ids)
        {
            // A monitor being removed stays known while it is still a Paxos member.
            if (_node!.Members.Contains(id))
            {
                ids[name] = id;
            }
        }
        foreach (var m in map.Monitors)
        {
            ids[m.Name] = m.Id;
            if (m.Id == Id)
            {
                continue;
            }
            if (_peers.TryGetValue(m.Id, out var existing) && existing.Address == m.Address)
            {
                continue;
            }
            if (existing is not null)
            {
                _ = existing.DisposeAsync().AsTask();
            }
            _peers[m.Id] = new Peer(this, ClusterConf.ParseEndpoint(m.Address, $"mon.{m.Name}"), m.Name, m.Address);
        }
        foreach (var id in _peers.Keys.ToList())
        {
            if (map.FindById(id) is null && !_node!.Members.Contains(id))
            {
                _ = _peers[id].DisposeAsync().AsTask();
                _peers.Remove(id);
            }
        }
        _ids = ids;
    }

    /// <summary>The leader, under its lease, moves the Paxos configuration toward the monmap's monitors one member at
    /// a time (Paxos changes one member per step): a monitor added to the monmap becomes a voting member, a removed one
    /// stops being one (a leader removing itself hands off to another).</summary>
    private void CheckMembership()
    {
        var node = _node!;
        var now = Now;
        if (!node.HoldsLease(now) || (_membershipSeq != 0 && now - _membershipSince < _options.Paxos.ProposalTimeout))
        {
            return;
        }
        var want = _machine!.State.Mon.Monitors.Select(m => m.Id).ToHashSet();
        var have = node.Members.Ids.ToHashSet();
        if (want.SetEquals(have) || want.Count == 0)
        {
            return;
        }
        var add = want.Except(have).Order().FirstOrDefault();
        var drop = have.Except(want).Order().FirstOrDefault();
        var next = add != 0 ? [.. have, add] : have.Where(id => id != drop).ToList();
        _membershipSeq = ++_membershipLastSeq;
        _membershipSince = now;
        var status = node.ProposeMembership(_membershipClientId, _membershipSeq, new MemberSet(next), now);
        _log.LogInformation("mon.{Name}: proposing Paxos members {Members} (monmap epoch {Epoch}): {Status}", _options.Name, string.Join(",", next.Order()), _machine.State.Mon.Epoch, status);
        if (status != ProposeStatus.Pending)
        {
            _membershipSeq = 0;
        }
    }

    /// <summary>Keys for the messenger: every monitor shares the monitors' key; everyone else is in the auth
    /// database of the committed maps (so `auth add` / `auth rm` take effect for new connections at once).</summary>
    private Secret? LookupKey(string entity)
    {
        if (entity.StartsWith("mon.", StringComparison.Ordinal))
        {
            return _options.MonKey;
        }
        return _published?.Auth.Find(entity)?.Key;
    }

    private async ValueTask OnMessageAsync(MessageSession session, Message message)
    {
        switch (message.Type)
        {
            case MonMessageTypes.Paxos:
                {
                    if (!session.PeerEntity.StartsWith("mon.", StringComparison.Ordinal) || !_ids.TryGetValue(session.PeerEntity[4..], out var from))
                    {
                        _log.LogWarning("mon.{Name}: dropped a Paxos message from {Peer}, which is not a monitor of this cluster", _options.Name, session.PeerEntity);
                        return;
                    }
                    PaxosMessage m;
                    try
                    {
                        m = PaxosCodec.Decode(message.Payload.Span, out _);
                    }
                    catch (PaxosFormatException e)
                    {
                        _log.LogWarning("mon.{Name}: unreadable Paxos message from {Peer}: {Error}", _options.Name, session.PeerEntity, e.Message);
                        return;
                    }
                    Post(() => _node!.Handle(from, m, Now));
                    return;
                }
            case MonMessageTypes.Request:
                {
                    MonRequest request;
                    try
                    {
                        request = MonRequest.Decode(message.Payload.Span);
                    }
                    catch (WireFormatException e)
                    {
                        await session.SendAsync(MonMessageTypes.Reply, new MonReply(MonReplyStatus.Invalid, 0, e.Message).Encode(), replyTo: message.Seq);
                        return;
                    }
                    var seq = message.Seq;
                    // Answered when ready, without holding up this session's next messages.
                    _ = AnswerAsync(session, seq, request);
                    return;
                }
            default:
                _log.LogDebug("mon.{Name}: ignored message type {Type} from {Peer}", _options.Name, message.Type, session.PeerEntity);
                return;
        }
    }

    private async Task AnswerAsync(MessageSession session, ulong replyTo, MonRequest request)
    {
        MonReply reply;
        try
        {
            reply = await HandleRequestAsync(session.PeerEntity, request);
            if (request.Command is not null && reply.Leader is null && _leaderHint is { } leader)
            {
                // Answered through the leader (a peon forwards commands): say where it is, so the client sends its
                // next commands there directly (one hop less) — it may come back here if it cannot reach it.
                reply = reply with { Leader = leader };
            }
        }
        catch (Exception e)
        {
            _log.LogError(e, "BUG: mon.{Name} failed a request from {Peer}", _options.Name, session.PeerEntity);
            reply = new MonReply(MonReplyStatus.Invalid, 0, $"internal error: {e.GetType().Name}");
        }
        try
        {
            await session.SendWithoutCopyAsync(MonMessageTypes.Reply, reply.Encode(), replyTo: replyTo, ct: _stop.Token);
        }
        catch (Exception e) when (e is OperationCanceledException or ConnectionClosedException)
        {
            // Stopping, or the session is gone: the client retries elsewhere.
        }
    }

    /// <summary>Authorizes and executes one request; the answer comes from the loop, and the caller's continuation
    /// (sending the reply) runs right there on the loop's thread: no thread hop between the commit and the reply. So
    /// a continuation must not block.</summary>
    private Task<MonReply> HandleRequestAsync(string who, MonRequest request)
    {
        var entity = _published?.Auth.Find(who);
        var caps = who.StartsWith("mon.", StringComparison.Ordinal)
            ? new EntityCaps(new Dictionary<string, string> { ["mon"] = "allow *" })
            // A join token past its expiry may do nothing (its JoinConsume is refused by the operation, saying so).
            : entity is null || entity.ExpiredAt(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()) ? EntityCaps.None : entity.ParsedCaps();
        if (request.Command is { IsAdministrative: false } lifecycle && LifecycleRefusal(who, lifecycle) is { } refusal)
        {
            return Task.FromResult(new MonReply(MonReplyStatus.Denied, 0, refusal));
        }
        if (request.Command is null && request.Query == MonQuery.PgStatsReport)
        {
            return HandleStatsReport(who, caps, request);
        }
        var need = request.Command switch
        {
            null => Access.Read,
            AuthAdd or AuthCaps or AuthRemove or MonAdd or MonRemove or OsdCreate or JoinTokenCreate => Access.All,
            // Any authenticated entity may try; the operation accepts it only from the token's own entity.
            JoinConsume => Access.None,
            { IsAdministrative: false } => Access.Read | Access.Execute,
            _ => Access.Write,
        };
        if (!Authorizer.IsAllowed(caps, "mon", need))
        {
            return Task.FromResult(new MonReply(MonReplyStatus.Denied, 0,
                $"{who} may not {(request.Command is null ? "read the cluster maps" : request.Command.Describe())}: it needs mon '{NeedText(need)}' (see `appliance auth caps`)"));
        }
        var done = new TaskCompletionSource<MonReply>();
        Post(() => Execute(who, request, done));
        return done.Task;
    }

    /// <summary>An OSD's PG statistics: only osd.N reports as N, with mon 'allow rx'; kept by the leader in memory
    /// (<see cref="PgStatsTable"/>), never proposed.</summary>
    private Task<MonReply> HandleStatsReport(string who, EntityCaps caps, MonRequest request)
    {
        PgStatsReport report;
        try
        {
            report = PgStatsReport.Decode(request.Payload ?? []);
        }
        catch (WireFormatException e)
        {
            return Task.FromResult(new MonReply(MonReplyStatus.Invalid, 0, $"unreadable pg stats report: {e.Message}"));
        }
        var expected = $"osd.{report.Osd.ToString(System.Globalization.CultureInfo.InvariantCulture)}";
        if (who != expected || !Authorizer.IsAllowed(caps, "mon", Access.Read | Access.Execute))
        {
            return Task.FromResult(new MonReply(MonReplyStatus.Denied, 0, $"{who} may not report the PG statistics of {expected}: only {expected} itself, with mon 'allow rx'"));
        }
        var done = new TaskCompletionSource<MonReply>();
        Post(() => done.TrySetResult(NotLeading() ?? RecordStats(report)));
        return done.Task;
    }

    private MonReply RecordStats(PgStatsReport report)
    {
        var taken = _pgStats.Record(report, _machine!.State.Osd, Environment.TickCount64);
        return new MonReply(MonReplyStatus.Ok, 0, $"{taken} of {report.Pgs.Count} PG stats taken");
    }

    /// <summary>Null when this monitor leads under its lease (it may answer from its own memory); else where to go.</summary>
    private MonReply? NotLeading()
    {
        var node = _node!;
        if (node.Role == PaxosRole.Leader && node.HoldsLease(Now))
        {
            return null;
        }
        return node.Leader is { } l && l != Id && CurrentMonMap().FindById(l) is { } leader
            ? new MonReply(MonReplyStatus.NotLeader, 0, $"mon.{leader.Name} leads", leader.Address)
            : NoQuorum();
    }

    /// <summary>`pg ls [POOL]` and `df` from the statistics this leader holds and its committed osdmap.</summary>
    private MonReply StatsQuery(MonQuery query, string argument)
    {
        if (NotLeading() is { } elsewhere)
        {
            return elsewhere;
        }
        var map = _machine!.State.Osd;
        _pgStats.Prune(map);
        if (query == MonQuery.Df)
        {
            var df = _pgStats.Df(map);
            return new MonReply(MonReplyStatus.Ok, 0, PgStatsTable.FormatDf(df), Data: df.Encode());
        }
        int? pool = null;
        if (argument.Length > 0)
        {
            if (map.FindPool(argument) is not { } p)
            {
                return new MonReply(MonReplyStatus.Failed, (int)MonErrorCode.NotFound, $"pool '{argument}' does not exist");
            }
            pool = p.Id;
        }
        var stats = _pgStats.Dump(map, Environment.TickCount64, pool);
        return new MonReply(MonReplyStatus.Ok, 0, PgStatsTable.FormatPgs(stats), Data: PgStat.EncodeDump(stats));
    }

    private static string NeedText(Access need) => need switch
    {
        Access.Read => "allow r",
        Access.All => "allow *",
        Access.Read | Access.Execute => "allow rx",
        _ => "allow rw",
    };

    /// <summary>
    /// OSD lifecycle messages speak for one OSD: only that OSD's own entity may send them (osd.3 boots, beacons and
    /// reports as osd.3, never as another), and with mon 'allow rx'. The periodic tick is the leader's own.
    /// </summary>
    private static string? LifecycleRefusal(string who, MonCommand command)
    {
        int? subject = command switch
        {
            OsdBoot c => c.Id,
            OsdBeacon c => c.Id,
            OsdFailureReport c => c.Reporter,
            OsdFailureCancel c => c.Reporter,
            OsdAlive c => c.Id,
            PgTemp c => c.From,
            _ => null,
        };
        if (subject is null)
        {
            return $"{command.Describe()} is the monitors' own; no client may send it";
        }
        var expected = $"osd.{subject.Value.ToString(System.Globalization.CultureInfo.InvariantCulture)}";
        return who == expected ? null : $"{who} may not speak for {expected}: only {expected} itself sends its {command.Describe()}";
    }

    /// <summary>
    /// `osd rm` waits until nothing depends on the OSDs: every PG of every pool reported by its primary to this leader,
    /// none stale, all active+clean (a PG that is still recovering or backfilling may hold its only copy of some data on
    /// the OSD being removed). The map rules (down, out, in no PG's placement) are checked by the operation itself.
    /// </summary>
    private string? RemoveRefusal(OsdRemove remove)
    {
        var map = _machine!.State.Osd;
        if (remove.Ids.Any(id => map.FindOsd(id) is not { Up: false, In: false }))
        {
            // The operation refuses it on the map's grounds (missing, up, in), with the message that says what to do.
            return null;
        }
        var stats = _pgStats.Dump(map, Environment.TickCount64).ToDictionary(s => s.Pg);
        var pending = new List<string>();
        foreach (var pool in map.Pools.Values)
        {
            for (var seed = 0u; seed < (uint)pool.PgNum; seed++)
            {
                var pg = new PgId(pool.Id, seed);
                var state = stats.TryGetValue(pg, out var s) ? s.State : "not reported";
                if (state != "active+clean")
                {
                    pending.Add($"{pg} {state}");
                }
            }
        }
        return pending.Count == 0 ? null
            : $"refusing {remove.Describe()}: {pending.Count} PG(s) are not active+clean yet ({string.Join(", ", pending.Take(5))}{(pending.Count > 5 ? ", ..." : "")}); they may still need data on it — wait and try again";
    }

    private void Execute(string who, MonRequest request, TaskCompletionSource<MonReply> done)
    {
        var node = _node!;
        if (request.Command is OsdRemove remove && _machine is not null && NotLeading() is null && RemoveRefusal(remove) is { } refused)
        {
            done.TrySetResult(new MonReply(MonReplyStatus.Failed, (int)MonErrorCode.Refused, refused));
            return;
        }
        if (request.Command is { } command)
        {
            var key = (request.ClientId, request.Seq);
            var entry = MonitorStateMachine.EncodeEntry(command, who, DateTimeOffset.UtcNow);
            switch (node.Propose(request.ClientId, request.Seq, entry, Now))
            {
                case ProposeStatus.Pending:
                    if (_pending.Remove(key, out var older))
                    {
                        // The same request again (a client retry): the newer waiter gets the answer.
                        older.TrySetResult(new MonReply(MonReplyStatus.Timeout, 0, "superseded by a retry of the same request"));
                    }
                    _pending[key] = done;
                    break;
                default:
                    done.TrySetResult(NoQuorum());
                    break;
            }
            return;
        }
        if (request.Query == MonQuery.MonStatus)
        {
            done.TrySetResult(new MonReply(MonReplyStatus.Ok, 0, DescribeSelf()));
            return;
        }
        if (request.Query == MonQuery.MonMapSince && who.StartsWith("mon.", StringComparison.Ordinal) && _machine!.State.Mon.Find(who[4..]) is not null)
        {
            // A monitor starting after `mon add` asks for the monmap to learn its id (only monitors ask as mon.*).
            // Answered from the committed state, without a lease: adding the second monitor makes the Paxos
            // configuration two members, which the first alone cannot hold a lease for until the new one runs, and it
            // cannot run without its id. The map may be behind the leader's, but it lists the asker, and a monitor's
            // id never changes once committed.
            done.TrySetResult(MonReply.Decode(_machine.Query(MonitorStateMachine.EncodeQuery(MonQuery.MonMapSince, "0"))));
            return;
        }
        if (request.Query is MonQuery.OsdMapSince or MonQuery.MonMapSince)
        {
            var watcher = new Watcher(request, done, Now + TimeSpan.FromMilliseconds(request.WaitMs));
            if (!TryAnswer(watcher))
            {
                _watchers.Add(watcher);
            }
            return;
        }
        if (request.Query is MonQuery.PgDump or MonQuery.Df)
        {
            done.TrySetResult(StatsQuery(request.Query, request.Argument));
            return;
        }
        // A ticket or a service's keys are for the asker: the monitor names it (the first line), never the client.
        var argument = request.Query is MonQuery.ServiceTicket or MonQuery.ServiceKeys ? who + "\n" + request.Argument : request.Argument;
        var reply = Read(request.Query, argument);
        if (request.Query == MonQuery.Status && reply.Status == MonReplyStatus.Ok)
        {
            // Answered under this leader's lease: its PG statistics are the cluster's (not replicated, see PgStatsTable).
            _pgStats.Prune(_machine!.State.Osd);
            reply = reply with { Message = reply.Message + _pgStats.StateSummary(_machine.State.Osd, Environment.TickCount64) + "\n" };
        }
        done.TrySetResult(reply);
    }

    /// <summary>A linearizable read through the leader's lease, or where to go instead.</summary>
    private MonReply Read(MonQuery query, string argument)
    {
        var read = _node!.Read(MonitorStateMachine.EncodeQuery(query, argument), Now);
        return read.Status switch
        {
            ReadStatus.Ok => MonReply.Decode(read.Value),
            ReadStatus.NotLeader when read.LeaderHint is { } hint && CurrentMonMap().FindById(hint) is { } leader =>
                new MonReply(MonReplyStatus.NotLeader, 0, $"mon.{leader.Name} leads", leader.Address),
            _ => NoQuorum(),
        };
    }

    /// <summary>
    /// Answers a subscription poll if there is something to say: a newer map, a reason to go elsewhere (not the
    /// leader, no quorum), or the end of its wait. The answer is a lease read like any other, so a subscriber never
    /// gets a map older than one it could have read. False: nothing newer yet, keep it waiting.
    /// </summary>
    private bool TryAnswer(Watcher w)
    {
        var reply = Read(w.Request.Query, w.Request.Since.ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (reply is { Status: MonReplyStatus.Ok, Data: { } data } && Now < w.Deadline && MapUpdate.Decode(data).Kind == MapUpdateKind.Unchanged)
        {
            return false;
        }
        w.Done.TrySetResult(reply);
        return true;
    }

    /// <summary>Answers the waiting subscription polls whose map moved on, whose wait ran out, or that this monitor can
    /// no longer serve as leader.</summary>
    private void WakeWatchers()
    {
        if (_watchers.Count == 0)
        {
            return;
        }
        var state = _machine!.State;
        var leading = _node!.Role == PaxosRole.Leader;
        var now = Now;
        _watchers.RemoveAll(w =>
        {
            var epoch = w.Request.Query == MonQuery.OsdMapSince ? state.Osd.Epoch : state.Mon.Epoch;
            return (epoch > w.Request.Since || now >= w.Deadline || !leading) && TryAnswer(w);
        });
    }

    /// <summary>Most events one loop iteration handles in its batch scope (so a flood of requests cannot hold the
    /// replies of the first ones back for long).</summary>
    private const int MaxEventsPerBatch = 1024;

    private sealed record Watcher(MonRequest Request, TaskCompletionSource<MonReply> Done, TimeSpan Deadline);

    private MonReply NoQuorum() => new(MonReplyStatus.NoQuorum, 0, $"mon.{_options.Name} is not in a quorum ({_statusLine}); try another monitor");

    private string NameOf(int id) => CurrentMonMap().FindById(id) is { } m ? $"mon.{m.Name}" : $"member {id}";

    private string DescribeSelf()
    {
        var node = _node!;
        var leader = node.Leader is { } l ? NameOf(l) : "none known";
        var removed = !node.Members.Contains(Id) && _machine!.State.Mon.Find(_options.Name) is null && _machine.State.Mon.Epoch > 1 ? " (removed from the cluster)" : "";
        return $"mon.{_options.Name}: {node.Role.ToString().ToLowerInvariant()}{removed}, leader {leader}, members {string.Join(",", node.Members.Ids.Select(NameOf))}, " +
            $"committed index {node.CommitIndex}, lease {(node.HoldsLease(Now) ? "held" : "not held")}, osdmap epoch {_published?.Osd.Epoch}\n";
    }

    private void Post(Action action)
    {
        lock (_inboxGate)
        {
            if (_inboxClosed)
            {
                return; // stopping: the loop is gone; requests waiting on it are failed by StopAsync
            }
            _inbox.Enqueue(action);
            if (_loopWaiting)
            {
                System.Threading.Monitor.Pulse(_inboxGate);
            }
        }
    }

    /// <summary>Runs the loop on a thread of its own (it blocks on every store flush, and sleeping on a monitor between
    /// events costs no timer and no thread-pool hop); the task completes when the loop ends.</summary>
    private Task StartLoop()
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try
            {
                RunLoop();
                done.TrySetResult();
            }
            catch (Exception e)
            {
                done.TrySetException(e);
            }
        })
        { IsBackground = true, Name = $"mon.{_options.Name}-loop" };
        thread.Start();
        return done.Task;
    }

    private void RunLoop()
    {
        var batch = new List<Action>();
        var nextTick = Now + _options.TickInterval;
        try
        {
            while (true)
            {
                lock (_inboxGate)
                {
                    while (_inbox.Count == 0 && !_inboxClosed)
                    {
                        var wait = nextTick - Now;
                        if (wait <= TimeSpan.Zero)
                        {
                            break;
                        }
                        _loopWaiting = true;
                        // Whole milliseconds, rounded up: a wait of 0.7 ms given as a TimeSpan is truncated to 0 and
                        // returns at once, and the loop spun until the tick (25 ms of CPU a second on an idle leader).
                        System.Threading.Monitor.Wait(_inboxGate, (int)Math.Ceiling(wait.TotalMilliseconds));
                        _loopWaiting = false;
                    }
                    if (_inboxClosed)
                    {
                        return;
                    }
                    while (batch.Count < MaxEventsPerBatch && _inbox.TryDequeue(out var action))
                    {
                        batch.Add(action);
                    }
                }
                // Everything this iteration handles shares one batch scope: one store write (one fsync) for all of
                // it, and nothing it produced leaves before that write is durable.
                var node = _node!;
                node.BeginBatch();
                if (Now >= nextTick)
                {
                    node.Tick(Now);
                    LeaderChecks();
                    CheckMembership();
                    nextTick = Now + (node.Role == PaxosRole.Leader ? _options.TickInterval : _options.FollowerTickInterval);
                }
                foreach (var action in batch)
                {
                    action();
                }
                batch.Clear();
                node.EndBatch();
                Drain();
            }
        }
        catch (Exception e)
        {
            // A failure here (e.g. the store refusing a write) must stop this monitor, not leave it half alive.
            _log.LogCritical(e, "mon.{Name} loop failed; this monitor stops", _options.Name);
            _statusLine = $"failed: {e.Message}";
            foreach (var (waiter, _) in _heldAnswers)
            {
                // Committed (they were chosen before this write), but this monitor cannot say so any more.
                waiter.TrySetResult(new MonReply(MonReplyStatus.Timeout, 0, "not answered: this monitor failed; it may have committed — retry the same request"));
            }
            lock (_inboxGate)
            {
                _inboxClosed = true;
            }
            throw;
        }
    }

    /// <summary>The leader's housekeeping, under its lease, once per check interval: an OSD tick when one would change
    /// the maps (an OSD's beacons stopped, or it has been down for mon_osd_down_out_interval), and a new key for each
    /// ticket service whose newest key is missing or older than <see cref="AuthDb.RotateAfter"/>. The key is generated
    /// here, so every monitor applies the same one; a second rotation proposed before the first applied changes
    /// nothing (the operation sees a fresh key).</summary>
    private void LeaderChecks()
    {
        var node = _node!;
        var now = Now;
        if (now - _lastOsdCheck < _options.OsdCheckInterval || !node.HoldsLease(now))
        {
            return;
        }
        _lastOsdCheck = now;
        var wall = DateTimeOffset.UtcNow;
        void ProposeOwn(MonCommand command) =>
            node.Propose(_selfClientId, ++_selfSeq, MonitorStateMachine.EncodeEntry(command, $"mon.{_options.Name}", wall), now);
        if (_machine!.TickWouldChange(wall))
        {
            ProposeOwn(new OsdTick());
        }
        _pgStats.Prune(_machine.State.Osd);
        if (_pgStats.QuotaChanges(_machine.State.Osd, _leadingSinceMs) is { Count: > 0 } quota)
        {
            // Idempotent: proposed again a second later while the first is in flight, it changes nothing.
            ProposeOwn(new PoolQuotaFlags(quota));
        }
        var config = _machine.State.Config;
        if (_pgStats.FullnessChanges(_machine.State.Osd, config.GetDouble("mon_osd_nearfull_ratio"), config.GetDouble("mon_osd_full_ratio")) is { Count: > 0 } fullness)
        {
            ProposeOwn(new OsdFullFlags(fullness));
        }
        foreach (var service in AuthDb.TicketServices)
        {
            if (_machine.State.Auth.NeedsRotation(service, wall.ToUnixTimeMilliseconds()))
            {
                ProposeOwn(new ServiceKeyRotate(service, Secret.Generate()));
            }
        }
    }

    /// <summary>Takes what the node produced (all of it already durable) and delivers it: the maps are published
    /// before any answer leaves, so a client acting on its answer finds what it changed.</summary>
    private void Drain()
    {
        var node = _node!;
        _published = _machine!.State;
        foreach (var (waiter, reply) in _heldAnswers)
        {
            waiter.TrySetResult(reply);
        }
        _heldAnswers.Clear();
        Deliver(node.TakeOutput());
        ReconcilePeers();
        WakeWatchers();
        if ((node.Role, node.Leader, node.CommitIndex) != _statusOf)
        {
            if (node.Role == PaxosRole.Leader && _statusOf.Item1 != PaxosRole.Leader)
            {
                // Leading anew: what an earlier term of ours heard may be stale; OSDs report again within seconds.
                _pgStats.Clear();
                _leadingSinceMs = Environment.TickCount64;
            }
            else if (node.Role != PaxosRole.Leader)
            {
                _pgStats.Clear();
                _leadingSinceMs = long.MaxValue;
            }
            _statusOf = (node.Role, node.Leader, node.CommitIndex);
            _leaderHint = node.Role != PaxosRole.Leader && node.Leader is { } led ? CurrentMonMap().FindById(led)?.Address : null;
            var leader = node.Leader is { } l ? NameOf(l) : "none";
            _statusLine = $"{node.Role.ToString().ToLowerInvariant()}, leader {leader}, committed {node.CommitIndex}";
            _members = node.Members.Ids;
        }
        var now = Now;
        if (now - _describedAt >= DescribeEvery)
        {
            _describedAt = now;
            _describe = node.Describe();
        }
        if (_afterDrain is { } drained)
        {
            _afterDrain = null;
            drained.TrySetResult();
        }
    }

    /// <summary>Sends the messages to the peers and answers the completed proposals.</summary>
    private void Deliver(PaxosOutput output)
    {
        SendToPeers(output);
        foreach (var (waiter, reply) in Answers(output.Completions))
        {
            waiter.TrySetResult(reply);
        }
    }

    // The leader's address while this monitor is a peon that knows it (for answers to forwarded commands), else null.
    private volatile string? _leaderHint;

    // Answers SendEarly could not send before the write (see there); Drain sends them.
    private readonly List<(TaskCompletionSource<MonReply> Waiter, MonReply Reply)> _heldAnswers = [];

    /// <summary>The answers to the completed proposals made here (loop state: runs on the loop).</summary>
    private List<(TaskCompletionSource<MonReply> Waiter, MonReply Reply)> Answers(List<ProposalOutcome> completions)
    {
        var answers = new List<(TaskCompletionSource<MonReply>, MonReply)>(completions.Count);
        var node = _node!;
        foreach (var c in completions)
        {
            if (c.ClientId == _membershipClientId && c.Seq == _membershipSeq)
            {
                _log.LogInformation("mon.{Name}: Paxos membership change {Status}; members now {Members}", _options.Name, c.Status.ToString().ToLowerInvariant(), string.Join(",", node.Members.Ids));
                _membershipSeq = 0;
                continue;
            }
            if (!_pending.Remove((c.ClientId, c.Seq), out var waiter))
            {
                continue;
            }
            answers.Add((waiter, c.Status switch
            {
                ProposalStatus.Committed when c.Result is { } r => MonReply.Decode(r),
                ProposalStatus.Superseded => new MonReply(MonReplyStatus.Failed, (int)MonErrorCode.Refused, "this request was already superseded by a newer one from the same client"),
                _ => new MonReply(MonReplyStatus.Timeout, 0, "not committed in time; it may still commit — retry the same request"),
            }));
        }
        return answers;
    }

    private void SendToPeers(PaxosOutput output)
    {
        foreach (var (to, message) in output.Messages)
        {
            if (_peers.TryGetValue(to, out var peer))
            {
                peer.Send(PaxosCodec.Encode(message));
            }
        }
    }

    /// <summary>PaxosNode.BeforeWrite: the leader's Accepts (and whatever an earlier write released) go out now; the
    /// answers to commands whose entries were already durable are sent by a pool thread while this loop writes (each
    /// answer's continuation sends a reply: a dozen sends would otherwise hold the write back).</summary>
    private void SendEarly()
    {
        var output = _node!.TakeOutput();
        SendToPeers(output);
        var answers = Answers(output.Completions);
        if (answers.Count == 0)
        {
            return;
        }
        if (!_node.AppliedStateDurable)
        {
            // The maps now hold something not yet on this disk, so they cannot be published yet, and an answer must
            // not reach a client before the maps it may act on (a new key, new caps): these wait for the write.
            _heldAnswers.AddRange(answers);
            return;
        }
        // Whoever gets an answer may act on it at once (connect with the key it just added, use the caps it just
        // got): the maps that hold it are published first.
        _published = _machine!.State;
        ThreadPool.UnsafeQueueUserWorkItem(static answers =>
        {
            foreach (var (waiter, reply) in answers)
            {
                waiter.TrySetResult(reply);
            }
        }, answers, preferLocal: false);
    }

    /// <summary>Stops with an orderly hand-off: a leader names a successor, which campaigns at once, and the members
    /// drop the lease they granted it, so clients wait for no lease to run out (see <see cref="StopAsync"/>).</summary>
    public ValueTask DisposeAsync() => StopAsync(handOff: true);

    /// <summary>Stops this monitor. With <paramref name="handOff"/> a leader first hands leadership to the member
    /// furthest along and waits (at most a second) until its peers have been sent that; without it, it stops as a
    /// crash would (the others elect a leader once its lease is over).</summary>
    public async ValueTask StopAsync(bool handOff)
    {
        if (handOff && _loop is { IsCompleted: false } && _node is not null)
        {
            var sent = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Post(() =>
            {
                if (_node.HandOff(Now))
                {
                    _log.LogInformation("mon.{Name}: stopping: leadership handed off", _options.Name);
                    _afterDrain = sent;
                }
                else
                {
                    sent.TrySetResult();
                }
            });
            try
            {
                await sent.Task.WaitAsync(TimeSpan.FromSeconds(1));
                await Task.WhenAll(_peers.Values.Select(p => p.FlushAsync(TimeSpan.FromMilliseconds(500))));
            }
            catch (TimeoutException)
            {
                // Stopping regardless: the others elect a leader once its lease is over.
            }
        }
        await _stop.CancelAsync();
        lock (_inboxGate)
        {
            _inboxClosed = true;
            System.Threading.Monitor.Pulse(_inboxGate);
        }
        if (_loop is not null)
        {
            try
            {
                await _loop;
            }
            catch (Exception)
            {
                // Logged by the loop.
            }
        }
        foreach (var waiter in _pending.Values.Concat(_watchers.Select(w => w.Done)))
        {
            waiter.TrySetResult(new MonReply(MonReplyStatus.NoQuorum, 0, $"mon.{_options.Name} is stopping; try another monitor"));
        }
        foreach (var p in _peers.Values)
        {
            await p.DisposeAsync();
        }
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
        _store?.Dispose();
        _stop.Dispose();
    }

    /// <summary>The way to one other monitor: a messenger client and a bounded queue that drops the oldest message
    /// when the peer cannot keep up (or is down).</summary>
    private sealed class Peer : IAsyncDisposable
    {
        private readonly Channel<byte[]> _queue = Channel.CreateBounded<byte[]>(new BoundedChannelOptions(1024)
        {
            FullMode = BoundedChannelFullMode.DropOldest,
            SingleReader = true,
        });
        private readonly MessengerClient _client;
        private readonly Task _pump;
        private readonly CancellationTokenSource _stop = new();

        public Peer(MonitorDaemon owner, IPEndPoint endpoint, string name, string address)
        {
            Address = address;
            _client = new MessengerClient(endpoint, $"mon.{owner._options.Name}", owner._options.MonKey, ConnectionMode.Crc,
                new MessengerOptions(), (_, _) => ValueTask.CompletedTask, line => owner._log.LogDebug("mon.{Name} → mon.{Peer}: {Line}", owner._options.Name, name, line));
            _ = _client.StartAsync().ContinueWith(t => _ = t.Exception, TaskScheduler.Default);
            _pump = PumpAsync();
        }

        /// <summary>The monmap address this peer was made for.</summary>
        public string Address { get; }

        public void Send(byte[] message) => _queue.Writer.TryWrite(message);

        /// <summary>Waits until everything queued has been written and acknowledged by the peer (or the time is up).</summary>
        public async Task FlushAsync(TimeSpan timeout)
        {
            var until = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
            while ((_queue.Reader.Count > 0 || _client.Session.UnackedMessages > 0) && Stopwatch.GetTimestamp() < until)
            {
                await Task.Delay(5);
            }
        }

        private async Task PumpAsync()
        {
            try
            {
                await foreach (var m in _queue.Reader.ReadAllAsync(_stop.Token))
                {
                    // Each message is freshly encoded and dropped after: handed over, not copied (a snapshot can be large).
                    await _client.Session.SendWithoutCopyAsync(MonMessageTypes.Paxos, m, ct: _stop.Token);
                }
            }
            catch (Exception e) when (e is OperationCanceledException or ConnectionClosedException)
            {
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _queue.Writer.TryComplete();
            await _pump;
            await _client.DisposeAsync();
            _stop.Dispose();
        }
    }
}
