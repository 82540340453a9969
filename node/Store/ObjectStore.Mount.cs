using Appliance.Platform.Checksums;
using Appliance.Platform.Devices;
using Appliance.Store.Alloc;
using Appliance.Store.Format;
using Appliance.Store.Index;
using Appliance.Store.Journal;
using Appliance.Store.Meta;

namespace Appliance.Store;

public sealed partial class ObjectStore
{
    /// <summary>
    /// Mounts the store on <paramref name="device"/>: reads the superblock, loads the newest valid checkpoint,
    /// replays the journal after it (a torn tail is discarded; a bad record followed by later valid ones is
    /// corruption and mount refuses), writes the replayed deferred data in place, rebuilds the allocator, writes a
    /// fresh checkpoint and starts the writer. The caller keeps ownership of the device.
    /// </summary>
    public static async Task<ObjectStore> MountAsync(IBlockDevice device, StoreOptions? options = null, CancellationToken ct = default)
    {
        CheckDevice(device);
        var notes = new List<string>();
        var sb = await ReadSuperblockAsync(device, notes, ct);
        var geo = sb.Geometry;
        if (geo.DeviceSize > device.Size)
        {
            throw new CorruptionException($"{device.Name}: the superblock describes {geo.DeviceSize} bytes but the device has {device.Size}");
        }
        var seed = sb.CrcSeed;

        var ck = await ReadNewestCheckpointAsync(device, geo, seed, notes, ct);
        var (meta, pendingData) = DecodeCheckpoint(ck.Payload, geo, seed);
        options ??= new StoreOptions();

        // The index of that checkpoint: its root must be the page that commit wrote; its pages are in use.
        var alloc = new Allocator(geo.FirstDataBlock, geo.DataBlocks);
        var pages = new IndexPageAllocator(alloc);
        var index = await OpenIndexAsync(device, geo, seed, meta, pages, options, ct);
        try
        {
            meta.IndexHeight = index.Height;
            return await MountWithIndexAsync(device, options, sb, ck, meta, pendingData, alloc, pages, index, notes, ct);
        }
        catch
        {
            await index.DisposeAsync();
            throw;
        }
    }

    /// <summary>Opens the checkpoint's index (one page read: the root, checked against the descriptor) and marks the
    /// blocks the checkpoint lists as the index's (its tree and the pages still waiting for release) in use: the
    /// tree itself is not read. fsck checks that the list and the tree agree.</summary>
    private static async Task<BPlusTree> OpenIndexAsync(IBlockDevice device, Geometry geo, uint seed, MetaState meta, IndexPageAllocator pages,
        StoreOptions options, CancellationToken ct)
    {
        var root = meta.IndexRoot;
        if (root.RootPage >= 0 && (root.RootPage < geo.FirstDataBlock || root.RootPage >= geo.EndDataBlock))
        {
            throw new CorruptionException($"{device.Name}: the index root is device block {root.RootPage}, outside the data area");
        }
        foreach (var (first, length) in meta.IndexOwnedRuns)
        {
            if (length <= 0 || first < geo.FirstDataBlock || first + length > geo.EndDataBlock)
            {
                throw new CorruptionException($"{device.Name}: the checkpoint lists index blocks {first}+{length}, outside the data area");
            }
            for (var p = first; p < first + length; p++)
            {
                if (!pages.MarkOwned(p))
                {
                    throw new CorruptionException($"{device.Name}: the checkpoint lists index block {p} twice");
                }
            }
        }
        if (root.RootPage >= 0 && !pages.IsAllocated(root.RootPage))
        {
            throw new CorruptionException($"{device.Name}: the index root {root.RootPage} is not among the index's blocks the checkpoint lists");
        }
        foreach (var p in meta.IndexWaitingPages)
        {
            if (p < geo.FirstDataBlock || p >= geo.EndDataBlock || !pages.IsAllocated(p))
            {
                throw new CorruptionException($"{device.Name}: the checkpoint lists index block {p} as waiting for release but not as the index's");
            }
        }
        return await BPlusTree.OpenAsync(device, pages, root,
            new IndexOptions { CacheBytes = Math.Max(options.IndexCacheBytes, BPlusTree.MinCachePages * B), CrcSeed = seed }, ct);
    }

