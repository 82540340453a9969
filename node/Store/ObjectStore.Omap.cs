using Appliance.Store.Meta;

namespace Appliance.Store;

public sealed partial class ObjectStore
{
    /// <summary>Omap entries in key order (ordinal): only keys starting with <paramref name="prefix"/>, only keys
    /// after <paramref name="startAfter"/>, at most <paramref name="limit"/>. Reads the index: prefer
    /// <see cref="OmapGetAsync"/>; this waits for the index's reads on the calling thread.</summary>
    public IReadOnlyList<KeyValuePair<string, byte[]>> OmapGet(string collection, ObjectId name, string? prefix = null, string? startAfter = null, int limit = int.MaxValue) =>
        OmapGetAsync(collection, name, prefix, startAfter, limit).GetAwaiter().GetResult();

    /// <summary>One omap value, or null. Reads the index: prefer <see cref="OmapGetValueAsync"/>.</summary>
    public byte[]? OmapGetValue(string collection, ObjectId name, string key) =>
        OmapGetValueAsync(collection, name, key).GetAwaiter().GetResult();

    /// <summary>Omap entries in key order (ordinal): only keys starting with <paramref name="prefix"/>, only keys
    /// after <paramref name="startAfter"/>, at most <paramref name="limit"/>.</summary>
    public async Task<IReadOnlyList<KeyValuePair<string, byte[]>>> OmapGetAsync(string collection, ObjectId name, string? prefix = null,
        string? startAfter = null, int limit = int.MaxValue, CancellationToken ct = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        var on = await GetAsync(collection, name, ct);
        if (!on.HasOmap || limit == 0)
        {
            return [];
        }
        return await OmapScanAsync(on.Nid, prefix, startAfter, limit, ct);
    }

    /// <summary>One omap value, or null.</summary>
    public async Task<byte[]?> OmapGetValueAsync(string collection, ObjectId name, string key, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        var on = await GetAsync(collection, name, ct);
        if (!on.HasOmap || key.Length > IndexKeys.MaxOmapKeyChars)
        {
            return null;
        }
        var k = IndexKeys.OmapKey(on.Nid, key);
        while (true)
        {
            long epoch;
            lock (_stateLock)
            {
                var (known, v) = _meta.Delta.Lookup(on.Nid, k);
                if (!known && _meta.Frozen is { } f)
                {
                    (known, v) = f.Lookup(on.Nid, k);
                }
                if (known)
                {
                    return v is null ? null : (byte[])v.Clone();
                }
                epoch = _meta.DeltaEpoch;
            }
            var value = await _index.GetAsync(k, ct);
            lock (_stateLock)
            {
                // A freeze meanwhile may have put newer changes in the tree than the layers we looked at: again.
                if (_meta.DeltaEpoch == epoch)
                {
                    return value;
                }
            }
        }
    }

