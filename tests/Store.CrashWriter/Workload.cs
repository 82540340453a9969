using System.Buffers.Binary;

namespace Appliance.Store.CrashWriter;

/// <summary>One operation of the crash workload, applied both to a <see cref="Transaction"/> and to a
/// <see cref="Model"/>.</summary>
public abstract record WOp
{
    public sealed record CreateColl(string C) : WOp;
    public sealed record Touch(string C, string O) : WOp;
    public sealed record Write(string C, string O, long Off, byte[] Data) : WOp;
    public sealed record Zero(string C, string O, long Off, long Len) : WOp;
    public sealed record Truncate(string C, string O, long Size) : WOp;
    public sealed record Remove(string C, string O) : WOp;
    public sealed record CloneObj(string C, string Src, string Dst) : WOp;
    public sealed record CloneRange(string C, string Src, long SrcOff, long Len, string Dst, long DstOff) : WOp;
    public sealed record SetXattr(string C, string O, string K, byte[] V) : WOp;
    public sealed record RmXattr(string C, string O, string K) : WOp;
    public sealed record OmapSet(string C, string O, string K, byte[] V) : WOp;
    public sealed record OmapRm(string C, string O, string K) : WOp;
    public sealed record OmapClear(string C, string O) : WOp;
    public sealed record OmapRmRange(string C, string O, string From, string To) : WOp;
    public sealed record Move(string C, string O, string DstC, string DstO) : WOp;
    public sealed record Split(string Src, int Bits, uint Match, string Dst) : WOp;
}

/// <summary>The expected content of one object.</summary>
public sealed class ModelObject
{
    public byte[] Data = [];
    public SortedDictionary<string, byte[]> Xattrs = new(StringComparer.Ordinal);
    public SortedDictionary<string, byte[]> Omap = new(StringComparer.Ordinal);

    /// <summary>A copy; without <paramref name="data"/>, its data is empty (only names and keys matter).</summary>
    public ModelObject Copy(bool data = true) => new()
    {
        Data = data ? (byte[])Data.Clone() : [],
        Xattrs = new(Xattrs, StringComparer.Ordinal),
        Omap = new(Omap, StringComparer.Ordinal),
    };
}

/// <summary>A reference implementation of the store's transaction semantics, in memory and obviously right.</summary>
public sealed class Model
{
    public SortedDictionary<string, SortedDictionary<string, ModelObject>> Collections { get; } = new(StringComparer.Ordinal);

    /// <summary>A copy; without <paramref name="data"/>, objects have empty data (enough to generate operations,
    /// which look at names only, and much cheaper: the crash writer regenerates the whole history at each start).</summary>
    public Model Copy(bool data = true)
    {
        var m = new Model();
        foreach (var (c, objs) in Collections)
        {
            m.Collections[c] = new(objs.ToDictionary(kv => kv.Key, kv => kv.Value.Copy(data)), StringComparer.Ordinal);
        }
        return m;
    }

    public ModelObject? Find(string c, string o) => Collections.TryGetValue(c, out var objs) && objs.TryGetValue(o, out var obj) ? obj : null;

    private ModelObject GetOrCreate(string c, string o)
    {
        var objs = Collections[c];
        if (!objs.TryGetValue(o, out var obj))
        {
            obj = new ModelObject();
            objs[o] = obj;
        }
        return obj;
    }

    private static void Resize(ModelObject obj, long size)
    {
        var d = obj.Data;
        Array.Resize(ref d, (int)size);
        obj.Data = d;
    }