    private static async Task<ObjectStore> MountWithIndexAsync(IBlockDevice device, StoreOptions options, Superblock sb,
        (CheckpointHeader.Header H, int Slot, byte[] Payload) ck, MetaState meta, List<(long, byte[])> pendingData, Allocator alloc,
        IndexPageAllocator pages, BPlusTree index, List<string> notes, CancellationToken ct)
    {
        var geo = sb.Geometry;
        var seed = sb.CrcSeed;
        var store = new ObjectStore(device, options, sb, meta, alloc, index, pages, notes)
        {
            _generation = ck.H.Generation,
            _slot = ck.Slot,
        };
        await store.LoadTablesAsync(ct);
        var replay = new ReplaySink();
        // Deferred data a checkpoint carried for transactions it covered: as if replayed first.
        foreach (var (phys, data) in pendingData)
        {
            replay.Data(phys, data);
        }
        var source = new StoreSource(store);
        var (head, nextSeq, records, tornHeaderAt, tornWhy) = await ReplayJournalAsync(device, geo, seed, ck.H.JournalSeq, async (entries, where) =>
        {
            // Each transaction reads the state the ones before it left (the tree under the delta) and adds to it.
            var t = new TxnApply(meta, source, where);
            await t.RunAsync(entries);
            meta.Commit(t, replay);
        }, ct);
        if (records > 0)
        {
            notes.Add($"replayed {records} journal records after checkpoint generation {ck.H.Generation}");
        }

        // Deferred data of replayed records goes to its blocks now, so the running store starts with no overlay.
        foreach (var (phys, data) in replay.Overlay)
        {
            using var buf = new AlignedBuffer(B, B);
            data.CopyTo(buf.GetSpan());
            await device.WriteAsync(phys * B, buf.Memory, ct);
        }
        if (tornHeaderAt is { } torn)
        {
            // Erase the torn record's header: the new epoch restarts at offset 0 with the same seq, and a stale
            // header with that seq elsewhere would later look like damage in the middle of the journal.
            using var zero = new AlignedBuffer(B, B);
            await device.WriteAsync(geo.JournalOffset + torn, zero.Memory, ct);
            notes.Add($"discarded a torn journal record at journal offset {torn}: {tornWhy}");
        }
        await device.FlushAsync(ct);

        // The allocator: the data blocks of the bitmap (as the checkpoint's index holds it, plus replay) and the
        // index's pages, none twice.
        foreach (var phys in meta.Bitmap.Marked())
        {
            if (!alloc.MarkUsed(phys))
            {
                throw new CorruptionException($"{device.Name}: device block {phys} is both object data and an index page");
            }
        }

        store._nextSeq = nextSeq;
        store._journalHead = head;
        // The other slot is older (or invalid): nothing this index replaced before its open is waiting anyway.
        store._slotIndexGeneration[0] = store._slotIndexGeneration[1] = meta.IndexRoot.Generation;
        alloc.Reserved = store.IndexReserve();
        // A fresh checkpoint: the journal restarts empty and the next mount replays nothing from this one.
        // Pages the loaded checkpoint's commit replaced: once this checkpoint is durable the older slot no longer
        // holds a root that reaches them (the checkpoint leaves them out of its list and releases them).
        store._releaseAfterCheckpoint = meta.IndexWaitingPages;
        meta.IndexWaitingPages = [];
        meta.IndexOwnedRuns = [];
        await store.WriteCheckpointAsync(store.Snapshot(), ct);
        store._writer = Task.Run(store.WriterLoopAsync, CancellationToken.None);
        return store;
    }

