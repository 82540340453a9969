using System.Collections.Concurrent;
using Appliance.Maps;
using Appliance.Osd.Ops;
using Appliance.Osd.Pg;
using Appliance.Osd.Protocol;
using Appliance.Store;
using Appliance.Wire.Auth;
using Appliance.Wire.Codec;
using Microsoft.Extensions.Logging;

namespace Appliance.Osd.Daemon;

/// <summary>
/// The logic of one OSD, free of sockets and processes: it hosts the PGs this OSD is a member of (or holds data
/// of), follows osdmaps, routes clients' requests to their PG and the other OSDs' messages to theirs. Time, network
/// (<see cref="IOsdPeers"/>) and disk (the <see cref="ObjectStore"/> over any <c>IBlockDevice</c>) come in through
/// its constructor, so tests run many of them in one process; OsdDaemon is the process around it.
/// </summary>
public sealed partial class OsdService : IPgHost, IAsyncDisposable
{
    private readonly ConcurrentDictionary<PgId, PlacementGroup> _pgs = new();
    // Every PG's past intervals as this OSD saw them in the maps it applied (hosted or not): a PG this OSD comes to
    // host takes what was seen of it; hosted PGs persist theirs. Changed under _mapLock only.
    private readonly Dictionary<PgId, PastIntervals> _history = new();
    private readonly object _mapLock = new();
    private OsdMap? _map;
    private OsdMap? _previousMap;
    private TaskCompletionSource _mapAdvanced = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile IReadOnlySet<int> _heartbeatPeers = new HashSet<int>();

    public OsdService(int id, ObjectStore store, IOsdPeers peers, ObjectClassRegistry classes, TimeProvider time, ILogger logger)
    {
        Self = id;
        Store = store;
        Peers = peers;
        Classes = classes;
        Time = time;
        Logger = logger;
    }

    public int Self { get; }
    public ObjectStore Store { get; }
    public IOsdPeers Peers { get; }
    public ObjectClassRegistry Classes { get; }
    public TimeProvider Time { get; }
    public ILogger Logger { get; }
    public Watchers Watchers { get; } = new();
    public uint Epoch => _map?.Epoch ?? 0;
    public OsdMap? Map => _map;

    /// <summary>Fraction of the store's space used past which writes are refused (Ceph's mon_osd_full_ratio).</summary>
    public double FullRatio { get; init; } = 0.95;

    public IReadOnlyCollection<PlacementGroup> Pgs => [.. _pgs.Values];

    /// <summary>The OSDs this one watches with heartbeats under its newest map: every other member of the acting
    /// sets it belongs to, and its neighbours (the next and previous up OSD by id), so an OSD that shares no PG is
    /// still watched by someone (as Ceph adds neighbours).</summary>
    public IReadOnlySet<int> HeartbeatPeers => _heartbeatPeers;

    public PlacementGroup? FindPg(PgId id) => _pgs.GetValueOrDefault(id);

