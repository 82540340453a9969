using System.Text;

namespace Appliance.Fs.Meta;

/// <summary>Name operations: make (mknod, mkdir, symlink, create), link, unlink, rmdir, rename.</summary>
public static partial class MetaOps
{
    /// <summary>Flags of <see cref="MetaOp.Make"/>: a regular file that exists is returned instead of EEXIST (a
    /// create without O_EXCL), if the caller may open it for what <see cref="MakeWantRead"/> and
    /// <see cref="MakeWantWrite"/> say.</summary>
    public const uint MakeOpenExisting = 1;
    public const uint MakeWantRead = 2;
    public const uint MakeWantWrite = 4;

    /// <summary>A flag of <see cref="MetaOp.Make"/> and <see cref="MetaOp.Unlink"/>: the reply carries the directory
    /// as the operation left it (<see cref="MetaReply.Parent"/>), so the mount can answer its attributes.</summary>
    public const uint WantParent = 0x100;

    /// <summary>A directory to change entries in: it exists, is a directory, is not removed, and the caller may write
    /// and search it.</summary>
    private static async ValueTask<Inode> WritableDirAsync(MetaTxn txn, ulong ino, Caller caller)
    {
        var dir = await DirAsync(txn, ino);
        if (dir.Nlink == 0)
        {
            throw Err(Errno.ENOENT);
        }
        Require(dir, caller, Access.W | Access.X);
        return dir;
    }

    private static async ValueTask AllocateAsync(MetaTxn txn, Inode n)
    {
        var s = (await txn.SuperAsync())!;
        n.Ino = s.NextIno++;
        s.Inodes++;
        txn.PutSuper(s);
    }

    private static async ValueTask<MetaReply> MakeAsync(MetaTxn txn, MetaRequest req)
    {
        var type = req.Mode & ModeBits.IfMt;
        if (type == 0)
        {
            type = ModeBits.IfReg;
        }
        if (type is not (ModeBits.IfReg or ModeBits.IfDir or ModeBits.IfLnk or ModeBits.IfChr or ModeBits.IfBlk or ModeBits.IfIfo or ModeBits.IfSock))
        {
            throw Err(Errno.EINVAL);
        }
        var dir = await DirAsync(txn, req.Ino);
        CheckNewName(req.Name);
        if (dir.Nlink == 0)
        {
            throw Err(Errno.ENOENT);
        }
        Require(dir, req.Caller, Access.X);
        if (await txn.EntryAsync(dir.Ino, req.Name) is { } existing)
        {
            // A create that lost a race with another mount's create of the same name opens that file instead.
            if ((req.Flags & MakeOpenExisting) != 0 && type == ModeBits.IfReg && await txn.GetAsync(existing.Ino) is { } other)
            {
                if (other.IsDir)
                {
                    throw Err(Errno.EISDIR);
                }
                Require(other, req.Caller, ((req.Flags & MakeWantRead) != 0 ? Access.R : 0) | ((req.Flags & MakeWantWrite) != 0 ? Access.W : 0));
                return new MetaReply(0) { Inode = Public(other) };
            }
            throw Err(Errno.EEXIST);
        }
        Require(dir, req.Caller, Access.W);
        string? target = null;
        if (type == ModeBits.IfLnk)
        {
            target = Encoding.UTF8.GetString(req.Data);
            if (target.Length == 0)
            {
                throw Err(Errno.ENOENT);
            }
            if (req.Data.Length > SymlinkMax)
            {
                throw Err(Errno.ENAMETOOLONG);
            }
        }
        var mode = type == ModeBits.IfLnk ? ModeBits.IfLnk | 0x1FF : type | (req.Mode & ModeBits.Perms);
        var gid = req.Caller.Gid;
        if ((dir.Mode & ModeBits.IsGid) != 0)
        {
            // A setgid directory hands its group down, and its setgid bit to subdirectories.
            gid = dir.Gid;
            if (type == ModeBits.IfDir)
            {
                mode |= ModeBits.IsGid;
            }
        }
        if (type != ModeBits.IfDir && (mode & ModeBits.IsGid) != 0 && !req.Caller.IsRoot && !req.Caller.InGroup(gid))
        {
            mode &= ~ModeBits.IsGid;
        }
        var n = new Inode
        {
            Mode = mode,
            Uid = req.Caller.Uid,
            Gid = gid,
            Nlink = type == ModeBits.IfDir ? 2u : 1u,
            Rdev = type is ModeBits.IfChr or ModeBits.IfBlk ? req.Rdev : 0,
            Atime = req.Now,
            Mtime = req.Now,
            Ctime = req.Now,
            Parent = type == ModeBits.IfDir ? dir.Ino : 0,
            Target = target,
        };
        await AllocateAsync(txn, n);
        txn.Put(n);
        txn.SetEntry(dir.Ino, req.Name, new Dentry(n.Ino, type));
        dir.Children++;
        if (type == ModeBits.IfDir)
        {
            dir.Nlink++;
        }
        Touch(dir, req.Now, content: true);
        txn.Put(dir);
        return new MetaReply(0) { Inode = n, Parent = (req.Flags & WantParent) != 0 ? Public(dir) : null };
    }

