using System.Text;

namespace Appliance.Store.Meta;

/// <summary>Where one 4 KiB block of an object lives: a device block number (0 = a hole, reads as zeros) and the
/// crc32c of its 4096 bytes.</summary>
public record struct BlockRef(long Phys, uint Crc)
{
    public readonly bool IsHole => Phys == 0;
}

/// <summary>An omap key and value. Ordered by key, ordinal (byte order of UTF-16 code units).</summary>
internal sealed class OmapEntry(string key, byte[] value)
{
    public string Key { get; } = key;
    public byte[] Value { get; set; } = value;
}

internal sealed class OmapComparer : IComparer<OmapEntry>
{
    public static readonly OmapComparer Instance = new();

    /// <summary>Greater than every key: the upper end of an open range view.</summary>
    public static readonly OmapEntry Max = new("\uffff\uffff<max>", []);

    public int Compare(OmapEntry? x, OmapEntry? y)
    {
        if (ReferenceEquals(x, y))
        {
            return 0;
        }
        if (ReferenceEquals(x, Max))
        {
            return 1;
        }
        if (ReferenceEquals(y, Max))
        {
            return -1;
        }
        return string.CompareOrdinal(x!.Key, y!.Key);
    }
}

/// <summary>
/// An object's metadata, held in memory: size, the block map (one <see cref="BlockRef"/> per 4 KiB, exactly
/// ceil(size / 4096) entries), xattrs and omap. Memory: about 120 bytes + name + 16 bytes per 4 KiB of size +
/// keys and values (see README).
/// </summary>
internal sealed class Onode(string name, uint hash)
{
    private BlockRef[] _blocks = [];

    public string Name { get; } = name;

    /// <summary>The listing order key: crc32c of the UTF-8 name.</summary>
    public uint Hash { get; } = hash;

    public long Size { get; set; }

    public int BlockCount { get; private set; }

    public Dictionary<string, byte[]> Xattrs { get; } = new(StringComparer.Ordinal);

    public SortedSet<OmapEntry> Omap { get; } = new(OmapComparer.Instance);

    /// <summary>Encoded size of the xattrs in a checkpoint.</summary>
    public long XattrBytes { get; set; }

    /// <summary>Encoded size of the omap in a checkpoint.</summary>
    public long OmapBytes { get; set; }

    public int NameBytes { get; } = Encoding.UTF8.GetByteCount(name);

    /// <summary>Exact size of this onode in a checkpoint (see <see cref="MetaState.EncodeCheckpoint"/>).</summary>
    public long EncodedSize => 2 + NameBytes + 4 + 8 + 4 + 12L * BlockCount + 4 + XattrBytes + 4 + OmapBytes;

    public ReadOnlySpan<BlockRef> Blocks => _blocks.AsSpan(0, BlockCount);

    public ref BlockRef Block(long index)
    {
        if ((ulong)index >= (ulong)BlockCount)
        {
            throw new ArgumentOutOfRangeException(nameof(index));
        }
        return ref _blocks[index];
    }

    /// <summary>Sets the block count; new entries are holes, dropped ones are returned through <paramref name="freed"/>.</summary>
    public void Resize(int count, Action<long> freed)
    {
        if (count > _blocks.Length)
        {
            Array.Resize(ref _blocks, Math.Max(count, Math.Min(_blocks.Length * 2, count + 1024)));
        }
        for (var i = count; i < BlockCount; i++)
        {
            if (_blocks[i].Phys != 0)
            {
                freed(_blocks[i].Phys);
            }
            _blocks[i] = default;
        }
        BlockCount = count;
    }

    public static long EntryBytes(string key, int valueLength) => 2 + Encoding.UTF8.GetByteCount(key) + 4 + valueLength;
}

/// <summary>Orders a collection's objects by (hash, name): the listing order, stable across restarts.</summary>
internal sealed class HashOrder : IComparer<Onode>
{
    public static readonly HashOrder Instance = new();

    /// <summary>Greater than every object: the upper end of an open range view.</summary>
    public static readonly Onode Max = new("<max>", uint.MaxValue);

    public int Compare(Onode? x, Onode? y)
    {
        if (ReferenceEquals(x, y))
        {
            return 0;
        }
        if (ReferenceEquals(x, Max))
        {
            return 1;
        }
        if (ReferenceEquals(y, Max))
        {
            return -1;
        }
        var c = x!.Hash.CompareTo(y!.Hash);
        return c != 0 ? c : string.CompareOrdinal(x.Name, y.Name);
    }
}

/// <summary>A collection (one per placement group): its objects by name and in hash order.</summary>
internal sealed class Collection(string name)
{
    public string Name { get; } = name;

    public Dictionary<string, Onode> Objects { get; } = new(StringComparer.Ordinal);

    public SortedSet<Onode> ByHash { get; } = new(HashOrder.Instance);
}
