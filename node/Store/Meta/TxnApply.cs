using Appliance.Store.Format;

namespace Appliance.Store.Meta;

/// <summary>Where <see cref="TxnApply"/> reads the state before its transaction.</summary>
internal interface IOnodeSource
{
    /// <summary>The objects under an onode key (null: none). The caller may change what it gets.</summary>
    ValueTask<OnodeSlot?> LoadAsync(byte[] key);

    /// <summary>The onode keys in [from, to), in order.</summary>
    ValueTask<List<byte[]>> KeysAsync(byte[] from, byte[] to);
}

/// <summary>
/// Applies one transaction's redo entries (<see cref="Redo"/>) to a private working set of the onodes and
/// collections it names, loaded from an <see cref="IOnodeSource"/>: at publish, the views its draft loaded (its
/// collections' turns keep them current); at replay, the index under the delta. Nothing shared changes until
/// <see cref="MetaState.Commit"/> takes the result (changed onode keys already encoded, so a value too large for the
/// index refuses the transaction before anything changed). The same code runs at publish and at replay, so replay
/// cannot drift from what ran. Any inconsistency (an entry naming a missing object, a block outside the data area or
/// owned twice) is corruption: the preparer never emits one.
/// </summary>
internal sealed class TxnApply(MetaState meta, IOnodeSource source, string where)
{
    public enum EventKind : byte { Used, Freed, Data }

    public enum OmapOpKind : byte { Put, Delete, DeleteRange }

    public readonly record struct Event(EventKind Kind, long Phys, ReadOnlyMemory<byte> Data);

    public readonly record struct OmapOp(OmapOpKind Kind, ulong Nid, byte[] From, byte[]? To, byte[]? Value);

    private readonly Dictionary<byte[], OnodeSlot?> _slots = new(ByteEquality.Instance);
    private readonly HashSet<byte[]> _dirty = new(ByteEquality.Instance);
    private readonly HashSet<long> _usedHere = [];
    private readonly Dictionary<string, long?> _colls = new(StringComparer.Ordinal);

    public ulong LastNid { get; private set; } = meta.LastNid;

    /// <summary>Collections created, removed (null) or whose count changed, with their counts after.</summary>
    public IEnumerable<KeyValuePair<string, long?>> CollectionChanges => _colls;

    /// <summary>Changed onode keys and their new values (null: no object left under the key).</summary>
    public List<(byte[] Key, byte[]? Value)> Encoded { get; } = [];

    public List<OmapOp> OmapOps { get; } = [];

    /// <summary>Blocks mapped and freed, deferred data: in entry order.</summary>
    public List<Event> Events { get; } = [];

    /// <summary>Upper bound of the index pages committing these changes may need.</summary>
    public long Pages { get; private set; }

    /// <summary>The other bound of those pages, in bytes (<see cref="IndexDelta.Bound"/>).</summary>
    public long Bound { get; private set; }

    public async Task RunAsync(ReadOnlyMemory<byte> entries)
    {
        var pos = 0;
        while (pos < entries.Length)
        {
            var e = RedoEntry.Parse(entries, ref pos, where);
            await ApplyAsync(e);
        }
        var h = meta.IndexHeight;
        foreach (var key in _dirty)
        {
            var slot = _slots[key];
            byte[]? value = null;
            if (slot is { Objects.Count: > 0 })
            {
                value = OnodeCodec.Encode(slot);
                if (value.Length > OnodeCodec.MaxEncoded)
                {
                    throw new MetadataTooLargeException(
                        $"the metadata of {slot.Objects[0].Id} (block map, xattrs) would take {value.Length} bytes, more than the limit of {OnodeCodec.MaxEncoded}; use smaller objects or fewer xattrs");
                }
            }
            Encoded.Add((key, value));
            Pages += IndexDelta.PageCost(h, value?.Length ?? 0);
            Bound += value is null ? 0 : IndexDelta.PutBound(key.Length, value.Length);
        }
        Pages += _colls.Count * IndexDelta.PageCost(h, 9);
        Bound += _colls.Sum(c => IndexDelta.PutBound(1 + 2 * c.Key.Length, 9));
        foreach (var op in OmapOps)
        {
            Pages += op.Kind == OmapOpKind.DeleteRange ? 2 * IndexDelta.PageCost(h, 0) : IndexDelta.PageCost(h, op.Value?.Length ?? 0);
            Bound += op.Value is null ? 0 : IndexDelta.PutBound(op.From.Length, op.Value.Length);
        }
    }

    private CorruptionException Fail(string message) => new($"{where}: {message}");

    private bool CollExists(string c) => _colls.TryGetValue(c, out var n) ? n is not null : meta.Collections.ContainsKey(c);

    private void Count(string c, long by) => _colls[c] = (_colls.TryGetValue(c, out var n) ? n!.Value : meta.Collections[c]) + by;

    private async ValueTask<OnodeSlot?> SlotAsync(byte[] key)
    {
        if (!_slots.TryGetValue(key, out var slot))
        {
            slot = await source.LoadAsync(key);
            _slots[key] = slot;
        }
        return slot;
    }