    private static async ValueTask<MetaReply> LinkAsync(MetaTxn txn, MetaRequest req)
    {
        var n = await InodeAsync(txn, req.Ino);
        if (n.IsDir)
        {
            throw Err(Errno.EPERM);
        }
        var dir = await WritableDirAsync(txn, req.Ino2, req.Caller);
        CheckNewName(req.Name2);
        if (n.Nlink == 0)
        {
            throw Err(Errno.ENOENT); // linkat of an unlinked file that is still open
        }
        if (await txn.EntryAsync(dir.Ino, req.Name2) is not null)
        {
            throw Err(Errno.EEXIST);
        }
        if (n.Nlink >= LinkMax)
        {
            throw Err(Errno.EMLINK);
        }
        txn.SetEntry(dir.Ino, req.Name2, new Dentry(n.Ino, n.Type));
        n.Nlink++;
        Touch(n, req.Now, content: false);
        dir.Children++;
        Touch(dir, req.Now, content: true);
        txn.Put(n);
        txn.Put(dir);
        return new MetaReply(0) { Inode = Public(n) };
    }

    /// <summary>Drops one link of a non-directory; at zero it goes on the orphan list (the mount purges it when no
    /// handle holds it any more; after a crash, the orphan list finds it). Returns it when it lost its last link.</summary>
    private static Inode? DropLink(MetaTxn txn, Inode n, MetaTime now)
    {
        n.Nlink--;
        Touch(n, now, content: false);
        txn.Put(n);
        if (n.Nlink == 0)
        {
            txn.SetOrphan(n.Ino, true);
            return Public(n);
        }
        return null;
    }

    /// <summary>Removes an empty directory's inode (directories hold no data, so nothing waits on them).</summary>
    private static async ValueTask RemoveDirAsync(MetaTxn txn, Inode victim, Inode parent)
    {
        txn.Delete(victim.Ino);
        parent.Nlink--;
        var s = (await txn.SuperAsync())!;
        s.Inodes--;
        txn.PutSuper(s);
    }

    /// <summary>Orphans an <see cref="MetaOp.Unlink"/> purges as well: the request's data, a u64 (little-endian)
    /// inode number each, at most <see cref="PurgeRidersMax"/>.</summary>
    public const int PurgeRidersMax = 64;

    /// <summary>Encodes the orphans an unlink purges as well (see <see cref="MetaOp.Unlink"/>).</summary>
    public static byte[] EncodePurgeRiders(IReadOnlyList<ulong> inodes)
    {
        var w = new MetaWriter();
        foreach (var ino in inodes)
        {
            w.U64(ino);
        }
        return w.ToArray();
    }

    private static ulong[] DecodePurgeRiders(byte[] data)
    {
        if (data.Length % 8 != 0 || data.Length / 8 > PurgeRidersMax)
        {
            throw Err(Errno.EINVAL);
        }
        var r = new MetaReader(data);
        var inodes = new ulong[data.Length / 8];
        for (var i = 0; i < inodes.Length; i++)
        {
            inodes[i] = r.U64();
        }
        return inodes;
    }

