using System.Text;

namespace Appliance.Fs.Meta;

/// <summary>
/// The metadata operations: a request and the current objects (read through <see cref="IMetaSource"/>) give a reply
/// and the changed objects (<see cref="MetaChanges"/>), or an errno and no change at all. Deterministic: the same
/// request over the same objects gives the same changes, so a host may run it on one node and replicate the result.
/// </summary>
public static partial class MetaOps
{
    public const int NameMax = 255;
    public const int SymlinkMax = 4095;
    public const ulong MaxFileSize = 1UL << 44;
    public const uint LinkMax = 65000;
    /// <summary>A readdir reply stays below this many bytes (a method's output is at most 64 KiB).</summary>
    public const int ReadDirBytes = 48 << 10;
    private const int MaxDepth = 4096;

    /// <summary>An errno raised inside an operation; caught by <see cref="RunAsync"/>, never escapes it.</summary>
    private sealed class Fail(int errno) : Exception
    {
        public int Errno { get; } = errno;
    }

    private static Fail Err(int errno) => new(errno);

    /// <summary>Operations that change nothing (a host may run them without logging).</summary>
    public static bool IsReadOnly(MetaOp op) =>
        op is MetaOp.Lookup or MetaOp.GetAttr or MetaOp.ReadDir or MetaOp.GetXattrs or MetaOp.Access or MetaOp.ListOrphans or MetaOp.StatFs
        or MetaOp.GetLock;

    /// <summary>Runs <paramref name="req"/> over <paramref name="source"/>. A failed operation returns its errno and
    /// empty changes.</summary>
    public static async ValueTask<(MetaReply Reply, MetaChanges Changes)> RunAsync(IMetaSource source, MetaRequest req)
    {
        var txn = new MetaTxn(source);
        try
        {
            if (req.Op != MetaOp.Format && await txn.SuperAsync() is null)
            {
                return (new MetaReply(Errno.ENOENT), new MetaChanges());
            }
            var reply = req.Op switch
            {
                MetaOp.Format => await FormatAsync(txn, req),
                MetaOp.Lookup => await LookupAsync(txn, req),
                MetaOp.GetAttr => new MetaReply(0) { Inode = Public(await InodeAsync(txn, req.Ino)) },
                MetaOp.SetAttr => await SetAttrAsync(txn, req),
                MetaOp.Make => await MakeAsync(txn, req),
                MetaOp.Link => await LinkAsync(txn, req),
                MetaOp.Unlink => await UnlinkAsync(txn, req),
                MetaOp.RmDir => await RmDirAsync(txn, req),
                MetaOp.Rename => await RenameAsync(txn, req),
                MetaOp.ReadDir => await ReadDirAsync(txn, req),
                MetaOp.SetXattr => await SetXattrAsync(txn, req),
                MetaOp.GetXattrs => await GetXattrsAsync(txn, req),
                MetaOp.RemoveXattr => await RemoveXattrAsync(txn, req),
                MetaOp.Access => await AccessAsync(txn, req),
                MetaOp.Written => await WrittenAsync(txn, req),
                MetaOp.Append => await AppendAsync(txn, req),
                MetaOp.Purge => await PurgeAsync(txn, req),
                MetaOp.ListOrphans => new MetaReply(0) { Orphans = await source.ListOrphansAsync(req.Ino, (int)Math.Clamp(req.Limit, 1, 4096)) },
                MetaOp.StatFs => new MetaReply(0) { Inodes = (await txn.SuperAsync())!.Inodes },
                MetaOp.GetLock => await GetLockAsync(txn, req),
                MetaOp.SetLock => await SetLockAsync(txn, req),
                MetaOp.RenewLease => await RenewLeaseAsync(txn, req),
                MetaOp.EndLease => await EndLeaseAsync(txn, req),
                MetaOp.SweepLeases => await SweepLeasesAsync(txn, req),
                _ => throw Err(Errno.ENOSYS),
            };
            return (reply, IsReadOnly(req.Op) ? new MetaChanges() : txn.Changes());
        }
        catch (Fail f)
        {
            return (new MetaReply(f.Errno), new MetaChanges());
        }
    }

    /// <summary>The inode without its xattrs (what replies carry unless xattrs were asked for).</summary>
    private static Inode Public(Inode n)
    {
        if (n.Xattrs.Count == 0)
        {
            return n;
        }
        var c = n.Clone();
        c.Xattrs.Clear();
        return c;
    }

    private static async ValueTask<Inode> InodeAsync(MetaTxn txn, ulong ino) => await txn.GetAsync(ino) ?? throw Err(Errno.ENOENT);

    private static async ValueTask<Inode> DirAsync(MetaTxn txn, ulong ino)
    {
        var d = await InodeAsync(txn, ino);
        return d.IsDir ? d : throw Err(Errno.ENOTDIR);
    }

