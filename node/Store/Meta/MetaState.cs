using Appliance.Store.Format;
using Appliance.Store.Index;

namespace Appliance.Store.Meta;

/// <summary>
/// The metadata of a store: collections and their onodes in memory, omap in the index (<see cref="Delta"/> holds
/// the omap changes since the last index commit; the tree holds the rest). Changed only by <see cref="Apply"/>
/// (redo entries); the in-memory part is saved whole by <see cref="EncodeCheckpoint"/> and loaded by
/// <see cref="DecodeCheckpoint"/>.
/// Not thread-safe: the store applies one transaction at a time (its publish gate), under its state lock, which
/// readers take too; a transaction being prepared reads, without that lock, only the collections it holds turns on
/// (which nothing else changes meanwhile), and the collection table under the lock.
/// </summary>
internal sealed class MetaState(long firstDataBlock, long endDataBlock)
{
    /// <summary>3: onodes carry a nid and their omap is in the index (2 held the omap inline; not read: the
    /// superblock's format version refuses such a store first).</summary>
    private const int CheckpointVersion = 3;

    public Dictionary<string, Collection> Collections { get; } = new(StringComparer.Ordinal);

    /// <summary>Exact size of <see cref="EncodeCheckpoint"/>'s output, maintained as entries apply.</summary>
    public long EncodedBytes { get; private set; } = 4 + 8 + 8 + 8 + 4;

    /// <summary>Client bytes written over the store's life (persisted by checkpoints, for write amplification).</summary>
    public long ClientBytesWritten { get; set; }

    /// <summary>Device bytes written over the store's life (persisted by checkpoints).</summary>
    public long DeviceBytesWritten { get; set; }

    /// <summary>The last nid given to an object (nids are never reused: an object's omap keys start with it).</summary>
    public ulong LastNid { get; set; }

    /// <summary>Omap changes since the last freeze (where <see cref="Apply"/> writes).</summary>
    public OmapDelta Delta { get; private set; } = new();

    /// <summary>The layer a checkpoint is writing into the tree, read between <see cref="Delta"/> and the tree until
    /// the commit is durable; else null.</summary>
    public OmapDelta? Frozen { get; private set; }

    /// <summary>Counts freezes: a reader that saw it change while it read the tree retries (the tree may then hold
    /// changes newer than the layers it took).</summary>
    public long DeltaEpoch { get; private set; }

    /// <summary>The index tree's height at its last commit (for the page reserve estimates).</summary>
    public int IndexHeight { get; set; }

    /// <summary>The root of the index as of the checkpoint this state was loaded from.</summary>
    public RootDescriptor IndexRoot { get; set; } = RootDescriptor.Empty;

    /// <summary>As loaded from a checkpoint: the blocks the index owned then (runs), of which
    /// <see cref="IndexWaitingPages"/> were replaced by the last commit and wait for the next checkpoint.</summary>
    public List<(long First, int Length)> IndexOwnedRuns { get; set; } = [];

    public List<long> IndexWaitingPages { get; set; } = [];

    /// <summary>Starts a checkpoint's index commit: the current changes become <see cref="Frozen"/>.</summary>
    public OmapDelta Freeze()
    {
        if (Frozen is not null)
        {
            throw new InvalidOperationException("a frozen omap layer is still being committed");
        }
        Frozen = Delta;
        Delta = new OmapDelta();
        DeltaEpoch++;
        return Frozen;
    }

    /// <summary>The frozen layer is in the committed, durable tree.</summary>
    public void DropFrozen() => Frozen = null;

    public Onode? Find(string c, ObjectId o) =>
        Collections.TryGetValue(c, out var coll) && coll.Objects.TryGetValue(o, out var on) ? on : null;