    private async ValueTask<(byte[] Key, OnodeSlot? Slot, Onode? On)> FindAsync(string c, ObjectId o)
    {
        if (!CollExists(c))
        {
            throw Fail($"names collection {c}, which does not exist");
        }
        var key = MetaKeys.OnodeKey(c, o);
        var slot = await SlotAsync(key);
        return (key, slot, slot?.Find(o));
    }

    private async ValueTask<(byte[] Key, OnodeSlot Slot, Onode On)> ObjAsync(string c, ObjectId o)
    {
        var (key, slot, on) = await FindAsync(c, o);
        if (on is null)
        {
            throw Fail($"names object {c}/{o}, which does not exist");
        }
        return (key, slot!, on);
    }

    private void Freed(long phys) => Events.Add(new Event(EventKind.Freed, phys, default));

    private void Used(long phys)
    {
        if (!meta.Bitmap.InRange(phys))
        {
            throw Fail($"maps device block {phys}, outside the data area [{meta.FirstDataBlock}, {meta.EndDataBlock})");
        }
        if (meta.Bitmap.IsUsed(phys) || !_usedHere.Add(phys))
        {
            throw Fail($"maps device block {phys}, which is in use");
        }
        Events.Add(new Event(EventKind.Used, phys, default));
    }

    private void Omap(OmapOpKind kind, ulong nid, byte[] from, byte[]? to = null, byte[]? value = null) =>
        OmapOps.Add(new OmapOp(kind, nid, from, to, value));

    private async ValueTask ApplyAsync(RedoEntry e)
    {
        switch (e.Kind)
        {
            case RedoKind.CollCreate:
                if (CollExists(e.C))
                {
                    throw Fail($"creates collection {e.C}, which exists");
                }
                _colls[e.C] = 0;
                break;
            case RedoKind.CollRemove:
                if (!CollExists(e.C) || (_colls.TryGetValue(e.C, out var n) ? n : meta.Collections[e.C]) != 0)
                {
                    throw Fail($"removes collection {e.C}, which is missing or not empty");
                }
                _colls[e.C] = null;
                break;
            case RedoKind.ObjCreate:
            {
                var (key, slot, on) = await FindAsync(e.C, e.Id);
                if (on is not null)
                {
                    throw Fail($"creates {e.C}/{e.Id}, which exists");
                }
                slot ??= _slots[key] = new OnodeSlot();
                slot.Add(new Onode(e.Id) { Nid = ++LastNid });
                _dirty.Add(key);
                Count(e.C, 1);
                break;
            }
            case RedoKind.ObjRemove:
            {
                var (key, slot, on) = await ObjAsync(e.C, e.Id);
                if (on.HasOmap)
                {
                    Omap(OmapOpKind.DeleteRange, on.Nid, IndexKeys.OmapStart(on.Nid), IndexKeys.OmapEnd(on.Nid));
                }
                on.Resize(0, Freed);
                slot.Remove(e.Id);
                _dirty.Add(key);
                Count(e.C, -1);
                break;
            }
            case RedoKind.ObjSize:
            {
                var (key, _, on) = await ObjAsync(e.C, e.Id);
                if (e.Size < 0 || e.Size > MetaState.MaxObjectSize)
                {
                    throw Fail($"sets size {e.Size}");
                }
                on.Resize(checked((int)((e.Size + Superblock.BlockSize - 1) / Superblock.BlockSize)), Freed);
                on.Size = e.Size;
                _dirty.Add(key);
                break;
            }
            case RedoKind.Blocks:
            {
                var (key, _, on) = await ObjAsync(e.C, e.Id);
                if (e.First < 0 || e.First + e.Refs!.Length > on.BlockCount)
                {
                    throw Fail($"maps blocks {e.First}+{e.Refs!.Length} of {e.C}/{e.Id}, which has {on.BlockCount}");
                }
                for (var i = 0; i < e.Refs.Length; i++)
                {
                    var phys = e.Refs[i].Phys;
                    ref var slot = ref on.Block(e.First + i);
                    if (slot.Phys != phys)
                    {
                        if (slot.Phys != 0)
                        {
                            Freed(slot.Phys);
                        }
                        if (phys != 0)
                        {
                            Used(phys);
                        }
                    }
                    slot = e.Refs[i];
                }
                _dirty.Add(key);
                break;
            }
            case RedoKind.Data:
                if (!meta.Bitmap.InRange(e.Phys))
                {
                    throw Fail($"deferred write to device block {e.Phys}, outside the data area");
                }
                Events.Add(new Event(EventKind.Data, e.Phys, e.Value));
                break;
            case RedoKind.XattrSet:
            {
                var (key, _, on) = await ObjAsync(e.C, e.Id);
                on.Xattrs[e.K!] = e.Value.ToArray();
                _dirty.Add(key);
                break;
            }
            case RedoKind.XattrRemove:
            {
                var (key, _, on) = await ObjAsync(e.C, e.Id);
                if (on.Xattrs.Remove(e.K!))
                {
                    _dirty.Add(key);
                }
                break;
            }
            case RedoKind.OmapSet:
            {
                var (key, _, on) = await ObjAsync(e.C, e.Id);
                Omap(OmapOpKind.Put, on.Nid, IndexKeys.OmapKey(on.Nid, e.K!), value: e.Value.ToArray());
                if (!on.HasOmap)
                {
                    on.HasOmap = true;
                    _dirty.Add(key);
                }
                break;
            }
            case RedoKind.OmapRemove:
            {
                var (_, _, on) = await ObjAsync(e.C, e.Id);
                if (on.HasOmap)
                {
                    Omap(OmapOpKind.Delete, on.Nid, IndexKeys.OmapKey(on.Nid, e.K!));
                }
                break;
            }
            case RedoKind.OmapClear:
            {
                var (key, _, on) = await ObjAsync(e.C, e.Id);
                if (on.HasOmap)
                {
                    Omap(OmapOpKind.DeleteRange, on.Nid, IndexKeys.OmapStart(on.Nid), IndexKeys.OmapEnd(on.Nid));
                    on.HasOmap = false;
                    _dirty.Add(key);
                }
                break;
            }
            case RedoKind.OmapRemoveRange:
            {
                var (_, _, on) = await ObjAsync(e.C, e.Id);
                if (on.HasOmap && string.CompareOrdinal(e.K, e.K2) < 0)
                {
                    Omap(OmapOpKind.DeleteRange, on.Nid, IndexKeys.OmapKey(on.Nid, e.K!), IndexKeys.OmapKey(on.Nid, e.K2!));
                }
                break;
            }
            case RedoKind.ObjMove:
            {
                var (key, slot, on) = await ObjAsync(e.C, e.Id);
                if (!CollExists(e.C2!))
                {
                    throw Fail($"moves {e.C}/{e.Id} to collection {e.C2}, which does not exist");
                }
                var (dkey, dslot, don) = await FindAsync(e.C2!, e.Id2);
                if (don is not null)
                {
                    throw Fail($"moves {e.C}/{e.Id} onto {e.C2}/{e.Id2}, which exists");
                }
                slot.Remove(e.Id);
                dslot ??= _slots[dkey] = new OnodeSlot();
                dslot.Add(on.Id == e.Id2 ? on : on.Renamed(e.Id2));
                _dirty.Add(key);
                _dirty.Add(dkey);
                Count(e.C, -1);
                Count(e.C2!, 1);
                break;
            }
            case RedoKind.CollSplit:
                await SplitAsync(e);
                break;
            default:
                throw Fail($"unknown redo entry kind {(byte)e.Kind}");
        }
    }

