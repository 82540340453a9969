using Appliance.Store.Format;
using Appliance.Store.Index;

namespace Appliance.Store.Meta;

/// <summary>
/// The objects of one onode key (<see cref="MetaKeys.OnodeKey"/>), in name order: one for a short name; for a
/// bucket key, every object whose name shares the key's prefix (and hash), usually one as well.
/// </summary>
internal sealed class OnodeSlot
{
    public List<Onode> Objects { get; } = [];

    public Onode? Find(ObjectId id)
    {
        foreach (var on in Objects)
        {
            if (on.Id == id)
            {
                return on;
            }
        }
        return null;
    }

    /// <summary>Adds an object (none with its id is here), keeping name order.</summary>
    public void Add(Onode on)
    {
        var i = 0;
        while (i < Objects.Count && string.CompareOrdinal(Objects[i].Name, on.Name) < 0)
        {
            i++;
        }
        Objects.Insert(i, on);
    }

    public bool Remove(ObjectId id) => Objects.RemoveAll(o => o.Id == id) > 0;

    /// <summary>A deep copy.</summary>
    public OnodeSlot Clone()
    {
        var s = new OnodeSlot();
        foreach (var on in Objects)
        {
            s.Objects.Add(on.Clone());
        }
        return s;
    }
}

/// <summary>
/// The value of an onode key: u8 version (1), u16 object count, then per object its name past the key's prefix
/// (empty for a short name) and its record: u32 hash (the key's, checked), u64 nid, i64 size, u8 flags (1: may have omap), u32 count of extents
/// (u32 first logical block, u32 length, i64 first device block; holes are the gaps), the crc32c of every mapped
/// block in extent order (4 bytes per 4 KiB), u16 count of xattrs (name, u32 length, value).
/// </summary>
internal static class OnodeCodec
{
    private const byte Version = 1;

    /// <summary>Largest encoded slot: the index's largest value (an object of about 1 GiB fully mapped).</summary>
    public const int MaxEncoded = BPlusTree.MaxValueLength;

    public static byte[] Encode(OnodeSlot slot)
    {
        var w = new ByteWriter(64);
        w.U8(Version);
        w.U16((ushort)slot.Objects.Count);
        foreach (var on in slot.Objects)
        {
            w.Str(on.Name.Length > MetaKeys.MaxKeyNameChars ? on.Name[MetaKeys.MaxKeyNameChars..] : "");
            w.U32(on.Hash);
            w.U64(on.Nid);
            w.I64(on.Size);
            w.U8(on.HasOmap ? (byte)1 : (byte)0);
            var blocks = on.Blocks;
            var runsAt = w.Length;
            w.U32(0);
            uint runs = 0;
            for (var i = 0; i < blocks.Length;)
            {
                if (blocks[i].IsHole)
                {
                    i++;
                    continue;
                }
                var j = i + 1;
                while (j < blocks.Length && !blocks[j].IsHole && blocks[j].Phys == blocks[j - 1].Phys + 1)
                {
                    j++;
                }
                w.U32((uint)i);
                w.U32((uint)(j - i));
                w.I64(blocks[i].Phys);
                runs++;
                i = j;
            }
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(w.Span[runsAt..], runs);
            foreach (var b in blocks)
            {
                if (!b.IsHole)
                {
                    w.U32(b.Crc);
                }
            }
            w.U16((ushort)on.Xattrs.Count);
            foreach (var (k, v) in on.Xattrs)
            {
                w.Str(k);
                w.Bytes(v);
            }
        }
        return w.Written.ToArray();
    }

    /// <summary>Decodes a slot of collection key (sort key, name prefix); every field is checked (the data area
    /// bounds too): a bad value is a <see cref="CorruptionException"/> naming the key.</summary>
    public static OnodeSlot Decode(ReadOnlySpan<byte> value, uint sortKey, string namePrefix, bool bucket, long firstData, long endData)
    {
        var hash = ObjectId.ReverseBits(sortKey);
        var r = new SpanReader(value, $"onode {namePrefix}#{hash:x8}");
        if (r.U8() != Version)
        {
            r.Fail("unknown onode version");
        }
        var count = r.U16();
        if (count == 0 || (!bucket && count != 1))
        {
            r.Fail($"{count} objects in one key");
        }
        var slot = new OnodeSlot();
        string? previous = null;
        for (var n = 0; n < count; n++)
        {
            var tail = r.Str();
            if (bucket == (tail.Length == 0))
            {
                r.Fail(bucket ? "an object of a long-name key without the rest of its name" : "a name tail under a short key");
            }
            if (previous is not null && string.CompareOrdinal(previous, tail) >= 0)
            {
                r.Fail($"name tails out of order ({previous}, {tail})");
            }
            previous = tail;
            var stored = r.U32();
            if (stored != hash)
            {
                r.Fail($"object {namePrefix + tail} of hash {stored:x8} is under a key of hash {hash:x8}");
            }
            var on = new Onode(new ObjectId(hash, namePrefix + tail))
            {
                Nid = r.U64(),
                Size = r.I64(),
            };
            var flags = r.U8();
            if (flags > 1 || on.Size < 0 || on.Size > MetaState.MaxObjectSize || on.Nid == 0)
            {
                r.Fail($"object {on.Id}: flags {flags}, size {on.Size}, nid {on.Nid}");
            }
            on.HasOmap = flags == 1;
            var blockCount = checked((int)((on.Size + Superblock.BlockSize - 1) / Superblock.BlockSize));
            on.Resize(blockCount, static _ => { });
            var runs = r.U32();
            var extents = new (uint First, uint Length, long Phys)[runs];
            long end = 0;
            for (var i = 0; i < runs; i++)
            {
                var e = extents[i] = (r.U32(), r.U32(), r.I64());
                if (e.Length == 0 || e.First < end || e.First + (long)e.Length > blockCount || e.Phys < firstData || e.Phys + e.Length > endData)
                {
                    r.Fail($"object {on.Id}: extent {e.First}+{e.Length} at device block {e.Phys} (size {on.Size}, data area [{firstData}, {endData}))");
                }
                end = e.First + (long)e.Length;
            }
            foreach (var (first, length, phys) in extents)
            {
                for (var k = 0; k < length; k++)
                {
                    on.Block(first + k) = new BlockRef(phys + k, r.U32());
                }
            }
            var xattrs = r.U16();
            for (var x = 0; x < xattrs; x++)
            {
                var k = r.Str();
                if (!on.Xattrs.TryAdd(k, r.Bytes()))
                {
                    r.Fail($"object {on.Id}: xattr {k} twice");
                }
            }
            slot.Objects.Add(on);
        }
        if (!r.AtEnd)
        {
            r.Fail("trailing bytes");
        }
        return slot;
    }

    /// <summary>Decodes the slot stored under <paramref name="key"/>.</summary>
    public static OnodeSlot Decode(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value, long firstData, long endData)
    {
        if (MetaKeys.DecodeOnodeKey(key) is not { } k)
        {
            throw new CorruptionException($"index key {Convert.ToHexString(key[..Math.Min(key.Length, 40)])} is not an onode key");
        }
        return Decode(value, k.SortKey, k.NamePrefix, k.Bucket, firstData, endData);
    }
}
