using Appliance.Osd.Backend;
using Appliance.Osd.Protocol;
using Appliance.Store;
using Microsoft.Extensions.Logging;

namespace Appliance.Osd.Pg;

// The member side: what a PG does when its primary (or, for pulls, a primary that peers) asks. Every handler first
// checks that the message comes from the primary of the interval this OSD is in; one from another interval is
// answered with TryAgain and changes nothing (the sender or this OSD has an older map, and peering will repeat).
public sealed partial class PlacementGroup
{
    private PgInterval? MemberInterval(int from, uint interval)
    {
        var i = _interval;
        return i is not null && i.Since == interval && i.Primary == from ? i : null;
    }

    /// <summary>
    /// A query from the primary this member's map names, for an interval that starts at another epoch than the one
    /// this member recorded. An interval's epoch is the one at which an OSD saw its acting set first; an OSD that
    /// jumped over epochs (its first map after a start, or a full map when the monitors no longer had the increments)
    /// records a later one than its peers for the same acting set, and without this the two would refuse each other
    /// forever (PGs stuck peering). The primary's epoch names the interval: the member takes it, ending what it had
    /// (as a new interval would). A late query from an interval the primary has left only costs a retry: the
    /// primary's current peering re-keys the member again.
    /// </summary>
    private bool AdoptPrimaryInterval(int from, uint since)
    {
        PgInterval? old;
        lock (_lock)
        {
            old = _interval;
            if (old is null || old.Primary != from || old.Since == since)
            {
                return false;
            }
            _interval = new PgInterval(since, old.Acting, from, old.UpFrom, old.HistorySince);
        }
        old.End();
        _host.IntervalTaken();
        Logger.LogInformation("{Pg}: takes interval {Since} from its primary osd.{Primary} (it had recorded {Had}: it saw the acting set first at another epoch)", Id, since, from, old.Since);
        return true;
    }

    /// <summary>
    /// Applies a replicated change. The store call is made before this returns (so changes apply in the order the
    /// session delivered them, which is the primary's version order); the task completes when it is durable.
    /// </summary>
    public Task<RepOpReply> ApplyRepOp(int from, RepOp op)
    {
        var i = MemberInterval(from, op.Interval);
        if (i is null || !i.MemberActive)
        {
            return Task.FromResult(new RepOpReply(Id, op.Interval, op.Entry.Version, OsdResult.TryAgain));
        }
        lock (_lock)
        {
            if (op.Entry.Version <= Log.Head)
            {
                // Already here (a duplicate delivery): durable, since it was applied in order before.
                return Task.FromResult(new RepOpReply(Id, op.Interval, op.Entry.Version, OsdResult.Ok));
            }
            Log.Append(op.Entry);
            if (op.Trim is { } trim)
            {
                Log.TrimIfNeeded();
                Info = Info with { LogTail = trim.To };
            }
        }
        var t = new Transaction();
        StoreMapping.AddLogged(t, Id, op.Txn, op.Entry, op.Trim, op.Trim is null ? null : Info with { LastUpdate = op.Entry.Version });
        return CompleteAsync(_host.Store.SubmitAsync(t), op);
    }

    private async Task<RepOpReply> CompleteAsync(Task submitted, RepOp op)
    {
        try
        {
            await submitted;
            return new RepOpReply(Id, op.Interval, op.Entry.Version, OsdResult.Ok);
        }
        catch (StoreException e)
        {
            // The member cannot apply what the primary ordered: its copy diverged or its store failed. Refused, the
            // primary's write fails and the next peering repairs this member.
            Logger.LogError("{Pg}: replicated change {Version} failed here: {Error}", Id, op.Entry.Version, e.Message);
            return new RepOpReply(Id, op.Interval, op.Entry.Version, OsdResult.IoError);
        }
    }

