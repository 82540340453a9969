using Appliance.Store.Index;

namespace Appliance.Store.Meta;

/// <summary>A changed index key: its new value, or null for a removal.</summary>
internal sealed class DeltaEntry(byte[] key, byte[]? value)
{
    public byte[] Key { get; } = key;

    public byte[]? Value { get; set; } = value;
}

internal sealed class DeltaOrder : IComparer<DeltaEntry>
{
    public static readonly DeltaOrder Instance = new();

    /// <summary>Greater than every key: the upper end of an open range view.</summary>
    public static readonly DeltaEntry Max = new([], null);

    public int Compare(DeltaEntry? x, DeltaEntry? y)
    {
        if (ReferenceEquals(x, y))
        {
            return 0;
        }
        if (ReferenceEquals(x, Max))
        {
            return 1;
        }
        if (ReferenceEquals(y, Max))
        {
            return -1;
        }
        return x!.Key.AsSpan().SequenceCompareTo(y!.Key);
    }
}

/// <summary>
/// The index keys changed since the last index commit (one layer): onodes, collections and omap entries put or
/// removed, and per object (nid) the omap key ranges removed. Redo entries apply here (at publish and at replay); a checkpoint freezes the layer, applies it
/// to the tree (<see cref="ApplyToAsync"/>) and commits. Within a layer a range removal drops the points it covers
/// first, so every point left is newer than every range: ranges then points is the order that reproduces it.
/// Memory: bounded by the journal (only changes of records since the last checkpoint are here). Not thread-safe:
/// the store changes and reads it under its state lock.
/// </summary>
internal sealed class IndexDelta
{
    private readonly SortedSet<DeltaEntry> _points = new(DeltaOrder.Instance);
    private readonly Dictionary<ulong, List<(byte[] From, byte[] To)>> _ranges = [];

    /// <summary>An upper bound of the pages committing this layer allocates (the allocator's reserve).</summary>
    public long Pages { get; private set; }

    /// <summary>The other bound of those pages, for many changes at once, in bytes (pages × 4096): a commit copies
    /// each page of the tree at most once and splits each at most once more (counted by the caller); a page split
    /// again has gained at least a quarter page since (splits are even by bytes, cells at most half a page), and
    /// every split adds a separator above: 16 bytes per inserted cell byte, plus overflow pages.</summary>
    public long Bound { get; private set; }

    /// <summary>See <see cref="Bound"/>: a put of a key and a value.</summary>
    public static long PutBound(int keyLength, int valueLength) =>
        16L * (keyLength + Math.Min(valueLength, 2000) + 8) + (valueLength > 1000 ? (valueLength + 4047) / 4048 * 4096L : 0);

    /// <summary>Changed keys and removed ranges held.</summary>
    public long Count => _points.Count + _ranges.Values.Sum(r => (long)r.Count);

    public bool IsEmpty => _points.Count == 0 && _ranges.Count == 0;

    /// <summary>About the memory the layer holds (keys, values, per-entry overhead): a checkpoint is due when it grows
    /// past <see cref="StoreOptions.DeltaBytes"/>.</summary>
    public long Bytes { get; private set; }

    /// <summary>Pages one change may need at the next commit in a tree of <paramref name="height"/> levels: its
    /// path copied, a split at every level and a new root (one more level than now), and the overflow pages of
    /// its value. An upper bound: changes of one commit share the upper pages of their paths.</summary>
    public static long PageCost(int height, int valueLength) =>
        2L * (Math.Max(height, 1) + 1) + 3 + (valueLength > 1000 ? (valueLength + 4047) / 4048 : 0);

    public void Put(byte[] key, byte[] value, int height)
    {
        Set(key, value);
        Pages += PageCost(height, value.Length);
        Bound += PutBound(key.Length, value.Length);
    }

    public void Delete(byte[] key, int height)
    {
        Set(key, null);
        Pages += PageCost(height, 0);
    }