    public void Apply(IEnumerable<WOp> ops)
    {
        foreach (var op in ops)
        {
            switch (op)
            {
                case WOp.CreateColl x:
                    Collections.Add(x.C, new(StringComparer.Ordinal));
                    break;
                case WOp.Touch x:
                    GetOrCreate(x.C, x.O);
                    break;
                case WOp.Write x:
                {
                    var obj = GetOrCreate(x.C, x.O);
                    if (x.Off + x.Data.Length > obj.Data.Length && x.Data.Length > 0)
                    {
                        Resize(obj, x.Off + x.Data.Length);
                    }
                    x.Data.CopyTo(obj.Data, x.Off);
                    break;
                }
                case WOp.Zero x:
                {
                    var obj = GetOrCreate(x.C, x.O);
                    if (x.Off + x.Len > obj.Data.Length && x.Len > 0)
                    {
                        Resize(obj, x.Off + x.Len);
                    }
                    if (x.Len > 0)
                    {
                        obj.Data.AsSpan((int)x.Off, (int)x.Len).Clear();
                    }
                    break;
                }
                case WOp.Truncate x:
                    Resize(GetOrCreate(x.C, x.O), x.Size);
                    break;
                case WOp.Remove x:
                    if (!Collections[x.C].Remove(x.O))
                    {
                        throw new InvalidOperationException($"model: remove of missing {x.C}/{x.O}");
                    }
                    break;
                case WOp.CloneObj x:
                {
                    var src = Find(x.C, x.Src) ?? throw new InvalidOperationException("model: clone of missing source");
                    Collections[x.C][x.Dst] = src.Copy();
                    break;
                }
                case WOp.CloneRange x:
                {
                    var src = Find(x.C, x.Src) ?? throw new InvalidOperationException("model: clone-range of missing source");
                    var data = new byte[x.Len];
                    if (x.SrcOff < src.Data.Length)
                    {
                        src.Data.AsSpan((int)x.SrcOff, (int)Math.Min(x.Len, src.Data.Length - x.SrcOff)).CopyTo(data);
                    }
                    var dst = GetOrCreate(x.C, x.Dst);
                    if (x.DstOff + x.Len > dst.Data.Length && x.Len > 0)
                    {
                        Resize(dst, x.DstOff + x.Len);
                    }
                    if (x.Len > 0)
                    {
                        data.CopyTo(dst.Data, x.DstOff);
                    }
                    break;
                }
                case WOp.SetXattr x:
                    GetOrCreate(x.C, x.O).Xattrs[x.K] = x.V;
                    break;
                case WOp.RmXattr x:
                    (Find(x.C, x.O) ?? throw new InvalidOperationException("model: rmxattr of missing object")).Xattrs.Remove(x.K);
                    break;
                case WOp.OmapSet x:
                    GetOrCreate(x.C, x.O).Omap[x.K] = x.V;
                    break;
                case WOp.OmapRm x:
                    (Find(x.C, x.O) ?? throw new InvalidOperationException("model: omap rm of missing object")).Omap.Remove(x.K);
                    break;
                case WOp.OmapClear x:
                    (Find(x.C, x.O) ?? throw new InvalidOperationException("model: omap clear of missing object")).Omap.Clear();
                    break;
                case WOp.OmapRmRange x:
                {
                    var obj = Find(x.C, x.O) ?? throw new InvalidOperationException("model: omap range remove of missing object");
                    foreach (var k in obj.Omap.Keys.Where(k => string.CompareOrdinal(k, x.From) >= 0 && string.CompareOrdinal(k, x.To) < 0).ToList())
                    {
                        obj.Omap.Remove(k);
                    }
                    break;
                }
                case WOp.Move x:
                {
                    var obj = Find(x.C, x.O) ?? throw new InvalidOperationException("model: move of missing object");
                    Collections[x.C].Remove(x.O);
                    Collections[x.DstC].Add(x.DstO, obj);
                    break;
                }
                case WOp.Split x:
                {
                    var mask = x.Bits == 32 ? uint.MaxValue : (1u << x.Bits) - 1;
                    foreach (var (name, obj) in Collections[x.Src].Where(kv => (Workload.HashOf(kv.Key) & mask) == x.Match).ToList())
                    {
                        Collections[x.Src].Remove(name);
                        Collections[x.Dst].Add(name, obj);
                    }
                    break;
                }
                default:
                    throw new InvalidOperationException(op.ToString());
            }
        }
    }

