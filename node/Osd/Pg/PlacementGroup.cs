using Appliance.Maps;
using System.Buffers.Binary;
using Appliance.Osd.Backend;
using Appliance.Osd.Ops;
using Appliance.Osd.Protocol;
using Appliance.Store;
using Microsoft.Extensions.Logging;

namespace Appliance.Osd.Pg;

/// <summary>Where a PG stands on this OSD.</summary>
public enum PgPhase
{
    /// <summary>This OSD is the primary and is bringing the members into agreement.</summary>
    Peering,
    /// <summary>Primary: serving I/O.</summary>
    Active,
    /// <summary>Primary: peered, but fewer than min_size members: holds I/O until more are up.</summary>
    Undersized,
    /// <summary>Primary: no member holds a usable history (every one is empty or mid-backfill while the PG had data).</summary>
    Incomplete,
    /// <summary>Primary: an interval that may have acknowledged writes has no member that answered; waits for them.</summary>
    Down,
    /// <summary>A non-primary member of the acting set.</summary>
    Replica,
    /// <summary>Holds data of the PG but is no longer in its acting set.</summary>
    Stray,
}

/// <summary>One interval of a PG: a stretch of epochs with the same acting set and primary.</summary>
public sealed class PgInterval(uint since, int[] acting, int primary, uint[]? upFrom = null, uint? historySince = null)
{
    /// <summary>The epoch that names the interval in messages (the primary's, when a member took it).</summary>
    public uint Since { get; } = since;
    /// <summary>The epoch this OSD's past intervals say the interval began at (<see cref="PastIntervals.CurrentSince"/>
    /// when it began): another there means another interval, even with the same acting set.</summary>
    public uint HistorySince { get; } = historySince ?? since;
    public int[] Acting { get; } = acting;
    public int Primary { get; } = primary;
    /// <summary>The epoch from which each member is up: a member that restarted (a new up_from) makes a new interval.</summary>
    public uint[] UpFrom { get; } = upFrom ?? new uint[acting.Length];
    public CancellationTokenSource Ended { get; } = new();
    /// <summary>Completes when the PG goes active in this interval (primary only).</summary>
    public TaskCompletionSource Activated { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    /// <summary>Replica: the primary activated this member in this interval.</summary>
    public bool MemberActive { get; set; }

    /// <summary>The interval is over: its work is cancelled and whoever waits for its activation is told.</summary>
    public void End()
    {
        Ended.Cancel();
        Activated.TrySetCanceled();
    }
}

/// <summary>
/// A placement group on this OSD: its log, info and missing set, the interval it is in, and — when this OSD is the
/// primary — the ordering of its requests. Shared by replicated and erasure-coded pools; what differs is the
/// <see cref="IPgBackend"/>. Partial files: requests (here), the member side (Replica), peering and recovery
/// (Peering).
/// </summary>
public sealed partial class PlacementGroup
{
    private readonly IPgHost _host;
    private readonly object _lock = new();
    private readonly KeyedLocks<ObjectId> _objectLocks = new();
    private readonly SemaphoreSlim _order = new(1, 1);
    private readonly SemaphoreSlim _calls = new(1, 1);
    private PgInterval? _interval;
    private PgPhase _phase = PgPhase.Stray;
    private Eversion _lastSubmitted;
    private Eversion _lastCommitted;
    private TaskCompletionSource _committedAdvanced = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public PlacementGroup(IPgHost host, PgId id, int size, int minSize, uint pgNum)
    {
        _host = host;
        Id = id;
        Size = size;
        MinSize = minSize;
        PgNum = pgNum;
        var loaded = PgMeta.Load(host.Store, id);
        Exists = loaded is not null;
        Info = loaded?.Info ?? PgInfo.Empty(id);
        Log = loaded?.Log ?? new PgLog(Eversion.Zero, []);
        Missing = loaded?.Missing ?? [];
        Backfilling = loaded is not null && host.Store.OmapGetValue(id.Collection, PgMeta.MetaObject, BackfillKey) is not null;
        Past = loaded is not null ? PgMeta.LoadPast(host.Store, id) : null;
        _lastSubmitted = _lastCommitted = Log.Head;
        Backend = new ReplicatedBackend(host.Self, id, host.Store, host.Peers);
    }

