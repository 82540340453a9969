using Appliance.Store.Format;
using Appliance.Store.Index;

namespace Appliance.Store.Meta;

/// <summary>
/// What the store keeps of its metadata in memory: counters, the collection table (name and object count; a few
/// hundred per OSD), the bitmap of data blocks in use (<see cref="Bitmap"/>), and the index changes since the last
/// index commit (<see cref="Delta"/>, and <see cref="Frozen"/> while a checkpoint commits them). Onodes with their
/// extent maps and xattrs, collections and omap live in the index; transactions change them through
/// <see cref="TxnApply"/> (from redo entries, at publish and at replay) and <see cref="Commit"/>. The checkpoint
/// holds the counters only (<see cref="EncodeCheckpoint"/>).
/// Not thread-safe: the store commits one transaction at a time (its publish gate), under its state lock, which
/// readers take too.
/// </summary>
internal sealed class MetaState(long firstDataBlock, long endDataBlock)
{
    /// <summary>4: onodes, collections and the data bitmap are in the index (3 held them here; not read: the
    /// superblock's format version refuses such a store first).</summary>
    private const int CheckpointVersion = 4;

    public long FirstDataBlock => firstDataBlock;

    public long EndDataBlock => endDataBlock;

    /// <summary>Collections by name, with their object counts (persisted as <c>01 · name</c> keys).</summary>
    public Dictionary<string, long> Collections { get; } = new(StringComparer.Ordinal);

    /// <summary>Objects in all collections (the sum of the collections' counts).</summary>
    public long Objects { get; set; }

    /// <summary>Client bytes written over the store's life (persisted by checkpoints, for write amplification).</summary>
    public long ClientBytesWritten { get; set; }

    /// <summary>Device bytes written over the store's life (persisted by checkpoints).</summary>
    public long DeviceBytesWritten { get; set; }

    /// <summary>The last nid given to an object (nids are never reused: an object's omap keys start with it).</summary>
    public ulong LastNid { get; set; }

    public DataBitmap Bitmap { get; } = new(firstDataBlock, endDataBlock - firstDataBlock);

    /// <summary>Index changes since the last freeze (where <see cref="Commit"/> writes).</summary>
    public IndexDelta Delta { get; private set; } = new();

    /// <summary>The layer a checkpoint is writing into the tree, read between <see cref="Delta"/> and the tree until
    /// the commit is durable; else null.</summary>
    public IndexDelta? Frozen { get; private set; }

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

    /// <summary>Starts a checkpoint's index commit: the bitmap chunks changed since the last one join the current
    /// changes, which become <see cref="Frozen"/>.</summary>
    public IndexDelta Freeze()
    {
        if (Frozen is not null)
        {
            throw new InvalidOperationException("a frozen index layer is still being committed");
        }
        foreach (var (chunk, value) in Bitmap.TakeDirty())
        {
            Delta.Put(MetaKeys.AllocChunkKey(chunk), value, IndexHeight);
        }
        Frozen = Delta;
        Delta = new IndexDelta();
        DeltaEpoch++;
        return Frozen;
    }

    /// <summary>The frozen layer is in the committed, durable tree.</summary>
    public void DropFrozen() => Frozen = null;

    /// <summary>What the layers say of <paramref name="key"/> (an onode or collection key): Known with the value
    /// (null: removed), or not Known (the tree has it). Caller holds the state lock.</summary>
    public (bool Known, byte[]? Value) LookupPoint(byte[] key)
    {
        var r = Delta.LookupPoint(key);
        return r.Known || Frozen is null ? r : Frozen.LookupPoint(key);
    }

    /// <summary>Makes an applied transaction's effects the state: collections, onodes and omap into the delta, the
    /// bitmap, then the device-side effects (freed blocks, deferred data) to <paramref name="sink"/>, in order.</summary>
    public void Commit(TxnApply t, IRedoSink sink)
    {
        LastNid = t.LastNid;
        foreach (var (c, count) in t.CollectionChanges)
        {
            var key = MetaKeys.CollectionKey(c);
            if (count is { } n)
            {
                Objects += n - Collections.GetValueOrDefault(c);
                Collections[c] = n;
                Delta.Put(key, EncodeCollection(n), IndexHeight);
            }
            else
            {
                Collections.Remove(c);
                Delta.Delete(key, IndexHeight);
            }
        }
        foreach (var (key, value) in t.Encoded)
        {
            if (value is null)
            {
                Delta.Delete(key, IndexHeight);
            }
            else
            {
                Delta.Put(key, value, IndexHeight);
            }
        }
        foreach (var op in t.OmapOps)
        {
            switch (op.Kind)
            {
                case TxnApply.OmapOpKind.Put:
                    Delta.Put(op.From, op.Value!, IndexHeight);
                    break;
                case TxnApply.OmapOpKind.Delete:
                    Delta.Delete(op.From, IndexHeight);
                    break;
                default:
                    Delta.DeleteRange(op.Nid, op.From, op.To!, IndexHeight);
                    break;
            }
        }
        foreach (var e in t.Events)
        {
            switch (e.Kind)
            {
                case TxnApply.EventKind.Used:
                    Bitmap.Set(e.Phys, true);
                    break;
                case TxnApply.EventKind.Freed:
                    Bitmap.Set(e.Phys, false);
                    sink.Freed(e.Phys);
                    break;
                default:
                    sink.Data(e.Phys, e.Data.Span);
                    break;
            }
        }
    }

    /// <summary>A collection's value: u8 version (1), i64 object count.</summary>
    public static byte[] EncodeCollection(long objects)
    {
        var v = new byte[9];
        v[0] = 1;
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(v.AsSpan(1), objects);
        return v;
    }

    public static long DecodeCollection(string c, ReadOnlySpan<byte> v)
    {
        if (v.Length != 9 || v[0] != 1)
        {
            throw new CorruptionException($"collection {c}: a value of {v.Length} bytes, version {(v.Length > 0 ? v[0] : -1)}");
        }
        var n = System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(v[1..]);
        return n >= 0 ? n : throw new CorruptionException($"collection {c}: {n} objects");
    }

    /// <summary>Largest object size: the block map index is an int (the onode's value limit bounds it further).</summary>
    public const long MaxObjectSize = (long)int.MaxValue * Superblock.BlockSize;

    /// <summary>The counters: version, client and device bytes, the last nid.</summary>
    public void EncodeCheckpoint(ByteWriter w)
    {
        w.U32(CheckpointVersion);
        w.I64(ClientBytesWritten);
        w.I64(DeviceBytesWritten);
        w.U64(LastNid);
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
        if (!r.AtEnd)
        {
            r.Fail("trailing bytes");
        }
        return s;
    }
}