    /// <summary>Reads what the store keeps in memory from the index: the collections with their object counts and
    /// the bitmap of data blocks in use. Pages read: those of the collection keys and of the bitmap (a function of
    /// the number of collections and of the device's size, not of the objects).</summary>
    private async Task LoadTablesAsync(CancellationToken ct)
    {
        var colls = _index.Scan(MetaKeys.CollectionsStart, MetaKeys.CollectionsEnd);
        while (await colls.MoveNextAsync(ct))
        {
            var c = MetaKeys.CollectionOf(colls.Key.Span);
            var n = MetaState.DecodeCollection(c, colls.Value.Span);
            _meta.Collections[c] = n;
            _meta.Objects += n;
        }
        var chunks = _index.Scan(MetaKeys.AllocStart, MetaKeys.AllocEnd);
        while (await chunks.MoveNextAsync(ct))
        {
            var chunk = MetaKeys.AllocChunkOf(chunks.Key.Span);
            if (!_meta.Bitmap.Load(chunk, chunks.Value.Span))
            {
                throw new CorruptionException($"{_device.Name}: the index holds data bitmap chunk {chunk} of {chunks.Value.Length} bytes, which does not fit the data area");
            }
        }
    }

    /// <summary>A checkpoint payload: i64 state length, the state, then u32 count of (i64 device block, 4 KiB)
    /// deferred writes of the transactions the checkpoint covered without a journal record.</summary>
    /// <summary>The newest checkpoint that is whole. A torn one (crash while writing it) fails its crc: the other
    /// slot is then the newest whole one, and the journal it needs is intact because the journal restarts only after
    /// a checkpoint is durable.</summary>
    private static async Task<(CheckpointHeader.Header H, int Slot, byte[] Payload)> ReadNewestCheckpointAsync(
        IBlockDevice device, Geometry geo, uint seed, List<string> notes, CancellationToken ct)
    {
        (CheckpointHeader.Header H, int Slot, byte[] Payload)? best = null;
        for (var slot = 0; slot < 2; slot++)
        {
            var off = slot == 0 ? geo.CheckpointOffset0 : geo.CheckpointOffset1;
            using var hb = new AlignedBuffer(B, B);
            await device.ReadAsync(off, hb.Memory, ct);
            if (CheckpointHeader.TryParse(hb.GetSpan(), seed) is not { } h || h.PayloadLength < 0 || h.PayloadLength > geo.CheckpointCapacity)
            {
                continue;
            }
            if (best is { } b && b.H.Generation >= h.Generation)
            {
                continue;
            }
            var len = (int)((h.PayloadLength + B - 1) / B * B);
            using var pb = new AlignedBuffer(Math.Max(len, B), B);
            await device.ReadAsync(off + B, pb.Memory[..len], ct);
            var payload = pb.GetSpan()[..(int)h.PayloadLength];
            if (Crc32C.Compute(payload, seed) != h.PayloadCrc)
            {
                notes.Add($"checkpoint slot {slot} (generation {h.Generation}) fails its checksum; using the other slot");
                continue;
            }
            best = (h, slot, payload.ToArray());
        }
        if (best is not { } ck)
        {
            throw new CorruptionException($"{device.Name}: neither checkpoint slot holds a valid checkpoint");
        }
        return ck;
    }

    /// <summary>A checkpoint payload: i64 state length, the state, u32 count of carried deferred writes (each i64
    /// device block, 4 KiB), the index's root descriptor (40 bytes), u32 count of runs of blocks the index owns (each
    /// i64 first, u32 length), u32 count of those waiting for release (each i64).</summary>
    private static (MetaState, List<(long, byte[])>) DecodeCheckpoint(byte[] payload, Geometry geo, uint seed)
    {
        var r = new SpanReader(payload, "checkpoint");
        var stateLength = r.I64();
        if (stateLength < 0 || stateLength > r.Remaining)
        {
            r.Fail($"state length {stateLength}");
        }
        var meta = MetaState.DecodeCheckpoint(r.Raw((int)stateLength), geo.FirstDataBlock, geo.EndDataBlock);
        var count = r.U32();
        var data = new List<(long, byte[])>();
        for (var i = 0; i < count; i++)
        {
            var phys = r.I64();
            if (phys < geo.FirstDataBlock || phys >= geo.EndDataBlock)
            {
                r.Fail($"deferred write to device block {phys}, outside the data area");
            }
            data.Add((phys, r.Raw(B).ToArray()));
        }
        meta.IndexRoot = RootDescriptor.Decode(r.Raw(RootDescriptor.EncodedSize), seed);
        var runs = r.U32();
        for (var i = 0; i < runs; i++)
        {
            meta.IndexOwnedRuns.Add((r.I64(), (int)r.U32()));
        }
        var waiting = r.U32();
        for (var i = 0; i < waiting; i++)
        {
            meta.IndexWaitingPages.Add(r.I64());
        }
        if (!r.AtEnd)
        {
            r.Fail("trailing bytes");
        }
        return (meta, data);
    }

