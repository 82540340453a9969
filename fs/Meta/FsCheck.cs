namespace Appliance.Fs.Meta;

/// <summary>One data object of a file as listed in the data pool: stripe <see cref="Stripe"/> of inode
/// <see cref="Ino"/>, <see cref="Size"/> bytes long.</summary>
public readonly record struct DataObject(ulong Ino, long Stripe, ulong Size);

/// <summary>Everything of one filesystem as read from its pools, undecoded: what <see cref="FsCheck"/> checks.</summary>
public sealed class FsImage
{
    public byte[]? Super { get; init; }
    public Dictionary<ulong, byte[]> Inodes { get; init; } = [];
    /// <summary>Directory entries by the inode whose object holds them (whether or not that inode exists).</summary>
    public Dictionary<ulong, SortedDictionary<string, byte[]>> Entries { get; init; } = [];
    public HashSet<ulong> Orphans { get; init; } = [];
    /// <summary>Lock records by inode, leases by mount id (both in the superblock's omap).</summary>
    public Dictionary<ulong, byte[]> Locks { get; init; } = [];
    public Dictionary<string, byte[]> Leases { get; init; } = new(StringComparer.Ordinal);
    public List<DataObject> Data { get; init; } = [];
    public int StripeSize { get; init; }
    /// <summary>The time a repair stamps on what it makes (lost+found).</summary>
    public MetaTime Now { get; init; }
}

/// <summary>What <see cref="FsCheck.Run"/> found and how to repair it: metadata changes (applied as one
/// <see cref="MetaChanges"/>), data objects to remove, data objects to cut to a size.</summary>
public sealed class FsCheckResult
{
    public List<string> Problems { get; } = [];
    public MetaChanges Repair { get; } = new();
    public List<(ulong Ino, long Stripe)> RemoveData { get; } = [];
    public List<(ulong Ino, long Stripe, ulong Size)> TruncateData { get; } = [];

    public bool Clean => Problems.Count == 0;
}

/// <summary>
/// `fs check`: the invariants of fs/Meta (README "Invariants") verified over a whole filesystem, with the repair
/// that restores them. Pure: the caller reads the objects and applies the repair. Order: records that do not decode
/// are dropped; entries that name nothing (or the wrong type, or a directory a second time) are removed or
/// rewritten; inodes no entry reaches from the root (and not orphans) are linked into /lost+found as "#INO"; then
/// every count (nlink, children, parent, the orphan list, the superblock) is set from what is there; data objects
/// of inodes that are not regular files, or past a file's size, are removed or cut; lock records of inodes that do
/// not exist go, and so do locks of mounts without a lease (a lease that merely ran out is no problem: the next
/// operation that meets its locks, or a sweep, releases them).
/// </summary>
public static class FsCheck
{
    public const string LostFound = "lost+found";