    private static async ValueTask<MetaReply> UnlinkAsync(MetaTxn txn, MetaRequest req)
    {
        var riders = DecodePurgeRiders(req.Data);
        var dir = await WritableDirAsync(txn, req.Ino, req.Caller);
        CheckName(req.Name);
        if (req.Name is "." or "..")
        {
            throw Err(Errno.EISDIR);
        }
        var e = await txn.EntryAsync(dir.Ino, req.Name) ?? throw Err(Errno.ENOENT);
        var n = await InodeAsync(txn, e.Ino);
        if (n.IsDir)
        {
            throw Err(Errno.EISDIR);
        }
        if (!Access.MayDelete(dir, n, req.Caller))
        {
            throw Err(Errno.EPERM);
        }
        txn.SetEntry(dir.Ino, req.Name, null);
        dir.Children--;
        Touch(dir, req.Now, content: true);
        txn.Put(dir);
        var released = DropLink(txn, n, req.Now);
        foreach (var ino in riders)
        {
            if (ino != n.Ino)
            {
                await TryPurgeAsync(txn, ino);
            }
        }
        return new MetaReply(0) { Inode = Public(n), Released = released, Parent = (req.Flags & WantParent) != 0 ? Public(dir) : null };
    }

    private static async ValueTask<MetaReply> RmDirAsync(MetaTxn txn, MetaRequest req)
    {
        var dir = await DirAsync(txn, req.Ino);
        CheckName(req.Name);
        if (req.Name == ".")
        {
            throw Err(Errno.EINVAL);
        }
        if (req.Name == "..")
        {
            throw Err(Errno.ENOTEMPTY);
        }
        dir = await WritableDirAsync(txn, req.Ino, req.Caller);
        var e = await txn.EntryAsync(dir.Ino, req.Name) ?? throw Err(Errno.ENOENT);
        var n = await InodeAsync(txn, e.Ino);
        if (!n.IsDir)
        {
            throw Err(Errno.ENOTDIR);
        }
        if (!Access.MayDelete(dir, n, req.Caller))
        {
            throw Err(Errno.EPERM);
        }
        if (n.Children != 0)
        {
            throw Err(Errno.ENOTEMPTY);
        }
        txn.SetEntry(dir.Ino, req.Name, null);
        dir.Children--;
        await RemoveDirAsync(txn, n, dir);
        Touch(dir, req.Now, content: true);
        txn.Put(dir);
        n.Nlink = 0;
        return new MetaReply(0) { Inode = Public(n) };
    }

    /// <summary>Whether <paramref name="dir"/> is <paramref name="node"/> or lies below it (following parents up
    /// to the root).</summary>
    private static async ValueTask<bool> IsAncestorAsync(MetaTxn txn, Inode node, Inode dir)
    {
        if (!node.IsDir)
        {
            return false;
        }
        var at = dir;
        for (var depth = 0; depth < MaxDepth; depth++)
        {
            if (at.Ino == node.Ino)
            {
                return true;
            }
            if (at.Ino == Superblock.RootIno)
            {
                return false;
            }
            at = await InodeAsync(txn, at.Parent);
        }
        throw Err(Errno.ELOOP);
    }

