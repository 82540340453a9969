namespace Appliance.Fs.Api;

/// <summary>A lock as the kernel describes it (struct fuse_file_lock): the byte range [Start, End] (inclusive; End
/// long.MaxValue is "to the end of the file"), the type with fcntl's values, the pid of the process that holds or
/// asks for it.</summary>
public readonly record struct FuseLock(ulong Start, ulong End, FuseLockType Type, uint Pid)
{
    public static readonly FuseLock None = new(0, 0, FuseLockType.Unlock, 0);
}

/// <summary>F_RDLCK, F_WRLCK, F_UNLCK.</summary>
public enum FuseLockType : uint
{
    Read = 0,
    Write = 1,
    Unlock = 2,
}

/// <summary>
/// A filesystem that keeps locks itself (shared with other mounts) implements this besides
/// <see cref="IFuseFileSystem"/>; the session then negotiates FUSE_POSIX_LOCKS and FUSE_FLOCK_LOCKS, so the kernel
/// sends every fcntl and flock lock here instead of keeping them local. Without it the kernel keeps locks local to
/// the mount. The owner argument is the kernel's lock owner id: a process's file table for POSIX locks, an
/// open file for flock (<c>flock</c> true: a whole-file lock in flock's own table, apart from POSIX locks).
/// </summary>
public interface IFuseLocks
{
    /// <summary>F_GETLK: the first lock that keeps <paramref name="request"/> from being granted, or
    /// <see cref="FuseLock.None"/>.</summary>
    ValueTask<FsResult<FuseLock>> GetLockAsync(FuseContext ctx, ulong nodeId, ulong handle, ulong owner, FuseLock request, CancellationToken ct);

    /// <summary>F_SETLK (EAGAIN on a conflict), or with <paramref name="wait"/> F_SETLKW: returns once granted. A
    /// waiting call has no session deadline; it ends when granted or when <paramref name="ct"/> is cancelled (the
    /// caller was interrupted: the kernel gets EINTR).</summary>
    ValueTask<FsError> SetLockAsync(FuseContext ctx, ulong nodeId, ulong handle, ulong owner, FuseLock request, bool flock, bool wait, CancellationToken ct);

    /// <summary>Drops every lock of <paramref name="owner"/> on the node: its POSIX locks at FLUSH (a close by that
    /// process), its flock locks at RELEASE (the last close of that open file).</summary>
    ValueTask<FsError> ReleaseOwnerAsync(FuseContext ctx, ulong nodeId, ulong owner, bool flock, CancellationToken ct);
}