    internal const string BackfillKey = "backfilling";

    public PgId Id { get; }
    public int Size { get; private set; }
    public int MinSize { get; private set; }
    public uint PgNum { get; private set; }
    public PgInfo Info { get; private set; }
    public PgLog Log { get; }
    public Dictionary<ObjectId, ulong> Missing { get; }
    /// <summary>The PG has a collection on this OSD.</summary>
    public bool Exists { get; private set; }
    /// <summary>A backfill of this member is unfinished: its objects and log say nothing.</summary>
    public bool Backfilling { get; private set; }
    public ReplicatedBackend Backend { get; }
    public PgPhase Phase => _phase;
    public PgInterval? Interval => _interval;
    /// <summary>Objects and bytes of the PG (kept by the primary from activation on).</summary>
    public long Objects { get; private set; }
    public long Bytes { get; private set; }

    private ILogger Logger => _host.Logger;

    /// <summary>Ceph-style state words for status and <c>pg ls</c> (PlacementGroup.Peering.cs).</summary>
    public string StateText => StateWords();

    /// <summary>Whether an object hash belongs to this PG under the pool's pg_num.</summary>
    public bool Contains(uint hash) => Crush.Placement.PoolPlacement.PgOf(hash, PgNum) == Id.Seed;

    /// <summary>
    /// A new osdmap: when this PG's acting set or primary changed, or a member restarted (its up_from changed: it
    /// lost what it knew of this interval), or epochs this OSD tracked in its past intervals only held another
    /// interval meanwhile, a new interval starts — requests in flight end with <see cref="OsdResult.TryAgain"/> (the
    /// client resends; the log answers a resend of anything that was applied), and the primary peers again. The
    /// interval is named by the epoch it began at in <paramref name="past"/> (brought to this map), so an OSD that
    /// first hosts the PG later than it began (a start, a jump over epochs) names it as its peers do.
    /// </summary>
    public void OnMap(uint epoch, int[] acting, int primary, int size, int minSize, uint pgNum, int[] up, PastIntervals past, uint[] upFrom)
    {
        Size = size;
        MinSize = minSize;
        PgNum = pgNum;
        TakeHistory(up, past);
        PgInterval? old;
        PgInterval next;
        var since = past.CurrentUpFrom is not null && past.IsCurrent(acting, primary, upFrom) && past.CurrentSince <= epoch ? past.CurrentSince : epoch;
        lock (_lock)
        {
            old = _interval;
            var sameSet = old is not null && old.Primary == primary && old.Acting.AsSpan().SequenceEqual(acting) && old.UpFrom.AsSpan().SequenceEqual(upFrom);
            if (old is not null && sameSet && old.HistorySince == since)
            {
                // The same interval: a PG waiting for OSDs (down, incomplete) looks again with this map.
                Kick();
                return;
            }
            if (old is not null && since <= old.HistorySince)
            {
                // Never the name of an interval that is over (history that did not split where this PG did).
                since = epoch;
            }
            next = new PgInterval(since, acting, primary, upFrom);
            _interval = next;
            _phase = primary == _host.Self ? PgPhase.Peering : acting.Contains(_host.Self) ? PgPhase.Replica : PgPhase.Stray;
        }
        if (old is not null)
        {
            old.End();
            Backend.FailPending($"{Id}: interval {old.Since} ended at epoch {epoch}");
        }
        Logger.LogDebug("{Pg} interval {Since} (epoch {Epoch}): acting [{Acting}] primary osd.{Primary}", Id, next.Since, epoch, string.Join(",", acting), primary);
        if (primary == _host.Self)
        {
            _ = Task.Run(() => PeerLoopAsync(next));
        }
    }