    private static async ValueTask<MetaReply> RenameAsync(MetaTxn txn, MetaRequest req)
    {
        const uint NoReplace = 1, Exchange = 2;
        if ((req.Flags & ~(NoReplace | Exchange)) != 0 || req.Flags == (NoReplace | Exchange))
        {
            throw Err(Errno.EINVAL);
        }
        var from = await WritableDirAsync(txn, req.Ino, req.Caller);
        var to = await WritableDirAsync(txn, req.Ino2, req.Caller);
        CheckName(req.Name);
        CheckName(req.Name2);
        if (req.Name is "." or ".." || req.Name2 is "." or "..")
        {
            throw Err(Errno.EBUSY);
        }
        var source = await txn.EntryAsync(from.Ino, req.Name) ?? throw Err(Errno.ENOENT);
        var node = await InodeAsync(txn, source.Ino);
        if (!Access.MayDelete(from, node, req.Caller))
        {
            throw Err(Errno.EPERM);
        }
        var target = await txn.EntryAsync(to.Ino, req.Name2);
        if ((req.Flags & Exchange) != 0)
        {
            var other = await InodeAsync(txn, (target ?? throw Err(Errno.ENOENT)).Ino);
            if (!Access.MayDelete(to, other, req.Caller))
            {
                throw Err(Errno.EPERM);
            }
            if (await IsAncestorAsync(txn, node, to) || await IsAncestorAsync(txn, other, from))
            {
                throw Err(Errno.EINVAL);
            }
            if (from.Ino != to.Ino)
            {
                // A directory that changes parent rewrites its "..": that needs write permission on it.
                if (node.IsDir)
                {
                    Require(node, req.Caller, Access.W);
                }
                if (other.IsDir)
                {
                    Require(other, req.Caller, Access.W);
                }
            }
            txn.SetEntry(from.Ino, req.Name, new Dentry(other.Ino, other.Type));
            txn.SetEntry(to.Ino, req.Name2, new Dentry(node.Ino, node.Type));
            if (from.Ino != to.Ino && node.IsDir != other.IsDir)
            {
                var (gains, loses) = node.IsDir ? (to, from) : (from, to);
                gains.Nlink++;
                loses.Nlink--;
            }
            if (node.IsDir)
            {
                node.Parent = to.Ino;
            }
            if (other.IsDir)
            {
                other.Parent = from.Ino;
            }
            Touch(node, req.Now, content: false);
            Touch(other, req.Now, content: false);
            Touch(from, req.Now, content: true);
            Touch(to, req.Now, content: true);
            txn.Put(node);
            txn.Put(other);
            txn.Put(from);
            txn.Put(to);
            return new MetaReply(0) { Inode = Public(node) };
        }
        if (target is not null && (req.Flags & NoReplace) != 0)
        {
            throw Err(Errno.EEXIST);
        }
        if (await IsAncestorAsync(txn, node, to))
        {
            throw Err(Errno.EINVAL);
        }
        Inode? released = null;
        if (target is { } t)
        {
            if (t.Ino == node.Ino)
            {
                return new MetaReply(0) { Inode = Public(node) }; // two names of one inode: POSIX says do nothing
            }
            var victim = await InodeAsync(txn, t.Ino);
            if (node.IsDir && !victim.IsDir)
            {
                throw Err(Errno.ENOTDIR);
            }
            if (!node.IsDir && victim.IsDir)
            {
                throw Err(Errno.EISDIR);
            }
            if (!Access.MayDelete(to, victim, req.Caller))
            {
                throw Err(Errno.EPERM);
            }
            if (victim.IsDir && victim.Children != 0)
            {
                throw Err(Errno.ENOTEMPTY);
            }
            if (node.IsDir && from.Ino != to.Ino)
            {
                Require(node, req.Caller, Access.W);
            }
            if (victim.IsDir)
            {
                await RemoveDirAsync(txn, victim, to);
            }
            else
            {
                released = DropLink(txn, victim, req.Now);
            }
            to.Children--;
        }
        else if (node.IsDir && from.Ino != to.Ino)
        {
            Require(node, req.Caller, Access.W);
        }
        txn.SetEntry(from.Ino, req.Name, null);
        txn.SetEntry(to.Ino, req.Name2, new Dentry(node.Ino, node.Type));
        from.Children--;
        to.Children++;
        if (node.IsDir && from.Ino != to.Ino)
        {
            from.Nlink--;
            to.Nlink++;
            node.Parent = to.Ino;
        }
        Touch(node, req.Now, content: false);
        Touch(from, req.Now, content: true);
        Touch(to, req.Now, content: true);
        txn.Put(node);
        txn.Put(from);
        txn.Put(to);
        return new MetaReply(0) { Inode = Public(node), Released = released };
    }
}
