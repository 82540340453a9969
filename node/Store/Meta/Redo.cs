using Appliance.Store.Format;

namespace Appliance.Store.Meta;

/// <summary>
/// The redo entries a transaction becomes. A transaction is prepared into a list of these (all decisions made:
/// which blocks, which crcs); the same bytes go into the journal and are applied by
/// <see cref="TxnApply"/> — at run time and at replay, so replay cannot drift from what ran.
/// </summary>
internal enum RedoKind : byte
{
    CollCreate = 1,
    CollRemove = 2,
    ObjCreate = 3,
    ObjRemove = 4,
    /// <summary>Sets the size; blocks past the new end are freed.</summary>
    ObjSize = 5,
    /// <summary>Points a run of block-map entries at device blocks (0 = hole); replaced blocks are freed.</summary>
    Blocks = 6,
    /// <summary>4 KiB of data for a device block, written in place after the record is durable (deferred write).</summary>
    Data = 7,
    XattrSet = 8,
    XattrRemove = 9,
    OmapSet = 10,
    OmapRemove = 11,
    OmapClear = 12,
    /// <summary>Moves an object to another collection and/or id: the onode moves, no data is copied.</summary>
    ObjMove = 13,
    /// <summary>Moves every object of a collection whose hash matches (bits, match) to another collection: one
    /// fixed-size entry whatever the number of objects (replay moves the same objects: it applies to the same state).</summary>
    CollSplit = 14,
    /// <summary>Removes the omap keys in [from, to).</summary>
    OmapRemoveRange = 15,
}

/// <summary>Encoders of redo entries (the decoder is <see cref="RedoEntry.Parse"/>).</summary>
internal static class Redo
{
    public static void CollCreate(ByteWriter w, string c)
    {
        w.U8((byte)RedoKind.CollCreate);
        w.Str(c);
    }

    public static void CollRemove(ByteWriter w, string c)
    {
        w.U8((byte)RedoKind.CollRemove);
        w.Str(c);
    }

    public static void ObjCreate(ByteWriter w, string c, ObjectId o) => Obj(w, RedoKind.ObjCreate, c, o);

    public static void ObjRemove(ByteWriter w, string c, ObjectId o) => Obj(w, RedoKind.ObjRemove, c, o);

    public static void ObjSize(ByteWriter w, string c, ObjectId o, long size)
    {
        Obj(w, RedoKind.ObjSize, c, o);
        w.I64(size);
    }

    public static void Blocks(ByteWriter w, string c, ObjectId o, long first, ReadOnlySpan<BlockRef> refs)
    {
        Obj(w, RedoKind.Blocks, c, o);
        w.I64(first);
        w.U32((uint)refs.Length);
        foreach (var r in refs)
        {
            w.I64(r.Phys);
            w.U32(r.Crc);
        }
    }

    public static void Data(ByteWriter w, long phys, ReadOnlySpan<byte> block)
    {
        w.U8((byte)RedoKind.Data);
        w.I64(phys);
        w.Raw(block[..Superblock.BlockSize]);
    }

    public static void XattrSet(ByteWriter w, string c, ObjectId o, string k, ReadOnlySpan<byte> v)
    {
        Obj(w, RedoKind.XattrSet, c, o);
        w.Str(k);
        w.Bytes(v);
    }

    public static void XattrRemove(ByteWriter w, string c, ObjectId o, string k)
    {
        Obj(w, RedoKind.XattrRemove, c, o);
        w.Str(k);
    }

    public static void OmapSet(ByteWriter w, string c, ObjectId o, string k, ReadOnlySpan<byte> v)
    {
        Obj(w, RedoKind.OmapSet, c, o);
        w.Str(k);
        w.Bytes(v);
    }

    public static void OmapRemove(ByteWriter w, string c, ObjectId o, string k)
    {
        Obj(w, RedoKind.OmapRemove, c, o);
        w.Str(k);
    }

    public static void OmapClear(ByteWriter w, string c, ObjectId o) => Obj(w, RedoKind.OmapClear, c, o);

    public static void ObjMove(ByteWriter w, string c, ObjectId o, string dc, ObjectId d)
    {
        Obj(w, RedoKind.ObjMove, c, o);
        w.Str(dc);
        Id(w, d);
    }

    public static void CollSplit(ByteWriter w, string source, int bits, uint match, string destination)
    {
        w.U8((byte)RedoKind.CollSplit);
        w.Str(source);
        w.U8((byte)bits);
        w.U32(match);
        w.Str(destination);
    }