    /// <summary>Answers a primary's query with what this member holds of the PG.</summary>
    public PgNotify Query(int from, PgQuery q)
    {
        if (from != _host.Self && MemberInterval(from, q.Interval) is null && !AdoptPrimaryInterval(from, q.Interval))
        {
            return new PgNotify(OsdResult.TryAgain, false, PgInfo.Empty(Id), [], [], false);
        }
        lock (_lock)
        {
            return new PgNotify(OsdResult.Ok, Exists, Info with { LastUpdate = Log.Head, LogTail = Log.Tail }, [.. Log.Entries],
                [.. Missing.Keys.Select(k => (k.Name, k.Hash))], Backfilling) { Past = Past };
        }
    }

    /// <summary>Applies a peering step the primary asked for (see <see cref="PgUpdateKind"/>).</summary>
    public async Task<PeerResult> UpdateAsync(int from, PgUpdate u)
    {
        var i = MemberInterval(from, u.Interval);
        if (i is null)
        {
            return new PeerResult(OsdResult.TryAgain, $"osd.{_host.Self} is not in interval {u.Interval} of {Id} with primary osd.{from}");
        }
        await ApplyUpdateAsync(u);
        if (u.Kind == PgUpdateKind.Activate)
        {
            i.MemberActive = true;
        }
        return new PeerResult(OsdResult.Ok, "");
    }

    /// <summary>Adds the PG's collection to <paramref name="t"/> unless the store holds it. <see cref="Exists"/> can
    /// lag the store: a create submitted in an interval that ended before the submit returned (its wait cancelled)
    /// is on disk while Exists stayed false; creating it again failed every later peering step of the PG on this
    /// OSD ("collection exists already", seen when a pool is created while OSDs boot).</summary>
    private void CreateIfMissing(Transaction t)
    {
        if (!Exists && !_host.Store.CollectionExists(Id.Collection))
        {
            PgMeta.CreateCollection(t, Id, PgInfo.Empty(Id));
        }
    }

    /// <summary>Applies a peering step to this OSD's copy (members on request, the primary to itself).</summary>
    internal async Task ApplyUpdateAsync(PgUpdate u)
    {
        var t = new Transaction();
        var c = Id.Collection;
        CreateIfMissing(t);
        var past = Past;
        if (u.Kind == PgUpdateKind.Activate && past is not null)
        {
            // Activated at this epoch: the intervals before it are never needed again.
            past = past.TrimBefore(u.Info.LastEpochStarted);
            _host.TrimHistory(Id, u.Info.LastEpochStarted);
        }
        if (past is not null)
        {
            // Kept with the PG from its first transaction on (the collection may be created by this one).
            PgMeta.SetPast(t, Id, past);
        }
        switch (u.Kind)
        {
            case PgUpdateKind.Merge:
                lock (_lock)
                {
                    foreach (var v in u.Divergent)
                    {
                        t.OmapRemove(c, PgMeta.MetaObject, PgMeta.LogKey(v));
                    }
                    // The merged log starts after the primary's tail: what this member kept from before goes, on disk as
                    // in memory (the Reset below), or the next start finds entries before the tail.
                    PgMeta.TrimLog(t, Id, Eversion.Zero, u.Info.LogTail);
                    foreach (var e in u.Append)
                    {
                        PgMeta.AppendLog(t, Id, e);
                    }
                    foreach (var (name, hash) in u.Missing)
                    {
                        PgMeta.SetMissing(t, Id, name, hash, 0);
                    }
                    PgMeta.SetInfo(t, Id, u.Info);
                }
                await _host.Store.SubmitAsync(t);
                lock (_lock)
                {
                    var kept = Log.Entries.Where(e => !u.Divergent.Contains(e.Version)).Concat(u.Append).OrderBy(e => e.Version).ToList();
                    Log.Reset(u.Info.LogTail, kept.Where(e => e.Version > u.Info.LogTail));
                    foreach (var (name, hash) in u.Missing)
                    {
                        Missing[new ObjectId(hash, name)] = 0;
                    }
                    Info = u.Info;
                    Exists = true;
                }
                break;
            case PgUpdateKind.BeginBackfill:
            {
                t.OmapSet(c, PgMeta.MetaObject, BackfillKey, [1]);
                if (Exists)
                {
                    PgMeta.ClearLog(t, Id);
                    t.OmapRemoveRange(c, PgMeta.MetaObject, PgMeta.MissingPrefix, PgMeta.MissingPrefix[..^1] + "/");
                }
                PgMeta.SetInfo(t, Id, PgInfo.Empty(Id));
                await _host.Store.SubmitAsync(t);
                lock (_lock)
                {
                    Backfilling = true;
                    Exists = true;
                    Log.Reset(Eversion.Zero, []);
                    Missing.Clear();
                    Info = PgInfo.Empty(Id);
                }
                await RemoveAllObjectsAsync();
                break;
            }
            case PgUpdateKind.Activate:
                lock (_lock)
                {
                    if (Backfilling)
                    {
                        t.OmapRemove(c, PgMeta.MetaObject, BackfillKey);
                        PgMeta.ClearLog(t, Id);
                        foreach (var e in u.Append)
                        {
                            PgMeta.AppendLog(t, Id, e);
                        }
                    }
                    PgMeta.SetInfo(t, Id, u.Info);
                }
                await _host.Store.SubmitAsync(t);
                lock (_lock)
                {
                    if (Backfilling)
                    {
                        Log.Reset(u.Info.LogTail, u.Append);
                        Backfilling = false;
                    }
                    Info = u.Info;
                    Exists = true;
                    if (past is not null && Past is { } now && now.CurrentSince == past.CurrentSince)
                    {
                        Past = now.TrimBefore(u.Info.LastEpochStarted);
                    }
                }
                break;
        }
    }

