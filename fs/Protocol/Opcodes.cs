namespace Appliance.Fs.Protocol;

/// <summary>enum fuse_opcode (include/uapi/linux/fuse.h).</summary>
public enum FuseOpcode : uint
{
    Lookup = 1,
    Forget = 2,
    GetAttr = 3,
    SetAttr = 4,
    ReadLink = 5,
    Symlink = 6,
    MkNod = 8,
    MkDir = 9,
    Unlink = 10,
    RmDir = 11,
    Rename = 12,
    Link = 13,
    Open = 14,
    Read = 15,
    Write = 16,
    StatFs = 17,
    Release = 18,
    Fsync = 20,
    SetXattr = 21,
    GetXattr = 22,
    ListXattr = 23,
    RemoveXattr = 24,
    Flush = 25,
    Init = 26,
    OpenDir = 27,
    ReadDir = 28,
    ReleaseDir = 29,
    FsyncDir = 30,
    GetLk = 31,
    SetLk = 32,
    SetLkW = 33,
    Access = 34,
    Create = 35,
    Interrupt = 36,
    Bmap = 37,
    Destroy = 38,
    Ioctl = 39,
    Poll = 40,
    NotifyReply = 41,
    BatchForget = 42,
    Fallocate = 43,
    ReadDirPlus = 44,
    Rename2 = 45,
    Lseek = 46,
    CopyFileRange = 47,
    SetupMapping = 48,
    RemoveMapping = 49,
    SyncFs = 50,
    TmpFile = 51,
    Statx = 52,
    CopyFileRange64 = 53,
}

/// <summary>enum fuse_notify_code: the error field of an unsolicited message (unique 0).</summary>
public enum FuseNotifyCode
{
    Poll = 1,
    InvalInode = 2,
    InvalEntry = 3,
    Store = 4,
    Retrieve = 5,
    Delete = 6,
}

/// <summary>FUSE_INIT flags (flags in the low 32 bits, flags2 in the high 32 bits when INIT_EXT is set).</summary>
[Flags]
public enum InitFlags : ulong
{
    None = 0,
    AsyncRead = 1UL << 0,
    PosixLocks = 1UL << 1,
    AtomicOTrunc = 1UL << 3,
    ExportSupport = 1UL << 4,
    BigWrites = 1UL << 5,
    DontMask = 1UL << 6,
    FlockLocks = 1UL << 10,
    AutoInvalData = 1UL << 12,
    DoReaddirplus = 1UL << 13,
    ReaddirplusAuto = 1UL << 14,
    AsyncDio = 1UL << 15,
    WritebackCache = 1UL << 16,
    NoOpenSupport = 1UL << 17,
    ParallelDirops = 1UL << 18,
    HandleKillpriv = 1UL << 19,
    PosixAcl = 1UL << 20,
    AbortError = 1UL << 21,
    MaxPages = 1UL << 22,
    CacheSymlinks = 1UL << 23,
    NoOpendirSupport = 1UL << 24,
    ExplicitInvalData = 1UL << 25,
    InitExt = 1UL << 30,
    InitReserved = 1UL << 31,
    SecurityCtx = 1UL << 32,
    HasInodeDax = 1UL << 33,
    CreateSuppGroup = 1UL << 34,
    HasExpireOnly = 1UL << 35,
    DirectIoAllowMmap = 1UL << 36,
}

/// <summary>fuse_setattr_in.valid bits.</summary>
[Flags]
public enum SetAttrValid : uint
{
    None = 0,
    Mode = 1 << 0,
    Uid = 1 << 1,
    Gid = 1 << 2,
    Size = 1 << 3,
    Atime = 1 << 4,
    Mtime = 1 << 5,
    Fh = 1 << 6,
    AtimeNow = 1 << 7,
    MtimeNow = 1 << 8,
    LockOwner = 1 << 9,
    Ctime = 1 << 10,
    KillSuidGid = 1 << 11,
}

/// <summary>fuse_open_out.open_flags (FOPEN_*).</summary>
[Flags]
public enum OpenReplyFlags : uint
{
    None = 0,
    DirectIo = 1 << 0,
    KeepCache = 1 << 1,
    NonSeekable = 1 << 2,
    CacheDir = 1 << 3,
    Stream = 1 << 4,
    NoFlush = 1 << 5,
    ParallelDirectWrites = 1 << 6,
}

/// <summary>Protocol constants.</summary>
public static class FuseConstants
{
    public const uint KernelVersion = 7;
    /// <summary>The newest minor we know the layouts of (the kernel here offers 7.45).</summary>
    public const uint KernelMinorVersion = 45;
    /// <summary>The oldest minor we accept: its structure sizes are the ones this code writes.</summary>
    public const uint MinimumMinorVersion = 31;
    public const ulong RootId = 1;
    public const int MinReadBuffer = 8192;
    /// <summary>The largest write we negotiate: 256 pages of 4 KiB.</summary>
    public const int MaxWrite = 1 << 20;
    public const ushort MaxPages = 256;
    /// <summary>One request buffer: the largest write plus room for the headers (a page).</summary>
    public const int BufferSize = MaxWrite + 4096;
    public const uint FsyncFdatasync = 1;
    public const uint ReleaseFlush = 1;
    /// <summary>FUSE_RELEASE_FLOCK_UNLOCK: the release also drops the flock locks of its lock_owner.</summary>
    public const uint ReleaseFlockUnlock = 2;
    /// <summary>FUSE_LK_FLOCK in fuse_lk_in.lk_flags: a flock(2) lock (whole file, owner: the open file).</summary>
    public const uint LkFlock = 1;
    public const uint GetAttrFh = 1;
    public const uint WriteCache = 1;
    public const uint WriteKillSuidGid = 1 << 2;
}
