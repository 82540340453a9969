using Appliance.Maps;
using System.Text;
using Appliance.Osd.Protocol;
using Appliance.Wire.Codec;

namespace Appliance.Client.Tests;

/// <summary>
/// Objects in memory, served the way the protocol says (enough of it for the client's conveniences): data, xattrs,
/// omap with paging and prefixes, stat, PG listing with a cursor, and tids remembered so a resent write is answered
/// without being applied again.
/// </summary>
internal sealed class FakeObjects
{
    private sealed class Obj
    {
        public byte[] Data = [];
        public readonly SortedDictionary<string, byte[]> Xattrs = new(StringComparer.Ordinal);
        public readonly SortedDictionary<string, byte[]> Omap = new(StringComparer.Ordinal);
        public ulong Version;
    }

    private readonly Dictionary<string, Obj> _objects = new(StringComparer.Ordinal);
    private readonly Dictionary<(ulong, ulong), OsdOpReply> _applied = [];
    private readonly Lock _lock = new();

    /// <summary>Writes that were applied (not answered from the remembered outcome).</summary>
    public int AppliedWrites { get; private set; }

    public IReadOnlyCollection<string> Names
    {
        get
        {
            lock (_lock)
            {
                return [.. _objects.Keys];
            }
        }
    }

    public void Put(string name) => _objects[name] = new Obj { Version = 1 };

    public OsdOpReply Apply(OsdOpRequest request, uint epoch)
    {
        lock (_lock)
        {
            if (_applied.TryGetValue((request.ClientNonce, request.Tid), out var first))
            {
                return first;
            }
            var reply = ApplyLocked(request, epoch);
            if (request.IsWrite && reply.Result >= 0)
            {
                AppliedWrites++;
                _applied[(request.ClientNonce, request.Tid)] = reply;
            }
            return reply;
        }
    }

    private OsdOpReply ApplyLocked(OsdOpRequest request, uint epoch)
    {
        var outputs = new List<OsdOpOutput>();
        _objects.TryGetValue(request.Object, out var obj);
        var created = false;
        foreach (var op in request.Ops)
        {
            if (op.Code == OsdOpCode.PgList)
            {
                outputs.Add(List(request.Pg, op));
                continue;
            }
            if (obj is null && op.Code is OsdOpCode.Create or OsdOpCode.Write or OsdOpCode.WriteFull or OsdOpCode.Append or OsdOpCode.SetXattr or OsdOpCode.OmapSet)
            {
                obj = new Obj();
                created = true;
            }
            else if (obj is not null && op.Code == OsdOpCode.Create && (op.Flags & OsdOpFlags.Exclusive) != 0)
            {
                return Fail(request, OsdResult.Exists, epoch);
            }
            if (obj is null && op.Code is not (OsdOpCode.Watch or OsdOpCode.Unwatch or OsdOpCode.Notify))
            {
                return Fail(request, OsdResult.NotFound, epoch);
            }
            switch (op.Code)
            {
                case OsdOpCode.Write:
                    Resize(obj!, (long)op.Offset + op.Data.Length);
                    op.Data.Span.CopyTo(obj!.Data.AsSpan((int)op.Offset));
                    break;
                case OsdOpCode.WriteFull:
                    obj!.Data = op.Data.ToArray();
                    break;
                case OsdOpCode.Append:
                    var at = obj!.Data.Length;
                    Resize(obj, at + op.Data.Length);
                    op.Data.Span.CopyTo(obj.Data.AsSpan(at));
                    break;
                case OsdOpCode.Truncate:
                    Resize(obj!, (long)op.Offset, shrink: true);
                    break;
                case OsdOpCode.Zero:
                    obj!.Data.AsSpan((int)op.Offset, (int)Math.Min(op.Length, (ulong)Math.Max(0, obj.Data.Length - (int)op.Offset))).Clear();
                    break;
                case OsdOpCode.Delete:
                    _objects.Remove(request.Object);
                    obj = null;
                    break;
                case OsdOpCode.Read:
                    var start = (int)Math.Min(op.Offset, (ulong)obj!.Data.Length);
                    var length = (int)Math.Min(op.Length, (ulong)(obj.Data.Length - start));
                    outputs.Add(new OsdOpOutput(OsdResult.Ok) { Data = obj.Data.AsSpan(start, length).ToArray() });
                    continue;
                case OsdOpCode.Stat:
                    using (var w = new WireWriter(16))
                    {
                        w.WriteU64((ulong)obj!.Data.Length);
                        w.WriteI64(1_700_000_000_000);
                        outputs.Add(new OsdOpOutput(OsdResult.Ok) { Data = w.ToArray() });
                    }
                    continue;
                case OsdOpCode.SetXattr:
                    obj!.Xattrs[op.Name] = op.Data.ToArray();
                    break;
                case OsdOpCode.GetXattr:
                    if (!obj!.Xattrs.TryGetValue(op.Name, out var value))
                    {
                        return Fail(request, OsdResult.NotFound, epoch);
                    }
                    outputs.Add(new OsdOpOutput(OsdResult.Ok) { Data = value });
                    continue;
                case OsdOpCode.GetXattrs:
                    outputs.Add(new OsdOpOutput(OsdResult.Ok) { Pairs = [.. obj!.Xattrs] });
                    continue;
                case OsdOpCode.RmXattr:
                    obj!.Xattrs.Remove(op.Name);
                    break;
                case OsdOpCode.CmpXattr:
                    var have = obj!.Xattrs.GetValueOrDefault(op.Name) ?? [];
                    if (have.AsSpan().SequenceEqual(op.Data.Span) != (op.Mode == (uint)CmpXattrMode.Equal))
                    {
                        return Fail(request, OsdResult.Canceled, epoch);
                    }
                    break;
                case OsdOpCode.OmapSet:
                    foreach (var (k, v) in op.Pairs)
                    {
                        obj!.Omap[k] = v;
                    }
                    break;
                case OsdOpCode.OmapRm:
                    foreach (var k in op.Keys)
                    {
                        obj!.Omap.Remove(k);
                    }
                    break;
                case OsdOpCode.OmapGet:
                    var max = op.Length == 0 ? Limits.OmapPage : (int)Math.Min(op.Length, (ulong)Limits.OmapPage);
                    var matching = obj!.Omap.Where(kv => string.CompareOrdinal(kv.Key, op.Name) > 0 && kv.Key.StartsWith(op.Name2, StringComparison.Ordinal)).ToList();
                    outputs.Add(new OsdOpOutput(OsdResult.Ok) { Pairs = matching.Take(max).ToList(), More = matching.Count > max });
                    continue;
                case OsdOpCode.OmapGetByKeys:
                    outputs.Add(new OsdOpOutput(OsdResult.Ok) { Pairs = op.Keys.Where(obj!.Omap.ContainsKey).Select(k => KeyValuePair.Create(k, obj.Omap[k])).ToList() });
                    continue;
                case OsdOpCode.Call:
                    outputs.Add(new OsdOpOutput(OsdResult.Ok) { Data = Encoding.UTF8.GetBytes($"{op.Name}.{op.Name2}:{Encoding.UTF8.GetString(op.Data.Span)}") });
                    continue;
                case OsdOpCode.Create:
                case OsdOpCode.Watch:
                case OsdOpCode.Unwatch:
                case OsdOpCode.Notify:
                    break;
                default:
                    return Fail(request, OsdResult.NotSupported, epoch);
            }
            outputs.Add(OsdOpOutput.Success);
        }
        if (obj is not null && request.IsWrite)
        {
            obj.Version++;
            if (created)
            {
                _objects[request.Object] = obj;
            }
        }
        return new OsdOpReply(request.Tid, OsdResult.Ok, epoch, new Eversion(epoch, request.Tid), obj?.Version ?? 0, outputs);
    }

