namespace Appliance.Fs.Meta;

/// <summary>The metadata operations (the method names of the OSD's class are these names in lower case).</summary>
public enum MetaOp : byte
{
    Format = 1,
    Lookup,
    GetAttr,
    SetAttr,
    Make,
    Link,
    /// <summary>Removes a non-directory's entry; one that loses its last link goes on the orphan list (the reply's
    /// Released). Data: orphans to purge in the same transaction (their data already removed by the mount), a u64
    /// each (<see cref="MetaOps.EncodePurgeRiders"/>, at most 64); those gone or not orphans are skipped.</summary>
    Unlink,
    RmDir,
    Rename,
    ReadDir,
    SetXattr,
    GetXattrs,
    RemoveXattr,
    Access,
    /// <summary>After a write: size = max(size, Size), mtime and ctime = Mtime (a file's data changed).</summary>
    Written,
    /// <summary>Drops an orphan (no links left, no longer open): its inode record and its orphan entry.</summary>
    Purge,
    ListOrphans,
    StatFs,
    /// <summary>An O_APPEND write's room: a regular file's size grows by Size at once, mtime and ctime = Mtime; the
    /// reply's inode has the new size, so the write goes at (new size - Size). Appends of several mounts get
    /// disjoint ranges in the order the metadata PG runs them.</summary>
    Append,
    /// <summary>F_GETLK: the first lock of a live mount that keeps the lock in <see cref="MetaRequest.Data"/> (an
    /// encoded <see cref="FileLock"/>) on inode Ino from being granted, in the reply's Lock; none: no Lock.</summary>
    GetLock,
    /// <summary>F_SETLK (and each try of F_SETLKW): takes, changes or (type Unlock) releases the lock in Data on
    /// inode Ino for its owner, with POSIX's splitting and merging of that owner's ranges. A conflict with a live
    /// mount's lock: EAGAIN, that lock in the reply. Locks of mounts whose lease ran out are dropped on the way. A
    /// mount without a live lease cannot take locks (ENOLCK).</summary>
    SetLock,
    /// <summary>A mount's lease (mount id in Name, length in ms in Limit) runs to the PG's clock + Limit. Flags bit 1:
    /// the mount starts (no lease or a live one); otherwise a lease that ran out or is gone is ESTALE: its locks may
    /// have gone to others, so the mount ends it (EndLease) and starts again.</summary>
    RenewLease,
    /// <summary>An orderly end of the mount in Name: its locks released (lock records after Ino, a page at a time;
    /// the reply says More and the next Ino to go on from), then its lease and mount record removed.</summary>
    EndLease,
    /// <summary>Releases the locks of every mount whose lease ran out (lock records after Ino, a page at a time, as
    /// <see cref="EndLease"/>), then removes those leases and their mount records.</summary>
    SweepLeases,
}

/// <summary>Which attributes a SetAttr changes.</summary>
[Flags]
public enum AttrMask : uint
{
    None = 0,
    Mode = 1,
    Uid = 2,
    Gid = 4,
    Size = 8,
    Atime = 16,
    Mtime = 32,
    /// <summary>The caller holds the file open (ftruncate): the open checked write permission already.</summary>
    ByHandle = 64,
    Ctime = 128,
}

/// <summary>Who asks: user, primary group and supplementary groups.</summary>
public sealed record Caller(uint Uid, uint Gid, IReadOnlyList<uint> Groups)
{
    public static readonly Caller Root = new(0, 0, []);

    public bool IsRoot => Uid == 0;

    public bool InGroup(uint gid) => Gid == gid || Groups.Contains(gid);
}

/// <summary>
/// One metadata request. One record for every operation: the fields an operation does not use stay default.
/// Times come from the caller (the method must be deterministic in what it writes; the OSD has no clock to give it).
/// </summary>
public sealed record MetaRequest(MetaOp Op, Caller Caller, MetaTime Now)
{
    public const byte FormatVersion = 1;

    public ulong Ino { get; init; }
    public string Name { get; init; } = "";
    public ulong Ino2 { get; init; }
    public string Name2 { get; init; } = "";
    public uint Mode { get; init; }
    public uint Rdev { get; init; }
    public uint Uid { get; init; }
    public uint Gid { get; init; }
    public ulong Size { get; init; }
    public MetaTime Atime { get; init; }
    public MetaTime Mtime { get; init; }
    public AttrMask Valid { get; init; }
    public uint Flags { get; init; }
    public byte[] Data { get; init; } = [];
    public uint Limit { get; init; }

    public byte[] Encode()
    {
        var w = new MetaWriter();
        w.U8(FormatVersion);
        w.U8((byte)Op);
        w.U32(Caller.Uid);
        w.U32(Caller.Gid);
        w.U32((uint)Caller.Groups.Count);
        foreach (var g in Caller.Groups)
        {
            w.U32(g);
        }
        w.Time(Now);
        w.U64(Ino);
        w.String(Name);
        w.U64(Ino2);
        w.String(Name2);
        w.U32(Mode);
        w.U32(Rdev);
        w.U32(Uid);
        w.U32(Gid);
        w.U64(Size);
        w.Time(Atime);
        w.Time(Mtime);
        w.U32((uint)Valid);
        w.U32(Flags);
        w.Bytes(Data);
        w.U32(Limit);
        return w.ToArray();
    }