    /// <summary>
    /// The entries of object <paramref name="nid"/>'s omap (OmapGet's filters): the index's, under the changes not yet
    /// committed to it (the frozen layer a checkpoint is committing, then the current one, which wins). The layers'
    /// entries in the range are copied under the state lock; the tree is read after, and the read is retried if a
    /// checkpoint froze the current layer meanwhile (the tree may then hold changes newer than those copies; between
    /// freezes it only ever gains the frozen layer's, which the copies shadow).
    /// </summary>
    private async Task<List<KeyValuePair<string, byte[]>>> OmapScanAsync(ulong nid, string? prefix, string? startAfter, int limit, CancellationToken ct)
    {
        if (prefix is not null && prefix.Length > IndexKeys.MaxOmapKeyChars)
        {
            return [];
        }
        // [from, to): keys at or after max(prefix, startAfter) and before the end of the prefix (every key in it
        // starts with the prefix: UTF-16 units are two bytes each). startAfter itself is skipped. A startAfter
        // longer than any key is cut to the longest: among stored keys only the cut one lies between the two.
        var lo = prefix ?? "";
        byte[]? skip = null;
        if (startAfter is not null && string.CompareOrdinal(startAfter, lo) >= 0)
        {
            lo = startAfter.Length > IndexKeys.MaxOmapKeyChars ? startAfter[..IndexKeys.MaxOmapKeyChars] : startAfter;
            skip = IndexKeys.OmapKey(nid, lo);
        }
        var from = IndexKeys.OmapKey(nid, lo);
        var to = prefix is null ? IndexKeys.OmapEnd(nid) : IndexKeys.PrefixEnd(IndexKeys.OmapKey(nid, prefix)) ?? IndexKeys.OmapEnd(nid);
        while (true)
        {
            List<DeltaEntry> points;
            List<(byte[] From, byte[] To)> hidden;
            long epoch;
            lock (_stateLock)
            {
                (points, hidden) = CaptureLayers(nid, from, to);
                epoch = _meta.DeltaEpoch;
            }
            var result = new List<KeyValuePair<string, byte[]>>();
            var cursor = _index.Scan(from, to);
            var treeKey = await cursor.MoveNextAsync(ct) ? cursor.Key.ToArray() : null;
            var pi = 0;
            while (result.Count < limit && (treeKey is not null || pi < points.Count))
            {
                var p = pi < points.Count ? points[pi] : null;
                var cmp = p is null ? 1 : treeKey is null ? -1 : p.Key.AsSpan().SequenceCompareTo(treeKey);
                byte[] key;
                byte[]? value;
                if (cmp <= 0)
                {
                    key = p!.Key;
                    value = p.Value is null ? null : (byte[])p.Value.Clone();
                    pi++;
                    if (cmp == 0)
                    {
                        treeKey = await cursor.MoveNextAsync(ct) ? cursor.Key.ToArray() : null;
                    }
                }
                else
                {
                    key = treeKey!;
                    value = Hidden(hidden, key) ? null : cursor.Value.ToArray();
                    treeKey = await cursor.MoveNextAsync(ct) ? cursor.Key.ToArray() : null;
                }
                if (value is null || skip is not null && key.AsSpan().SequenceEqual(skip))
                {
                    continue;
                }
                result.Add(new(IndexKeys.OmapKeyOf(key), value));
            }
            lock (_stateLock)
            {
                if (_meta.DeltaEpoch == epoch)
                {
                    return result;
                }
            }
        }
    }

    /// <summary>The uncommitted changes of object <paramref name="nid"/> in [from, to), merged newest first (a
    /// removal is an entry with a null value), and the ranges removed in either layer (they hide tree entries).
    /// Caller holds the state lock.</summary>
    private (List<DeltaEntry> Points, List<(byte[] From, byte[] To)> Hidden) CaptureLayers(ulong nid, byte[] from, byte[] to)
    {
        var merged = new SortedDictionary<byte[], byte[]?>(ByteOrder.Instance);
        var hidden = new List<(byte[] From, byte[] To)>();
        if (_meta.Frozen is { } f)
        {
            foreach (var e in f.Between(from, to))
            {
                merged[e.Key] = e.Value;
            }
            hidden.AddRange(f.RangesOf(nid));
        }
        var current = _meta.Delta.RangesOf(nid);
        if (current.Count > 0 && merged.Count > 0)
        {
            // The current layer's removals came after everything in the frozen one.
            foreach (var k in merged.Keys.Where(k => Hidden(current, k)).ToList())
            {
                merged.Remove(k);
            }
        }
        hidden.AddRange(current);
        foreach (var e in _meta.Delta.Between(from, to))
        {
            merged[e.Key] = e.Value;
        }
        return ([.. merged.Select(kv => new DeltaEntry(kv.Key, kv.Value))], hidden);
    }

    private static bool Hidden(List<(byte[] From, byte[] To)> ranges, ReadOnlySpan<byte> key)
    {
        foreach (var (from, to) in ranges)
        {
            if (key.SequenceCompareTo(from) >= 0 && key.SequenceCompareTo(to) < 0)
            {
                return true;
            }
        }
        return false;
    }
}