    /// <summary>Every difference between this model and the store (empty when they agree exactly).</summary>
    public async Task<List<string>> DiffAsync(ObjectStore store)
    {
        var diffs = new List<string>();
        var colls = store.ListCollections();
        if (!colls.SequenceEqual(Collections.Keys))
        {
            diffs.Add($"collections: store [{string.Join(',', colls)}] model [{string.Join(',', Collections.Keys)}]");
            return diffs;
        }
        foreach (var (c, objs) in Collections)
        {
            // Listed in pages, in two halves of the key space: the store's order must be the bitwise one.
            var ids = new List<ObjectId>();
            foreach (var range in new[] { new SortKeyRange(0, 1UL << 31), new SortKeyRange(1UL << 31, SortKeyRange.KeySpace) })
            {
                ObjectId? cursor = null;
                do
                {
                    var page = store.List(c, cursor, 3, range);
                    ids.AddRange(page.Objects.Select(o => o.Id));
                    cursor = page.Next;
                }
                while (cursor is not null);
            }
            for (var i = 0; i < ids.Count; i++)
            {
                if (ids[i].Hash != Workload.HashOf(ids[i].Name))
                {
                    diffs.Add($"{c}/{ids[i].Name}: hash {ids[i].Hash:x8}, the workload's is {Workload.HashOf(ids[i].Name):x8}");
                }
                if (i > 0 && ids[i - 1].CompareTo(ids[i]) >= 0)
                {
                    diffs.Add($"{c}: {ids[i]} listed after {ids[i - 1]}");
                }
            }
            var sorted = ids.Select(id => id.Name).Order(StringComparer.Ordinal).ToList();
            if (!sorted.SequenceEqual(objs.Keys))
            {
                diffs.Add($"{c}: store objects [{string.Join(',', sorted)}] model [{string.Join(',', objs.Keys)}]");
                continue;
            }
            foreach (var (name, obj) in objs)
            {
                var o = Workload.Id(name);
                var data = await store.ReadAsync(c, o);
                if (!data.AsSpan().SequenceEqual(obj.Data))
                {
                    var at = data.Length == obj.Data.Length ? data.AsSpan().CommonPrefixLength(obj.Data) : -1;
                    diffs.Add($"{c}/{o}: data differs (store {data.Length} bytes, model {obj.Data.Length}, first difference at {at})");
                }
                var x = store.GetXattrs(c, o);
                if (x.Count != obj.Xattrs.Count || obj.Xattrs.Any(kv => !x.TryGetValue(kv.Key, out var v) || !v.AsSpan().SequenceEqual(kv.Value)))
                {
                    diffs.Add($"{c}/{o}: xattrs differ (store [{string.Join(',', x.Keys.Order())}] model [{string.Join(',', obj.Xattrs.Keys)}])");
                }
                var omap = store.OmapGet(c, o);
                if (!omap.Select(kv => kv.Key).SequenceEqual(obj.Omap.Keys) || omap.Any(kv => !kv.Value.AsSpan().SequenceEqual(obj.Omap[kv.Key])))
                {
                    diffs.Add($"{c}/{o}: omap differs (store [{string.Join(',', omap.Select(kv => kv.Key))}] model [{string.Join(',', obj.Omap.Keys)}])");
                }
            }
        }
        return diffs;
    }
}

/// <summary>
/// A deterministic random workload: transaction n depends only on the seed, n and the model state before it, so
/// the expected state after any prefix can be rebuilt. Every transaction ends by setting the xattr "seq" of
/// c0/meta to n: after a crash, that marker says which prefix the store holds. Objects are placed by a hash of
/// their name (<see cref="HashOf"/>, as the OSD places them by rjenkins); splits go between c1 and c2 only, so the
/// marker never moves.
/// </summary>
public static class Workload
{
    public const string MarkerCollection = "c0";
    public const string MarkerObject = "meta";
    public const string MarkerKey = "seq";

