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

    /// <summary>The metadata PG's clock (Unix ms) when the request started: what mount leases are judged by. Only
    /// what an operation writes is replicated, so a decision taken on it is never re-taken by another clock.</summary>
    long NowMs { get; }

    /// <summary>The lock record (<see cref="LockTable"/>) of an inode, null when nothing is locked on it.</summary>
    ValueTask<byte[]?> GetLocksAsync(ulong ino);

    /// <summary>Lock records of inodes after <paramref name="after"/> (0: from the first), in inode order.</summary>
    ValueTask<IReadOnlyList<KeyValuePair<ulong, byte[]>>> ListLocksAsync(ulong after, int limit);

    /// <summary>The lease record (<see cref="MountLease"/>) of a mount, null when it has none.</summary>
    ValueTask<byte[]?> GetLeaseAsync(string mount);

    /// <summary>Lease records of mounts after <paramref name="after"/> ("": from the first), in ordinal order.</summary>
    ValueTask<IReadOnlyList<KeyValuePair<string, byte[]>>> ListLeasesAsync(string after, int limit);
}

/// <summary>
/// What one operation changes, to be applied atomically: inode records put (or deleted: null), directory entries
/// set (or removed: null), the superblock, orphan-list additions and removals, lock records of inodes and mount
/// leases put (or removed: null). A removed lease takes the mount's record ("m.") with it: the mount is gone. A host
/// applies all of it in one transaction or none of it.
/// </summary>
public sealed class MetaChanges
{
    public Dictionary<ulong, byte[]?> Inodes { get; } = [];
    public Dictionary<(ulong Dir, string Name), byte[]?> Entries { get; } = [];
    public byte[]? Super { get; set; }
    public Dictionary<ulong, bool> Orphans { get; } = [];
    public Dictionary<ulong, byte[]?> Locks { get; } = [];
    public Dictionary<string, byte[]?> Leases { get; } = new(StringComparer.Ordinal);

    public bool IsEmpty => Inodes.Count == 0 && Entries.Count == 0 && Super is null && Orphans.Count == 0 && Locks.Count == 0 && Leases.Count == 0;
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
    private readonly Dictionary<ulong, List<FileLock>> _locks = [];
    private readonly HashSet<ulong> _dirtyLocks = [];
    private readonly Dictionary<string, MountLease?> _leases = new(StringComparer.Ordinal);
    private readonly HashSet<string> _dirtyLeases = new(StringComparer.Ordinal);
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

    /// <summary>The locks on an inode as this operation sees them (a copy the caller may keep; change them through
    /// <see cref="PutLocks"/>).</summary>
    public async ValueTask<List<FileLock>> LocksAsync(ulong ino)
    {
        if (!_locks.TryGetValue(ino, out var l))
        {
            var raw = await source.GetLocksAsync(ino);
            _locks[ino] = l = raw is null ? [] : LockTable.Decode(raw);
        }
        return [.. l];
    }

    /// <summary>Seeds the cache with a record read by a listing (so a later <see cref="LocksAsync"/> does not read
    /// it again).</summary>
    public void SeenLocks(ulong ino, byte[] raw) => _locks.TryAdd(ino, LockTable.Decode(raw));

    public void PutLocks(ulong ino, List<FileLock> locks)
    {
        _locks[ino] = [.. locks];
        _dirtyLocks.Add(ino);
    }

    public async ValueTask<MountLease?> LeaseAsync(string mount)
    {
        if (!_leases.TryGetValue(mount, out var l))
        {
            var raw = await source.GetLeaseAsync(mount);
            _leases[mount] = l = raw is null ? null : MountLease.Decode(raw);
        }
        return l;
    }

    public void SeenLease(string mount, byte[] raw) => _leases.TryAdd(mount, MountLease.Decode(raw));

    /// <summary>Puts (or, null, removes) a mount's lease.</summary>
    public void PutLease(string mount, MountLease? lease)
    {
        _leases[mount] = lease;
        _dirtyLeases.Add(mount);
    }

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
        foreach (var ino in _dirtyLocks)
        {
            c.Locks[ino] = _locks[ino].Count == 0 ? null : LockTable.Encode(_locks[ino]);
        }
        foreach (var mount in _dirtyLeases)
        {
            c.Leases[mount] = _leases[mount]?.Encode();
        }
        return c;
    }
}
