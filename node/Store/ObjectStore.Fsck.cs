using Appliance.Platform.Checksums;
using Appliance.Platform.Devices;
using Appliance.Store.Alloc;
using Appliance.Store.Format;
using Appliance.Store.Meta;

namespace Appliance.Store;

/// <summary>What fsck found. <see cref="Errors"/> is empty for a clean store; each line names what is wrong
/// exactly (object, block, device offset).</summary>
public sealed record FsckReport(IReadOnlyList<string> Errors, IReadOnlyList<string> Notes, long Collections, long Objects,
    long BlocksChecked, long BlocksUsed, long BlocksFree)
{
    public bool IsClean => Errors.Count == 0;

    public override string ToString()
    {
        var lines = new List<string>
        {
            $"{Collections} collections, {Objects} objects, {BlocksUsed} blocks in use, {BlocksFree} free, {BlocksChecked} checksums verified",
        };
        lines.AddRange(Notes.Select(n => "note: " + n));
        lines.AddRange(Errors.Select(e => "ERROR: " + e));
        lines.Add(IsClean ? "clean" : $"{Errors.Count} errors");
        return string.Join('\n', lines);
    }
}

public sealed partial class ObjectStore
{
    /// <summary>
    /// Checks every invariant on a quiesced store (it holds off transactions, then writes a checkpoint, so the index
    /// alone is the state): both superblock copies; the index page by page; the collection records against memory
    /// and against the onodes they count; every onode key (decodes, names an existing collection, is its objects'
    /// key, nid given); every referenced block inside the data area, owned once, in use in the allocator and the data
    /// bitmap, with its crc32c; the persisted bitmap against memory; the allocator against data blocks and index
    /// pages (nothing leaked); the checkpoint read back. Memory does not grow with the objects.
    /// </summary>
    public async Task<FsckReport> FsckAsync(CancellationToken ct = default)
    {
        // A turn after every transaction in flight and before any later one, then a checkpoint: nothing can be
        // published after the checkpoint drained the queue and waited for the in-place writes (the writer never
        // waits for a turn), and no draft holds blocks the block maps do not show, so what fsck sees is quiet.
        var turn = new Turn(this, null);
        await WaitTurnAsync(this, turn, ct);
        try
        {
            await CheckpointAsync(ct);
            var errors = new List<string>();
            var notes = new List<string>(_mountNotes);
            using (var sbuf = new AlignedBuffer(2 * B, B))
            {
                await _device.ReadAsync(0, sbuf.Memory, ct);
                for (var copy = 0; copy < 2; copy++)
                {
                    var sb = Superblock.TryDecode(sbuf.GetSpan().Slice(copy * B, B), out var why);
                    if (sb is null)
                    {
                        errors.Add($"superblock copy {(copy == 0 ? 'A' : 'B')} is damaged: {why}");
                    }
                    else if (sb != _super)
                    {
                        errors.Add($"superblock copy {(copy == 0 ? 'A' : 'B')} differs from the one mounted");
                    }
                }
            }

            // The index: every page reached once and valid, keys in order, counts; read from the device.
            var index = await _index.CheckAsync(ct);
            errors.AddRange(index.Errors.Select(e => "index: " + e));

            var owned = new Allocator(_geo.FirstDataBlock, _geo.DataBlocks);
            foreach (var page in index.Pages.Concat(index.WaitingPages))
            {
                if (page < _geo.FirstDataBlock || page >= _geo.EndDataBlock)
                {
                    errors.Add($"index page {page} is outside the data area");
                }
                else if (!owned.MarkUsed(page))
                {
                    errors.Add($"index page {page} is both in the tree and waiting for release");
                }
                else if (!_alloc.IsUsed(page))
                {
                    errors.Add($"index page {page} is marked free in the allocator");
                }
            }
            var indexPages = _geo.DataBlocks - owned.Free;
            lock (_stateLock)
            {
                // A checkpoint just committed everything: the tree alone is the state.
                if (!_meta.Delta.IsEmpty || _meta.Frozen is not null)
                {
                    errors.Add("index changes still wait in memory after a checkpoint");
                }
                if (_overlay.Count > 0)
                {
                    errors.Add($"{_overlay.Count} blocks still wait to be written in place after a checkpoint");
                }
            }
            var table = new Dictionary<string, long>(StringComparer.Ordinal);
            lock (_stateLock)
            {
                foreach (var (c, n) in _meta.Collections)
                {
                    table[c] = n;
                }
            }
            var colls = await CheckCollectionsAsync(table, errors, ct);
            var (objects, used, verified) = await CheckOnodesAsync(colls, owned, index, errors, ct);
            await CheckBitmapAsync(owned, errors, ct);
            for (var phys = _geo.FirstDataBlock; phys < _geo.EndDataBlock; phys++)
            {
                if (_alloc.IsUsed(phys) && !owned.IsUsed(phys))
                {
                    errors.Add($"device block {phys} is marked in use but no object or index page references it (leaked)");
                }
            }
            await CheckDurableStateAsync(errors, ct);
            notes.Add($"index: {index.Entries} entries, {index.Pages.Count} pages, height {_index.Height}, {index.WaitingPages.Count} pages waiting for release ({indexPages} blocks in all)");
            return new FsckReport(errors, notes, colls.Count, objects, verified, used + indexPages, _alloc.Free);
        }
        finally
        {
            turn.End(this);
        }
    }

