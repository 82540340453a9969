using System.Buffers.Binary;

namespace Appliance.Store.Meta;

/// <summary>
/// Keys of the store's index (see node/Store/README.md, "Metadata in the index"). Strings are UTF-16 big-endian
/// code units: memcmp of those bytes is <see cref="string.CompareOrdinal(string, string)"/>, the order the store
/// promises for names and omap keys.
/// </summary>
internal static class IndexKeys
{
    /// <summary>Omap entries: <c>03 · u64 BE nid · key</c>.</summary>
    public const byte Omap = 0x03;

    /// <summary>The longest omap key, in UTF-16 code units (the tree takes keys up to 1024 bytes).</summary>
    public const int MaxOmapKeyChars = 480;

    public const int OmapPrefixLength = 9;

    public static byte[] OmapKey(ulong nid, string key)
    {
        var k = new byte[OmapPrefixLength + 2 * key.Length];
        k[0] = Omap;
        BinaryPrimitives.WriteUInt64BigEndian(k.AsSpan(1), nid);
        for (var i = 0; i < key.Length; i++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(k.AsSpan(OmapPrefixLength + 2 * i), key[i]);
        }
        return k;
    }

    /// <summary>The least key of the object's omap (its prefix).</summary>
    public static byte[] OmapStart(ulong nid) => OmapKey(nid, "");

    /// <summary>Past the last key of the object's omap: the next nid's prefix (nids never reach the maximum).</summary>
    public static byte[] OmapEnd(ulong nid) => OmapKey(nid + 1, "");

    /// <summary>The omap key of an index key (its nid prefix is the caller's).</summary>
    public static string OmapKeyOf(ReadOnlySpan<byte> indexKey)
    {
        var n = (indexKey.Length - OmapPrefixLength) / 2;
        return string.Create(n, indexKey[OmapPrefixLength..].ToArray(), static (chars, bytes) =>
        {
            for (var i = 0; i < chars.Length; i++)
            {
                chars[i] = (char)BinaryPrimitives.ReadUInt16BigEndian(bytes.AsSpan(2 * i));
            }
        });
    }

    /// <summary>The least key greater than every key starting with <paramref name="prefix"/>, or null when there is
    /// none (all 0xff).</summary>
    public static byte[]? PrefixEnd(byte[] prefix)
    {
        var end = (byte[])prefix.Clone();
        for (var i = end.Length - 1; i >= 0; i--)
        {
            if (end[i] != 0xff)
            {
                end[i]++;
                return end[..(i + 1)];
            }
        }
        return null;
    }
}

/// <summary>
/// Keys of collections, onodes and the store's own records (see node/Store/README.md, "Metadata in the index").
/// An onode key is <c>02 · u16 BE collection bytes · collection · u32 BE sort key · name</c>; a name longer than
/// <see cref="MaxKeyNameChars"/> UTF-16 units keeps only that many in the key, followed by one marker byte (a
/// <b>bucket</b> key: odd length, so never a short name's key): every object of the collection with that hash and
/// that name prefix lives in the bucket's value, in name order. Key order is then still exactly the listing order.
/// </summary>
internal static class MetaKeys
{
    public const byte Collection = 0x01;
    public const byte Onode = 0x02;
    public const byte Store = 0x05;

    /// <summary>Longest collection name in UTF-16 units (keys stay under the index's 1024 bytes).</summary>
    public const int MaxCollectionChars = 120;

    /// <summary>UTF-16 units of an object name kept in its key: 1 + 2 + 240 + 4 + 768 + 1 = 1016 bytes at most.</summary>
    public const int MaxKeyNameChars = 384;

    private const byte BucketMarker = 0x00;

    public static byte[] CollectionKey(string c)
    {
        var k = new byte[1 + 2 * c.Length];
        k[0] = Collection;
        Utf16(c, k.AsSpan(1));
        return k;
    }

    public static string CollectionOf(ReadOnlySpan<byte> key) => FromUtf16(key[1..]);

    /// <summary>Start and end of every collection key.</summary>
    public static readonly byte[] CollectionsStart = [Collection];
    public static readonly byte[] CollectionsEnd = [Collection + 1];

    /// <summary>Start and end of every onode key.</summary>
    public static readonly byte[] OnodesStart = [Onode];
    public static readonly byte[] OnodesEnd = [Onode + 1];

    private static int CollPrefixLength(string c) => 3 + 2 * c.Length;

    /// <summary>The key of the slot that holds object <paramref name="o"/> of collection <paramref name="c"/>.</summary>
    public static byte[] OnodeKey(string c, ObjectId o)
    {
        var n = Math.Min(o.Name.Length, MaxKeyNameChars);
        var bucket = o.Name.Length > MaxKeyNameChars;
        var k = new byte[CollPrefixLength(c) + 4 + 2 * n + (bucket ? 1 : 0)];
        WriteCollPrefix(c, k);
        BinaryPrimitives.WriteUInt32BigEndian(k.AsSpan(CollPrefixLength(c)), o.SortKey);
        Utf16(o.Name.AsSpan(0, n), k.AsSpan(CollPrefixLength(c) + 4));
        if (bucket)
        {
            k[^1] = BucketMarker;
        }
        return k;
    }