    public static FsCheckResult Run(FsImage image)
    {
        var result = new FsCheckResult();
        var problems = result.Problems;
        var repair = result.Repair;
        if (image.Super is null)
        {
            problems.Add("no superblock: this is not a filesystem (nothing repaired)");
            return result;
        }
        Superblock super;
        try
        {
            super = Superblock.Decode(image.Super);
        }
        catch (MetaFormatException e)
        {
            problems.Add($"the superblock does not decode ({e.Message}); nothing repaired");
            return result;
        }

        // Inode records.
        var inodes = new SortedDictionary<ulong, Inode>();
        foreach (var (ino, raw) in image.Inodes)
        {
            try
            {
                var n = Inode.Decode(raw);
                if (n.Ino != ino)
                {
                    throw new MetaFormatException($"it names inode {n.Ino}");
                }
                inodes[ino] = n;
            }
            catch (MetaFormatException e)
            {
                problems.Add($"inode {ino}: its record does not decode ({e.Message}): removed");
                repair.Inodes[ino] = null;
            }
        }
        if (!inodes.TryGetValue(Superblock.RootIno, out var root) || !root.IsDir)
        {
            problems.Add("the root directory is missing or not a directory (nothing repaired)");
            return result;
        }

        // Entries: only under directories, naming existing inodes of their type, a directory named once.
        var entries = new Dictionary<ulong, SortedDictionary<string, Dentry>>();
        var dirNamedBy = new Dictionary<ulong, (ulong Dir, string Name)>();
        foreach (var (dir, list) in image.Entries.OrderBy(kv => kv.Key))
        {
            var holder = inodes.GetValueOrDefault(dir);
            foreach (var (name, raw) in list)
            {
                if (holder is null)
                {
                    // Entries left in the object of an inode that is gone: the object goes.
                    problems.Add($"entry '{name}' is held by inode {dir}, which does not exist: removed");
                    repair.Inodes[dir] = null;
                    continue;
                }
                if (!holder.IsDir)
                {
                    problems.Add($"entry '{name}' is held by inode {dir}, which is not a directory: removed");
                    repair.Entries[(dir, name)] = null;
                    continue;
                }
                Dentry e;
                try
                {
                    e = Dentry.Decode(raw);
                }
                catch (MetaFormatException ex)
                {
                    problems.Add($"entry '{name}' in directory {dir} does not decode ({ex.Message}): removed");
                    repair.Entries[(dir, name)] = null;
                    continue;
                }
                if (!inodes.TryGetValue(e.Ino, out var target) || e.Ino == Superblock.RootIno)
                {
                    problems.Add($"entry '{name}' in directory {dir} names inode {e.Ino}, which {(e.Ino == Superblock.RootIno ? "is the root" : "does not exist")}: removed");
                    repair.Entries[(dir, name)] = null;
                    continue;
                }
                if (target.IsDir)
                {
                    if (dirNamedBy.TryGetValue(e.Ino, out var first) || (target.Parent != dir && inodes.ContainsKey(target.Parent) && NamesIn(image, target.Parent, e.Ino)))
                    {
                        // A directory has one name: the one in its recorded parent (else the first found).
                        problems.Add($"directory {e.Ino} has a second name '{name}' in directory {dir}{(dirNamedBy.ContainsKey(e.Ino) ? $" (first: '{first.Name}' in {first.Dir})" : $" (its parent is {target.Parent})")}: removed");
                        repair.Entries[(dir, name)] = null;
                        continue;
                    }
                    dirNamedBy[e.Ino] = (dir, name);
                }
                if (e.Type != target.Type)
                {
                    problems.Add($"entry '{name}' in directory {dir} says type {e.Type:x} for inode {e.Ino} of type {target.Type:x}: rewritten");
                    e = e with { Type = target.Type };
                    repair.Entries[(dir, name)] = e.Encode();
                }
                (entries.TryGetValue(dir, out var d) ? d : entries[dir] = new SortedDictionary<string, Dentry>(StringComparer.Ordinal))[name] = e;
            }
        }

        // Reachability from the root; what is neither reachable nor an orphan goes to lost+found: the top of each lost
        // subtree (what hangs below comes along), or one directory of a cycle cut off from the root.
        var made = new HashSet<ulong>();
        Inode? lf = null;
        while (Unreached(inodes, entries, image.Orphans) is { Count: > 0 } lost)
        {
            var tops = lost.Where(i => !entries.Any(kv => lost.Contains(kv.Key) && kv.Value.Values.Any(e => e.Ino == i))).ToList();
            if (tops.Count == 0)
            {
                tops = [lost.Where(i => inodes[i].IsDir).Min()];
            }
            if (lf is null)
            {
                if (entries.TryGetValue(Superblock.RootIno, out var top) && top.TryGetValue(LostFound, out var existing) && inodes[existing.Ino].IsDir)
                {
                    lf = inodes[existing.Ino];
                }
                else
                {
                    var name = LostFound;
                    for (var k = 1; entries.GetValueOrDefault(Superblock.RootIno)?.ContainsKey(name) == true; k++)
                    {
                        name = $"{LostFound}.{k}";
                    }
                    lf = new Inode
                    {
                        Ino = super.NextIno++,
                        Mode = ModeBits.IfDir | 0x1C0, // 0700
                        Nlink = 2,
                        Atime = image.Now,
                        Mtime = image.Now,
                        Ctime = image.Now,
                        Parent = Superblock.RootIno,
                    };
                    inodes[lf.Ino] = lf;
                    made.Add(lf.Ino);
                    AddEntry(entries, repair, Superblock.RootIno, name, new Dentry(lf.Ino, ModeBits.IfDir));
                    dirNamedBy[lf.Ino] = (Superblock.RootIno, name);
                    problems.Add($"made /{name} for what no directory reaches");
                }
            }
            foreach (var ino in tops)
            {
                var n = inodes[ino];
                var name = $"#{ino}";
                problems.Add($"{(n.IsDir ? "directory" : "inode")} {ino} is reached from no directory: linked as {name} in lost+found");
                if (n.IsDir && dirNamedBy.TryGetValue(ino, out var old))
                {
                    // Its name in a cycle cut off from the root goes: a directory has one name.
                    entries[old.Dir].Remove(old.Name);
                    repair.Entries[(old.Dir, old.Name)] = null;
                }
                AddEntry(entries, repair, lf.Ino, name, new Dentry(ino, n.Type));
                if (n.IsDir)
                {
                    dirNamedBy[ino] = (lf.Ino, name);
                }
            }
        }

        // Counts, from what is there now.
        var refs = new Dictionary<ulong, uint>();
        foreach (var e in entries.Values.SelectMany(d => d.Values))
        {
            refs[e.Ino] = refs.GetValueOrDefault(e.Ino) + 1;
        }
        foreach (var (ino, n) in inodes)
        {
            var fixedN = n.Clone();
            if (n.IsDir)
            {
                var mine = entries.GetValueOrDefault(ino);
                var children = (ulong)(mine?.Count ?? 0);
                var nlink = 2u + (uint)(mine?.Values.Count(e => inodes[e.Ino].IsDir) ?? 0);
                var parent = ino == Superblock.RootIno ? Superblock.RootIno : dirNamedBy[ino].Dir;
                if (n.Children != children && !made.Contains(ino))
                {
                    problems.Add($"directory {ino} counts {n.Children} entries, holds {children}: fixed");
                }
                if (n.Nlink != nlink && !made.Contains(ino))
                {
                    problems.Add($"directory {ino} has link count {n.Nlink}, should have {nlink}: fixed");
                }
                if (n.Parent != parent && !made.Contains(ino))
                {
                    problems.Add($"directory {ino} records parent {n.Parent}, is named in {parent}: fixed");
                }
                (fixedN.Children, fixedN.Nlink, fixedN.Parent) = (children, nlink, parent);
            }
            else
            {
                var count = refs.GetValueOrDefault(ino);
                if (n.Nlink != count)
                {
                    problems.Add($"inode {ino} has link count {n.Nlink}, is named {count} time(s): fixed");
                    fixedN.Nlink = count;
                }
                var orphan = count == 0;
                if (orphan != image.Orphans.Contains(ino))
                {
                    problems.Add(orphan ? $"inode {ino} has no name and is not on the orphan list: added" : $"inode {ino} is on the orphan list but named: taken off");
                    repair.Orphans[ino] = orphan;
                }
            }
            if (made.Contains(ino) || fixedN.Nlink != n.Nlink || fixedN.Children != n.Children || fixedN.Parent != n.Parent)
            {
                repair.Inodes[ino] = fixedN.Encode();
            }
        }
        foreach (var o in image.Orphans.Where(o => !inodes.TryGetValue(o, out var n) || n.IsDir))
        {
            problems.Add($"orphan {o} is {(inodes.ContainsKey(o) ? "a directory" : "not an inode")}: taken off the list");
            repair.Orphans[o] = false;
        }
        var original = Superblock.Decode(image.Super);
        var max = inodes.Keys.Where(i => !made.Contains(i)).Max();
        var fixedSuper = new Superblock { NextIno = Math.Max(super.NextIno, max + 1), Inodes = (ulong)inodes.Count, Created = super.Created };
        if (original.Inodes != (ulong)inodes.Count - (ulong)made.Count)
        {
            problems.Add($"the superblock counts {original.Inodes} inodes, there are {inodes.Count - made.Count}: fixed");
        }
        if (original.NextIno <= max)
        {
            problems.Add($"the superblock's next inode number {original.NextIno} is not above inode {max}: fixed");
        }
        if (fixedSuper.Inodes != original.Inodes || fixedSuper.NextIno != original.NextIno)
        {
            repair.Super = fixedSuper.Encode();
        }

        CheckLocks(image, inodes, result);

        // File data.
        var stripe = (ulong)image.StripeSize;
        foreach (var d in image.Data.OrderBy(d => d.Ino).ThenBy(d => d.Stripe))
        {
            if (!inodes.TryGetValue(d.Ino, out var n) || !n.IsReg)
            {
                problems.Add($"data object {d.Stripe} of inode {d.Ino}, which {(n is null ? "does not exist" : "is not a regular file")}: removed");
                result.RemoveData.Add((d.Ino, d.Stripe));
                continue;
            }
            var start = (ulong)d.Stripe * stripe;
            if (start >= n.Size)
            {
                problems.Add($"data object {d.Stripe} of inode {d.Ino} lies past its size {n.Size}: removed");
                result.RemoveData.Add((d.Ino, d.Stripe));
            }
            else if (start + d.Size > n.Size)
            {
                problems.Add($"data object {d.Stripe} of inode {d.Ino} holds bytes past its size {n.Size}: cut");
                result.TruncateData.Add((d.Ino, d.Stripe, n.Size - start));
            }
        }
        return result;
    }