    /// <summary>The collection keys of the index against the table in memory (names and object counts).</summary>
    private async Task<Dictionary<string, long>> CheckCollectionsAsync(Dictionary<string, long> table, List<string> errors, CancellationToken ct)
    {
        var colls = new Dictionary<string, long>(StringComparer.Ordinal);
        var cursor = _index.Scan(MetaKeys.CollectionsStart, MetaKeys.CollectionsEnd);
        while (await cursor.MoveNextAsync(ct))
        {
            var c = MetaKeys.CollectionOf(cursor.Key.Span);
            try
            {
                colls[c] = MetaState.DecodeCollection(c, cursor.Value.Span);
            }
            catch (CorruptionException e)
            {
                errors.Add($"index: {e.Message}");
                colls[c] = -1;
            }
        }
        foreach (var c in colls.Keys.Union(table.Keys).Order(StringComparer.Ordinal))
        {
            if (!colls.TryGetValue(c, out var onDisk))
            {
                errors.Add($"collection {c} is in memory but not in the index");
            }
            else if (!table.TryGetValue(c, out var inMemory))
            {
                errors.Add($"collection {c} is in the index but not in memory");
            }
            else if (onDisk != inMemory)
            {
                errors.Add($"collection {c}: {onDisk} objects in the index's collection record, {inMemory} in memory");
            }
        }
        return colls;
    }

    /// <summary>Every onode key of the index, in key order (the listing order): it decodes, names an existing
    /// collection, is the key its objects' ids give; each object's nid and block map are valid, its blocks inside the
    /// data area, owned once, in use in the allocator and in the data bitmap, and their data has their crc32c (read in
    /// runs, object by object: memory does not grow with the store). Counts per collection match the records.</summary>
    private async Task<(long Objects, long Used, long Verified)> CheckOnodesAsync(Dictionary<string, long> colls, Allocator owned,
        Index.IndexCheckReport index, List<string> errors, CancellationToken ct)
    {
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        long objects = 0, used = 0, verified = 0;
        ulong lastNid;
        lock (_stateLock)
        {
            lastNid = _meta.LastNid;
        }
        var cursor = _index.Scan(MetaKeys.OnodesStart, MetaKeys.OnodesEnd);
        using var buf = new AlignedBuffer(256 * B, B);
        while (await cursor.MoveNextAsync(ct))
        {
            var key = cursor.Key.ToArray();
            if (MetaKeys.DecodeOnodeKey(key) is not { } k)
            {
                errors.Add($"index key {Convert.ToHexString(key[..Math.Min(key.Length, 40)])} is not an onode key");
                continue;
            }
            if (!colls.ContainsKey(k.Collection))
            {
                errors.Add($"objects under key {k.NamePrefix}#{ObjectId.ReverseBits(k.SortKey):x8} of collection {k.Collection}, which does not exist");
            }
            OnodeSlot slot;
            try
            {
                slot = OnodeCodec.Decode(key, cursor.Value.Span, _geo.FirstDataBlock, _geo.EndDataBlock);
            }
            catch (CorruptionException e)
            {
                errors.Add($"collection {k.Collection}: {e.Message}");
                continue;
            }
            foreach (var on in slot.Objects)
            {
                objects++;
                counts[k.Collection] = counts.GetValueOrDefault(k.Collection) + 1;
                var id = $"{k.Collection}/{on.Id}";
                if (!MetaKeys.OnodeKey(k.Collection, on.Id).AsSpan().SequenceEqual(key))
                {
                    errors.Add($"{id}: filed under another object's key");
                }
                if (on.Nid > lastNid)
                {
                    errors.Add($"{id}: nid {on.Nid}, the last given is {lastNid}");
                }
                for (var i = 0; i < on.BlockCount; i++)
                {
                    var r = on.Blocks[i];
                    if (r.IsHole)
                    {
                        continue;
                    }
                    used++;
                    if (!owned.MarkUsed(r.Phys))
                    {
                        errors.Add($"device block {r.Phys} is owned more than once; one owner is {id} block {i}"
                            + (index.Pages.Contains(r.Phys) || index.WaitingPages.Contains(r.Phys) ? ", another the index" : ""));
                    }
                    else if (!_alloc.IsUsed(r.Phys))
                    {
                        errors.Add($"{id}: block {i} at device block {r.Phys} is marked free in the allocator");
                    }
                    if (!_meta.Bitmap.IsUsed(r.Phys))
                    {
                        errors.Add($"{id}: block {i} at device block {r.Phys} is not in the data bitmap");
                    }
                }
                verified += await VerifyBlocksAsync(id, on, buf, errors, ct);
            }
        }
        foreach (var (c, n) in colls)
        {
            if (n >= 0 && counts.GetValueOrDefault(c) != n)
            {
                errors.Add($"collection {c}: its record counts {n} objects, the index holds {counts.GetValueOrDefault(c)}");
            }
        }
        return (objects, used, verified);
    }

