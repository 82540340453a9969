using Appliance.Maps;
using Appliance.Osd.Pg;
using Appliance.Osd.Protocol;
using Appliance.Store;

namespace Appliance.Osd.Backend;

/// <summary>How a PG's changes become store operations on a member that keeps whole objects (a replicated PG).</summary>
public static class StoreMapping
{
    /// <summary>Adds <paramref name="txn"/>, the objects' new versions, the log entry (and a trim, and the info when
    /// given) to <paramref name="t"/>: one store transaction, so after a crash the change and its log entry are both
    /// there or both absent.</summary>
    public static void AddLogged(Transaction t, PgId pg, PgTransaction txn, PgLogEntry entry, (Eversion From, Eversion To)? trim, PgInfo? info)
    {
        var c = pg.Collection;
        foreach (var m in txn.Mutations)
        {
            var oid = new ObjectId(m.Hash, m.Object);
            switch (m.Kind)
            {
                case MutationKind.Create:
                    t.Touch(c, oid);
                    break;
                case MutationKind.Write:
                    t.WriteWithoutCopy(c, oid, m.Offset, m.Data);
                    break;
                case MutationKind.Truncate:
                    t.Truncate(c, oid, m.Offset);
                    break;
                case MutationKind.Zero:
                    t.Zero(c, oid, m.Offset, m.Length);
                    break;
                case MutationKind.Remove:
                    t.Remove(c, oid);
                    break;
                case MutationKind.SetXattr:
                    t.SetXattr(c, oid, PgMeta.UserXattrPrefix + m.Key, m.Data.Span);
                    break;
                case MutationKind.RmXattr:
                    t.RemoveXattr(c, oid, PgMeta.UserXattrPrefix + m.Key);
                    break;
                case MutationKind.OmapSet:
                    foreach (var (k, v) in m.Pairs)
                    {
                        t.OmapSet(c, oid, k, v);
                    }
                    break;
                case MutationKind.OmapRm:
                    foreach (var k in m.Keys)
                    {
                        t.OmapRemove(c, oid, k);
                    }
                    break;
                case MutationKind.OmapClear:
                    t.OmapClear(c, oid);
                    break;
                case MutationKind.OmapRmRange:
                    t.OmapRemoveRange(c, oid, m.Key, m.Key2);
                    break;
                default:
                    throw new InvalidOperationException($"unknown mutation {m.Kind}");
            }
        }
        foreach (var o in entry.Objects)
        {
            if (o.Op == LogOp.Modify)
            {
                t.SetXattr(c, new ObjectId(o.Hash, o.Name), PgMeta.ObjectInfoKey, PgMeta.EncodeObjectInfo(entry.Version.Version, entry.MtimeMs));
            }
        }
        PgMeta.AppendLog(t, pg, entry);
        if (trim is { } tr)
        {
            PgMeta.TrimLog(t, pg, tr.From, tr.To);
        }
        if (info is not null)
        {
            PgMeta.SetInfo(t, pg, info);
        }
    }

    // The store's metadata lives in its on-disk index: a lookup may wait for index pages, so it is awaited.
    public static async Task<ObjectMeta?> StatAsync(ObjectStore store, PgId pg, ObjectId oid, CancellationToken ct = default)
    {
        var info = await store.StatAsync(pg.Collection, oid, ct);
        if (info is null)
        {
            return null;
        }
        var (version, mtime) = PgMeta.DecodeObjectInfo(await store.GetXattrAsync(pg.Collection, oid, PgMeta.ObjectInfoKey, ct));
        return new ObjectMeta(info.Size, version, mtime);
    }

    public static async Task<Dictionary<string, byte[]>> UserXattrsAsync(ObjectStore store, PgId pg, ObjectId oid, CancellationToken ct = default)
    {
        var result = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var (k, v) in await store.GetXattrsAsync(pg.Collection, oid, ct))
        {
            if (k.StartsWith(PgMeta.UserXattrPrefix, StringComparison.Ordinal))
            {
                result[k[PgMeta.UserXattrPrefix.Length..]] = v;
            }
        }
        return result;
    }
}
