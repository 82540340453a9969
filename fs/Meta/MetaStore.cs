namespace Appliance.Fs.Meta;

/// <summary>
/// What the operations read: the filesystem's objects as they are before the request. The OSD implements it over its
/// method context (one PG of the metadata pool); tests over a dictionary. Values are the encoded records.
/// </summary>
public interface IMetaSource
{
    ValueTask<byte[]?> GetSuperAsync();

    ValueTask<byte[]?> GetInodeAsync(ulong ino);

    ValueTask<byte[]?> GetEntryAsync(ulong dir, string name);

    /// <summary>Entries of <paramref name="dir"/> after <paramref name="startAfter"/> in ordinal order.</summary>
    ValueTask<IReadOnlyList<KeyValuePair<string, byte[]>>> ListEntriesAsync(ulong dir, string startAfter, int limit);

    /// <summary>Orphans (inodes with no links left, kept while open) after <paramref name="after"/>.</summary>
    ValueTask<IReadOnlyList<ulong>> ListOrphansAsync(ulong after, int limit);
}

/// <summary>
/// What one operation changes, to be applied atomically: inode records put (or deleted: null), directory entries
/// set (or removed: null), the superblock, orphan-list additions and removals. A host applies all of it in one
/// transaction or none of it.
/// </summary>
public sealed class MetaChanges
{
    public Dictionary<ulong, byte[]?> Inodes { get; } = [];
    public Dictionary<(ulong Dir, string Name), byte[]?> Entries { get; } = [];
    public byte[]? Super { get; set; }
    public Dictionary<ulong, bool> Orphans { get; } = [];

    public bool IsEmpty => Inodes.Count == 0 && Entries.Count == 0 && Super is null && Orphans.Count == 0;
}

/// <summary>
/// One operation's view: reads go to the source once (then come from here), changes are kept here and read back by
/// later steps of the same operation, and <see cref="Changes"/> lists them at the end. Nothing reaches the source:
/// an operation that fails leaves no trace.
/// </summary>
public sealed class MetaTxn(IMetaSource source)
{
    private readonly Dictionary<ulong, Inode?> _inodes = [];
    private readonly HashSet<ulong> _dirtyInodes = [];
    private readonly Dictionary<(ulong, string), Dentry?> _entries = [];
    private readonly HashSet<(ulong, string)> _dirtyEntries = [];
    private readonly Dictionary<ulong, bool> _orphans = [];
    private Superblock? _super;
    private bool _superDirty;

    public IMetaSource Source => source;

    public async ValueTask<Superblock?> SuperAsync()
    {
        if (_super is null && await source.GetSuperAsync() is { } raw)
        {
            _super = Superblock.Decode(raw);
        }
        return _super;
    }

    public void PutSuper(Superblock s)
    {
        _super = s;
        _superDirty = true;
    }

    /// <summary>The inode as this operation sees it (changes made earlier in the operation included). Callers that
    /// change it must <see cref="Put"/> it.</summary>
    public async ValueTask<Inode?> GetAsync(ulong ino)
    {
        if (ino == 0)
        {
            return null;
        }
        if (!_inodes.TryGetValue(ino, out var n))
        {
            var raw = await source.GetInodeAsync(ino);
            n = raw is null ? null : Inode.Decode(raw);
            if (n is not null && n.Ino != ino)
            {
                throw new MetaFormatException($"the record of inode {ino} names inode {n.Ino}");
            }
            _inodes[ino] = n;
        }
        return n;
    }

    public void Put(Inode n)
    {
        _inodes[n.Ino] = n;
        _dirtyInodes.Add(n.Ino);
    }

    public void Delete(ulong ino)
    {
        _inodes[ino] = null;
        _dirtyInodes.Add(ino);
    }

    public async ValueTask<Dentry?> EntryAsync(ulong dir, string name)
    {
        if (!_entries.TryGetValue((dir, name), out var e))
        {
            var raw = await source.GetEntryAsync(dir, name);
            e = raw is null ? null : Dentry.Decode(raw);
            _entries[(dir, name)] = e;
        }
        return e;
    }

    public void SetEntry(ulong dir, string name, Dentry? e)
    {
        _entries[(dir, name)] = e;
        _dirtyEntries.Add((dir, name));
    }

    public void SetOrphan(ulong ino, bool orphan) => _orphans[ino] = orphan;

    public MetaChanges Changes()
    {
        var c = new MetaChanges();
        foreach (var ino in _dirtyInodes)
        {
            c.Inodes[ino] = _inodes[ino]?.Encode();
        }
        foreach (var key in _dirtyEntries)
        {
            // Entries of a directory deleted in this operation go with it.
            if (_dirtyInodes.Contains(key.Item1) && _inodes[key.Item1] is null)
            {
                continue;
            }
            c.Entries[key] = _entries[key]?.Encode();
        }
        if (_superDirty)
        {
            c.Super = _super!.Encode();
        }
        foreach (var (ino, add) in _orphans)
        {
            c.Orphans[ino] = add;
        }
        return c;
    }
}