    /// <summary>What mount noticed and repaired (a damaged superblock copy, a torn journal tail, records replayed).</summary>
    public IReadOnlyList<string> MountNotes => _mountNotes;

    private static async Task<Superblock> ReadSuperblockAsync(IBlockDevice device, List<string> notes, CancellationToken ct)
    {
        using var buf = new AlignedBuffer(2 * B, B);
        await device.ReadAsync(0, buf.Memory, ct);
        var a = Superblock.TryDecode(buf.GetSpan()[..B], out var whyA);
        var b = Superblock.TryDecode(buf.GetSpan()[B..], out var whyB);
        if (a is null && b is null)
        {
            var what = Signatures.Detect(buf.GetSpan());
            throw new NotAStoreException(what is null
                ? $"{device.Name} does not hold an object store ({whyA}); create one with 'appliance store mkfs {device.Name}'"
                : $"{device.Name} holds {what}, not an object store this program can mount ({whyA})");
        }
        if (a is null)
        {
            notes.Add($"superblock copy A is damaged ({whyA}); using copy B");
        }
        else if (b is null)
        {
            notes.Add($"superblock copy B is damaged ({whyB}); using copy A");
        }
        else if (a != b)
        {
            notes.Add("superblock copies differ; using copy A");
        }
        return a ?? b!;
    }

    private sealed class ReplaySink : IRedoSink
    {
        public Dictionary<long, byte[]> Overlay { get; } = [];

        // A block freed after a deferred write to it: a later owner brings its own data (copy-on-write on the
        // device or a later deferred write), so the stale deferred data must not be written over it.
        public void Freed(long phys) => Overlay.Remove(phys);

        public void Data(long phys, ReadOnlySpan<byte> block) => Overlay[phys] = block.ToArray();
    }