    /// <summary>
    /// Peers again within the same interval (same epoch, acting set and primary): what waits in it fails with
    /// TryAgain and the PG serves again only once every member has this log. For a change a member did not take.
    /// </summary>
    private void RestartPeering(PgInterval i, string why)
    {
        PgInterval next;
        lock (_lock)
        {
            if (_interval != i || i.Ended.IsCancellationRequested || i.Primary != _host.Self)
            {
                return;
            }
            next = new PgInterval(i.Since, i.Acting, i.Primary, i.UpFrom, i.HistorySince);
            _interval = next;
            _phase = PgPhase.Peering;
        }
        i.End();
        Backend.FailPending($"{Id}: peering again in interval {i.Since}");
        Logger.LogWarning("{Pg}: peering again in interval {Since}: {Why}", Id, i.Since, why);
        _ = Task.Run(() => PeerLoopAsync(next));
    }

    /// <summary>The interval ended (this OSD stops): every waiter fails.</summary>
    public void Stop()
    {
        PgInterval? old;
        lock (_lock)
        {
            old = _interval;
            _interval = null;
            _phase = PgPhase.Stray;
        }
        if (old is not null)
        {
            old.End();
        }
        Backend.FailPending($"{Id}: the OSD is stopping");
    }

    private OsdOpReply Reply(OsdOpRequest req, int result, string message, IReadOnlyList<OsdOpOutput>? outputs = null, Eversion version = default, ulong objectVersion = 0) =>
        new(req.Tid, result, _host.Epoch, version, objectVersion, outputs ?? []) { Message = message };

    /// <summary>
    /// Runs a client's request on this primary. Requests on one object run one at a time in arrival order; a write
    /// is answered only once every member of the acting set has it durable; a read waits for the writes before it
    /// on the same object, so it never returns a value older than an acknowledged write nor one that could still be
    /// lost. A resend of an applied write is answered from the log with its first outcome.
    /// </summary>
    public async Task<OsdOpReply> ExecuteAsync(OsdOpRequest req, ReqId reqId, IWatchSession? session, CancellationToken ct)
    {
        var interval = _interval;
        if (interval is null || interval.Primary != _host.Self)
        {
            return Reply(req, OsdResult.TryAgain, $"osd.{_host.Self} is not the primary of {Id} at epoch {_host.Epoch}");
        }
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, interval.Ended.Token);
        try
        {
            var oid = new ObjectId(req.ObjectHash, req.Object);
            if (req.Ops.Count == 1 && req.Ops[0].Code == OsdOpCode.PgList)
            {
                await interval.Activated.Task.WaitAsync(linked.Token);
                return await ListAsync(req, linked.Token);
            }
            if (!Contains(req.ObjectHash))
            {
                return Reply(req, OsdResult.TryAgain, $"object {req.Object} is not in {Id} (pg_num {PgNum})");
            }
            var hasCall = req.Ops.Any(o => o.Code == OsdOpCode.Call);
            // The object's queue first, then the wait for activation: requests on one object keep their arrival
            // order even when they arrive while the PG peers (taking a free lock or joining the queue does not yield).
            using var objectLock = await _objectLocks.LockAsync(oid, linked.Token);
            // Held until the PG is active: peering, or fewer than min_size members (the client's deadline bounds it).
            await interval.Activated.Task.WaitAsync(linked.Token);
            using var callLock = hasCall ? await LockAsync(_calls, linked.Token) : null;
            if (interval.Ended.IsCancellationRequested)
            {
                return Reply(req, OsdResult.TryAgain, $"{Id} changed interval");
            }
            if (req.Ops.Count == 1 && req.Ops[0].Code is OsdOpCode.Watch or OsdOpCode.Unwatch or OsdOpCode.Notify)
            {
                return await WatchOpAsync(req, oid, session, linked.Token);
            }
            if (req.IsWrite && Log.FindRequest(reqId) is { } done)
            {
                // A resend of a request already applied: its entry is committed (the object lock held it until then).
                return Reply(req, done.Result, "", [new OsdOpOutput(done.Result) { Data = done.Output }], done.Version, done.ObjectVersion);
            }
            if (req.Resend && req.IsWrite)
            {
                // Rare and worth knowing: a resent change this PG has no record of is applied now (its first attempt
                // never reached a log that survived, or it is older than the log's tail).
                Logger.LogInformation("{Pg}: resend of request {ReqId} on {Object} is not in the log ({Tail}..{Head}): applying it", Id, reqId, req.Object, Log.Tail, Log.Head);
            }
            if (hasCall)
            {
                // A method may read other objects: writes in flight on them must be committed before it reads.
                await WaitCommittedAsync(_lastSubmitted, linked.Token);
            }
            var now = _host.Time.GetUtcNow().ToUnixTimeMilliseconds();
            var executor = new OpExecutor(Backend, _host.Classes, Contains);
            var result = await executor.ExecuteAsync(oid, req.Ops, now, linked.Token);
            if (result.Result < 0 || !result.IsWrite)
            {
                var meta = result.Result < 0 ? null : await Backend.StatAsync(oid, linked.Token);
                return Reply(req, result.Result, result.Message, result.Outputs, Log.Head, meta?.Version ?? 0);
            }
            // Full and quota refusals spare requests that add nothing (deletes, truncates): they are how space comes back.
            if ((result.BytesDelta > 0 || result.ObjectsDelta > 0) && _host.WriteRefusal(Id.Pool, interval.Acting) is { } refusal)
            {
                return Reply(req, refusal.Result, refusal.Message);
            }
            return await CommitAsync(req, reqId, interval, result, now, linked.Token);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return Reply(req, OsdResult.TryAgain, $"{Id} changed interval while the request waited");
        }
        catch (Daemon.PeerUnavailableException e)
        {
            // A member failed or left before it acknowledged: the interval is ending; the client resends to the
            // next primary, and peering decides whether this change survived (the log answers the resend).
            return Reply(req, OsdResult.TryAgain, e.Message);
        }
        catch (ChecksumException e)
        {
            Logger.LogError("{Pg}: {Error}", Id, e.Message);
            return Reply(req, OsdResult.IoError, $"osd.{_host.Self}: {e.Message}");
        }
    }

