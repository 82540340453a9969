namespace Appliance.Fs.Meta;

/// <summary>The errno values metadata operations answer with (asm-generic/errno-base.h, errno.h).</summary>
public static class Errno
{
    public const int EPERM = 1;
    public const int ENOENT = 2;
    public const int EBUSY = 16;
    public const int EEXIST = 17;
    public const int ENOTDIR = 20;
    public const int EISDIR = 21;
    public const int EINVAL = 22;
    public const int EFBIG = 27;
    public const int ENOSPC = 28;
    public const int EMLINK = 31;
    public const int ERANGE = 34;
    public const int EACCES = 13;
    public const int E2BIG = 7;
    public const int ENAMETOOLONG = 36;
    public const int ENOSYS = 38;
    public const int ENOTEMPTY = 39;
    public const int ELOOP = 40;
    public const int ENODATA = 61;
    public const int EOPNOTSUPP = 95;
    public const int EAGAIN = 11;
    public const int ENOLCK = 37;
    public const int ESTALE = 116;
}

/// <summary>Permission checks from the caller's uid, gid and groups (the classic owner/group/other bits).</summary>
public static class Access
{
    public const int R = 4;
    public const int W = 2;
    public const int X = 1;

    /// <summary>Whether <paramref name="caller"/> may access <paramref name="n"/> for every bit of
    /// <paramref name="mask"/>. Root may read and write anything, and execute what has any execute bit (or is a
    /// directory).</summary>
    public static bool Allowed(Inode n, Caller caller, int mask)
    {
        if (caller.IsRoot)
        {
            return (mask & X) == 0 || n.IsDir || (n.Mode & 0x49) != 0;
        }
        var bits = caller.Uid == n.Uid ? (n.Mode >> 6) & 7 : caller.InGroup(n.Gid) ? (n.Mode >> 3) & 7 : n.Mode & 7;
        return (bits & (uint)mask) == (uint)mask;
    }

    /// <summary>The sticky bit: in a sticky directory only the owner of the entry, of the directory, or root may
    /// remove or rename it.</summary>
    public static bool MayDelete(Inode dir, Inode victim, Caller caller) =>
        (dir.Mode & ModeBits.IsVtx) == 0 || caller.IsRoot || caller.Uid == dir.Uid || caller.Uid == victim.Uid;

    public static bool IsOwner(Inode n, Caller caller) => caller.IsRoot || caller.Uid == n.Uid;
}