    /// <summary>Checks the crc32c of every mapped block of <paramref name="on"/>, reading runs of adjacent blocks.</summary>
    private async Task<long> VerifyBlocksAsync(string id, Onode on, AlignedBuffer buf, List<string> errors, CancellationToken ct)
    {
        long verified = 0;
        var blocks = on.Blocks.ToArray();
        for (var i = 0; i < blocks.Length;)
        {
            if (blocks[i].IsHole)
            {
                i++;
                continue;
            }
            var j = i + 1;
            while (j < blocks.Length && j - i < 256 && !blocks[j].IsHole && blocks[j].Phys == blocks[j - 1].Phys + 1)
            {
                j++;
            }
            await _device.ReadAsync(blocks[i].Phys * B, buf.Memory[..((j - i) * B)], ct);
            for (var k = i; k < j; k++)
            {
                var crc = Crc32C.Compute(buf.GetSpan().Slice((k - i) * B, B));
                if (crc != blocks[k].Crc)
                {
                    errors.Add($"{id}: block {k} at device offset {blocks[k].Phys * B}: checksum mismatch (stored {blocks[k].Crc:x8}, data {crc:x8})");
                }
                verified++;
            }
            i = j;
        }
        return verified;
    }

    /// <summary>The data bitmap marks exactly the blocks objects reference, and the index holds it as memory does.</summary>
    private async Task CheckBitmapAsync(Allocator owned, List<string> errors, CancellationToken ct)
    {
        var reported = 0;
        foreach (var phys in _meta.Bitmap.Marked())
        {
            if (!owned.IsUsed(phys) && reported++ < 20)
            {
                errors.Add($"device block {phys} is in the data bitmap but no object references it");
            }
        }
        var seen = new HashSet<int>();
        var cursor = _index.Scan(MetaKeys.AllocStart, MetaKeys.AllocEnd);
        while (await cursor.MoveNextAsync(ct))
        {
            var chunk = MetaKeys.AllocChunkOf(cursor.Key.Span);
            if (chunk < 0 || chunk >= _meta.Bitmap.Chunks)
            {
                errors.Add($"index: data bitmap chunk {chunk} is outside the data area");
                continue;
            }
            seen.Add(chunk);
            if (!cursor.Value.Span.SequenceEqual(_meta.Bitmap.ChunkValue(chunk)))
            {
                errors.Add($"index: data bitmap chunk {chunk} differs from memory");
            }
        }
        for (var chunk = 0; chunk < _meta.Bitmap.Chunks; chunk++)
        {
            if (!seen.Contains(chunk) && _meta.Bitmap.ChunkValue(chunk).AsSpan().IndexOfAnyExcept((byte)0) >= 0)
            {
                errors.Add($"index: data bitmap chunk {chunk} is missing but memory marks blocks in it");
            }
        }
    }

    /// <summary>Reads back the checkpoint fsck just wrote and compares it with memory: generation, counters and the
    /// index root (what a restart would load is what runs now).</summary>
    private async Task CheckDurableStateAsync(List<string> errors, CancellationToken ct)
    {
        try
        {
            var ck = await ReadNewestCheckpointAsync(_device, _geo, _seed, [], ct);
            if (ck.H.Generation != _generation)
            {
                errors.Add($"the newest checkpoint on the device is generation {ck.H.Generation}, the one just written is {_generation}");
                return;
            }
            var disk = DecodeCheckpoint(ck.Payload, _geo, _seed).Item1;
            if (disk.IndexRoot != _index.Committed)
            {
                errors.Add($"the checkpoint just written names index root {disk.IndexRoot}, the index's last commit is {_index.Committed}");
            }
            lock (_stateLock)
            {
                if (disk.LastNid != _meta.LastNid || disk.ClientBytesWritten != _meta.ClientBytesWritten)
                {
                    errors.Add($"the checkpoint just written holds last nid {disk.LastNid} and {disk.ClientBytesWritten} client bytes, memory {_meta.LastNid} and {_meta.ClientBytesWritten}");
                }
            }
        }
        catch (CorruptionException e)
        {
            errors.Add($"the checkpoint just written does not read back: {e.Message}");
        }
    }
}