    /// <summary>The workload's placement hash of a name (FNV-1a): any fixed function will do.</summary>
    public static uint HashOf(string name)
    {
        var h = 2166136261u;
        foreach (var ch in name)
        {
            h = unchecked((h ^ ch) * 16777619u);
        }
        return h;
    }

    public static ObjectId Id(string name) => new(HashOf(name), name);

    private static readonly string[] Colls = ["c0", "c1", "c2"];

    public static List<WOp> Generate(int seed, long n, Model m, int largeWrite = 8 << 10)
    {
        var rng = new Random(unchecked(seed * 1_000_003 + (int)n * 7919));
        var ops = new List<WOp>();
        if (n == 1)
        {
            ops.Add(new WOp.CreateColl("c0"));
            ops.Add(new WOp.CreateColl("c1"));
            ops.Add(new WOp.CreateColl("c2"));
            ops.Add(new WOp.Touch("c0", MarkerObject));
        }
        else
        {
            var count = rng.Next(1, 4);
            // The generator looks at names only (which objects exist where): data need not be copied.
            var shadow = m.Copy(data: false);
            for (var i = 0; i < count; i++)
            {
                var op = One(rng, shadow, largeWrite);
                shadow.Apply([op]);
                ops.Add(op);
            }
        }
        var marker = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(marker, n);
        ops.Add(new WOp.SetXattr(MarkerCollection, MarkerObject, MarkerKey, marker));
        return ops;
    }

    private static byte[] Bytes(Random rng, int n)
    {
        var b = new byte[n];
        rng.NextBytes(b);
        return b;
    }

    private static WOp One(Random rng, Model m, int largeWrite)
    {
        var c = Colls[rng.Next(Colls.Length)];
        var o = "o" + rng.Next(5);
        var existing = m.Collections[c].Keys.Where(k => k != MarkerObject).ToList();
        var pick = existing.Count > 0 ? existing[rng.Next(existing.Count)] : null;
        switch (rng.Next(17))
        {
            case 0:
            case 1:
            case 2:
                return new WOp.Write(c, o, rng.Next(0, 40_000), Bytes(rng, rng.Next(1, 6000)));
            case 3:
                // Now and then long enough to be written while its transaction is still being prepared.
                return new WOp.Write(c, o, rng.Next(0, 20_000), Bytes(rng, rng.Next(4) == 0 ? rng.Next(64 << 10, 100 << 10) : rng.Next(largeWrite, largeWrite * 4)));
            case 4:
                return new WOp.Zero(c, o, rng.Next(0, 40_000), rng.Next(0, 20_000));
            case 5:
                return new WOp.Truncate(c, o, rng.Next(0, 60_000));
            case 6:
                return pick is null ? new WOp.Touch(c, o) : new WOp.Remove(c, pick);
            case 7:
                return pick is null ? new WOp.Touch(c, o) : new WOp.CloneObj(c, pick, "o" + rng.Next(5) + (rng.Next(2) == 0 ? "" : "x"));
            case 8:
                return pick is null ? new WOp.Touch(c, o)
                    : new WOp.CloneRange(c, pick, rng.Next(0, 30_000), rng.Next(0, 20_000), "o" + rng.Next(5), rng.Next(0, 30_000));
            case 9:
                return new WOp.SetXattr(c, o, "x" + rng.Next(3), Bytes(rng, rng.Next(0, 100)));
            case 10:
                return pick is null ? new WOp.Touch(c, o) : new WOp.RmXattr(c, pick, "x" + rng.Next(3));
            case 11:
                return new WOp.OmapSet(c, o, "k" + rng.Next(10), Bytes(rng, rng.Next(0, 200)));
            case 12:
                return pick is null ? new WOp.Touch(c, o) : new WOp.OmapRm(c, pick, "k" + rng.Next(10));
            case 13:
                return pick is null ? new WOp.Touch(c, o) : new WOp.OmapClear(c, pick);
            case 14:
            {
                var dc = Colls[rng.Next(Colls.Length)];
                var d = "o" + rng.Next(5) + (rng.Next(2) == 0 ? "" : "x");
                return pick is null || m.Find(dc, d) is not null || (dc == c && d == pick) ? new WOp.Touch(c, o) : new WOp.Move(c, pick, dc, d);
            }
            case 15:
            {
                var (src, dst) = rng.Next(2) == 0 ? ("c1", "c2") : ("c2", "c1");
                // A split that moves something, into a destination that holds nothing matching (the rule).
                var fits = new List<(int Bits, uint Match)>();
                for (var bits = 0; bits < 4; bits++)
                {
                    var mask = (1u << bits) - 1;
                    for (var match = 0u; match <= mask; match++)
                    {
                        if (m.Collections[src].Keys.Any(k => (HashOf(k) & mask) == match) && !m.Collections[dst].Keys.Any(k => (HashOf(k) & mask) == match))
                        {
                            fits.Add((bits, match));
                        }
                    }
                }
                if (fits.Count == 0)
                {
                    return new WOp.Touch(c, o);
                }
                var (b, mt) = fits[rng.Next(fits.Count)];
                return new WOp.Split(src, b, mt, dst);
            }
            default:
            {
                var from = "k" + rng.Next(10);
                var to = rng.Next(4) == 0 ? "l" : "k" + rng.Next(10);
                return pick is null ? new WOp.Touch(c, o) : new WOp.OmapRmRange(c, pick, from, to);
            }
        }
    }