    /// <summary>Removes the keys in [from, to) of object <paramref name="nid"/>.</summary>
    public void DeleteRange(ulong nid, byte[] from, byte[] to, int height)
    {
        if (from.AsSpan().SequenceCompareTo(to) >= 0)
        {
            return;
        }
        foreach (var e in Between(from, to).ToList())
        {
            _points.Remove(e);
            Bytes -= EntryOverhead + e.Key.Length + (e.Value?.Length ?? 0);
        }
        Bytes += EntryOverhead + from.Length + to.Length;
        if (!_ranges.TryGetValue(nid, out var list))
        {
            _ranges[nid] = list = [];
        }
        list.Add((from, to));
        // Both ends of the range: two paths copied, merges beside each.
        Pages += 2 * PageCost(height, 0);
    }

    private void Set(byte[] key, byte[]? value)
    {
        var probe = new DeltaEntry(key, value);
        if (_points.TryGetValue(probe, out var e))
        {
            Bytes += (value?.Length ?? 0) - (e.Value?.Length ?? 0);
            e.Value = value;
        }
        else
        {
            _points.Add(probe);
            Bytes += EntryOverhead + key.Length + (value?.Length ?? 0);
        }
    }

    /// <summary>A sorted-set node, the entry and the arrays' headers.</summary>
    private const int EntryOverhead = 120;

    /// <summary>What this layer says of a key that no removed range covers (onodes, collections): Known with the
    /// value (null: removed), or not Known.</summary>
    public (bool Known, byte[]? Value) LookupPoint(byte[] key) =>
        _points.TryGetValue(new DeltaEntry(key, null), out var e) ? (true, e.Value) : (false, null);

    /// <summary>What this layer says of <paramref name="key"/> (of object <paramref name="nid"/>): Known with the
    /// value (null: removed), or not Known (look in older layers).</summary>
    public (bool Known, byte[]? Value) Lookup(ulong nid, byte[] key)
    {
        if (_points.TryGetValue(new DeltaEntry(key, null), out var e))
        {
            return (true, e.Value);
        }
        return Hidden(nid, key) ? (true, null) : (false, null);
    }

    /// <summary>Whether a removed range of this layer covers the key.</summary>
    public bool Hidden(ulong nid, ReadOnlySpan<byte> key)
    {
        if (_ranges.TryGetValue(nid, out var list))
        {
            foreach (var (from, to) in list)
            {
                if (key.SequenceCompareTo(from) >= 0 && key.SequenceCompareTo(to) < 0)
                {
                    return true;
                }
            }
        }
        return false;
    }

    /// <summary>The removed ranges of object <paramref name="nid"/> (a copy).</summary>
    public List<(byte[] From, byte[] To)> RangesOf(ulong nid) => _ranges.TryGetValue(nid, out var l) ? [.. l] : [];

    /// <summary>The changed keys in [from, to), in order (live: the caller holds the state lock while it walks).</summary>
    public IEnumerable<DeltaEntry> Between(byte[] from, byte[] to)
    {
        if (_points.Count == 0)
        {
            yield break;
        }
        var lo = new DeltaEntry(from, null);
        if (DeltaOrder.Instance.Compare(lo, _points.Max!) > 0)
        {
            yield break;
        }
        foreach (var e in _points.GetViewBetween(lo, DeltaOrder.Max))
        {
            if (e.Key.AsSpan().SequenceCompareTo(to) >= 0)
            {
                yield break;
            }
            yield return e;
        }
    }

    /// <summary>Writes this layer into the tree's open transaction: removed ranges, then points (see the class).
    /// The layer is frozen: nothing changes it meanwhile.</summary>
    public async Task ApplyToAsync(BPlusTree tree, CancellationToken ct)
    {
        foreach (var list in _ranges.Values)
        {
            foreach (var (from, to) in list)
            {
                await tree.DeleteRangeAsync(from, to, ct);
            }
        }
        foreach (var e in _points)
        {
            if (e.Value is null)
            {
                await tree.DeleteAsync(e.Key, ct);
            }
            else
            {
                await tree.PutAsync(e.Key, e.Value, ct);
            }
        }
    }
}
