using Appliance.Fs.Protocol;

namespace Appliance.Fs.Api;

/// <summary>Who asked: the caller's credentials as the kernel saw them, and the request's id.</summary>
public readonly record struct FuseContext(uint Uid, uint Gid, uint Pid, ulong Unique);

/// <summary>A point in time with nanoseconds, as in struct timespec.</summary>
public readonly record struct Timestamp(long Seconds, uint Nanoseconds)
{
    public static Timestamp Now
    {
        get
        {
            var ticks = DateTime.UtcNow.Ticks - DateTime.UnixEpoch.Ticks;
            return new(ticks / TimeSpan.TicksPerSecond, (uint)(ticks % TimeSpan.TicksPerSecond * 100));
        }
    }
}

/// <summary>The attributes of an inode (struct fuse_attr). Mode holds the file type bits (S_IFMT) too.</summary>
public record struct FileAttr
{
    public ulong Ino;
    public ulong Size;
    /// <summary>512-byte blocks allocated.</summary>
    public ulong Blocks;
    public Timestamp Atime;
    public Timestamp Mtime;
    public Timestamp Ctime;
    public uint Mode;
    public uint Nlink;
    public uint Uid;
    public uint Gid;
    public uint Rdev;
    public uint BlockSize;
}

/// <summary>
/// A name resolved to an inode (struct fuse_entry_out). Returning one with <see cref="NodeId"/> != 0 from any
/// entry-creating operation (lookup, mknod, mkdir, symlink, link, create, readdirplus) counts as one kernel
/// lookup on that inode, which the kernel later gives back with <see cref="IFuseFileSystem.Forget"/>.
/// NodeId:Generation must be unique for the filesystem's lifetime.
/// </summary>
public readonly record struct Entry(ulong NodeId, ulong Generation, FileAttr Attr, TimeSpan EntryTimeout, TimeSpan AttrTimeout);

/// <summary>Attributes and how long the kernel may cache them.</summary>
public readonly record struct AttrReply(FileAttr Attr, TimeSpan Timeout);

/// <summary>An open file or directory: the handle the kernel passes back, and FOPEN_* flags.</summary>
public readonly record struct OpenReply(ulong Handle, OpenReplyFlags Flags = OpenReplyFlags.None);

/// <summary>The result of CREATE: the new entry and the open handle.</summary>
public readonly record struct CreateReply(Entry Entry, OpenReply Open);

/// <summary>Filesystem statistics (struct fuse_kstatfs).</summary>
public readonly record struct StatFsReply(ulong Blocks, ulong BlocksFree, ulong BlocksAvailable, ulong Files, ulong FilesFree,
    uint BlockSize, uint NameMax, uint FragmentSize);

/// <summary>
/// SETATTR: which attributes to change (<see cref="Valid"/>) and their new values. ATIME_NOW / MTIME_NOW are
/// already resolved by the session into <see cref="SetAttrValid.Atime"/> / <see cref="SetAttrValid.Mtime"/> with
/// the current time.
/// </summary>
public readonly record struct SetAttrRequest(SetAttrValid Valid, ulong? Handle, ulong Size, uint Mode, uint Uid, uint Gid,
    Timestamp Atime, Timestamp Mtime, Timestamp Ctime)
{
    public bool Has(SetAttrValid bit) => (Valid & bit) != 0;
}

/// <summary>renameat2 flags.</summary>
[Flags]
public enum RenameFlags : uint
{
    None = 0,
    NoReplace = 1,
    Exchange = 2,
    Whiteout = 4,
}

/// <summary>What the kernel and we agreed on in INIT.</summary>
public sealed record FuseConnectionInfo(uint Major, uint Minor, InitFlags KernelFlags, InitFlags Flags, uint MaxWrite, uint MaxReadahead);
