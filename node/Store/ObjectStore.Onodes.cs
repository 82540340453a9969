using Appliance.Store.Meta;

namespace Appliance.Store;

public sealed partial class ObjectStore
{
    /// <summary>
    /// Runs <paramref name="f"/> under the state lock with the objects under onode key <paramref name="key"/> as the
    /// state is at that moment: the delta, the frozen layer a checkpoint is committing, or the tree. The tree is read
    /// outside the lock; its value counts only if no layer has the key by the time the lock is taken again and no
    /// freeze happened meanwhile (a freeze may have put newer changes into the tree), else the lookup runs again.
    /// What <paramref name="f"/> reads beside (the overlay) is then of the same instant.
    /// </summary>
    private async ValueTask<T> WithSlotAsync<T>(byte[] key, Func<OnodeSlot?, T> f, CancellationToken ct = default)
    {
        byte[]? treeValue = null;
        var epoch = -1L;
        while (true)
        {
            lock (_stateLock)
            {
                var (known, v) = _meta.LookupPoint(key);
                if (known)
                {
                    return f(v is null ? null : OnodeCodec.Decode(key, v, _geo.FirstDataBlock, _geo.EndDataBlock));
                }
                if (epoch == _meta.DeltaEpoch)
                {
                    return f(treeValue is null ? null : OnodeCodec.Decode(key, treeValue, _geo.FirstDataBlock, _geo.EndDataBlock));
                }
                epoch = _meta.DeltaEpoch;
            }
            treeValue = await _index.GetAsync(key, ct);
        }
    }

    /// <summary>The objects under an onode key now (a private copy), or null.</summary>
    private ValueTask<OnodeSlot?> LoadSlotAsync(byte[] key, CancellationToken ct = default) => WithSlotAsync(key, s => s, ct);

    /// <summary>Runs <paramref name="f"/> under the state lock with object <paramref name="o"/> of collection
    /// <paramref name="c"/> (null: no such object); a missing collection is <see cref="CollectionNotFoundException"/>.</summary>
    private async ValueTask<T> WithOnodeAsync<T>(string c, ObjectId o, Func<Onode?, T> f, CancellationToken ct = default)
    {
        lock (_stateLock)
        {
            if (!_meta.Collections.ContainsKey(c))
            {
                throw new CollectionNotFoundException(c);
            }
        }
        return await WithSlotAsync(MetaKeys.OnodeKey(c, o), slot =>
        {
            if (!_meta.Collections.ContainsKey(c))
            {
                throw new CollectionNotFoundException(c);
            }
            return f(slot?.Find(o));
        }, ct);
    }

    /// <summary>The object (a private copy); <see cref="ObjectNotFoundException"/> when missing.</summary>
    private ValueTask<Onode> GetAsync(string c, ObjectId o, CancellationToken ct = default) =>
        WithOnodeAsync(c, o, on => on ?? throw new ObjectNotFoundException(c, o.ToString()), ct);

    /// <summary>
    /// The onode keys and values in [from, to), at most <paramref name="maxKeys"/>, in key order: the tree under the
    /// layers (frozen, then the delta, which wins). The layers' entries in the range are copied under the state lock,
    /// the tree is read after, and the scan runs again if a checkpoint froze the delta meanwhile (see
    /// <see cref="OmapScanAsync"/>: the same reasoning, without range removals).
    /// </summary>
    private async Task<List<(byte[] Key, byte[] Value)>> ScanSlotsAsync(byte[] from, byte[] to, int maxKeys, CancellationToken ct = default)
    {
        while (true)
        {
            List<DeltaEntry> points;
            long epoch;
            lock (_stateLock)
            {
                var merged = new SortedDictionary<byte[], byte[]?>(ByteOrder.Instance);
                if (_meta.Frozen is { } f)
                {
                    foreach (var e in f.Between(from, to))
                    {
                        merged[e.Key] = e.Value;
                    }
                }
                foreach (var e in _meta.Delta.Between(from, to))
                {
                    merged[e.Key] = e.Value;
                }
                points = [.. merged.Select(kv => new DeltaEntry(kv.Key, kv.Value))];
                epoch = _meta.DeltaEpoch;
            }
            var result = new List<(byte[], byte[])>();
            var cursor = _index.Scan(from, to);
            var treeKey = await cursor.MoveNextAsync(ct) ? cursor.Key.ToArray() : null;
            var pi = 0;
            while (result.Count < maxKeys && (treeKey is not null || pi < points.Count))
            {
                var p = pi < points.Count ? points[pi] : null;
                var cmp = p is null ? 1 : treeKey is null ? -1 : p.Key.AsSpan().SequenceCompareTo(treeKey);
                if (cmp <= 0)
                {
                    pi++;
                    if (cmp == 0)
                    {
                        treeKey = await cursor.MoveNextAsync(ct) ? cursor.Key.ToArray() : null;
                    }
                    if (p!.Value is not null)
                    {
                        result.Add((p.Key, p.Value));
                    }
                }
                else
                {
                    result.Add((treeKey!, cursor.Value.ToArray()));
                    treeKey = await cursor.MoveNextAsync(ct) ? cursor.Key.ToArray() : null;
                }
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

    /// <summary>The state as the store reads it now (replay: the index under the delta).</summary>
    private sealed class StoreSource(ObjectStore s) : IOnodeSource
    {
        public ValueTask<OnodeSlot?> LoadAsync(byte[] key) => s.LoadSlotAsync(key);

        public async ValueTask<List<byte[]>> KeysAsync(byte[] from, byte[] to) =>
            [.. (await s.ScanSlotsAsync(from, to, int.MaxValue)).Select(kv => kv.Key)];
    }

    /// <summary>What a draft loaded, for its publication: the transaction's turns keep it current (only transactions
    /// ordered on the same collections change those keys). Anything else is a bug.</summary>
    private sealed class DraftSource : IOnodeSource
    {
        public Dictionary<byte[], OnodeSlot?> Slots { get; } = new(ByteEquality.Instance);

        public Dictionary<(string, string), List<byte[]>> Ranges { get; } = [];

        public static (string, string) RangeKey(byte[] from, byte[] to) => (Convert.ToHexString(from), Convert.ToHexString(to));

        public ValueTask<OnodeSlot?> LoadAsync(byte[] key) => Slots.TryGetValue(key, out var slot)
            ? ValueTask.FromResult(slot?.Clone())
            : throw new InvalidOperationException($"the draft did not load onode key {Convert.ToHexString(key)}");

        public ValueTask<List<byte[]>> KeysAsync(byte[] from, byte[] to) => Ranges.TryGetValue(RangeKey(from, to), out var keys)
            ? ValueTask.FromResult(keys)
            : throw new InvalidOperationException("the draft did not list the split's range");
    }

    /// <summary>Applies the store's changes for tests that damage the index (the keys go to the tree at the next
    /// checkpoint).</summary>
    internal void PutIndexForTests(byte[] key, byte[]? value)
    {
        lock (_stateLock)
        {
            if (value is null)
            {
                _meta.Delta.Delete(key, _meta.IndexHeight);
            }
            else
            {
                _meta.Delta.Put(key, value, _meta.IndexHeight);
            }
        }
    }
}
