namespace Appliance.Fs.Meta;

/// <summary>File locks (flock and POSIX byte-range) and the mount leases they live by.</summary>
public static partial class MetaOps
{
    /// <summary>Lock records an <see cref="MetaOp.EndLease"/> or <see cref="MetaOp.SweepLeases"/> call looks at.</summary>
    public const int LockPage = 256;
    public const int MountIdMax = 255;

    private static FileLock LockOf(MetaRequest req)
    {
        FileLock l;
        try
        {
            l = FileLock.Decode(req.Data);
        }
        catch (MetaFormatException)
        {
            throw Err(Errno.EINVAL);
        }
        CheckMount(l.Mount);
        return l;
    }

    private static void CheckMount(string mount)
    {
        if (mount.Length is 0 or > MountIdMax)
        {
            throw Err(Errno.EINVAL);
        }
    }

    /// <summary>Whether <paramref name="mount"/> holds a lease the PG's clock has not passed.</summary>
    private static async ValueTask<bool> LiveAsync(MetaTxn txn, string mount) =>
        await txn.LeaseAsync(mount) is { } lease && lease.Live(txn.Source.NowMs);

    /// <summary>The conflicting lock of a live mount that starts first (what F_GETLK reports), or null.</summary>
    private static async ValueTask<FileLock?> ConflictAsync(MetaTxn txn, List<FileLock> locks, FileLock request)
    {
        foreach (var l in locks.Where(l => l.Blocks(request)).OrderBy(l => l.Start))
        {
            if (await LiveAsync(txn, l.Mount))
            {
                return l;
            }
        }
        return null;
    }

    private static async ValueTask<MetaReply> GetLockAsync(MetaTxn txn, MetaRequest req)
    {
        var probe = LockOf(req);
        if (probe.Type == LockType.Unlock)
        {
            throw Err(Errno.EINVAL);
        }
        await InodeAsync(txn, req.Ino);
        return new MetaReply(0) { Lock = await ConflictAsync(txn, await txn.LocksAsync(req.Ino), probe) };
    }

    private static async ValueTask<MetaReply> SetLockAsync(MetaTxn txn, MetaRequest req)
    {
        var request = LockOf(req);
        var locks = await txn.LocksAsync(req.Ino);
        if (await txn.GetAsync(req.Ino) is null)
        {
            // An unlock of what is gone has nothing to do (a purge took its locks along).
            return request.Type == LockType.Unlock ? new MetaReply(0) : throw Err(Errno.ENOENT);
        }
        if (request.Type != LockType.Unlock)
        {
            if (!await LiveAsync(txn, request.Mount))
            {
                // Its lease ran out: others may have taken what it held, so it takes nothing until it starts anew.
                throw Err(Errno.ENOLCK);
            }
            if (await ConflictAsync(txn, locks, request) is { } conflict)
            {
                // Nothing changed yet: the failed operation leaves no trace, as every failed one.
                return new MetaReply(Errno.EAGAIN) { Lock = conflict };
            }
        }
        // Locks of mounts whose lease ran out go on the way (the conflict check above already ignored them).
        var kept = new List<FileLock>(locks.Count);
        foreach (var l in locks)
        {
            if (l.Mount == request.Mount || await LiveAsync(txn, l.Mount))
            {
                kept.Add(l);
            }
        }
        var after = LockTable.Apply(kept, request);
        if (after.Count > LockTable.MaxLocks)
        {
            throw Err(Errno.ENOLCK);
        }
        if (!after.SequenceEqual(locks))
        {
            txn.PutLocks(req.Ino, after);
        }
        return new MetaReply(0);
    }

    private static async ValueTask<MetaReply> RenewLeaseAsync(MetaTxn txn, MetaRequest req)
    {
        CheckMount(req.Name);
        if (req.Limit is 0 or > MountLease.MaxLeaseMs)
        {
            throw Err(Errno.EINVAL);
        }
        var now = txn.Source.NowMs;
        var lease = await txn.LeaseAsync(req.Name);
        var starting = (req.Flags & 1) != 0;
        // A lease that ran out stays out: the locks it covered may have been released to others meanwhile. A start
        // over a live lease of the same id is a resend of the start.
        if (lease is null ? !starting : !lease.Live(now))
        {
            throw Err(Errno.ESTALE);
        }
        txn.PutLease(req.Name, new MountLease(now + req.Limit, req.Limit));
        return new MetaReply(0);
    }

    private static async ValueTask<MetaReply> EndLeaseAsync(MetaTxn txn, MetaRequest req)
    {
        CheckMount(req.Name);
        var (more, next) = await ReleaseLocksOfAsync(txn, req.Ino, l => l.Mount == req.Name);
        if (!more)
        {
            txn.PutLease(req.Name, null);
        }
        return new MetaReply(0) { More = more, Next = next };
    }

    private static async ValueTask<MetaReply> SweepLeasesAsync(MetaTxn txn, MetaRequest req)
    {
        var now = txn.Source.NowMs;
        var dead = new HashSet<string>(StringComparer.Ordinal);
        var after = "";
        while (true)
        {
            var page = await txn.Source.ListLeasesAsync(after, 1024);
            foreach (var (mount, raw) in page)
            {
                MountLease lease;
                try
                {
                    lease = MountLease.Decode(raw);
                }
                catch (MetaFormatException)
                {
                    continue; // fs check's to repair; a sweep does not build on it
                }
                txn.SeenLease(mount, raw);
                if (!lease.Live(now))
                {
                    dead.Add(mount);
                }
            }
            if (page.Count < 1024)
            {
                break;
            }
            after = page[^1].Key;
        }
        if (dead.Count == 0)
        {
            return new MetaReply(0);
        }
        // Dead mounts cannot take locks (SetLock wants a live lease) nor come back (RenewLease refuses a lease that
        // ran out), so locks of theirs in records this page has passed stay gone while later pages are swept.
        var (more, next) = await ReleaseLocksOfAsync(txn, req.Ino, l => dead.Contains(l.Mount));
        if (!more)
        {
            foreach (var mount in dead)
            {
                txn.PutLease(mount, null);
            }
        }
        return new MetaReply(0) { More = more, Next = next };
    }

    /// <summary>Drops the locks <paramref name="match"/> picks from one page of lock records after
    /// <paramref name="after"/>; whether more records follow, and the last one looked at.</summary>
    private static async ValueTask<(bool More, ulong Next)> ReleaseLocksOfAsync(MetaTxn txn, ulong after, Func<FileLock, bool> match)
    {
        var page = await txn.Source.ListLocksAsync(after, LockPage);
        foreach (var (ino, raw) in page)
        {
            try
            {
                txn.SeenLocks(ino, raw);
            }
            catch (MetaFormatException)
            {
                continue; // fs check's to repair
            }
            var locks = await txn.LocksAsync(ino);
            if (locks.RemoveAll(l => match(l)) > 0)
            {
                txn.PutLocks(ino, locks);
            }
        }
        return page.Count < LockPage ? (false, 0) : (true, page[^1].Key);
    }
}