    private async Task<OsdOpReply> WatchOpAsync(OsdOpRequest req, ObjectId oid, IWatchSession? session, CancellationToken ct)
    {
        var op = req.Ops[0];
        if (await Backend.StatAsync(oid, ct) is null)
        {
            return Reply(req, OsdResult.NotFound, $"object {oid.Name} does not exist");
        }
        switch (op.Code)
        {
            case OsdOpCode.Watch:
                if (session is null)
                {
                    return Reply(req, OsdResult.InvalidArgument, "a watch needs a client session");
                }
                _host.Watchers.Watch(Id.Pool, oid, op.Offset, session);
                return Reply(req, OsdResult.Ok, "", [OsdOpOutput.Success]);
            case OsdOpCode.Unwatch:
                _host.Watchers.Unwatch(Id.Pool, oid, op.Offset);
                return Reply(req, OsdResult.Ok, "", [OsdOpOutput.Success]);
            default:
                var timeout = TimeSpan.FromMilliseconds(op.Length is 0 or > 60_000 ? 10_000 : op.Length);
                var acks = await _host.Watchers.NotifyAsync(Id.Pool, oid, op.Data, timeout, ct);
                return Reply(req, OsdResult.Ok, "", [new OsdOpOutput(OsdResult.Ok) { Data = acks }]);
        }
    }

    private static async ValueTask<IDisposable> LockAsync(SemaphoreSlim gate, CancellationToken ct)
    {
        await gate.WaitAsync(ct);
        return new Releaser(gate);
    }

    private sealed class Releaser(SemaphoreSlim gate) : IDisposable
    {
        public void Dispose() => gate.Release();
    }