    private static void Require(Inode n, Caller caller, int mask)
    {
        if (!Access.Allowed(n, caller, mask))
        {
            throw Err(Errno.EACCES);
        }
    }

    /// <summary>A name to look up or remove: too long is ENAMETOOLONG, '/' or NUL EINVAL.</summary>
    private static void CheckName(string name)
    {
        if (name.Length == 0)
        {
            throw Err(Errno.ENOENT);
        }
        if (Encoding.UTF8.GetByteCount(name) > NameMax)
        {
            throw Err(Errno.ENAMETOOLONG);
        }
        if (name.AsSpan().IndexOfAny('/', '\0') >= 0)
        {
            throw Err(Errno.EINVAL);
        }
    }

    /// <summary>A name to create: as <see cref="CheckName"/>, and "." and ".." exist already.</summary>
    private static void CheckNewName(string name)
    {
        CheckName(name);
        if (name is "." or "..")
        {
            throw Err(Errno.EEXIST);
        }
    }

    private static void Touch(Inode n, MetaTime now, bool content)
    {
        n.Ctime = now;
        if (content)
        {
            n.Mtime = now;
        }
    }

    private static async ValueTask<MetaReply> FormatAsync(MetaTxn txn, MetaRequest req)
    {
        if (await txn.SuperAsync() is not null)
        {
            throw Err(Errno.EEXIST);
        }
        txn.PutSuper(new Superblock { NextIno = Superblock.RootIno + 1, Inodes = 1, Created = req.Now });
        var root = new Inode
        {
            Ino = Superblock.RootIno,
            Mode = ModeBits.IfDir | (req.Mode & ModeBits.Perms),
            Uid = req.Uid,
            Gid = req.Gid,
            Nlink = 2,
            Parent = Superblock.RootIno,
            Atime = req.Now,
            Mtime = req.Now,
            Ctime = req.Now,
        };
        txn.Put(root);
        return new MetaReply(0) { Inode = root };
    }

    private static async ValueTask<MetaReply> LookupAsync(MetaTxn txn, MetaRequest req)
    {
        var dir = await DirAsync(txn, req.Ino);
        CheckName(req.Name);
        Require(dir, req.Caller, Access.X);
        var ino = req.Name switch
        {
            "." => dir.Ino,
            ".." => dir.Parent,
            _ => (await txn.EntryAsync(dir.Ino, req.Name))?.Ino ?? throw Err(Errno.ENOENT),
        };
        return new MetaReply(0) { Inode = Public(await InodeAsync(txn, ino)) };
    }

    private static async ValueTask<MetaReply> SetAttrAsync(MetaTxn txn, MetaRequest req)
    {
        var n = await InodeAsync(txn, req.Ino);
        var c = req.Caller;
        var v = req.Valid;
        if ((v & (AttrMask.Uid | AttrMask.Gid)) != 0)
        {
            // chown(2): only root gives a file away; the owner may change the group to one of its own groups.
            if ((v & AttrMask.Uid) != 0 && !c.IsRoot && (c.Uid != n.Uid || req.Uid != n.Uid))
            {
                throw Err(Errno.EPERM);
            }
            if ((v & AttrMask.Gid) != 0 && !c.IsRoot && (c.Uid != n.Uid || !(c.InGroup(req.Gid) || req.Gid == n.Gid)))
            {
                throw Err(Errno.EPERM);
            }
            if ((v & AttrMask.Uid) != 0)
            {
                n.Uid = req.Uid;
            }
            if ((v & AttrMask.Gid) != 0)
            {
                n.Gid = req.Gid;
            }
            if (!n.IsDir)
            {
                // A changed owner must not inherit set-id powers (Linux clears them for root too).
                n.Mode &= ~ModeBits.IsUid;
                if ((n.Mode & ModeBits.IxGrp) != 0)
                {
                    n.Mode &= ~ModeBits.IsGid;
                }
            }
        }
        if ((v & AttrMask.Mode) != 0)
        {
            if (!Access.IsOwner(n, c))
            {
                throw Err(Errno.EPERM);
            }
            var mode = req.Mode & ModeBits.Perms;
            if (!c.IsRoot && !n.IsDir && (mode & ModeBits.IsGid) != 0 && !c.InGroup(n.Gid))
            {
                mode &= ~ModeBits.IsGid;
            }
            n.Mode = n.Type | mode;
        }
        if ((v & AttrMask.Size) != 0)
        {
            if (n.IsDir)
            {
                throw Err(Errno.EISDIR);
            }
            if (!n.IsReg)
            {
                throw Err(Errno.EINVAL);
            }
            if ((v & AttrMask.ByHandle) == 0)
            {
                Require(n, c, Access.W);
            }
            if (req.Size > MaxFileSize)
            {
                throw Err(Errno.EFBIG);
            }
            n.Size = req.Size;
            n.Mtime = req.Now;
        }
        if ((v & (AttrMask.Atime | AttrMask.Mtime)) != 0)
        {
            // Explicit times need the owner; "now" needs write permission. The kernel resolved "now" before asking,
            // so write permission is accepted for both (with default_permissions it checked the exact rule).
            if (!Access.IsOwner(n, c) && !Access.Allowed(n, c, Access.W))
            {
                throw Err(Errno.EPERM);
            }
            if ((v & AttrMask.Atime) != 0)
            {
                n.Atime = req.Atime;
            }
            if ((v & AttrMask.Mtime) != 0)
            {
                n.Mtime = req.Mtime;
            }
        }
        n.Ctime = req.Now;
        txn.Put(n);
        return new MetaReply(0) { Inode = Public(n) };
    }