    /// <summary>The part of the name the slot's value holds for each of its objects (empty for a short name).</summary>
    public static string TailOf(ObjectId o) => o.Name.Length > MaxKeyNameChars ? o.Name[MaxKeyNameChars..] : "";

    /// <summary>The first key of collection <paramref name="c"/> with a sort key at least <paramref name="sortKey"/>
    /// (2^32: past the collection's last key).</summary>
    public static byte[] OnodeRangeKey(string c, ulong sortKey)
    {
        if (sortKey >= SortKeyRange.KeySpace)
        {
            var end = new byte[CollPrefixLength(c)];
            WriteCollPrefix(c, end);
            return PrefixEnd(end);
        }
        var k = new byte[CollPrefixLength(c) + 4];
        WriteCollPrefix(c, k);
        BinaryPrimitives.WriteUInt32BigEndian(k.AsSpan(CollPrefixLength(c)), (uint)sortKey);
        return k;
    }

    /// <summary>The same slot key in another collection (a split or a move keeps hash and name).</summary>
    public static byte[] Rekey(byte[] key, string c)
    {
        var old = 3 + BinaryPrimitives.ReadUInt16BigEndian(key.AsSpan(1));
        var k = new byte[CollPrefixLength(c) + key.Length - old];
        WriteCollPrefix(c, k);
        key.AsSpan(old).CopyTo(k.AsSpan(CollPrefixLength(c)));
        return k;
    }

    /// <summary>Collection, sort key, name prefix and whether it is a bucket key; null when it is not an onode key.</summary>
    public static (string Collection, uint SortKey, string NamePrefix, bool Bucket)? DecodeOnodeKey(ReadOnlySpan<byte> key)
    {
        if (key.Length < 3 || key[0] != Onode)
        {
            return null;
        }
        var cb = BinaryPrimitives.ReadUInt16BigEndian(key[1..]);
        var rest = key.Length - 3 - cb - 4;
        if (cb % 2 != 0 || rest < 0)
        {
            return null;
        }
        var bucket = rest % 2 == 1;
        if (bucket && (key[^1] != BucketMarker || rest - 1 != 2 * MaxKeyNameChars))
        {
            return null;
        }
        var c = FromUtf16(key.Slice(3, cb));
        var sk = BinaryPrimitives.ReadUInt32BigEndian(key[(3 + cb)..]);
        var name = FromUtf16(key.Slice(3 + cb + 4, rest - (bucket ? 1 : 0)));
        return (c, sk, name, bucket);
    }

    /// <summary>The data-area bitmap, by chunk: <c>05 · "alloc" · u32 BE chunk</c>.</summary>
    public static byte[] AllocChunkKey(int chunk)
    {
        var k = new byte[1 + 5 + 4];
        k[0] = Store;
        "alloc"u8.CopyTo(k.AsSpan(1));
        BinaryPrimitives.WriteUInt32BigEndian(k.AsSpan(6), (uint)chunk);
        return k;
    }

    public static readonly byte[] AllocStart = AllocChunkKey(0)[..6];
    public static readonly byte[] AllocEnd = PrefixEnd(AllocStart);

    public static int AllocChunkOf(ReadOnlySpan<byte> key) =>
        key.Length == 10 ? (int)BinaryPrimitives.ReadUInt32BigEndian(key[6..]) : -1;

    private static void WriteCollPrefix(string c, Span<byte> k)
    {
        k[0] = Onode;
        BinaryPrimitives.WriteUInt16BigEndian(k[1..], (ushort)(2 * c.Length));
        Utf16(c, k[3..]);
    }

    private static void Utf16(ReadOnlySpan<char> s, Span<byte> into)
    {
        for (var i = 0; i < s.Length; i++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(into[(2 * i)..], s[i]);
        }
    }

    private static string FromUtf16(ReadOnlySpan<byte> bytes)
    {
        var chars = new char[bytes.Length / 2];
        for (var i = 0; i < chars.Length; i++)
        {
            chars[i] = (char)BinaryPrimitives.ReadUInt16BigEndian(bytes[(2 * i)..]);
        }
        return new string(chars);
    }

    private static byte[] PrefixEnd(byte[] prefix) => IndexKeys.PrefixEnd(prefix) ?? throw new InvalidOperationException("no end");
}

/// <summary>memcmp order of byte strings.</summary>
internal sealed class ByteOrder : IComparer<byte[]>
{
    public static readonly ByteOrder Instance = new();

    public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);
}