    private static void CheckLocks(FsImage image, SortedDictionary<ulong, Inode> inodes, FsCheckResult result)
    {
        var leased = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (mount, raw) in image.Leases.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            try
            {
                MountLease.Decode(raw);
                leased.Add(mount);
            }
            catch (MetaFormatException e)
            {
                result.Problems.Add($"the lease of mount {mount} does not decode ({e.Message}): removed");
                result.Repair.Leases[mount] = null;
            }
        }
        foreach (var (ino, raw) in image.Locks.OrderBy(kv => kv.Key))
        {
            if (!inodes.ContainsKey(ino))
            {
                result.Problems.Add($"locks on inode {ino}, which does not exist: removed");
                result.Repair.Locks[ino] = null;
                continue;
            }
            List<FileLock> locks;
            try
            {
                locks = LockTable.Decode(raw);
            }
            catch (MetaFormatException e)
            {
                result.Problems.Add($"the locks on inode {ino} do not decode ({e.Message}): removed");
                result.Repair.Locks[ino] = null;
                continue;
            }
            var kept = locks.Where(l => leased.Contains(l.Mount)).ToList();
            foreach (var l in locks.Where(l => !leased.Contains(l.Mount)))
            {
                result.Problems.Add($"a lock on inode {ino} of mount {l.Mount}, which has no lease: removed");
            }
            if (kept.Count != locks.Count)
            {
                result.Repair.Locks[ino] = kept.Count == 0 ? null : LockTable.Encode(kept);
            }
        }
    }

    private static bool NamesIn(FsImage image, ulong dir, ulong ino) =>
        image.Entries.GetValueOrDefault(dir)?.Values.Any(raw =>
        {
            try
            {
                return Dentry.Decode(raw).Ino == ino;
            }
            catch (MetaFormatException)
            {
                return false;
            }
        }) == true;

    /// <summary>Inodes no entry reaches from the root, except unnamed non-directories on the orphan list (unlinked
    /// while open: they are meant to be unreachable).</summary>
    private static HashSet<ulong> Unreached(SortedDictionary<ulong, Inode> inodes, Dictionary<ulong, SortedDictionary<string, Dentry>> entries, HashSet<ulong> orphans)
    {
        var reached = new HashSet<ulong> { Superblock.RootIno };
        var queue = new Queue<ulong>([Superblock.RootIno]);
        var named = entries.Values.SelectMany(d => d.Values).Select(e => e.Ino).ToHashSet();
        while (queue.Count > 0)
        {
            foreach (var e in entries.GetValueOrDefault(queue.Dequeue())?.Values ?? Enumerable.Empty<Dentry>())
            {
                if (reached.Add(e.Ino) && inodes[e.Ino].IsDir)
                {
                    queue.Enqueue(e.Ino);
                }
            }
        }
        return [.. inodes.Keys.Where(i => !reached.Contains(i) && !(orphans.Contains(i) && !inodes[i].IsDir && !named.Contains(i)))];
    }

    private static void AddEntry(Dictionary<ulong, SortedDictionary<string, Dentry>> entries, MetaChanges repair, ulong dir, string name, Dentry e)
    {
        (entries.TryGetValue(dir, out var d) ? d : entries[dir] = new SortedDictionary<string, Dentry>(StringComparer.Ordinal))[name] = e;
        repair.Entries[(dir, name)] = e.Encode();
    }
}
