using Appliance.Maps;
using System.Buffers.Binary;
using System.Globalization;
using Appliance.Osd.Protocol;
using Appliance.Store;

namespace Appliance.Osd.Pg;

/// <summary>
/// Where a PG keeps its own state in its collection: the meta object (a name no client may use, hash 0 so it sorts
/// first) whose omap holds <c>info</c>, the log (<c>log.EPOCH.VERSION</c>, fixed width, so key order is version
/// order) and the missing set (<c>missing.HASH.NAME</c> → the object version needed, 0 for "as the authoritative
/// copy has it"). Each object carries its own version and mtime in xattr <see cref="ObjectInfoKey"/>; clients' xattrs
/// are stored under <see cref="UserXattrPrefix"/>. Every change here rides in the same store transaction as the
/// object changes it describes.
/// </summary>
public static class PgMeta
{
    public static readonly ObjectId MetaObject = new(0, "\0pgmeta");
    public const string InfoKey = "info";
    public const string PastKey = "past_intervals";
    public const string LogPrefix = "log.";
    public const string MissingPrefix = "missing.";
    public const string ObjectInfoKey = "\0oi";
    public const string UserXattrPrefix = "u.";

    /// <summary>Names starting with NUL are the PG's own (clients' names may not contain NUL).</summary>
    public static bool IsInternal(string name) => name.Length > 0 && name[0] == '\0';

    public static string LogKey(Eversion v) => LogPrefix + v.ToKey();

    public static string MissingKey(string name, uint hash) => $"{MissingPrefix}{hash:x8}.{name}";

    public static (string Name, uint Hash) ParseMissingKey(string key)
    {
        var hash = uint.Parse(key.AsSpan(MissingPrefix.Length, 8), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);
        return (key[(MissingPrefix.Length + 9)..], hash);
    }

    public static void CreateCollection(Transaction t, PgId pg, PgInfo info)
    {
        t.CreateCollection(pg.Collection);
        t.Touch(pg.Collection, MetaObject);
        SetInfo(t, pg, info);
    }

    public static void SetInfo(Transaction t, PgId pg, PgInfo info) => t.OmapSet(pg.Collection, MetaObject, InfoKey, info.ToBytes());

    public static void SetPast(Transaction t, PgId pg, PastIntervals past) => t.OmapSet(pg.Collection, MetaObject, PastKey, past.ToBytes());

    /// <summary>The past intervals a PG kept on this store (null: none recorded).</summary>
    public static PastIntervals? LoadPast(ObjectStore store, PgId pg) =>
        store.OmapGetValue(pg.Collection, MetaObject, PastKey) is { } b ? PastIntervals.FromBytes(b) : null;

    public static void AppendLog(Transaction t, PgId pg, PgLogEntry entry) =>
        t.OmapSet(pg.Collection, MetaObject, LogKey(entry.Version), entry.ToBytes());

    /// <summary>Removes the durable log entries in (from, to].</summary>
    public static void TrimLog(Transaction t, PgId pg, Eversion from, Eversion to) =>
        t.OmapRemoveRange(pg.Collection, MetaObject, LogKey(from) + "\0", LogKey(to) + "\0");

    public static void ClearLog(Transaction t, PgId pg) =>
        t.OmapRemoveRange(pg.Collection, MetaObject, LogPrefix, LogPrefix[..^1] + "/");

    public static void SetMissing(Transaction t, PgId pg, string name, uint hash, ulong need)
    {
        var v = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(v, need);
        t.OmapSet(pg.Collection, MetaObject, MissingKey(name, hash), v);
    }

    public static void ClearMissing(Transaction t, PgId pg, string name, uint hash) =>
        t.OmapRemove(pg.Collection, MetaObject, MissingKey(name, hash));

    public static byte[] EncodeObjectInfo(ulong version, long mtimeMs)
    {
        var b = new byte[17];
        b[0] = 1;
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(1), version);
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(9), mtimeMs);
        return b;
    }

    public static (ulong Version, long MtimeMs) DecodeObjectInfo(byte[]? b) =>
        b is { Length: >= 17 } && b[0] == 1
            ? (BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(1)), BinaryPrimitives.ReadInt64LittleEndian(b.AsSpan(9)))
            : (0, 0);

    /// <summary>What a PG left on this OSD's store: its info, log and missing set (null if there is no collection).</summary>
    public static (PgInfo Info, PgLog Log, Dictionary<ObjectId, ulong> Missing)? Load(ObjectStore store, PgId pg)
    {
        if (!store.CollectionExists(pg.Collection) || store.Stat(pg.Collection, MetaObject) is null)
        {
            return null;
        }
        var infoBytes = store.OmapGetValue(pg.Collection, MetaObject, InfoKey);
        var info = infoBytes is null ? PgInfo.Empty(pg) : PgInfo.FromBytes(infoBytes);
        var entries = new List<PgLogEntry>();
        var missing = new Dictionary<ObjectId, ulong>();
        string? after = null;
        while (true)
        {
            var page = store.OmapGet(pg.Collection, MetaObject, null, after, 1024);
            if (page.Count == 0)
            {
                break;
            }
            foreach (var (k, v) in page)
            {
                if (k.StartsWith(LogPrefix, StringComparison.Ordinal))
                {
                    var entry = PgLogEntry.FromBytes(v);
                    // At or before the tail: history the objects already hold. Stores written before a merge removed
                    // such entries still have them; kept, they would stop the PG (and the OSD) from loading.
                    if (entry.Version > info.LogTail)
                    {
                        entries.Add(entry);
                    }
                }
                else if (k.StartsWith(MissingPrefix, StringComparison.Ordinal))
                {
                    var (name, hash) = ParseMissingKey(k);
                    missing[new ObjectId(hash, name)] = BinaryPrimitives.ReadUInt64LittleEndian(v);
                }
            }
            after = page[^1].Key;
        }
        var log = new PgLog(info.LogTail, entries);
        info = info with { LastUpdate = Eversion.Max(info.LastUpdate, log.Head) };
        return (info, log, missing);
    }
}