    public static MetaRequest Decode(ReadOnlySpan<byte> data)
    {
        var r = new MetaReader(data);
        r.Version(FormatVersion, "a metadata request");
        var op = (MetaOp)r.U8();
        var uid = r.U32();
        var gid = r.U32();
        var count = r.U32();
        if (count > 65536)
        {
            throw new MetaFormatException($"{count} supplementary groups");
        }
        var groups = new uint[count];
        for (var i = 0; i < groups.Length; i++)
        {
            groups[i] = r.U32();
        }
        var req = new MetaRequest(op, new Caller(uid, gid, groups), r.Time())
        {
            Ino = r.U64(),
            Name = r.String(),
            Ino2 = r.U64(),
            Name2 = r.String(),
            Mode = r.U32(),
            Rdev = r.U32(),
            Uid = r.U32(),
            Gid = r.U32(),
            Size = r.U64(),
            Atime = r.Time(),
            Mtime = r.Time(),
            Valid = (AttrMask)r.U32(),
            Flags = r.U32(),
            Data = r.Bytes(),
            Limit = r.U32(),
        };
        return r.End ? req : throw new MetaFormatException("a metadata request has trailing bytes");
    }
}

/// <summary>A directory entry as readdir returns it, with the inode's attributes when asked (readdirplus).</summary>
public sealed record DirEntry(string Name, Dentry Entry, Inode? Inode);

/// <summary>
/// The answer: an errno (0: done) and what the operation returns. <see cref="Inode"/>: the inode looked up, created,
/// changed (its xattrs only for <see cref="MetaOp.GetXattrs"/>). <see cref="Released"/>: an inode that lost its
/// last link in this operation and is now on the orphan list (the mount purges it once no handle holds it).
/// <see cref="Parent"/>: the directory as the operation left it, when the request asked (<see cref="MetaOps.WantParent"/>).
/// </summary>
public sealed record MetaReply(int Errno)
{
    /// <summary>Version 2 adds <see cref="Lock"/>, <see cref="Next"/> and <see cref="Parent"/> at the end; a reply
    /// without them is written as version 1, so mounts that predate them read every reply they can ask for.</summary>
    public const byte FormatVersion = 2;

    public Inode? Inode { get; init; }
    public Inode? Parent { get; init; }
    public Inode? Released { get; init; }
    public IReadOnlyList<DirEntry> Entries { get; init; } = [];
    public bool More { get; init; }
    public IReadOnlyList<ulong> Orphans { get; init; } = [];
    public ulong Inodes { get; init; }
    /// <summary>The lock <see cref="MetaOp.GetLock"/> found, or the one a <see cref="MetaOp.SetLock"/> conflicts with.</summary>
    public FileLock? Lock { get; init; }
    /// <summary>Where a paged operation (<see cref="MetaOp.EndLease"/>, <see cref="MetaOp.SweepLeases"/>) goes on
    /// from, when <see cref="More"/>.</summary>
    public ulong Next { get; init; }

    public bool IsOk => Errno == 0;

    public byte[] Encode()
    {
        var w = new MetaWriter();
        var extended = Lock is not null || Next != 0 || Parent is not null;
        w.U8(extended ? FormatVersion : (byte)1);
        w.U32((uint)Errno);
        WriteInode(w, Inode);
        WriteInode(w, Released);
        w.U32((uint)Entries.Count);
        foreach (var e in Entries)
        {
            w.String(e.Name);
            w.U64(e.Entry.Ino);
            w.U32(e.Entry.Type);
            WriteInode(w, e.Inode);
        }
        w.U8(More ? (byte)1 : (byte)0);
        w.U32((uint)Orphans.Count);
        foreach (var o in Orphans)
        {
            w.U64(o);
        }
        w.U64(Inodes);
        if (extended)
        {
            w.U8(Lock is null ? (byte)0 : (byte)1);
            Lock?.Write(w);
            w.U64(Next);
            WriteInode(w, Parent);
        }
        return w.ToArray();
    }

    private static void WriteInode(MetaWriter w, Inode? n)
    {
        w.U8(n is null ? (byte)0 : (byte)1);
        n?.Write(w);
    }

    private static Inode? ReadInode(ref MetaReader r) => r.U8() == 0 ? null : Meta.Inode.Read(ref r);

    public static MetaReply Decode(ReadOnlySpan<byte> data)
    {
        var r = new MetaReader(data);
        var version = r.Version(FormatVersion, "a metadata reply");
        var errno = (int)r.U32();
        var inode = ReadInode(ref r);
        var released = ReadInode(ref r);
        var count = r.U32();
        var entries = new List<DirEntry>();
        for (var i = 0u; i < count; i++)
        {
            var name = r.String();
            var e = new Dentry(r.U64(), r.U32());
            entries.Add(new DirEntry(name, e, ReadInode(ref r)));
        }
        var more = r.U8() != 0;
        var orphans = new List<ulong>();
        count = r.U32();
        for (var i = 0u; i < count; i++)
        {
            orphans.Add(r.U64());
        }
        var reply = new MetaReply(errno) { Inode = inode, Released = released, Entries = entries, More = more, Orphans = orphans, Inodes = r.U64() };
        if (version >= 2)
        {
            reply = reply with { Lock = r.U8() == 0 ? null : FileLock.Read(ref r), Next = r.U64(), Parent = ReadInode(ref r) };
        }
        return r.End ? reply : throw new MetaFormatException("a metadata reply has trailing bytes");
    }
}