    /// <summary>
    /// Replays records from journal offset 0 while each has the expected seq and passes both crcs. Where that stops
    /// is the tail; the rest of the journal must hold no valid record header with a seq at or past the expected one
    /// (only one record is ever unflushed, the tail itself), else the damage is in the middle: refuse.
    /// </summary>
    private static async Task<(long Head, ulong NextSeq, int Records, long? TornHeaderAt, string? TornWhy)> ReplayJournalAsync(
        IBlockDevice device, Geometry geo, uint seed, ulong firstSeq, Func<ReadOnlyMemory<byte>, string, Task> apply, CancellationToken ct)
    {
        var journal = new byte[geo.JournalSize];
        const int chunk = 1 << 20;
        using (var buf = new AlignedBuffer(chunk, B))
        {
            for (long off = 0; off < geo.JournalSize; off += chunk)
            {
                var n = (int)Math.Min(chunk, geo.JournalSize - off);
                await device.ReadAsync(geo.JournalOffset + off, buf.Memory[..n], ct);
                buf.GetSpan()[..n].CopyTo(journal.AsSpan((int)off));
            }
        }
        // First the records that are whole (expected seq, both crcs), then the last one's copy-on-write data, then
        // apply: a last record whose data did not all reach the device was never flushed, never acknowledged.
        long pos = 0;
        var seq = firstSeq;
        long? tornAt = null;
        string? tailWhy = null;
        var found = new List<(long Pos, JournalRecord.Header H)>();
        while (pos < geo.JournalSize)
        {
            var h = JournalRecord.TryParseHeader(journal.AsSpan((int)pos), seed);
            if (h is not { } hdr || hdr.Seq != seq)
            {
                tailWhy = h is null ? "no valid header" : $"seq {h.Value.Seq} instead of {seq}";
                break;
            }
            var size = JournalRecord.SizeOnDisk(hdr.PayloadLength);
            if (pos + size > geo.JournalSize)
            {
                tornAt = pos;
                tailWhy = "record runs past the end of the journal";
                break;
            }
            var payload = journal.AsSpan((int)pos + JournalRecord.HeaderSize, hdr.PayloadLength);
            if (Crc32C.Compute(payload, seed) != hdr.PayloadCrc)
            {
                tornAt = pos;
                tailWhy = "payload checksum mismatch (torn write)";
                break;
            }
            found.Add((pos, hdr));
            pos += size;
            seq++;
        }
        if (found.Count > 0 && found[^1].H.Version >= 2)
        {
            var (lastPos, lastH) = found[^1];
            var r = new SpanReader(journal.AsSpan((int)lastPos + JournalRecord.HeaderSize, lastH.PayloadLength), $"journal record seq {lastH.Seq}");
            var manifest = JournalRecord.ReadManifest(ref r, geo.FirstDataBlock, geo.EndDataBlock);
            if (await FirstMismatchAsync(device, manifest, ct) is { } bad)
            {
                found.RemoveAt(found.Count - 1);
                pos = lastPos;
                seq = lastH.Seq;
                tornAt = lastPos;
                tailWhy = $"its copy-on-write data did not all reach the device (device block {bad})";
            }
        }
        foreach (var (recordPos, hdr) in found)
        {
            foreach (var (entries, where) in Transactions(journal, recordPos, hdr, geo))
            {
                await apply(entries, where);
            }
        }
        var records = found.Count;
        for (long p = 0; p < geo.JournalSize; p += B)
        {
            // The tail position itself may hold the torn record (seq == expected): that is the one allowed.
            if (JournalRecord.TryParseHeader(journal.AsSpan((int)p), seed) is { } other && (other.Seq > seq || other.Seq == seq && p != pos))
            {
                throw new CorruptionException(
                    $"{device.Name}: journal damaged in the middle: the log ends at journal offset {pos} (seq {seq}: {tailWhy}) " +
                    $"but a valid record with seq {other.Seq} follows at journal offset {p}; acknowledged transactions would be lost");
            }
        }
        return (pos, seq, records, tornAt, tornAt is null ? null : tailWhy);
    }

    /// <summary>The transactions of a record (their redo entries, slices of <paramref name="journal"/>).</summary>
    private static List<(ReadOnlyMemory<byte>, string)> Transactions(byte[] journal, long recordPos, JournalRecord.Header hdr, Geometry geo)
    {
        var start = (int)recordPos + JournalRecord.HeaderSize;
        var r = new SpanReader(journal.AsSpan(start, hdr.PayloadLength), $"journal record seq {hdr.Seq}");
        if (hdr.Version >= 2)
        {
            JournalRecord.ReadManifest(ref r, geo.FirstDataBlock, geo.EndDataBlock);
        }
        var result = new List<(ReadOnlyMemory<byte>, string)>();
        for (var t = 0; t < hdr.Transactions; t++)
        {
            var len = (int)r.U32();
            result.Add((journal.AsMemory(start + r.Position, len), $"journal record seq {hdr.Seq} transaction {t}"));
            r.Raw(len);
        }
        if (!r.AtEnd)
        {
            r.Fail("trailing bytes after the transactions");
        }
        return result;
    }

    /// <summary>The first device block of <paramref name="manifest"/> whose content fails its crc, or null.</summary>
    private static async Task<long?> FirstMismatchAsync(IBlockDevice device, List<(long First, uint[] Crcs)> manifest, CancellationToken ct)
    {
        const int chunkBlocks = 256;
        using var buf = new AlignedBuffer(chunkBlocks * B, B);
        var crcs = new uint[chunkBlocks];
        foreach (var (first, expected) in manifest)
        {
            for (var done = 0; done < expected.Length; done += chunkBlocks)
            {
                var n = Math.Min(chunkBlocks, expected.Length - done);
                await device.ReadAsync((first + done) * B, buf.Memory[..(n * B)], ct);
                Crc32C.ComputeBlocks(buf.GetSpan()[..(n * B)], B, crcs);
                for (var k = 0; k < n; k++)
                {
                    if (crcs[k] != expected[done + k])
                    {
                        return first + done + k;
                    }
                }
            }
        }
        return null;
    }
}