    private async Task RemoveAllObjectsAsync()
    {
        ObjectId? after = null;
        while (true)
        {
            var page = await _host.Store.ListAsync(Id.Collection, after, 256);
            var t = new Transaction();
            foreach (var o in page.Objects)
            {
                if (!PgMeta.IsInternal(o.Id.Name))
                {
                    t.Remove(Id.Collection, o.Id);
                }
                after = o.Id;
            }
            if (t.Count > 0)
            {
                await _host.Store.SubmitAsync(t);
            }
            if (page.Next is null)
            {
                return;
            }
        }
    }

    /// <summary>Largest data piece of one <see cref="ObjectChunk"/>.</summary>
    internal const int ChunkBytes = 4 << 20;
    /// <summary>Most omap entries in one <see cref="ObjectChunk"/>.</summary>
    internal const int ChunkOmap = 1024;

    /// <summary>Reads a piece of an object's whole state from this OSD's store.</summary>
    internal async Task<ObjectChunk> ReadChunkAsync(uint interval, ObjectId oid, long dataOffset, string? omapAfter)
    {
        var store = _host.Store;
        var meta = await StoreMapping.StatAsync(store, Id, oid);
        var first = dataOffset == 0 && omapAfter is null;
        if (meta is not { } m)
        {
            return new ObjectChunk(Id, interval, oid.Name, oid.Hash, false, 0, 0, 0, first, true, [], 0, default, []);
        }
        var xattrs = first ? (await StoreMapping.UserXattrsAsync(store, Id, oid)).OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList() : [];
        byte[] data = [];
        if (dataOffset < m.Size)
        {
            data = await store.ReadAsync(Id.Collection, oid, dataOffset, (int)Math.Min(ChunkBytes, m.Size - dataOffset));
        }
        var dataDone = dataOffset + data.Length >= m.Size;
        IReadOnlyList<KeyValuePair<string, byte[]>> omap = [];
        var omapDone = true;
        if (dataDone)
        {
            var page = await store.OmapGetAsync(Id.Collection, oid, null, omapAfter, ChunkOmap + 1);
            omapDone = page.Count <= ChunkOmap;
            omap = omapDone ? page : [.. page.Take(ChunkOmap)];
        }
        return new ObjectChunk(Id, interval, oid.Name, oid.Hash, true, m.Version, m.MtimeMs, m.Size, first, dataDone && omapDone,
            xattrs, dataOffset, data, omap);
    }

