using Appliance.Platform.Checksums;
using Appliance.Store.Meta;

namespace Appliance.Store;

public sealed partial class ObjectStore
{
    /// <summary>
    /// Reads up to <paramref name="length"/> bytes at <paramref name="offset"/> (fewer at the end of the object;
    /// none past it). Holes read as zeros. Every block read from the device is checked against its crc32c: a
    /// mismatch throws <see cref="ChecksumException"/> and no data is returned.
    /// </summary>
    public async Task<byte[]> ReadAsync(string collection, ObjectId name, long offset = 0, int length = int.MaxValue, CancellationToken ct = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        for (var attempt = 0; ; attempt++)
        {
            ThrowIfFailed();
            byte[]? result = null;
            long first = offset / B;
            BlockRef[] refs = [];
            ReadOnlyMemory<byte>?[] overlay = [];
            // The onode and the overlay are read at one instant (under the state lock).
            await WithOnodeAsync(collection, name, on =>
            {
                if (on is null)
                {
                    throw new ObjectNotFoundException(collection, name.ToString());
                }
                var end = Math.Min(on.Size, offset + (long)length);
                if (end <= offset)
                {
                    return 0;
                }
                result = new byte[end - offset];
                var last = (end - 1) / B;
                refs = on.Blocks[(int)first..(int)(last + 1)].ToArray();
                overlay = new ReadOnlyMemory<byte>?[refs.Length];
                for (var i = 0; i < refs.Length; i++)
                {
                    if (!refs[i].IsHole && _overlay.TryGetValue(refs[i].Phys, out var d))
                    {
                        // Copied now, under the lock: the memory may be a caller's (Transaction.WriteWithoutCopy),
                        // in use by the store only until the entry leaves the overlay.
                        overlay[i] = d;
                        Place(result, offset, first + i, d.Span);
                    }
                }
                return 0;
            }, ct);
            if (result is null)
            {
                return [];
            }
            var (bad, actual) = await FillAsync(result, offset, first, refs, overlay, ct);
            if (bad < 0)
            {
                return result;
            }
            // A mismatch may be a race, not rot: the block may have moved (copy-on-write, freed and reused) or got
            // an overlay since we looked. Only a mismatch on a block whose mapping did not change is real.
            var idx = first + bad;
            var same = await WithOnodeAsync(collection, name, on =>
                on is not null && idx < on.BlockCount && on.Blocks[(int)idx] == refs[bad] && !_overlay.ContainsKey(refs[bad].Phys), ct);
            if (same || attempt >= 8)
            {
                throw new ChecksumException(collection, name.ToString(), idx, refs[bad].Phys * B, refs[bad].Crc, actual);
            }
        }
    }

    /// <summary>Copies blocks into <paramref name="result"/> (which starts at byte <paramref name="offset"/> of the
    /// object); returns the index in <paramref name="refs"/> of the first block that failed its crc, or -1.</summary>
    private async Task<(int Bad, uint Actual)> FillAsync(byte[] result, long offset, long first, BlockRef[] refs, ReadOnlyMemory<byte>?[] overlay, CancellationToken ct)
    {
        var bad = -1;
        uint actual = 0;
        var i = 0;
        // Small reads use the data cache; a large one (a scan, a whole big object) neither uses nor fills it.
        var cacheable = _dataCache.Enabled && refs.Length <= CachedReadBlocks;
        while (i < refs.Length)
        {
            if (refs[i].IsHole || overlay[i] is not null || (cacheable && PlaceCached(result, offset, first + i, refs[i])))
            {
                i++;
                continue;
            }
            // A run of adjacent device blocks: one read.
            var j = i + 1;
            while (j < refs.Length && j - i < 256 && overlay[j] is null && !refs[j].IsHole && refs[j].Phys == refs[j - 1].Phys + 1)
            {
                j++;
            }
            var stamps = cacheable ? new long[j - i] : null;
            for (var k = 0; stamps is not null && k < stamps.Length; k++)
            {
                stamps[k] = _dataCache.Stamp(refs[i + k].Phys);
            }
            var buf = BufferPool.Rent((j - i) * B);
            try
            {
                await _device.ReadAsync(refs[i].Phys * B, buf.Memory[..((j - i) * B)], ct);
                var span = buf.GetSpan()[..((j - i) * B)];
                var crcs = new uint[j - i];
                Crc32C.ComputeBlocks(span, B, crcs);
                for (var k = i; k < j; k++)
                {
                    var block = span.Slice((k - i) * B, B);
                    var crc = crcs[k - i];
                    if (crc != refs[k].Crc)
                    {
                        if (bad < 0)
                        {
                            (bad, actual) = (k, crc);
                        }
                        continue;
                    }
                    Place(result, offset, first + k, block);
                    if (stamps is not null)
                    {
                        _dataCache.Insert(refs[k].Phys, block, stamps[k - i]);
                    }
                }
            }
            catch
            {
                buf.Dispose();
                throw;
            }
            BufferPool.Return(buf);
            i = j;
        }
        return (bad, actual);
    }

