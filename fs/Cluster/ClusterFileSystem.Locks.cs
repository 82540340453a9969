using System.Collections.Concurrent;
using Appliance.Fs.Api;
using Appliance.Fs.Meta;

namespace Appliance.Fs.Cluster;

/// <summary>
/// Cluster-wide locks: every flock and fcntl lock is a lock in the filesystem's metadata (fs/Meta's SetLock, run by
/// the metadata PG), held by this mount's lease (<see cref="Lease"/>) and the kernel's lock owner, so locks of all
/// mounts exclude each other. F_SETLKW tries, and on a conflict looks again (GetLock, a read the PG does not log)
/// after a backoff from 20 ms to 500 ms until the range looks free, then tries again, until granted or interrupted;
/// each call has the metadata call's deadline.
/// </summary>
public sealed partial class ClusterFileSystem : IFuseLocks
{
    private static readonly TimeSpan FirstRetry = TimeSpan.FromMilliseconds(20);
    private static readonly TimeSpan LastRetry = TimeSpan.FromMilliseconds(500);

    /// <summary>(inode, owner, kind) this mount took locks for and has not wholly released: a close (FLUSH) or last
    /// release of an owner that never locked anything needs no metadata call.</summary>
    private readonly ConcurrentDictionary<(ulong Ino, ulong Owner, LockKind Kind), long> _lockers = new();

    /// <summary>This mount's lease, which its locks live by; none: locks are refused (ENOLCK).</summary>
    public LeaseKeeper? Lease
    {
        get => _lease;
        set
        {
            if (_lease is not null)
            {
                _lease.Lost -= OnLeaseLost;
            }
            _lease = value;
            if (value is not null)
            {
                value.Lost += OnLeaseLost;
            }
        }
    }

    private LeaseKeeper? _lease;

    private void OnLeaseLost() => _lockers.Clear();

    /// <summary>A lock request: no permission is checked (the kernel checked the open), so no groups are read.</summary>
    private static MetaRequest LockReq(MetaOp op, FuseContext ctx, ulong ino, FileLock l) =>
        new(op, new Caller(ctx.Uid, ctx.Gid, []), Now()) { Ino = ino, Data = l.Encode() };

    private static FileLock ToMeta(string mount, ulong owner, FuseLock l, bool flock) =>
        flock
            ? new FileLock(mount, owner, l.Pid, LockKind.Flock, (LockType)l.Type, 0, FileLock.ToEnd)
            : new FileLock(mount, owner, l.Pid, LockKind.Posix, (LockType)l.Type, l.Start, l.End);

    public ValueTask<FsResult<FuseLock>> GetLockAsync(FuseContext ctx, ulong nodeId, ulong handle, ulong owner, FuseLock request, CancellationToken ct) =>
        GuardAsync<FuseLock>(async () =>
        {
            if (Lease is not { } lease)
            {
                return new FsError(Meta.Errno.ENOLCK);
            }
            var r = await _meta.CallAsync(LockReq(MetaOp.GetLock, ctx, nodeId, ToMeta(lease.MountId, owner, request, flock: false)), ct);
            if (!r.IsOk)
            {
                return new FsError(Errno(r));
            }
            return r.Lock is { } l ? new FuseLock(l.Start, l.End, (FuseLockType)l.Type, l.Pid) : FuseLock.None;
        });

    public ValueTask<FsError> SetLockAsync(FuseContext ctx, ulong nodeId, ulong handle, ulong owner, FuseLock request, bool flock, bool wait, CancellationToken ct) =>
        GuardAsync(async () =>
        {
            if (Lease is not { } lease)
            {
                return new FsError(Meta.Errno.ENOLCK);
            }
            var l = ToMeta(lease.MountId, owner, request, flock);
            var key = (nodeId, owner, l.Kind);
            if (l.Type != LockType.Unlock)
            {
                // Marked before the call: a close racing a grant then still releases it.
                _lockers[key] = lease.Generation;
            }
            var delay = FirstRetry;
            while (true)
            {
                var r = await _meta.CallAsync(LockReq(MetaOp.SetLock, ctx, nodeId, l), ct);
                if (r.IsOk)
                {
                    if (l.Type == LockType.Unlock && l.Start == 0 && l.End == FileLock.ToEnd)
                    {
                        _lockers.TryRemove(key, out _);
                    }
                    return FsError.Ok;
                }
                if (r.Errno != Meta.Errno.EAGAIN || !wait)
                {
                    return new FsError(Errno(r));
                }
                // Held elsewhere: look again after a while (a release by another mount, or its lease running out)
                // with GetLock, which the PG answers without logging anything, and try to take it once it looks free
                // (another may win it first: then the wait goes on). Cancelled (the caller was interrupted): the
                // session has answered EINTR already.
                do
                {
                    await Task.Delay(delay, ct);
                    delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, LastRetry.Ticks));
                    r = await _meta.CallAsync(LockReq(MetaOp.GetLock, ctx, nodeId, l), ct);
                }
                while (r.IsOk && r.Lock is not null);
            }
        });

    public ValueTask<FsError> ReleaseOwnerAsync(FuseContext ctx, ulong nodeId, ulong owner, bool flock, CancellationToken ct)
    {
        var kind = flock ? LockKind.Flock : LockKind.Posix;
        if (!_lockers.ContainsKey((nodeId, owner, kind)))
        {
            return new(FsError.Ok);
        }
        return SetLockAsync(ctx, nodeId, 0, owner, new FuseLock(0, FileLock.ToEnd, FuseLockType.Unlock, ctx.Pid), flock, wait: false, ct);
    }
}
