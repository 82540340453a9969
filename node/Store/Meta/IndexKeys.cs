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

/// <summary>memcmp order of byte strings.</summary>
internal sealed class ByteOrder : IComparer<byte[]>
{
    public static readonly ByteOrder Instance = new();

    public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);
}