    private static async ValueTask<MetaReply> AccessAsync(MetaTxn txn, MetaRequest req)
    {
        var n = await InodeAsync(txn, req.Ino);
        Require(n, req.Caller, (int)(req.Mode & 7));
        return new MetaReply(0);
    }

    private static async ValueTask<MetaReply> AppendAsync(MetaTxn txn, MetaRequest req)
    {
        var n = await InodeAsync(txn, req.Ino);
        if (!n.IsReg)
        {
            throw Err(n.IsDir ? Errno.EISDIR : Errno.EINVAL);
        }
        if (req.Size > MaxFileSize || n.Size + req.Size > MaxFileSize)
        {
            throw Err(Errno.EFBIG);
        }
        n.Size += req.Size;
        n.Mtime = req.Mtime;
        n.Ctime = req.Mtime;
        txn.Put(n);
        return new MetaReply(0) { Inode = Public(n) };
    }

    private static async ValueTask<MetaReply> WrittenAsync(MetaTxn txn, MetaRequest req)
    {
        var n = await InodeAsync(txn, req.Ino);
        if (!n.IsReg)
        {
            throw Err(Errno.EINVAL);
        }
        if (req.Size > MaxFileSize)
        {
            throw Err(Errno.EFBIG);
        }
        n.Size = Math.Max(n.Size, req.Size);
        n.Mtime = req.Mtime;
        n.Ctime = req.Mtime;
        txn.Put(n);
        return new MetaReply(0) { Inode = Public(n) };
    }

    private static async ValueTask<MetaReply> PurgeAsync(MetaTxn txn, MetaRequest req)
    {
        var n = await InodeAsync(txn, req.Ino);
        if (n.Nlink != 0)
        {
            throw Err(Errno.EBUSY);
        }
        await TryPurgeAsync(txn, n.Ino);
        return new MetaReply(0) { Inode = Public(n) };
    }

    /// <summary>Drops an orphan (its inode record, its orphan entry, one from the inode count); false, changing
    /// nothing, when <paramref name="ino"/> is gone or still has a link.</summary>
    private static async ValueTask<bool> TryPurgeAsync(MetaTxn txn, ulong ino)
    {
        if (await txn.GetAsync(ino) is not { Nlink: 0 } n)
        {
            return false;
        }
        txn.Delete(n.Ino);
        txn.SetOrphan(n.Ino, false);
        // Locks left on it by mounts that died holding it open go with it.
        if ((await txn.LocksAsync(n.Ino)).Count > 0)
        {
            txn.PutLocks(n.Ino, []);
        }
        var s = (await txn.SuperAsync())!;
        s.Inodes--;
        txn.PutSuper(s);
        return true;
    }

    private static async ValueTask<MetaReply> ReadDirAsync(MetaTxn txn, MetaRequest req)
    {
        var dir = await DirAsync(txn, req.Ino);
        var limit = (int)Math.Clamp(req.Limit, 1, 1024);
        var plus = (req.Flags & 1) != 0;
        var page = await txn.Source.ListEntriesAsync(dir.Ino, req.Name, limit);
        var entries = new List<DirEntry>(page.Count);
        var bytes = 0;
        foreach (var (name, raw) in page)
        {
            var e = Dentry.Decode(raw);
            var n = plus ? await txn.GetAsync(e.Ino) : null;
            entries.Add(new DirEntry(name, e, n is null ? null : Public(n)));
            bytes += 32 + Encoding.UTF8.GetByteCount(name) + (n is null ? 0 : 128 + (n.Target is null ? 0 : Encoding.UTF8.GetByteCount(n.Target)));
            if (bytes > ReadDirBytes - (NameMax + SymlinkMax + 256))
            {
                break;
            }
        }
        return new MetaReply(0) { Entries = entries, More = entries.Count < page.Count || page.Count == limit };
    }
}
