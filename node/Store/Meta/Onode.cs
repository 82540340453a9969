using System.Text;

namespace Appliance.Store.Meta;

/// <summary>Where one 4 KiB block of an object lives: a device block number (0 = a hole, reads as zeros) and the
/// crc32c of its 4096 bytes.</summary>
public record struct BlockRef(long Phys, uint Crc)
{
    public readonly bool IsHole => Phys == 0;
}

/// <summary>
/// An object's metadata, held in memory: its id (placement hash and name), size, the block map (one
/// <see cref="BlockRef"/> per 4 KiB, exactly ceil(size / 4096) entries), xattrs, and the nid its omap is keyed by in
/// the index. Memory: about 120 bytes + name + 16 bytes per 4 KiB of size + xattrs (see README).
/// </summary>
internal sealed class Onode(ObjectId id)
{
    private BlockRef[] _blocks = [];

    public ObjectId Id { get; } = id;

    public string Name => Id.Name;

    /// <summary>The caller's placement hash (see <see cref="ObjectId"/>).</summary>
    public uint Hash => Id.Hash;

    public long Size { get; set; }

    public int BlockCount { get; private set; }

    public Dictionary<string, byte[]> Xattrs { get; private set; } = new(StringComparer.Ordinal);

    /// <summary>The object's number for its index keys (omap: <c>03 · nid · key</c>), given at creation, never
    /// reused, kept across moves.</summary>
    public ulong Nid { get; set; }

    /// <summary>Whether the object may have omap entries (set by an omap set, cleared by a clear): objects without
    /// cost no index work when removed or cleared.</summary>
    public bool HasOmap { get; set; }

    /// <summary>Encoded size of the xattrs in a checkpoint.</summary>
    public long XattrBytes { get; set; }

    public int NameBytes { get; } = Encoding.UTF8.GetByteCount(id.Name);

    /// <summary>Exact size of this onode in a checkpoint (see <see cref="MetaState.EncodeCheckpoint"/>).</summary>
    public long EncodedSize => 2 + NameBytes + 4 + 8 + 4 + 12L * BlockCount + 4 + XattrBytes + 8 + 1;

    public ReadOnlySpan<BlockRef> Blocks => _blocks.AsSpan(0, BlockCount);

    /// <summary>This object under another id: the new onode takes over the block map, xattrs and nid (so the omap: no copy);
    /// this one must be dropped.</summary>
    public Onode Renamed(ObjectId to) => new(to)
    {
        _blocks = _blocks,
        BlockCount = BlockCount,
        Size = Size,
        Xattrs = Xattrs,
        XattrBytes = XattrBytes,
        Nid = Nid,
        HasOmap = HasOmap,
    };

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

/// <summary>Orders a collection's objects by their ids (<see cref="ObjectId.CompareTo"/>: bit-reversed hash, then
/// name): the listing order, stable across restarts.</summary>
internal sealed class BitwiseOrder : IComparer<Onode>
{
    public static readonly BitwiseOrder Instance = new();

    public int Compare(Onode? x, Onode? y) => ReferenceEquals(x, y) ? 0 : x!.Id.CompareTo(y!.Id);
}

/// <summary>A collection (one per placement group): its objects by id and in bitwise order.</summary>
internal sealed class Collection(string name)
{
    public string Name { get; } = name;

    public Dictionary<ObjectId, Onode> Objects { get; } = [];

    public SortedSet<Onode> Sorted { get; } = new(BitwiseOrder.Instance);

    /// <summary>The objects whose sort key lies in <paramref name="range"/>, in order, starting after
    /// <paramref name="after"/> when given (a live view: the caller holds off changes while it enumerates).</summary>
    public IEnumerable<Onode> InRange(SortKeyRange range, ObjectId? after = null)
    {
        if (Sorted.Count == 0 || range.IsEmpty)
        {
            yield break;
        }
        // The least id with the range's first key: hash with reversed bits = start, and the empty name (which
        // sorts before every other name; an id with a null name is never stored).
        var lo = new Onode(new ObjectId(ObjectId.ReverseBits((uint)range.Start), ""));
        if (after is { } a && a.CompareTo(lo.Id) >= 0)
        {
            lo = new Onode(a);
        }
        var max = Sorted.Max!;
        if (BitwiseOrder.Instance.Compare(lo, max) > 0)
        {
            yield break;
        }
        foreach (var on in Sorted.GetViewBetween(lo, max))
        {
            if (on.Id.SortKey >= range.End)
            {
                yield break;
            }
            if (after is { } b && on.Id.CompareTo(b) <= 0)
            {
                continue;
            }
            yield return on;
        }
    }
}