    public static Transaction ToTransaction(IEnumerable<WOp> ops)
    {
        var t = new Transaction();
        foreach (var op in ops)
        {
            _ = op switch
            {
                WOp.CreateColl x => t.CreateCollection(x.C),
                WOp.Touch x => t.Touch(x.C, Id(x.O)),
                WOp.Write x => t.Write(x.C, Id(x.O), x.Off, x.Data),
                WOp.Zero x => t.Zero(x.C, Id(x.O), x.Off, x.Len),
                WOp.Truncate x => t.Truncate(x.C, Id(x.O), x.Size),
                WOp.Remove x => t.Remove(x.C, Id(x.O)),
                WOp.CloneObj x => t.Clone(x.C, Id(x.Src), Id(x.Dst)),
                WOp.CloneRange x => t.CloneRange(x.C, Id(x.Src), x.SrcOff, x.Len, Id(x.Dst), x.DstOff),
                WOp.SetXattr x => t.SetXattr(x.C, Id(x.O), x.K, x.V),
                WOp.RmXattr x => t.RemoveXattr(x.C, Id(x.O), x.K),
                WOp.OmapSet x => t.OmapSet(x.C, Id(x.O), x.K, x.V),
                WOp.OmapRm x => t.OmapRemove(x.C, Id(x.O), x.K),
                WOp.OmapClear x => t.OmapClear(x.C, Id(x.O)),
                WOp.OmapRmRange x => t.OmapRemoveRange(x.C, Id(x.O), x.From, x.To),
                WOp.Move x => t.Move(x.C, Id(x.O), x.DstC, Id(x.DstO)),
                WOp.Split x => t.SplitCollection(x.Src, x.Bits, x.Match, x.Dst),
                _ => throw new InvalidOperationException(op.ToString()),
            };
        }
        return t;
    }

    /// <summary>The model after transactions 1..n.</summary>
    public static Model ModelAt(int seed, long n, int largeWrite = 8 << 10)
    {
        var m = new Model();
        for (long i = 1; i <= n; i++)
        {
            m.Apply(Generate(seed, i, m, largeWrite));
        }
        return m;
    }

    /// <summary>The marker the store holds: the last transaction it has (0 for none).</summary>
    public static long Marker(ObjectStore store)
    {
        if (!store.CollectionExists(MarkerCollection) || store.Stat(MarkerCollection, Id(MarkerObject)) is null)
        {
            return 0;
        }
        var v = store.GetXattr(MarkerCollection, Id(MarkerObject), MarkerKey);
        return v is null ? 0 : BinaryPrimitives.ReadInt64LittleEndian(v);
    }
}