    /// <summary>The PG's objects in (hash, name) order after the cursor (4-byte hash + name), a page at a time.</summary>
    private OsdOpOutput List(PgId pg, OsdOp op)
    {
        var all = _objects.Keys
            .Select(n => (Name: n, Hash: OsdPlacement.ObjectHash(n)))
            .Where(o => o.Hash % 8 == pg.Seed) // the tests' pools have pg_num 8 (stable_mod of a power of two)
            .OrderBy(o => o.Hash).ThenBy(o => o.Name, StringComparer.Ordinal)
            .ToList();
        if (op.Data.Length > 0)
        {
            var hash = BitConverter.ToUInt32(op.Data.Span[..4]);
            var name = Encoding.UTF8.GetString(op.Data.Span[4..]);
            all = all.SkipWhile(o => o.Hash < hash || (o.Hash == hash && string.CompareOrdinal(o.Name, name) <= 0)).ToList();
        }
        var page = all.Take((int)op.Length).ToList();
        var more = all.Count > page.Count;
        var cursor = more ? [.. BitConverter.GetBytes(page[^1].Hash), .. Encoding.UTF8.GetBytes(page[^1].Name)] : Array.Empty<byte>();
        return new OsdOpOutput(OsdResult.Ok)
        {
            Pairs = page.Select(o => KeyValuePair.Create(o.Name, BitConverter.GetBytes(o.Hash))).ToList(),
            Data = cursor,
            More = more,
        };
    }

    private static void Resize(Obj obj, long size, bool shrink = false)
    {
        if (size > obj.Data.Length || shrink)
        {
            var data = new byte[size];
            obj.Data.AsSpan(0, (int)Math.Min(size, obj.Data.Length)).CopyTo(data);
            obj.Data = data;
        }
    }

    private static OsdOpReply Fail(OsdOpRequest request, int result, uint epoch) =>
        new(request.Tid, result, epoch, default, 0, []) { Message = OsdResult.Describe(result) };
}