    /// <summary>Applies every redo entry in <paramref name="entries"/>. Any inconsistency (an entry naming a
    /// missing object, a block outside the data area) is corruption: the preparer never emits one.</summary>
    public void Apply(ReadOnlySpan<byte> entries, IRedoSink sink, string where)
    {
        var r = new SpanReader(entries, where);
        while (!r.AtEnd)
        {
            var kind = (RedoKind)r.U8();
            switch (kind)
            {
                case RedoKind.CollCreate:
                {
                    var c = r.Str();
                    if (!Collections.TryAdd(c, new Collection(c)))
                    {
                        r.Fail($"creates collection {c}, which exists");
                    }
                    EncodedBytes += ByteWriter.StrSize(c) + 8;
                    break;
                }
                case RedoKind.CollRemove:
                {
                    var c = r.Str();
                    if (!Collections.TryGetValue(c, out var coll) || coll.Objects.Count != 0)
                    {
                        r.Fail($"removes collection {c}, which is missing or not empty");
                    }
                    Collections.Remove(c);
                    EncodedBytes -= ByteWriter.StrSize(c) + 8;
                    break;
                }
                case RedoKind.ObjCreate:
                {
                    var (coll, name) = CollOf(ref r);
                    if (coll.Objects.ContainsKey(name))
                    {
                        r.Fail($"creates {coll.Name}/{name}, which exists");
                    }
                    var on = new Onode(name) { Nid = ++LastNid };
                    coll.Objects.Add(name, on);
                    coll.Sorted.Add(on);
                    EncodedBytes += on.EncodedSize;
                    break;
                }
                case RedoKind.ObjRemove:
                {
                    var (coll, on) = ObjOf(ref r);
                    EncodedBytes -= on.EncodedSize;
                    if (on.HasOmap)
                    {
                        Delta.DeleteRange(on.Nid, IndexKeys.OmapStart(on.Nid), IndexKeys.OmapEnd(on.Nid), IndexHeight);
                    }
                    on.Resize(0, sink.Freed);
                    coll.Objects.Remove(on.Id);
                    coll.Sorted.Remove(on);
                    break;
                }
                case RedoKind.ObjSize:
                {
                    var (_, on) = ObjOf(ref r);
                    var size = r.I64();
                    if (size < 0 || size > MaxObjectSize)
                    {
                        r.Fail($"sets size {size}");
                    }
                    EncodedBytes -= on.EncodedSize;
                    on.Resize(checked((int)((size + Superblock.BlockSize - 1) / Superblock.BlockSize)), sink.Freed);
                    on.Size = size;
                    EncodedBytes += on.EncodedSize;
                    break;
                }
                case RedoKind.Blocks:
                {
                    var (coll, on) = ObjOf(ref r);
                    var first = r.I64();
                    var count = r.U32();
                    if (first < 0 || first + count > on.BlockCount)
                    {
                        r.Fail($"maps blocks {first}+{count} of {coll.Name}/{on.Id}, which has {on.BlockCount}");
                    }
                    for (var i = 0; i < count; i++)
                    {
                        var phys = r.I64();
                        var crc = r.U32();
                        if (phys != 0 && (phys < firstDataBlock || phys >= endDataBlock))
                        {
                            r.Fail($"maps device block {phys}, outside the data area [{firstDataBlock}, {endDataBlock})");
                        }
                        ref var slot = ref on.Block(first + i);
                        if (slot.Phys != 0 && slot.Phys != phys)
                        {
                            sink.Freed(slot.Phys);
                        }
                        slot = new BlockRef(phys, crc);
                    }
                    break;
                }
                case RedoKind.Data:
                {
                    var phys = r.I64();
                    if (phys < firstDataBlock || phys >= endDataBlock)
                    {
                        r.Fail($"deferred write to device block {phys}, outside the data area");
                    }
                    sink.Data(phys, r.Raw(Superblock.BlockSize));
                    break;
                }
                case RedoKind.XattrSet:
                {
                    var (_, on) = ObjOf(ref r);
                    var k = r.Str();
                    var v = r.Bytes();
                    if (on.Xattrs.Remove(k, out var old))
                    {
                        on.XattrBytes -= Onode.EntryBytes(k, old.Length);
                        EncodedBytes -= Onode.EntryBytes(k, old.Length);
                    }
                    on.Xattrs[k] = v;
                    on.XattrBytes += Onode.EntryBytes(k, v.Length);
                    EncodedBytes += Onode.EntryBytes(k, v.Length);
                    break;
                }
                case RedoKind.XattrRemove:
                {
                    var (_, on) = ObjOf(ref r);
                    var k = r.Str();
                    if (on.Xattrs.Remove(k, out var old))
                    {
                        on.XattrBytes -= Onode.EntryBytes(k, old.Length);
                        EncodedBytes -= Onode.EntryBytes(k, old.Length);
                    }
                    break;
                }
                case RedoKind.OmapSet:
                {
                    var (_, on) = ObjOf(ref r);
                    var k = r.Str();
                    var v = r.Bytes();
                    Delta.Put(IndexKeys.OmapKey(on.Nid, k), v, IndexHeight);
                    on.HasOmap = true;
                    break;
                }
                case RedoKind.OmapRemove:
                {
                    var (_, on) = ObjOf(ref r);
                    var k = r.Str();
                    if (on.HasOmap)
                    {
                        Delta.Delete(IndexKeys.OmapKey(on.Nid, k), IndexHeight);
                    }
                    break;
                }
                case RedoKind.OmapClear:
                {
                    var (_, on) = ObjOf(ref r);
                    if (on.HasOmap)
                    {
                        Delta.DeleteRange(on.Nid, IndexKeys.OmapStart(on.Nid), IndexKeys.OmapEnd(on.Nid), IndexHeight);
                        on.HasOmap = false;
                    }
                    break;
                }
                case RedoKind.ObjMove:
                {
                    var (coll, on) = ObjOf(ref r);
                    var dc = r.Str();
                    var d = Id(ref r);
                    if (!Collections.TryGetValue(dc, out var dcoll))
                    {
                        r.Fail($"moves {coll.Name}/{on.Id} to collection {dc}, which does not exist");
                    }
                    if (dcoll!.Objects.ContainsKey(d))
                    {
                        r.Fail($"moves {coll.Name}/{on.Id} onto {dc}/{d}, which exists");
                    }
                    EncodedBytes -= on.EncodedSize;
                    coll.Objects.Remove(on.Id);
                    coll.Sorted.Remove(on);
                    var moved = on.Id == d ? on : on.Renamed(d);
                    dcoll.Objects.Add(d, moved);
                    dcoll.Sorted.Add(moved);
                    EncodedBytes += moved.EncodedSize;
                    break;
                }
                case RedoKind.CollSplit:
                {
                    var sc = r.Str();
                    var bits = r.U8();
                    var match = r.U32();
                    var dc = r.Str();
                    if (bits > 32 || (match & ~SortKeyRange.Mask(bits)) != 0 || sc == dc)
                    {
                        r.Fail($"splits {sc} by {bits} bits = {match:x} into {dc}");
                    }
                    var scoll = Collections.GetValueOrDefault(sc);
                    var dcoll = Collections.GetValueOrDefault(dc);
                    if (scoll is null || dcoll is null)
                    {
                        r.Fail($"splits {sc} into {dc}, one of which does not exist");
                    }
                    foreach (var on in scoll!.InRange(SortKeyRange.ForHashBits(bits, match)).ToList())
                    {
                        if (!dcoll!.Objects.TryAdd(on.Id, on))
                        {
                            r.Fail($"splits {sc}/{on.Id} into {dc}, which holds it");
                        }
                        dcoll.Sorted.Add(on);
                        scoll.Objects.Remove(on.Id);
                        scoll.Sorted.Remove(on);
                    }
                    break;
                }
                case RedoKind.OmapRemoveRange:
                {
                    var (_, on) = ObjOf(ref r);
                    var from = r.Str();
                    var to = r.Str();
                    if (on.HasOmap && string.CompareOrdinal(from, to) < 0)
                    {
                        Delta.DeleteRange(on.Nid, IndexKeys.OmapKey(on.Nid, from), IndexKeys.OmapKey(on.Nid, to), IndexHeight);
                    }
                    break;
                }
                default:
                    r.Fail($"unknown redo entry kind {(byte)kind}");
                    break;
            }
        }
    }

