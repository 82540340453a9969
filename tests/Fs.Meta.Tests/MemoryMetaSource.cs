namespace Appliance.Fs.Meta.Tests;

/// <summary>The filesystem's objects in dictionaries, with <see cref="Apply"/> doing what the OSD's method class
/// does with an operation's changes; <see cref="RunAsync"/> runs one request and applies its changes.</summary>
public sealed class MemoryMetaSource : IMetaSource
{
    public byte[]? Super;
    public readonly SortedDictionary<ulong, byte[]> Inodes = [];
    public readonly Dictionary<ulong, SortedDictionary<string, byte[]>> Entries = [];
    public readonly SortedSet<ulong> Orphans = [];
    public readonly SortedDictionary<ulong, byte[]> Locks = [];
    public readonly SortedDictionary<string, byte[]> Leases = new(StringComparer.Ordinal);
    private long _clock = 1_000_000;

    /// <summary>The metadata PG's clock (ms), moved by the test.</summary>
    public long NowMs { get; set; } = 1_000_000;

    public ValueTask<byte[]?> GetLocksAsync(ulong ino) => new(Locks.GetValueOrDefault(ino));

    public ValueTask<IReadOnlyList<KeyValuePair<ulong, byte[]>>> ListLocksAsync(ulong after, int limit) =>
        new(Locks.Where(kv => kv.Key > after).Take(limit).ToList());

    public ValueTask<byte[]?> GetLeaseAsync(string mount) => new(Leases.GetValueOrDefault(mount));

    public ValueTask<IReadOnlyList<KeyValuePair<string, byte[]>>> ListLeasesAsync(string after, int limit) =>
        new(Leases.Where(kv => string.CompareOrdinal(kv.Key, after) > 0).Take(limit).ToList());

    public MetaTime Tick() => new(Interlocked.Increment(ref _clock), 500);

    public ValueTask<byte[]?> GetSuperAsync() => new(Super);

    public ValueTask<byte[]?> GetInodeAsync(ulong ino) => new(Inodes.GetValueOrDefault(ino));

    public ValueTask<byte[]?> GetEntryAsync(ulong dir, string name) => new(Entries.GetValueOrDefault(dir)?.GetValueOrDefault(name));

    public ValueTask<IReadOnlyList<KeyValuePair<string, byte[]>>> ListEntriesAsync(ulong dir, string startAfter, int limit) =>
        new(Entries.TryGetValue(dir, out var d)
            ? d.Where(kv => string.CompareOrdinal(kv.Key, startAfter) > 0).Take(limit).ToList()
            : []);

    public ValueTask<IReadOnlyList<ulong>> ListOrphansAsync(ulong after, int limit) => new(Orphans.Where(o => o > after).Take(limit).ToList());

    public void Apply(MetaChanges c)
    {
        foreach (var ((dir, name), value) in c.Entries)
        {
            var d = Entries.TryGetValue(dir, out var x) ? x : Entries[dir] = new SortedDictionary<string, byte[]>(StringComparer.Ordinal);
            if (value is null)
            {
                d.Remove(name);
            }
            else
            {
                d[name] = value;
            }
        }
        foreach (var (ino, value) in c.Inodes)
        {
            if (value is null)
            {
                Inodes.Remove(ino);
                Entries.Remove(ino);
            }
            else
            {
                Inodes[ino] = value;
            }
        }
        if (c.Super is not null)
        {
            Super = c.Super;
        }
        foreach (var (ino, add) in c.Orphans)
        {
            if (add)
            {
                Orphans.Add(ino);
            }
            else
            {
                Orphans.Remove(ino);
            }
        }
        foreach (var (ino, value) in c.Locks)
        {
            if (value is null)
            {
                Locks.Remove(ino);
            }
            else
            {
                Locks[ino] = value;
            }
        }
        foreach (var (mount, value) in c.Leases)
        {
            if (value is null)
            {
                Leases.Remove(mount);
            }
            else
            {
                Leases[mount] = value;
            }
        }
    }