    /// <summary>The data cache, for tests.</summary>
    internal DataCache DataCacheForTests => _dataCache;

    /// <summary>Reads of at most this many blocks go through the data cache.</summary>
    private const int CachedReadBlocks = 16;

    /// <summary>Places the block from the data cache when it is there and matches its crc.</summary>
    private bool PlaceCached(byte[] result, long offset, long index, BlockRef r)
    {
        Span<byte> block = stackalloc byte[B];
        if (!_dataCache.TryRead(r.Phys, block))
        {
            return false;
        }
        if (Crc32C.Compute(block) != r.Crc)
        {
            // Not the block this reader expects: its block map predates a write that raced it (or, a bug, a missed
            // invalidation). The device read decides, and retries on a moved block as any other mismatch does.
            _dataCache.Reject(r.Phys);
            return false;
        }
        Place(result, offset, index, block);
        return true;
    }

    private static void Place(byte[] result, long offset, long index, ReadOnlySpan<byte> block)
    {
        var blockStart = index * B;
        var from = Math.Max(offset, blockStart);
        var to = Math.Min(offset + result.Length, blockStart + B);
        if (to > from)
        {
            block.Slice((int)(from - blockStart), (int)(to - from)).CopyTo(result.AsSpan((int)(from - offset)));
        }
    }

    /// <summary>
    /// The runs of the object's data that are allocated (not holes), as (offset, length) in bytes within
    /// [<paramref name="offset"/>, <paramref name="offset"/> + <paramref name="length"/>) and the object's size, in
    /// order; adjacent allocated blocks form one run. Null when the object does not exist. Holes read as zeros, so what
    /// is not listed reads as zeros (what a block device's SEEK_DATA / NBD block status reports).
    /// </summary>
    public async Task<IReadOnlyList<(long Offset, long Length)>?> AllocatedExtentsAsync(string collection, ObjectId name, long offset, long length,
        CancellationToken ct = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        return await WithOnodeAsync<IReadOnlyList<(long, long)>?>(collection, name, on =>
        {
            if (on is null)
            {
                return null;
            }
            var result = new List<(long, long)>();
            var end = Math.Min(on.Size, offset + length);
            if (end <= offset)
            {
                return result;
            }
            var blocks = on.Blocks;
            var last = (int)Math.Min(blocks.Length - 1, (end - 1) / B);
            long runStart = -1;
            for (var i = (int)(offset / B); i <= last + 1; i++)
            {
                var allocated = i <= last && !blocks[i].IsHole;
                if (allocated && runStart < 0)
                {
                    runStart = Math.Max(offset, (long)i * B);
                }
                else if (!allocated && runStart >= 0)
                {
                    var runEnd = Math.Min(end, (long)i * B);
                    result.Add((runStart, runEnd - runStart));
                    runStart = -1;
                }
            }
            return result;
        }, ct);
    }

    /// <summary>Device byte offsets of the object's allocated blocks (block index, offset), for tests and repair tools.</summary>
    internal IReadOnlyList<(long Index, long Offset)> DeviceOffsetsOf(string collection, ObjectId name)
    {
        var on = GetAsync(collection, name).AsTask().GetAwaiter().GetResult();
        var result = new List<(long, long)>();
        for (var i = 0; i < on.BlockCount; i++)
        {
            if (!on.Blocks[i].IsHole)
            {
                result.Add((i, on.Blocks[i].Phys * B));
            }
        }
        return result;
    }

    /// <summary>The object's id and size, or null when it does not exist (or its collection does not). Reads the
    /// index: prefer <see cref="StatAsync"/>.</summary>
    public ObjectInfo? Stat(string collection, ObjectId name) => StatAsync(collection, name).GetAwaiter().GetResult();

    /// <summary>The object's id and size, or null when it does not exist (or its collection does not).</summary>
    public async Task<ObjectInfo?> StatAsync(string collection, ObjectId name, CancellationToken ct = default)
    {
        lock (_stateLock)
        {
            if (!_meta.Collections.ContainsKey(collection))
            {
                return null;
            }
        }
        return await WithSlotAsync(MetaKeys.OnodeKey(collection, name),
            slot => slot?.Find(name) is { } on && _meta.Collections.ContainsKey(collection) ? new ObjectInfo(on.Id, on.Size) : null, ct);
    }