    /// <summary>Largest object size: the block map index is an int.</summary>
    public const long MaxObjectSize = (long)int.MaxValue * Superblock.BlockSize;

    private static ObjectId Id(ref SpanReader r)
    {
        var hash = r.U32();
        return new ObjectId(hash, r.Str());
    }

    private (Collection, ObjectId) CollOf(ref SpanReader r)
    {
        var c = r.Str();
        var o = Id(ref r);
        if (!Collections.TryGetValue(c, out var coll))
        {
            r.Fail($"names collection {c}, which does not exist");
        }
        return (coll!, o);
    }

    private (Collection, Onode) ObjOf(ref SpanReader r)
    {
        var (coll, name) = CollOf(ref r);
        if (!coll.Objects.TryGetValue(name, out var on))
        {
            r.Fail($"names object {coll.Name}/{name}, which does not exist");
        }
        return (coll, on!);
    }

    /// <summary>Writes the whole state: version, counters, then every collection with its onodes.</summary>
    public void EncodeCheckpoint(ByteWriter w)
    {
        w.U32(CheckpointVersion);
        w.I64(ClientBytesWritten);
        w.I64(DeviceBytesWritten);
        w.U64(LastNid);
        w.U32((uint)Collections.Count);
        foreach (var coll in Collections.Values)
        {
            w.Str(coll.Name);
            w.I64(coll.Objects.Count);
            foreach (var on in coll.Sorted)
            {
                w.Str(on.Name);
                w.U32(on.Hash);
                w.U64(on.Nid);
                w.U8(on.HasOmap ? (byte)1 : (byte)0);
                w.I64(on.Size);
                w.U32((uint)on.BlockCount);
                foreach (var b in on.Blocks)
                {
                    w.I64(b.Phys);
                    w.U32(b.Crc);
                }
                w.U32((uint)on.Xattrs.Count);
                foreach (var (k, v) in on.Xattrs)
                {
                    w.Str(k);
                    w.Bytes(v);
                }
            }
        }
    }