    /// <summary>
    /// Takes a new osdmap: every PG of every pool whose acting set holds this OSD is hosted (created empty, or
    /// loaded from the store), and every hosted PG learns its placement, starting a new interval where it changed.
    /// PGs this OSD holds data of but is no longer a member of stay as strays (their data is kept).
    /// </summary>
    public void ApplyMap(OsdMap map)
    {
        TaskCompletionSource wake;
        lock (_mapLock)
        {
            if (_map is not null && map.Epoch <= _map.Epoch)
            {
                return;
            }
            _map = map;
            var seen = new HashSet<PgId>();
            var peers = new HashSet<int>();
            TrackHistoryLocked(map, (id, pool, m, acting, past) =>
            {
                if (acting.Contains(Self))
                {
                    peers.UnionWith(acting);
                }
                if ((!acting.Contains(Self) && !_pgs.ContainsKey(id)) || _deleting.ContainsKey(id))
                {
                    // Not ours, or its old copy is being deleted here (hosted again once that is done).
                    return;
                }
                seen.Add(id);
                var pg = _pgs.GetOrAdd(id, pid => new PlacementGroup(this, pid, pool.Size, pool.MinSize, (uint)pool.PgNum));
                pg.OnMap(map.Epoch, acting, m.ActingPrimary, pool.Size, pool.MinSize, (uint)pool.PgNum, [.. m.Up], past, PastIntervals.UpFromOf(map, acting));
            });
            foreach (var (id, pg) in _pgs)
            {
                if (!seen.Contains(id))
                {
                    // The pool is gone (or the PG with it): stop serving it. A removed pool's PGs are deleted by the next stray pass
                    // (OsdService.Strays); a PG past a lowered pg_num keeps its data.
                    pg.Stop();
                }
            }
            var up = map.Osds.Values.Where(o => o.Up && o.Id != Self).Select(o => o.Id).Order().ToList();
            if (up.Count > 0)
            {
                peers.Add(up.FirstOrDefault(o => o > Self, up[0]));
                peers.Add(up.LastOrDefault(o => o < Self, up[^1]));
            }
            peers.RemoveWhere(o => o < 0 || o == Self);
            _heartbeatPeers = peers;
            wake = _mapAdvanced;
            _mapAdvanced = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        wake.TrySetResult();
    }

    /// <summary>
    /// An epoch older than the one this OSD will serve from, applied to the PGs' past intervals only (a start
    /// catching up on the epochs since its PGs' history, or the epochs a jump skipped): no PG changes interval or
    /// peers for it, and nothing is sent. Peering in an interval that is long over would only disturb the members
    /// of the current one (they would take the old interval's epoch from their primary), and would keep this OSD
    /// busy while clients and peers wait for it. <see cref="ApplyMap"/> of a later epoch then names each PG's
    /// interval by the epoch it began at (<see cref="PastIntervals.CurrentSince"/>), as the peers that saw every
    /// epoch name it.
    /// </summary>
    public void TrackHistory(OsdMap map)
    {
        lock (_mapLock)
        {
            if ((_map is not null && map.Epoch <= _map.Epoch) || (_previousMap is not null && map.Epoch <= _previousMap.Epoch))
            {
                return;
            }
            TrackHistoryLocked(map, null);
        }
    }

    /// <summary>The newest epoch the past intervals were brought to (null before any).</summary>
    public uint? HistoryEpoch
    {
        get
        {
            lock (_mapLock)
            {
                return _previousMap?.Epoch;
            }
        }
    }

    /// <summary>Brings every PG's past intervals to <paramref name="map"/> (under _mapLock), calling
    /// <paramref name="each"/> with each PG's placement and history.</summary>
    private void TrackHistoryLocked(OsdMap map, Action<PgId, PoolInfo, PgMapping, int[], PastIntervals>? each)
    {
        var previous = _previousMap;
        foreach (var pool in map.Pools.Values)
        {
            var previousPool = previous?.Pools.GetValueOrDefault(pool.Id);
            for (var seed = 0u; seed < (uint)pool.PgNum; seed++)
            {
                var m = map.MapPg(new PgId(pool.Id, seed));
                var id = m.Pg;
                int[] acting = [.. m.Acting];
                var past = TrackInterval(previous, previousPool, map, pool, id, acting, m.ActingPrimary);
                each?.Invoke(id, pool, m, acting, past);
            }
        }
        foreach (var id in _history.Keys.Where(k => !map.Pools.TryGetValue(k.Pool, out var pl) || k.Seed >= (uint)pl.PgNum).ToList())
        {
            _history.Remove(id);
        }
        if (previous is null || map.Epoch > previous.Epoch)
        {
            _previousMap = map;
        }
    }

    /// <summary>
    /// A PG's past intervals brought to <paramref name="map"/>. First seen: known from the pool's creation when this
    /// map creates the pool (or follows one without it), else from this epoch only.
    /// </summary>
    private PastIntervals TrackInterval(OsdMap? previous, PoolInfo? previousPool, OsdMap map, PoolInfo pool, PgId id, int[] acting, int primary)
    {
        PastIntervals past;
        if (_history.TryGetValue(id, out var had))
        {
            past = had.Advance(previous, map, previousPool?.MinSize ?? pool.MinSize, acting, primary);
        }
        else
        {
            var created = pool.CreatedEpoch >= map.Epoch || (previous is not null && previous.Epoch + 1 == map.Epoch && previousPool is null);
            past = PastIntervals.Start(created ? Math.Min(pool.CreatedEpoch, map.Epoch) : map.Epoch, map.Epoch, acting, primary, startKnown: created,
                PastIntervals.UpFromOf(map, acting));
        }
        _history[id] = past;
        return past;
    }

    private int _intervalsTaken;

    /// <summary>How many times a PG here took its primary's epoch for an interval it had recorded at another epoch
    /// (PlacementGroup.AdoptPrimaryInterval): each time, what the PG did in the interval it had was ended. OSDs that
    /// saw the same maps name intervals alike, so this stays 0 unless one of them missed epochs.</summary>
    public int IntervalsTaken => Volatile.Read(ref _intervalsTaken);

    void IPgHost.IntervalTaken() => Interlocked.Increment(ref _intervalsTaken);

    /// <summary>The past intervals this OSD knows of a PG it does not host (null: none).</summary>
    public PastIntervals? KnownHistory(PgId id)
    {
        lock (_mapLock)
        {
            return _history.GetValueOrDefault(id);
        }
    }

    /// <summary>A PG activated at <paramref name="lastEpochStarted"/>: its intervals before are never needed again.</summary>
    public void TrimHistory(PgId id, uint lastEpochStarted)
    {
        lock (_mapLock)
        {
            if (_history.TryGetValue(id, out var past))
            {
                _history[id] = past.TrimBefore(lastEpochStarted);
            }
        }
    }

    /// <summary>The oldest epoch a PG loaded from the store knows its history through: a daemon applies the maps
    /// from there on (fetched from the monitors) before the current one, so no interval is missed while it was away.
    /// Null when the store holds no PG.</summary>
    public uint? ResumeEpoch { get; private set; }

    /// <summary>Hosts the PGs the store already holds (at start, before the first map), with their past intervals.</summary>
    public void LoadExistingPgs()
    {
        foreach (var c in Store.ListCollections())
        {
            if (PgCollections.TryParseCollection(c, out var id))
            {
                if (Store.Stat(c, PgMeta.MetaObject) is null)
                {
                    // A deletion this OSD did not finish (the meta object goes first): finished by the next pass.
                    _orphans.Add(id);
                    continue;
                }
                // Size and min_size come with the first map.
                var pg = _pgs.GetOrAdd(id, pid => new PlacementGroup(this, pid, 1, 1, 1));
                if (pg.Past is { } past)
                {
                    lock (_mapLock)
                    {
                        _history[id] = past;
                    }
                    ResumeEpoch = ResumeEpoch is { } r ? Math.Min(r, past.Through) : past.Through;
                }
            }
        }
    }

    /// <summary>Raises this OSD's up_thru in the maps (the daemon sends <c>OsdAlive</c>, coalesced); null where no
    /// monitor runs.</summary>
    public Func<uint, CancellationToken, Task>? RequestUpThruAsync { get; set; }

    /// <summary>
    /// Waits until the osdmap shows this OSD up through <paramref name="epoch"/> (Ceph's WaitUpThru): a primary does
    /// this before it activates a PG in an interval starting at that epoch, so that every interval that served is
    /// visible in the maps as one that may have gone rw.
    /// </summary>
    public async Task WaitUpThruAsync(uint epoch, CancellationToken ct)
    {
        while (true)
        {
            var map = _map;
            if (map?.FindOsd(Self) is { } me && me.UpThru >= epoch)
            {
                return;
            }
            if (RequestUpThruAsync is not { } request)
            {
                return;
            }
            await request(epoch, ct);
            await WaitForEpochAsync((map?.Epoch ?? 0) + 1, TimeSpan.FromSeconds(2), ct);
        }
    }

    /// <summary>Waits until this OSD has an osdmap of at least <paramref name="epoch"/>.</summary>
    public async Task<bool> WaitForEpochAsync(uint epoch, TimeSpan timeout, CancellationToken ct)
    {
        var deadline = Time.GetTimestamp() + (long)(timeout.TotalSeconds * Time.TimestampFrequency);
        while (true)
        {
            Task wait;
            lock (_mapLock)
            {
                if (Epoch >= epoch)
                {
                    return true;
                }
                wait = _mapAdvanced.Task;
            }
            var left = Time.GetElapsedTime(Time.GetTimestamp(), deadline);
            if (Time.GetTimestamp() >= deadline)
            {
                return false;
            }
            try
            {
                await wait.WaitAsync(left, Time, ct);
            }
            catch (TimeoutException)
            {
                return false;
            }
        }
    }

    public (int Result, string Message)? WriteRefusal(int pool, IReadOnlyList<int> acting)
    {
        if (_map?.Pools.GetValueOrDefault(pool) is { } info && (info.Flags & PoolFlags.FullQuota) != 0)
        {
            return (OsdResult.QuotaExceeded, $"pool {info.Name} is over its quota (objects {info.QuotaMaxObjects}, bytes {info.QuotaMaxBytes}); raise it with `appliance pool set {info.Name} quota_max_bytes N` or remove data");
        }
        // A member the monitors flagged full would fail this write or diverge: refuse it here, before anything is
        // committed anywhere. (Its own disk it also checks below, without waiting for a map.)
        foreach (var member in acting)
        {
            if (_map?.FindOsd(member) is { Fullness: OsdFullness.Full })
            {
                return (OsdResult.NoSpace, $"osd.{member}, a member of this PG, is full (osdmap epoch {_map.Epoch}); delete data or add OSDs");
            }
        }
        var fs = Store.StatFs();
        var (total, used) = (fs.TotalBytes, fs.UsedBytes);
        if (total > 0 && used >= FullRatio * total)
        {
            return (OsdResult.NoSpace, $"osd.{Self} is full ({used * 100 / total}% used, full ratio {FullRatio:P0})");
        }
        return null;
    }

    /// <summary>
    /// A client's request, authenticated as <paramref name="entity"/> with <paramref name="caps"/>: checks the
    /// capability for the pool, then runs it on its PG if this OSD is the primary under its map.
    /// </summary>
    public async Task<OsdOpReply> HandleClientAsync(OsdOpRequest req, string entity, EntityCaps caps, IWatchSession? session, CancellationToken ct)
    {
        OsdOpReply Refuse(int result, string message) => new(req.Tid, result, Epoch, default, 0, []) { Message = message };

        if (req.MapEpoch > Epoch && !await WaitForEpochAsync(req.MapEpoch, TimeSpan.FromSeconds(5), ct))
        {
            return Refuse(OsdResult.TryAgain, $"osd.{Self} does not have osdmap epoch {req.MapEpoch} yet");
        }
        var map = _map;
        if (map is null || map.Pools.GetValueOrDefault(req.Pg.Pool) is not { } pool)
        {
            return Refuse(OsdResult.NotFound, $"pool {req.Pg.Pool} does not exist");
        }
        // Fencing: a client instance the monitors blocklisted is refused from the epoch that adds it, so a server
        // that was taken over cannot write late (DESIGN: NBD takeover).
        var instance = $"{entity}:{req.ClientNonce}";
        if (map.IsBlocklisted(instance))
        {
            return Refuse(OsdResult.Blocklisted, $"{instance} is blocklisted in osdmap epoch {map.Epoch}");
        }
        var isList = req.Ops.Count == 1 && req.Ops[0].Code == OsdOpCode.PgList;
        if (!isList && Limits.CheckObjectName(req.Object) is { } bad)
        {
            return Refuse(System.Text.Encoding.UTF8.GetByteCount(req.Object) > Limits.MaxObjectNameBytes ? OsdResult.NameTooLong : OsdResult.InvalidArgument, bad);
        }
        if (req.Ops.Count == 0)
        {
            return Refuse(OsdResult.InvalidArgument, "a request needs at least one operation");
        }
        var need = Access.None;
        foreach (var op in req.Ops)
        {
            need |= op.Code == OsdOpCode.Call ? Access.Read | Access.Execute : op.IsWrite ? Access.Write : Access.Read;
        }
        if (!Authorizer.IsAllowed(caps, "osd", need, pool.Name))
        {
            return Refuse(OsdResult.AccessDenied, $"{entity} may not {Describe(need)} in pool {pool.Name}");
        }
        var expectedPg = new PgId(pool.Id, Crush.Placement.PoolPlacement.PgOf(req.ObjectHash, (uint)pool.PgNum));
        if (!isList && expectedPg != req.Pg)
        {
            return Refuse(OsdResult.TryAgain, $"object {req.Object} is in PG {expectedPg} at epoch {map.Epoch}, not {req.Pg}");
        }
        if (_pgs.GetValueOrDefault(req.Pg) is not { } pg || pg.Interval?.Primary != Self)
        {
            return Refuse(OsdResult.TryAgain, $"osd.{Self} is not the primary of {req.Pg} at epoch {map.Epoch}");
        }
        return await pg.ExecuteAsync(req, new ReqId(entity, req.ClientNonce, req.Tid), session, ct);
    }

    private static string Describe(Access a) =>
        string.Join("+", new[] { (Access.Read, "read"), (Access.Write, "write"), (Access.Execute, "call methods") }.Where(x => a.HasFlag(x.Item1)).Select(x => x.Item2));

    /// <summary>
    /// A message from OSD <paramref name="from"/>. Returns the answer's type and payload for requests, or null when
    /// the message needs none now (a replicated change is answered through <paramref name="reply"/> once durable).
    /// A malformed message is logged and dropped: a peer's bug never takes this OSD down.
    /// </summary>
    /// <param name="from">The sending OSD.</param>
    /// <param name="type">The message type.</param>
    /// <param name="payload">The message.</param>
    /// <param name="reply">Sends a message back to the sender.</param>
    /// <param name="keep">Given when <paramref name="payload"/> is a pooled message buffer that may be kept past this
    /// call (<see cref="Wire.Messenger.Message.Keep"/>): a rep op's data are then applied from it without a copy,
    /// and the buffer is held until the store has the change. Null: payload is only valid during the call.</param>
    public async Task<(ushort Type, byte[] Payload)?> HandlePeerAsync(int from, ushort type, ReadOnlyMemory<byte> payload, Func<ushort, byte[], ValueTask> reply,
        Func<IDisposable>? keep = null)
    {
        try
        {
            switch (type)
            {
                case OsdMessageType.RepOp:
                {
                    var op = keep is null ? RepOp.FromBytes(payload.Span) : RepOp.FromShared(payload);
                    if (_pgs.GetValueOrDefault(op.Pg) is not { } pg)
                    {
                        await reply(OsdMessageType.RepOpReply, new RepOpReply(op.Pg, op.Interval, op.Entry.Version, OsdResult.TryAgain).ToBytes());
                        return null;
                    }
                    // Taken before the store sees the data: it reads them until the change is durable.
                    var kept = keep?.Invoke();
                    var done = pg.ApplyRepOp(from, op);
                    _ = AnswerWhenDurableAsync(op, done, reply, kept);
                    return null;
                }
                case OsdMessageType.RepOpReply:
                {
                    var r = RepOpReply.FromBytes(payload.Span);
                    _pgs.GetValueOrDefault(r.Pg)?.Backend.OnReply(from, r);
                    return null;
                }
                case OsdMessageType.PgQuery:
                {
                    var q = PgQuery.FromBytes(payload.Span);
                    var pg = _pgs.GetValueOrDefault(q.Pg);
                    // Not hosted here: nothing of it on this store. Said so once this OSD has the interval's map (before,
                    // it may yet become a member).
                    var answer = pg?.Query(from, q) ?? (Epoch >= q.Interval
                        ? new PgNotify(OsdResult.Ok, false, PgInfo.Empty(q.Pg), [], [], false) { Past = KnownHistory(q.Pg) }
                        : new PgNotify(OsdResult.TryAgain, false, PgInfo.Empty(q.Pg), [], [], false));
                    return (OsdMessageType.PgNotify, answer.ToBytes());
                }
                case OsdMessageType.PgActivate:
                {
                    var u = PgUpdate.FromBytes(payload.Span);
                    var pg = _pgs.GetValueOrDefault(u.Pg);
                    var answer = pg is null ? new PeerResult(OsdResult.TryAgain, $"osd.{Self} does not host {u.Pg}") : await pg.UpdateAsync(from, u);
                    return (OsdMessageType.PgActivateReply, answer.ToBytes());
                }
                case OsdMessageType.Push:
                {
                    var ch = ObjectChunk.FromBytes(payload.Span);
                    var pg = _pgs.GetValueOrDefault(ch.Pg);
                    var answer = pg is null ? new PeerResult(OsdResult.TryAgain, $"osd.{Self} does not host {ch.Pg}") : await pg.PushAsync(from, ch);
                    return (OsdMessageType.PushReply, answer.ToBytes());
                }
                case OsdMessageType.PgCleanQuery:
                {
                    var q = PgQuery.FromBytes(payload.Span);
                    return (OsdMessageType.PgCleanReply, CleanWithout(q.Pg, from, q.Interval).ToBytes());
                }
                case OsdMessageType.PullRequest:
                {
                    var p = PullRequest.FromBytes(payload.Span);
                    var pg = _pgs.GetValueOrDefault(p.Pg);
                    if (pg is null)
                    {
                        return (OsdMessageType.PushReply, p.List ? new PgObjectList(OsdResult.TryAgain, [], null).ToBytes()
                            : new ObjectChunk(p.Pg, p.Interval, p.Name, p.Hash, false, 0, 0, -1, true, true, [], 0, default, []).ToBytes());
                    }
                    return (OsdMessageType.PushReply, await pg.PullAsync(from, p));
                }
                case OsdMessageType.PgNotify or OsdMessageType.PgActivateReply or OsdMessageType.PushReply:
                    // An answer to a request this OSD gave up on (a new interval, a timeout): nobody waits for it.
                    Logger.LogDebug("osd.{Osd} answered late (message type {Type}); dropped", from, type);
                    return null;
                default:
                    Logger.LogWarning("osd.{Osd} sent an unknown message type {Type}; dropped", from, type);
                    return null;
            }
        }
        catch (WireFormatException e)
        {
            Logger.LogWarning("osd.{Osd} sent a malformed message (type {Type}): {Error}; dropped", from, type, e.Message);
            return null;
        }
    }

    private async Task AnswerWhenDurableAsync(RepOp op, Task<RepOpReply> done, Func<ushort, byte[], ValueTask> reply, IDisposable? kept)
    {
        RepOpReply r;
        using (kept)
        {
            try
            {
                r = await done;
            }
            catch (Exception e)
            {
                // Every rep op is answered: the primary holds the object (and its client's request) until it hears
                // back or the interval ends. An exception here is our bug: said loudly, refused as an I/O error.
                Logger.LogError(e, "{Pg}: replicated change {Version} failed here", op.Pg, op.Entry.Version);
                r = new RepOpReply(op.Pg, op.Interval, op.Entry.Version, OsdResult.IoError);
            }
        }
        try
        {
            await reply(OsdMessageType.RepOpReply, r.ToBytes());
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or OperationCanceledException)
        {
            // The primary's session is gone: it will not count this reply, and the next interval's peering settles it.
            Logger.LogDebug("reply for {Pg} {Version} not sent: {Error}", r.Pg, r.Version, e.Message);
        }
    }

    /// <summary>PG statistics for the monitors: one line per PG this OSD is the primary of.</summary>
    public IReadOnlyList<(PgId Pg, string State, int[] Acting, int Primary, long Objects, long Bytes, string Detail)> PrimaryStats() =>
        [.. _pgs.Values.Where(p => p.Interval?.Primary == Self).OrderBy(p => p.Id)
            .Select(p => (p.Id, p.StateText, p.Interval?.Acting ?? [], p.Interval?.Primary ?? -1, p.Objects, p.Bytes, p.QueryText()))];

    public ValueTask DisposeAsync()
    {
        foreach (var pg in _pgs.Values)
        {
            pg.Stop();
        }
        return ValueTask.CompletedTask;
    }
}
