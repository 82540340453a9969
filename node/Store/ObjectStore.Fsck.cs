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
    /// Checks every invariant on a quiesced store (it holds off transactions, then writes a checkpoint):
    /// both superblock copies; each onode's block map against its size and hash; every referenced block inside the
    /// data area and owned once; the checkpoint it writes read back and equal to memory (ids with their hashes, sizes,
    /// block maps); each collection's index (objects by id and in listing order: the same onodes,
    /// each under its own stored id, strictly in bitwise order); the allocator against the block maps (nothing referenced is free, nothing free is
    /// referenced, nothing is leaked); the metadata against the checkpoint capacity; and the crc32c of every block.
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
            var twice = new HashSet<long>();
            long objects = 0, used = 0;
            List<(string C, ObjectId O, int Index, BlockRef Ref)> toVerify = [];
            lock (_stateLock)
            {
                foreach (var coll in _meta.Collections.Values)
                {
                    if (coll.Objects.Count != coll.Sorted.Count)
                    {
                        errors.Add($"collection {coll.Name}: {coll.Objects.Count} objects by id but {coll.Sorted.Count} in listing order");
                    }
                    foreach (var (key, on) in coll.Objects)
                    {
                        if (key != on.Id)
                        {
                            errors.Add($"collection {coll.Name}: object {on.Id} is indexed under id {key}");
                        }
                    }
                    Onode? previous = null;
                    foreach (var on in coll.Sorted)
                    {
                        objects++;
                        var id = $"{coll.Name}/{on.Id}";
                        if (on.Name is null)
                        {
                            errors.Add($"collection {coll.Name}: an object has no name");
                            continue;
                        }
                        if (!coll.Objects.TryGetValue(on.Id, out var byId) || !ReferenceEquals(byId, on))
                        {
                            errors.Add($"{id}: in the listing order of {coll.Name} but not under its id (hash {on.Hash:x8})");
                        }
                        if (previous is not null && previous.Id.CompareTo(on.Id) >= 0)
                        {
                            errors.Add($"{id}: listed after {previous.Id}, out of bitwise order");
                        }
                        previous = on;
                        if (on.BlockCount != (on.Size + B - 1) / B)
                        {
                            errors.Add($"{id}: {on.BlockCount} blocks for size {on.Size}");
                        }
                        for (var i = 0; i < on.BlockCount; i++)
                        {
                            var r = on.Blocks[i];
                            if (r.IsHole)
                            {
                                continue;
                            }
                            if (r.Phys < _geo.FirstDataBlock || r.Phys >= _geo.EndDataBlock)
                            {
                                errors.Add($"{id}: block {i} points at device block {r.Phys}, outside the data area");
                                continue;
                            }
                            used++;
                            if (!owned.MarkUsed(r.Phys))
                            {
                                twice.Add(r.Phys);
                            }
                            else if (!_alloc.IsUsed(r.Phys))
                            {
                                errors.Add($"{id}: block {i} at device block {r.Phys} is marked free in the allocator");
                            }
                            toVerify.Add((coll.Name, on.Id, i, r));
                        }
                    }
                }
                if (twice.Count > 0)
                {
                    foreach (var coll in _meta.Collections.Values)
                    {
                        foreach (var on in coll.Sorted)
                        {
                            for (var i = 0; i < on.BlockCount; i++)
                            {
                                if (twice.Contains(on.Blocks[i].Phys))
                                {
                                    errors.Add($"device block {on.Blocks[i].Phys} is owned more than once; one owner is {coll.Name}/{on.Id} block {i}"
                                        + (index.Pages.Contains(on.Blocks[i].Phys) || index.WaitingPages.Contains(on.Blocks[i].Phys) ? ", another the index" : ""));
                                }
                            }
                        }
                    }
                }
                for (var phys = _geo.FirstDataBlock; phys < _geo.EndDataBlock; phys++)
                {
                    if (_alloc.IsUsed(phys) && !owned.IsUsed(phys))
                    {
                        errors.Add($"device block {phys} is marked in use but no object or index page references it (leaked)");
                    }
                }
                if (_meta.EncodedBytes > _geo.CheckpointCapacity)
                {
                    errors.Add($"metadata of {_meta.EncodedBytes} bytes exceeds the checkpoint capacity {_geo.CheckpointCapacity}");
                }
                if (!_meta.Delta.IsEmpty || _meta.Frozen is not null)
                {
                    errors.Add("omap changes still wait for the index after a checkpoint");
                }
                if (_overlay.Count > 0)
                {
                    errors.Add($"{_overlay.Count} blocks still wait to be written in place after a checkpoint");
                }
            }

            await CheckDurableStateAsync(errors, ct);

            // Checksums, in runs of adjacent blocks.
            toVerify.Sort((a, b) => a.Ref.Phys.CompareTo(b.Ref.Phys));
            const int run = 256;
            using var buf = new AlignedBuffer(run * B, B);
            for (var i = 0; i < toVerify.Count;)
            {
                var j = i + 1;
                while (j < toVerify.Count && j - i < run && toVerify[j].Ref.Phys == toVerify[j - 1].Ref.Phys + 1)
                {
                    j++;
                }
                await _device.ReadAsync(toVerify[i].Ref.Phys * B, buf.Memory[..((j - i) * B)], ct);
                for (var k = i; k < j; k++)
                {
                    var v = toVerify[k];
                    var crc = Crc32C.Compute(buf.GetSpan().Slice((k - i) * B, B));
                    if (crc != v.Ref.Crc)
                    {
                        errors.Add($"{v.C}/{v.O}: block {v.Index} at device offset {v.Ref.Phys * B}: checksum mismatch (stored {v.Ref.Crc:x8}, data {crc:x8})");
                    }
                }
                i = j;
            }
            notes.Add($"index: {index.Entries} entries, {index.Pages.Count} pages, height {_index.Height}, {index.WaitingPages.Count} pages waiting for release ({indexPages} blocks in all)");
            return new FsckReport(errors, notes, _meta.Collections.Count, objects, toVerify.Count, used + indexPages, _alloc.Free);
        }
        finally
        {
            turn.End(this);
        }
    }

    /// <summary>Reads back the checkpoint fsck just wrote and compares it with memory, collection by collection and
    /// object by object in listing order: what a restart would load (ids with their hashes, sizes, block maps) is what
    /// runs now. The store is quiet (fsck's turn is after everything, and the checkpoint drained the queue).</summary>
    private async Task CheckDurableStateAsync(List<string> errors, CancellationToken ct)
    {
        MetaState disk;
        try
        {
            var ck = await ReadNewestCheckpointAsync(_device, _geo, _seed, [], ct);
            if (ck.H.Generation != _generation)
            {
                errors.Add($"the newest checkpoint on the device is generation {ck.H.Generation}, the one just written is {_generation}");
                return;
            }
            disk = DecodeCheckpoint(ck.Payload, _geo, _seed).Item1;
            if (disk.IndexRoot != _index.Committed)
            {
                errors.Add($"the checkpoint just written names index root {disk.IndexRoot}, the index's last commit is {_index.Committed}");
            }
        }
        catch (CorruptionException e)
        {
            errors.Add($"the checkpoint just written does not read back: {e.Message}");
            return;
        }
        lock (_stateLock)
        {
            foreach (var name in _meta.Collections.Keys.Union(disk.Collections.Keys).Order(StringComparer.Ordinal))
            {
                var mem = _meta.Collections.GetValueOrDefault(name);
                var dur = disk.Collections.GetValueOrDefault(name);
                if (mem is null || dur is null)
                {
                    errors.Add($"collection {name} is {(mem is null ? "in the checkpoint but not in memory" : "in memory but not in the checkpoint")}");
                    continue;
                }
                var reported = 0;
                using var a = mem.Sorted.GetEnumerator();
                using var b = dur.Sorted.GetEnumerator();
                while (reported < 10)
                {
                    var more = a.MoveNext();
                    if (more != b.MoveNext())
                    {
                        errors.Add($"collection {name}: {mem.Sorted.Count} objects in memory, {dur.Sorted.Count} in the checkpoint");
                        break;
                    }
                    if (!more)
                    {
                        break;
                    }
                    var (m, d) = (a.Current, b.Current);
                    if (m.Id != d.Id || m.Size != d.Size || m.Nid != d.Nid || m.HasOmap != d.HasOmap || !m.Blocks.SequenceEqual(d.Blocks))
                    {
                        errors.Add($"collection {name}: memory has {m.Id} (hash {m.Hash:x8}, {m.Size} bytes) where the checkpoint has {d.Id} (hash {d.Hash:x8}, {d.Size} bytes)");
                        reported++;
                    }
                }
            }
        }
    }
}