    public async Task<MetaReply> RunAsync(MetaRequest req)
    {
        var (reply, changes) = await MetaOps.RunAsync(this, req);
        Assert.True(reply.IsOk || changes.IsEmpty, $"{req.Op} failed with errno {reply.Errno} but changed objects");
        Apply(changes);
        return reply;
    }

    /// <summary>Everything, for comparing states before and after an operation.</summary>
    public string Snapshot()
    {
        var parts = new List<string> { Convert.ToHexString(Super ?? []) };
        parts.AddRange(Inodes.Select(kv => $"{kv.Key}:{Convert.ToHexString(kv.Value)}"));
        parts.AddRange(Entries.OrderBy(kv => kv.Key).SelectMany(kv => kv.Value.Select(e => $"{kv.Key}/{e.Key}:{Convert.ToHexString(e.Value)}")));
        parts.AddRange(Orphans.Select(o => $"orphan {o}"));
        parts.AddRange(Locks.Select(kv => $"locks {kv.Key}:{Convert.ToHexString(kv.Value)}"));
        parts.AddRange(Leases.Select(kv => $"lease {kv.Key}:{Convert.ToHexString(kv.Value)}"));
        return string.Join("\n", parts);
    }

    /// <summary>
    /// The filesystem's invariants (what `fs check` will verify): every entry names an existing inode of the entry's
    /// type; a non-directory's link count is the number of entries naming it (orphans: none, and listed); a
    /// directory's link count is 2 + its subdirectories, its children count its entries, its parent names it;
    /// every inode is reachable from the root or an orphan; the superblock counts them all.
    /// </summary>
    public void Check()
    {
        var inodes = Inodes.ToDictionary(kv => kv.Key, kv => Inode.Decode(kv.Value));
        var refs = new Dictionary<ulong, uint>();
        foreach (var (dir, entries) in Entries)
        {
            Assert.True(inodes.TryGetValue(dir, out var d) && d.IsDir, $"entries under {dir}, which is not a directory");
            Assert.Equal((ulong)entries.Count, d!.Children);
            var subdirs = 0u;
            foreach (var (name, raw) in entries)
            {
                var e = Dentry.Decode(raw);
                Assert.True(inodes.TryGetValue(e.Ino, out var n), $"{dir}/{name} names missing inode {e.Ino}");
                Assert.Equal(n!.Type, e.Type);
                refs[e.Ino] = refs.GetValueOrDefault(e.Ino) + 1;
                if (n.IsDir)
                {
                    subdirs++;
                    Assert.Equal(dir, n.Parent);
                }
            }
            Assert.Equal(2 + subdirs, d.Nlink);
        }
        foreach (var (ino, n) in inodes)
        {
            if (n.IsDir)
            {
                Assert.True(ino == Superblock.RootIno ? refs.GetValueOrDefault(ino) == 0 : refs.GetValueOrDefault(ino) == 1, $"directory {ino} has {refs.GetValueOrDefault(ino)} names");
                if (!Entries.ContainsKey(ino))
                {
                    Assert.Equal(0UL, n.Children);
                    Assert.Equal(2u, n.Nlink);
                }
            }
            else
            {
                Assert.Equal(refs.GetValueOrDefault(ino), n.Nlink);
                Assert.Equal(n.Nlink == 0, Orphans.Contains(ino));
            }
        }
        Assert.All(Orphans, o => Assert.True(inodes.ContainsKey(o), $"orphan {o} has no inode"));
        foreach (var (ino, raw) in Locks)
        {
            Assert.True(inodes.ContainsKey(ino), $"locks on {ino}, which is no inode");
            var locks = LockTable.Decode(raw);
            Assert.NotEmpty(locks);
            Assert.All(locks, l => Assert.True(Leases.ContainsKey(l.Mount), $"a lock on {ino} of mount {l.Mount}, which has no lease"));
            // Canonical: one owner's locks never overlap or touch with the same type.
            foreach (var a in locks)
            {
                Assert.DoesNotContain(locks, b => !ReferenceEquals(a, b) && a.SameOwner(b) && a.Overlaps(b));
            }
        }
        var s = Superblock.Decode(Super!);
        Assert.Equal((ulong)inodes.Count, s.Inodes);
        Assert.All(inodes.Keys, k => Assert.True(k < s.NextIno));
    }
}
