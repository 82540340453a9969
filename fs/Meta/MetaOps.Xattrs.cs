using System.Text;

namespace Appliance.Fs.Meta;

/// <summary>Extended attributes: user.* need read/write permission on a regular file or directory; trusted.* are
/// root's; security.* follow the file's write permission; system.* (POSIX ACLs) are not supported yet.</summary>
public static partial class MetaOps
{
    public const uint XattrCreate = 1;
    public const uint XattrReplace = 2;
    public const int XattrNameMax = 255;
    public const int XattrValueMax = 64 << 10;

    private static void CheckXattr(Inode n, Caller caller, string name, bool write)
    {
        var bytes = Encoding.UTF8.GetByteCount(name);
        if (bytes == 0 || bytes > XattrNameMax)
        {
            throw Err(Errno.ERANGE);
        }
        if (name.StartsWith("user.", StringComparison.Ordinal))
        {
            if (!n.IsReg && !n.IsDir)
            {
                throw Err(write ? Errno.EPERM : Errno.ENODATA);
            }
            if (write && (n.Mode & ModeBits.IsVtx) != 0 && n.IsDir && !Access.IsOwner(n, caller))
            {
                throw Err(Errno.EPERM);
            }
            Require(n, caller, write ? Access.W : Access.R);
        }
        else if (name.StartsWith("trusted.", StringComparison.Ordinal))
        {
            if (!caller.IsRoot)
            {
                throw Err(write ? Errno.EPERM : Errno.ENODATA);
            }
        }
        else if (name.StartsWith("security.", StringComparison.Ordinal))
        {
            if (write)
            {
                Require(n, caller, Access.W);
            }
        }
        else
        {
            throw Err(Errno.EOPNOTSUPP);
        }
    }

    private static async ValueTask<MetaReply> SetXattrAsync(MetaTxn txn, MetaRequest req)
    {
        var n = await InodeAsync(txn, req.Ino);
        CheckXattr(n, req.Caller, req.Name, write: true);
        if (req.Data.Length > XattrValueMax)
        {
            throw Err(Errno.E2BIG);
        }
        var exists = n.Xattrs.TryGetValue(req.Name, out var old);
        if ((req.Flags & XattrCreate) != 0 && exists)
        {
            throw Err(Errno.EEXIST);
        }
        if ((req.Flags & XattrReplace) != 0 && !exists)
        {
            throw Err(Errno.ENODATA);
        }
        var total = n.XattrBytes - (exists ? Encoding.UTF8.GetByteCount(req.Name) + old!.Length : 0) + Encoding.UTF8.GetByteCount(req.Name) + req.Data.Length;
        if (total > Inode.MaxXattrBytes)
        {
            throw Err(Errno.ENOSPC);
        }
        n.Xattrs[req.Name] = req.Data;
        Touch(n, req.Now, content: false);
        txn.Put(n);
        return new MetaReply(0) { Inode = Public(n) };
    }

    /// <summary>The inode with the xattrs the caller may read (all of them when <see cref="MetaRequest.Name"/> is
    /// empty: listxattr; else the permission of that name is checked).</summary>
    private static async ValueTask<MetaReply> GetXattrsAsync(MetaTxn txn, MetaRequest req)
    {
        var n = await InodeAsync(txn, req.Ino);
        if (req.Name.Length > 0)
        {
            CheckXattr(n, req.Caller, req.Name, write: false);
        }
        var visible = n.Clone();
        if (!req.Caller.IsRoot)
        {
            foreach (var k in visible.Xattrs.Keys.Where(k => k.StartsWith("trusted.", StringComparison.Ordinal)).ToList())
            {
                visible.Xattrs.Remove(k);
            }
        }
        return new MetaReply(0) { Inode = visible };
    }

    private static async ValueTask<MetaReply> RemoveXattrAsync(MetaTxn txn, MetaRequest req)
    {
        var n = await InodeAsync(txn, req.Ino);
        CheckXattr(n, req.Caller, req.Name, write: true);
        if (!n.Xattrs.Remove(req.Name))
        {
            throw Err(Errno.ENODATA);
        }
        Touch(n, req.Now, content: false);
        txn.Put(n);
        return new MetaReply(0) { Inode = Public(n) };
    }
}
