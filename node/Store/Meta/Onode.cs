namespace Appliance.Store.Meta;

/// <summary>Where one 4 KiB block of an object lives: a device block number (0 = a hole, reads as zeros) and the
/// crc32c of its 4096 bytes.</summary>
public record struct BlockRef(long Phys, uint Crc)
{
    public readonly bool IsHole => Phys == 0;
}

/// <summary>
/// An object's metadata as decoded from its index value (<see cref="OnodeCodec"/>): its id (placement hash and name),
/// size, the block map (one <see cref="BlockRef"/> per 4 KiB, exactly ceil(size / 4096) entries; stored as runs of
/// contiguous device blocks with a crc per block), xattrs, and the nid its omap is keyed by. Only ever held for
/// objects being read or changed: the store keeps none of these between operations.
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

    public ReadOnlySpan<BlockRef> Blocks => _blocks.AsSpan(0, BlockCount);

    /// <summary>This object under another id: the new onode takes over the block map, xattrs and nid (so the omap: no copy);
    /// this one must be dropped.</summary>
    public Onode Renamed(ObjectId to) => new(to)
    {
        _blocks = _blocks,
        BlockCount = BlockCount,
        Size = Size,
        Xattrs = Xattrs,
        Nid = Nid,
        HasOmap = HasOmap,
    };

    /// <summary>A deep copy (a transaction changes its own copy of what it loaded).</summary>
    public Onode Clone() => new(Id)
    {
        _blocks = Blocks.ToArray(),
        BlockCount = BlockCount,
        Size = Size,
        Xattrs = new Dictionary<string, byte[]>(Xattrs, StringComparer.Ordinal),
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
}