    public bool CollectionExists(string collection)
    {
        lock (_stateLock)
        {
            return _meta.Collections.ContainsKey(collection);
        }
    }

    /// <summary>Collection names, sorted ordinally.</summary>
    public IReadOnlyList<string> ListCollections()
    {
        lock (_stateLock)
        {
            return [.. _meta.Collections.Keys.Order(StringComparer.Ordinal)];
        }
    }

    /// <summary>See <see cref="ListAsync"/>; reads the index on the calling thread.</summary>
    public ListResult List(string collection, ObjectId? after = null, int max = 1000, SortKeyRange? range = null) =>
        ListAsync(collection, after, max, range).GetAwaiter().GetResult();

    /// <summary>
    /// Up to <paramref name="max"/> objects of a collection in listing order (<see cref="ObjectId.CompareTo"/>:
    /// bit-reversed hash, then name), only those whose sort key lies in <paramref name="range"/> (all by default),
    /// only those after <paramref name="after"/>. The cursor is an id, not a position: it stays valid across
    /// changes and restarts (objects created behind it are not returned, ones ahead of it are, removed ones are
    /// not), and it need not name an existing object. A walk of a range page by page returns every object that
    /// was in it for the whole walk exactly once, in order. A scan of the index's onode keys (key order is the
    /// listing order).
    /// </summary>
    public async Task<ListResult> ListAsync(string collection, ObjectId? after = null, int max = 1000, SortKeyRange? range = null,
        CancellationToken ct = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(max, 1);
        if (!CollectionExists(collection))
        {
            throw new CollectionNotFoundException(collection);
        }
        var r = range ?? SortKeyRange.All;
        var page = new List<ObjectInfo>();
        if (r.IsEmpty)
        {
            return new ListResult(page, null);
        }
        var from = MetaKeys.OnodeRangeKey(collection, r.Start);
        if (after is { } a && a.SortKey >= r.Start)
        {
            // The after id's own key: a bucket key may hold objects after it too.
            var k = MetaKeys.OnodeKey(collection, a);
            if (k.AsSpan().SequenceCompareTo(from) > 0)
            {
                from = k;
            }
        }
        var to = MetaKeys.OnodeRangeKey(collection, r.End);
        while (page.Count <= max && from.AsSpan().SequenceCompareTo(to) < 0)
        {
            var want = max + 1 - page.Count;
            var slots = await ScanSlotsAsync(from, to, want, ct);
            foreach (var (key, value) in slots)
            {
                foreach (var on in OnodeCodec.Decode(key, value, _geo.FirstDataBlock, _geo.EndDataBlock).Objects)
                {
                    if (after is not { } b || on.Id.CompareTo(b) > 0)
                    {
                        page.Add(new ObjectInfo(on.Id, on.Size));
                    }
                }
            }
            if (slots.Count < want)
            {
                break;
            }
            from = [.. slots[^1].Key, 0];
        }
        ObjectId? next = null;
        if (page.Count > max)
        {
            page.RemoveRange(max, page.Count - max);
            next = page[^1].Id;
        }
        return new ListResult(page, next);
    }

    /// <summary>All xattrs of an object (copies). Reads the index: prefer <see cref="GetXattrsAsync"/>.</summary>
    public IReadOnlyDictionary<string, byte[]> GetXattrs(string collection, ObjectId name) =>
        GetXattrsAsync(collection, name).GetAwaiter().GetResult();

    /// <summary>All xattrs of an object (copies).</summary>
    public async Task<IReadOnlyDictionary<string, byte[]>> GetXattrsAsync(string collection, ObjectId name, CancellationToken ct = default) =>
        (await GetAsync(collection, name, ct)).Xattrs;

    /// <summary>One xattr, or null when the object has no such key. Reads the index: prefer <see cref="GetXattrAsync"/>.</summary>
    public byte[]? GetXattr(string collection, ObjectId name, string key) => GetXattrAsync(collection, name, key).GetAwaiter().GetResult();

    /// <summary>One xattr, or null when the object has no such key.</summary>
    public async Task<byte[]?> GetXattrAsync(string collection, ObjectId name, string key, CancellationToken ct = default) =>
        (await GetAsync(collection, name, ct)).Xattrs.GetValueOrDefault(key);
}