    public static void OmapRemoveRange(ByteWriter w, string c, ObjectId o, string from, string to)
    {
        Obj(w, RedoKind.OmapRemoveRange, c, o);
        w.Str(from);
        w.Str(to);
    }

    /// <summary>An object entry: kind, collection, then the object's id (u32 hash, name).</summary>
    private static void Obj(ByteWriter w, RedoKind kind, string c, ObjectId o)
    {
        w.U8((byte)kind);
        w.Str(c);
        Id(w, o);
    }

    private static void Id(ByteWriter w, ObjectId o)
    {
        w.U32(o.Hash);
        w.Str(o.Name);
    }
}

/// <summary>One redo entry, decoded (<see cref="Parse"/>); the fields its kind uses are set.</summary>
internal sealed class RedoEntry
{
    public RedoKind Kind;
    public string C = "";
    public ObjectId Id;
    /// <summary>Destination collection and id (move, split).</summary>
    public string? C2;
    public ObjectId Id2;
    public long Size;
    public long First;
    public BlockRef[]? Refs;
    public long Phys;
    /// <summary>Key (xattr, omap; range start).</summary>
    public string? K;
    /// <summary>Range end.</summary>
    public string? K2;
    /// <summary>A value, or deferred data (a slice of the entries, not copied).</summary>
    public ReadOnlyMemory<byte> Value;
    public int Bits;
    public uint Match;

    /// <summary>Decodes the entry at <paramref name="pos"/> and moves past it; a malformed entry is a
    /// <see cref="CorruptionException"/>.</summary>
    public static RedoEntry Parse(ReadOnlyMemory<byte> entries, ref int pos, string where)
    {
        var r = new SpanReader(entries.Span[pos..], where);
        var e = new RedoEntry { Kind = (RedoKind)r.U8() };
        switch (e.Kind)
        {
            case RedoKind.CollCreate:
            case RedoKind.CollRemove:
                e.C = r.Str();
                break;
            case RedoKind.CollSplit:
                e.C = r.Str();
                e.Bits = r.U8();
                e.Match = r.U32();
                e.C2 = r.Str();
                break;
            case RedoKind.Data:
                e.Phys = r.I64();
                r.Raw(Superblock.BlockSize);
                e.Value = entries.Slice(pos + r.Position - Superblock.BlockSize, Superblock.BlockSize);
                break;
            case RedoKind.ObjCreate or RedoKind.ObjRemove or RedoKind.ObjSize or RedoKind.Blocks or RedoKind.XattrSet
                or RedoKind.XattrRemove or RedoKind.OmapSet or RedoKind.OmapRemove or RedoKind.OmapClear or RedoKind.ObjMove
                or RedoKind.OmapRemoveRange:
                e.C = r.Str();
                e.Id = new ObjectId(r.U32(), r.Str());
                switch (e.Kind)
                {
                    case RedoKind.ObjSize:
                        e.Size = r.I64();
                        break;
                    case RedoKind.Blocks:
                        e.First = r.I64();
                        var count = r.U32();
                        if (count > r.Remaining / 12)
                        {
                            r.Fail($"{count} block refs");
                        }
                        e.Refs = new BlockRef[count];
                        for (var i = 0; i < count; i++)
                        {
                            e.Refs[i] = new BlockRef(r.I64(), r.U32());
                        }
                        break;
                    case RedoKind.XattrSet or RedoKind.OmapSet:
                        e.K = r.Str();
                        var length = checked((int)r.U32());
                        r.Raw(length);
                        e.Value = entries.Slice(pos + r.Position - length, length);
                        break;
                    case RedoKind.XattrRemove or RedoKind.OmapRemove:
                        e.K = r.Str();
                        break;
                    case RedoKind.OmapRemoveRange:
                        e.K = r.Str();
                        e.K2 = r.Str();
                        break;
                    case RedoKind.ObjMove:
                        e.C2 = r.Str();
                        e.Id2 = new ObjectId(r.U32(), r.Str());
                        break;
                }
                break;
            default:
                r.Fail($"unknown redo entry kind {(byte)e.Kind}");
                break;
        }
        pos += r.Position;
        return e;
    }
}

/// <summary>What applying redo entries asks of its caller.</summary>
internal interface IRedoSink
{
    /// <summary>A device block stopped being referenced.</summary>
    void Freed(long phys);

    /// <summary>A deferred write: <paramref name="block"/> (4 KiB) belongs at device block <paramref name="phys"/>.</summary>
    void Data(long phys, ReadOnlySpan<byte> block);
}