    private async Task<OsdOpReply> CommitAsync(OsdOpRequest req, ReqId reqId, PgInterval interval, ExecutionResult result, long now, CancellationToken ct)
    {
        Task committed;
        PgLogEntry entry;
        await _order.WaitAsync(ct);
        try
        {
            if (interval.Ended.IsCancellationRequested)
            {
                return Reply(req, OsdResult.TryAgain, $"{Id} changed interval");
            }
            var version = new Eversion(_host.Epoch, Log.Head.Version + 1);
            var output = result.Outputs.Count > 0 ? result.Outputs[^1].Data : default;
            entry = new PgLogEntry(version, reqId, result.Objects, OsdResult.Ok, version.Version, now)
            {
                // Its own copy: the log outlives the request, whose output may slice the request's buffer.
                Output = output.Length <= PgLogEntry.MaxOutput ? output.ToArray() : default,
            };
            Log.Append(entry);
            var trim = Log.TrimIfNeeded();
            var info = trim is null ? null : Info with { LogTail = Log.Tail, LastUpdate = version, LastComplete = version };
            if (info is not null)
            {
                Info = info;
            }
            _lastSubmitted = version;
            // The changes may slice the request's received buffer: the backend holds it while its store applies them.
            result.Changes.KeepData = req.KeepData;
            committed = Backend.SubmitAsync(result.Changes, entry, interval.Acting, interval.Since, trim, info);
        }
        finally
        {
            _order.Release();
        }
        try
        {
            await committed.WaitAsync(ct);
        }
        catch (Daemon.PeerUnavailableException e)
        {
            // A member refused or could not take the change while the interval goes on: the entry is in this log but
            // not on every member, so a resend must not be answered from the log yet. Peering again (still under the
            // object's lock) brings every member to this log before the PG serves again.
            RestartPeering(interval, e.Message);
            throw;
        }
        AdvanceCommitted(entry.Version);
        ApplyStats(result);
        return Reply(req, OsdResult.Ok, "", result.Outputs, entry.Version, entry.Version.Version);
    }

    private void ApplyStats(ExecutionResult result)
    {
        lock (_lock)
        {
            Objects += result.ObjectsDelta;
            Bytes += result.BytesDelta;
        }
    }

    private void AdvanceCommitted(Eversion v)
    {
        TaskCompletionSource wake;
        lock (_lock)
        {
            if (v <= _lastCommitted)
            {
                return;
            }
            _lastCommitted = v;
            wake = _committedAdvanced;
            _committedAdvanced = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        wake.TrySetResult();
    }

    /// <summary>At activation: every entry up to <paramref name="head"/> is on every member, and nothing is in flight.</summary>
    private void ResetCommitted(Eversion head)
    {
        TaskCompletionSource wake;
        lock (_lock)
        {
            _lastSubmitted = head;
            _lastCommitted = head;
            wake = _committedAdvanced;
            _committedAdvanced = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        wake.TrySetResult();
    }

    private async Task WaitCommittedAsync(Eversion v, CancellationToken ct)
    {
        while (true)
        {
            Task wait;
            lock (_lock)
            {
                if (_lastCommitted >= v)
                {
                    return;
                }
                wait = _committedAdvanced.Task;
            }
            await wait.WaitAsync(ct);
        }
    }

    private Task<OsdOpReply> ListAsync(OsdOpRequest req, CancellationToken ct)
    {
        var op = req.Ops[0];
        ObjectId? after = op.Data.Length == 0 ? (ObjectId?)null : DecodeCursor(op.Data.Span);
        var max = op.Length == 0 || op.Length > Limits.ListPage ? Limits.ListPage : (int)op.Length;
        var page = _host.Store.List(Id.Collection, after, max);
        var pairs = new List<KeyValuePair<string, byte[]>>(page.Objects.Count);
        foreach (var o in page.Objects)
        {
            if (!PgMeta.IsInternal(o.Id.Name))
            {
                var h = new byte[4];
                BinaryPrimitives.WriteUInt32LittleEndian(h, o.Id.Hash);
                pairs.Add(new(o.Id.Name, h));
            }
        }
        var more = page.Next is not null;
        var cursor = page.Next is { } n ? EncodeCursor(n) : [];
        ct.ThrowIfCancellationRequested();
        return Task.FromResult(Reply(req, OsdResult.Ok, "", [new OsdOpOutput(OsdResult.Ok) { Pairs = pairs, Data = cursor, More = more }]));
    }

    public static byte[] EncodeCursor(ObjectId id)
    {
        var name = System.Text.Encoding.UTF8.GetBytes(id.Name);
        var b = new byte[4 + name.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(b, id.Hash);
        name.CopyTo(b, 4);
        return b;
    }

    public static ObjectId DecodeCursor(ReadOnlySpan<byte> b) =>
        b.Length < 4 ? throw new ArgumentException("a listing cursor has at least 4 bytes") : new ObjectId(BinaryPrimitives.ReadUInt32LittleEndian(b), System.Text.Encoding.UTF8.GetString(b[4..]));
}
