using Appliance.Store.Format;

namespace Appliance.Store.Meta;

/// <summary>
/// The redo entries a transaction becomes. A transaction is prepared into a list of these (all decisions made:
/// which blocks, which crcs); the same bytes go into the journal and are applied to the in-memory state by
/// <see cref="MetaState.Apply"/> — at run time and at replay, so replay cannot drift from what ran.
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
}

/// <summary>Encoders of redo entries (the decoder is <see cref="MetaState.Apply"/>).</summary>
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

    public static void ObjCreate(ByteWriter w, string c, string o) => Obj(w, RedoKind.ObjCreate, c, o);

    public static void ObjRemove(ByteWriter w, string c, string o) => Obj(w, RedoKind.ObjRemove, c, o);

    public static void ObjSize(ByteWriter w, string c, string o, long size)
    {
        Obj(w, RedoKind.ObjSize, c, o);
        w.I64(size);
    }

    public static void Blocks(ByteWriter w, string c, string o, long first, ReadOnlySpan<BlockRef> refs)
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

    public static void XattrSet(ByteWriter w, string c, string o, string k, ReadOnlySpan<byte> v)
    {
        Obj(w, RedoKind.XattrSet, c, o);
        w.Str(k);
        w.Bytes(v);
    }

    public static void XattrRemove(ByteWriter w, string c, string o, string k)
    {
        Obj(w, RedoKind.XattrRemove, c, o);
        w.Str(k);
    }

    public static void OmapSet(ByteWriter w, string c, string o, string k, ReadOnlySpan<byte> v)
    {
        Obj(w, RedoKind.OmapSet, c, o);
        w.Str(k);
        w.Bytes(v);
    }

    public static void OmapRemove(ByteWriter w, string c, string o, string k)
    {
        Obj(w, RedoKind.OmapRemove, c, o);
        w.Str(k);
    }

    public static void OmapClear(ByteWriter w, string c, string o) => Obj(w, RedoKind.OmapClear, c, o);

    private static void Obj(ByteWriter w, RedoKind kind, string c, string o)
    {
        w.U8((byte)kind);
        w.Str(c);
        w.Str(o);
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