    private static ObjectId TempOf(ObjectId oid) => new(oid.Hash, "\0tmp." + oid.Name);

    /// <summary>
    /// Applies a piece of an object's state to this OSD's copy. The object is built under a temporary name and
    /// replaces the real one with the last piece, in one transaction that also clears it from the missing set: a
    /// member never holds half of a recovered object under its real name.
    /// </summary>
    internal async Task ApplyChunkAsync(ObjectChunk ch)
    {
        var c = Id.Collection;
        var oid = new ObjectId(ch.Hash, ch.Name);
        var tmp = TempOf(oid);
        var t = new Transaction();
        CreateIfMissing(t);
        if (ch.Exists)
        {
            if (ch.First)
            {
                if (_host.Store.Stat(c, tmp) is not null)
                {
                    t.Remove(c, tmp);
                }
                t.Touch(c, tmp);
                foreach (var (k, v) in ch.Xattrs)
                {
                    t.SetXattr(c, tmp, PgMeta.UserXattrPrefix + k, v);
                }
                t.SetXattr(c, tmp, PgMeta.ObjectInfoKey, PgMeta.EncodeObjectInfo(ch.Version, ch.MtimeMs));
                t.Truncate(c, tmp, ch.Size);
            }
            if (ch.Data.Length > 0)
            {
                t.WriteWithoutCopy(c, tmp, ch.DataOffset, ch.Data);
            }
            foreach (var (k, v) in ch.Omap)
            {
                t.OmapSet(c, tmp, k, v);
            }
        }
        if (ch.Last)
        {
            if (_host.Store.Stat(c, oid) is not null)
            {
                t.Remove(c, oid);
            }
            if (ch.Exists)
            {
                t.Move(c, tmp, c, oid);
            }
            PgMeta.ClearMissing(t, Id, ch.Name, ch.Hash);
        }
        await _host.Store.SubmitAsync(t);
        if (ch.Last)
        {
            lock (_lock)
            {
                Missing.Remove(oid);
                Exists = true;
            }
        }
    }

    /// <summary>A primary pushes a piece of an object to this member.</summary>
    public async Task<PeerResult> PushAsync(int from, ObjectChunk ch)
    {
        if (MemberInterval(from, ch.Interval) is null)
        {
            return new PeerResult(OsdResult.TryAgain, $"osd.{_host.Self} is not in interval {ch.Interval} of {Id}");
        }
        await ApplyChunkAsync(ch);
        return new PeerResult(OsdResult.Ok, "");
    }

    /// <summary>A primary pulls a piece of an object, or a page of the object list, from this member.</summary>
    public async Task<byte[]> PullAsync(int from, PullRequest p)
    {
        if (MemberInterval(from, p.Interval) is null)
        {
            return p.List ? new PgObjectList(OsdResult.TryAgain, [], null).ToBytes()
                : new ObjectChunk(Id, p.Interval, p.Name, p.Hash, false, 0, 0, -1, true, true, [], 0, default, []).ToBytes();
        }
        if (p.List)
        {
            return ListPage(p.Name.Length == 0 && p.Hash == 0 ? (ObjectId?)null : new ObjectId(p.Hash, p.Name)).ToBytes();
        }
        return (await ReadChunkAsync(p.Interval, new ObjectId(p.Hash, p.Name), p.DataOffset, p.OmapAfter)).ToBytes();
    }

    internal PgObjectList ListPage(ObjectId? after)
    {
        if (!Exists)
        {
            return new PgObjectList(OsdResult.Ok, [], null);
        }
        var page = _host.Store.List(Id.Collection, after, 512);
        var objects = page.Objects.Where(o => !PgMeta.IsInternal(o.Id.Name)).Select(o => (o.Id.Name, o.Id.Hash)).ToList();
        (string, uint)? next = page.Next is null || page.Objects.Count == 0 ? null : (page.Objects[^1].Id.Name, page.Objects[^1].Id.Hash);
        return new PgObjectList(OsdResult.Ok, objects, next);
    }
}