    private async ValueTask SplitAsync(RedoEntry e)
    {
        var (sc, dc, bits, match) = (e.C, e.C2!, e.Bits, e.Match);
        if (bits > 32 || (match & ~SortKeyRange.Mask(bits)) != 0 || sc == dc)
        {
            throw Fail($"splits {sc} by {bits} bits = {match:x} into {dc}");
        }
        if (!CollExists(sc) || !CollExists(dc))
        {
            throw Fail($"splits {sc} into {dc}, one of which does not exist");
        }
        var range = SortKeyRange.ForHashBits(bits, match);
        var from = MetaKeys.OnodeRangeKey(sc, range.Start);
        var to = MetaKeys.OnodeRangeKey(sc, range.End);
        // The keys of the collection before this transaction, and those this transaction put objects under.
        var keys = new SortedSet<byte[]>(await source.KeysAsync(from, to), ByteOrder.Instance);
        foreach (var k in _slots.Keys)
        {
            if (k.AsSpan().SequenceCompareTo(from) >= 0 && k.AsSpan().SequenceCompareTo(to) < 0)
            {
                keys.Add(k);
            }
        }
        long moved = 0;
        foreach (var key in keys)
        {
            var slot = await SlotAsync(key);
            if (slot is not { Objects.Count: > 0 })
            {
                continue;
            }
            // Every object under one key has the key's hash: all of them move.
            var dkey = MetaKeys.Rekey(key, dc);
            var dslot = await SlotAsync(dkey) ?? (_slots[dkey] = new OnodeSlot());
            foreach (var on in slot.Objects)
            {
                if (dslot.Find(on.Id) is not null)
                {
                    throw Fail($"splits {sc}/{on.Id} into {dc}, which holds it");
                }
                dslot.Add(on);
                moved++;
            }
            slot.Objects.Clear();
            _dirty.Add(key);
            _dirty.Add(dkey);
        }
        Count(sc, -moved);
        Count(dc, moved);
    }
}

/// <summary>Equality of byte strings (dictionary keys).</summary>
internal sealed class ByteEquality : IEqualityComparer<byte[]>
{
    public static readonly ByteEquality Instance = new();

    public bool Equals(byte[]? x, byte[]? y) => x.AsSpan().SequenceEqual(y);

    public int GetHashCode(byte[] obj)
    {
        var h = new HashCode();
        h.AddBytes(obj);
        return h.ToHashCode();
    }
}