    public static MetaState DecodeCheckpoint(ReadOnlySpan<byte> data, long firstDataBlock, long endDataBlock)
    {
        var s = new MetaState(firstDataBlock, endDataBlock);
        var r = new SpanReader(data, "checkpoint");
        var version = r.U32();
        if (version != CheckpointVersion)
        {
            r.Fail($"checkpoint version {version} is not {CheckpointVersion}");
        }
        s.ClientBytesWritten = r.I64();
        s.DeviceBytesWritten = r.I64();
        s.LastNid = r.U64();
        var colls = r.U32();
        for (var i = 0; i < colls; i++)
        {
            var coll = new Collection(r.Str());
            if (!s.Collections.TryAdd(coll.Name, coll))
            {
                r.Fail($"collection {coll.Name} twice");
            }
            s.EncodedBytes += ByteWriter.StrSize(coll.Name) + 8;
            var objects = r.I64();
            Onode? previous = null;
            for (var j = 0L; j < objects; j++)
            {
                var name = r.Str();
                var on = new Onode(new ObjectId(r.U32(), name));
                // Written in listing order: anything else is damage (and would mean a different order of replay).
                if (previous is not null && BitwiseOrder.Instance.Compare(previous, on) >= 0)
                {
                    r.Fail($"object {coll.Name}/{on.Id} is out of order after {previous.Id}");
                }
                previous = on;
                on.Nid = r.U64();
                if (on.Nid == 0 || on.Nid > s.LastNid)
                {
                    r.Fail($"object {coll.Name}/{on.Id} has nid {on.Nid}, the last given is {s.LastNid}");
                }
                var flags = r.U8();
                if (flags > 1)
                {
                    r.Fail($"object {coll.Name}/{on.Id} has flags {flags}");
                }
                on.HasOmap = flags == 1;
                on.Size = r.I64();
                var count = (int)r.U32();
                if (on.Size < 0 || count != (on.Size + Superblock.BlockSize - 1) / Superblock.BlockSize)
                {
                    r.Fail($"object {coll.Name}/{name}: {count} blocks for size {on.Size}");
                }
                on.Resize(count, _ => { });
                for (var b = 0; b < count; b++)
                {
                    var phys = r.I64();
                    if (phys != 0 && (phys < firstDataBlock || phys >= endDataBlock))
                    {
                        r.Fail($"object {coll.Name}/{name} block {b} at device block {phys}, outside the data area");
                    }
                    on.Block(b) = new BlockRef(phys, r.U32());
                }
                var xattrs = r.U32();
                for (var x = 0; x < xattrs; x++)
                {
                    var k = r.Str();
                    var v = r.Bytes();
                    on.Xattrs[k] = v;
                    on.XattrBytes += Onode.EntryBytes(k, v.Length);
                }
                if (!coll.Objects.TryAdd(on.Id, on) || !coll.Sorted.Add(on))
                {
                    r.Fail($"object {coll.Name}/{name} twice");
                }
                s.EncodedBytes += on.EncodedSize;
            }
        }
        if (!r.AtEnd)
        {
            r.Fail("trailing bytes");
        }
        return s;
    }
}
