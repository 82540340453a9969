using System.Text;

namespace Appliance.Fs.Meta;

/// <summary>A point in time with nanoseconds (struct timespec).</summary>
public readonly record struct MetaTime(long Seconds, uint Nanoseconds) : IComparable<MetaTime>
{
    public int CompareTo(MetaTime other) => Seconds != other.Seconds ? Seconds.CompareTo(other.Seconds) : Nanoseconds.CompareTo(other.Nanoseconds);

    public static MetaTime FromDateTime(DateTime utc)
    {
        var ticks = utc.Ticks - DateTime.UnixEpoch.Ticks;
        return new(Math.DivRem(ticks, TimeSpan.TicksPerSecond, out var rest), (uint)(rest * 100));
    }
}

/// <summary>Mode bits (sys/stat.h).</summary>
public static class ModeBits
{
    public const uint IfMt = 0xF000;
    public const uint IfSock = 0xC000;
    public const uint IfLnk = 0xA000;
    public const uint IfReg = 0x8000;
    public const uint IfBlk = 0x6000;
    public const uint IfDir = 0x4000;
    public const uint IfChr = 0x2000;
    public const uint IfIfo = 0x1000;
    public const uint IsUid = 0x800;
    public const uint IsGid = 0x400;
    public const uint IsVtx = 0x200;
    public const uint Perms = 0xFFF;
    public const uint IxGrp = 0x8;
}

/// <summary>
/// One inode. Directories keep their parent (for "..", and the ancestry check of a rename) and their entry count
/// (rmdir's emptiness without a listing); symlinks their target; every inode its xattrs. Encoded versioned; the
/// record is the whole data of the inode's metadata object.
/// </summary>
public sealed class Inode
{
    public const byte FormatVersion = 1;
    /// <summary>All xattrs of one inode together, names and values: below a method reply's 64 KiB with the inode.</summary>
    public const int MaxXattrBytes = 60 << 10;

    public ulong Ino;
    public uint Mode;
    public uint Uid;
    public uint Gid;
    public uint Nlink;
    public ulong Size;
    public uint Rdev;
    public MetaTime Atime;
    public MetaTime Mtime;
    public MetaTime Ctime;
    public ulong Parent;
    public ulong Children;
    public string? Target;
    public SortedDictionary<string, byte[]> Xattrs = new(StringComparer.Ordinal);

    public uint Type => Mode & ModeBits.IfMt;
    public bool IsDir => Type == ModeBits.IfDir;
    public bool IsReg => Type == ModeBits.IfReg;
    public bool IsSymlink => Type == ModeBits.IfLnk;

    public Inode Clone()
    {
        var c = (Inode)MemberwiseClone();
        c.Xattrs = new SortedDictionary<string, byte[]>(Xattrs, StringComparer.Ordinal);
        return c;
    }

    /// <summary>The size stat reports: bytes of a file, the target's length for a symlink, 0 otherwise (a
    /// directory's size is the mount's business).</summary>
    public ulong StatSize => IsReg ? Size : IsSymlink && Target is not null ? (ulong)Encoding.UTF8.GetByteCount(Target) : 0;

    public int XattrBytes => Xattrs.Sum(kv => Encoding.UTF8.GetByteCount(kv.Key) + kv.Value.Length);

    public void Write(MetaWriter w)
    {
        w.U8(FormatVersion);
        w.U64(Ino);
        w.U32(Mode);
        w.U32(Uid);
        w.U32(Gid);
        w.U32(Nlink);
        w.U64(Size);
        w.U32(Rdev);
        w.Time(Atime);
        w.Time(Mtime);
        w.Time(Ctime);
        w.U64(Parent);
        w.U64(Children);
        w.U8(Target is null ? (byte)0 : (byte)1);
        if (Target is not null)
        {
            w.String(Target);
        }
        w.U32((uint)Xattrs.Count);
        foreach (var (k, v) in Xattrs)
        {
            w.String(k);
            w.Bytes(v);
        }
    }

    public byte[] Encode()
    {
        var w = new MetaWriter();
        Write(w);
        return w.ToArray();
    }

    public static Inode Read(ref MetaReader r)
    {
        r.Version(FormatVersion, "an inode");
        var n = new Inode
        {
            Ino = r.U64(),
            Mode = r.U32(),
            Uid = r.U32(),
            Gid = r.U32(),
            Nlink = r.U32(),
            Size = r.U64(),
            Rdev = r.U32(),
            Atime = r.Time(),
            Mtime = r.Time(),
            Ctime = r.Time(),
            Parent = r.U64(),
            Children = r.U64(),
        };
        if (r.U8() != 0)
        {
            n.Target = r.String();
        }
        var count = r.U32();
        for (var i = 0u; i < count; i++)
        {
            var k = r.String();
            n.Xattrs[k] = r.Bytes();
        }
        return n;
    }

    public static Inode Decode(ReadOnlySpan<byte> data)
    {
        var r = new MetaReader(data);
        var n = Read(ref r);
        return r.End ? n : throw new MetaFormatException($"inode {n.Ino} has trailing bytes");
    }
}

/// <summary>A directory entry: the inode it names and that inode's type (so readdir needs no inode reads).</summary>
public readonly record struct Dentry(ulong Ino, uint Type)
{
    public const byte FormatVersion = 1;

    public byte[] Encode()
    {
        var w = new MetaWriter();
        w.U8(FormatVersion);
        w.U64(Ino);
        w.U32(Type);
        return w.ToArray();
    }

    public static Dentry Decode(ReadOnlySpan<byte> data)
    {
        var r = new MetaReader(data);
        r.Version(FormatVersion, "a directory entry");
        return new Dentry(r.U64(), r.U32());
    }
}

/// <summary>The filesystem's own record: the next inode number (never reused, so an inode number names one file for
/// the filesystem's life) and how many inodes exist.</summary>
public sealed class Superblock
{
    public const byte FormatVersion = 1;
    public const ulong RootIno = 1;

    public ulong NextIno = RootIno + 1;
    public ulong Inodes;
    public MetaTime Created;

    public byte[] Encode()
    {
        var w = new MetaWriter();
        w.U8(FormatVersion);
        w.U64(NextIno);
        w.U64(Inodes);
        w.Time(Created);
        return w.ToArray();
    }

    public static Superblock Decode(ReadOnlySpan<byte> data)
    {
        var r = new MetaReader(data);
        r.Version(FormatVersion, "the filesystem's superblock");
        return new Superblock { NextIno = r.U64(), Inodes = r.U64(), Created = r.Time() };
    }
}
