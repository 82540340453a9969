using System.Runtime.CompilerServices;
using System.Text;
using Appliance.Fs.Api;
using Appliance.Fs.Protocol;
using Appliance.Platform.Native;

namespace Appliance.Fs.Session;

/// <summary>Parsing each request's arguments and answering it: the per-opcode table.</summary>
public sealed partial class FuseSession
{
    private const uint SIfDir = 0x4000;
    private const uint PermissionBits = 0xFFF;

    /// <summary>Handles one request read into <paramref name="buffer"/>. Returns true when the request keeps the
    /// buffer (its backend call is still running).</summary>
    private bool Dispatch(int fd, byte[] buffer, int length)
    {
        var span = buffer.AsSpan(0, length);
        var consumed = RequestParser.ParseHeader(span, out var header);
        if (consumed < 0)
        {
            _log($"fuse {MountPoint}: dropped a malformed request of {length} bytes");
            return false;
        }
        var args = span[RequestParser.InHeaderSize..consumed];
        switch ((FuseOpcode)header.opcode)
        {
            case FuseOpcode.Init:
                HandleInit(fd, header, args);
                return false;
            case FuseOpcode.Forget:
                if (RequestParser.ReadStruct<fuse_forget_in>(args, out var forget) > 0)
                {
                    Forget(header.nodeid, forget.nlookup);
                }
                return false; // never answered
            case FuseOpcode.BatchForget:
                HandleBatchForget(args);
                return false; // never answered
            case FuseOpcode.Interrupt:
                HandleInterrupt(fd, header, args);
                return false;
            case FuseOpcode.Destroy:
                SendError(fd, header.unique, 0);
                return false;
        }

        var request = new Request(fd, buffer, header);
        try
        {
            return Handle(request, args);
        }
        catch (Exception e)
        {
            // The filesystem threw before returning a task: nothing is in flight.
            if (request.TryClaim())
            {
                SendError(fd, header.unique, ErrnoOf(request, e));
            }
            request.Dispose();
            return false;
        }
    }

    private bool Handle(Request r, ReadOnlySpan<byte> args)
    {
        var ctx = r.Context;
        var node = r.NodeId;
        var ct = r.Token;
        switch (r.Opcode)
        {
            case FuseOpcode.Lookup:
            {
                return RequestParser.ReadName(args, out var name) < 0
                    ? Invalid(r)
                    : Complete(r, _fs.LookupAsync(ctx, node, name, ct), ReplyEntry, UndoEntry);
            }
            case FuseOpcode.GetAttr:
            {
                if (RequestParser.ReadStruct<fuse_getattr_in>(args, out var a) < 0)
                {
                    return Invalid(r);
                }
                ulong? handle = (a.getattr_flags & FuseConstants.GetAttrFh) != 0 ? a.fh : null;
                return Complete(r, _fs.GetAttrAsync(ctx, node, handle, ct), ReplyAttr);
            }
            case FuseOpcode.SetAttr:
            {
                return RequestParser.ReadStruct<fuse_setattr_in>(args, out var a) < 0
                    ? Invalid(r)
                    : Complete(r, _fs.SetAttrAsync(ctx, node, ToSetAttr(a), ct), ReplyAttr);
            }
            case FuseOpcode.ReadLink:
                return Complete(r, _fs.ReadLinkAsync(ctx, node, ct), static (q, target) => Encoding.UTF8.GetBytes(target, q.Payload.Span));
            case FuseOpcode.Symlink:
            {
                var n = RequestParser.ReadName(args, out var name);
                return n < 0 || RequestParser.ReadName(args[n..], out var target) < 0
                    ? Invalid(r)
                    : Complete(r, _fs.SymlinkAsync(ctx, node, name, target, ct), ReplyEntry, UndoEntry);
            }
            case FuseOpcode.MkNod:
            {
                var n = RequestParser.ReadStruct<fuse_mknod_in>(args, out var a);
                return n < 0 || RequestParser.ReadName(args[n..], out var name) < 0
                    ? Invalid(r)
                    : Complete(r, _fs.MkNodAsync(ctx, node, name, a.mode, a.rdev, ct), ReplyEntry, UndoEntry);
            }
            case FuseOpcode.MkDir:
            {
                var n = RequestParser.ReadStruct<fuse_mkdir_in>(args, out var a);
                return n < 0 || RequestParser.ReadName(args[n..], out var name) < 0
                    ? Invalid(r)
                    : Complete(r, _fs.MkDirAsync(ctx, node, name, SIfDir | (a.mode & PermissionBits), ct), ReplyEntry, UndoEntry);
            }
            case FuseOpcode.Unlink:
                return RequestParser.ReadName(args, out var unlinkName) < 0 ? Invalid(r) : CompleteStatus(r, _fs.UnlinkAsync(ctx, node, unlinkName, ct));
            case FuseOpcode.RmDir:
                return RequestParser.ReadName(args, out var rmdirName) < 0 ? Invalid(r) : CompleteStatus(r, _fs.RmDirAsync(ctx, node, rmdirName, ct));
            case FuseOpcode.Rename:
            {
                var n = RequestParser.ReadStruct<fuse_rename_in>(args, out var a);
                return HandleRename(r, args, n, a.newdir, 0);
            }
            case FuseOpcode.Rename2:
            {
                var n = RequestParser.ReadStruct<fuse_rename2_in>(args, out var a);
                return HandleRename(r, args, n, a.newdir, a.flags);
            }
            case FuseOpcode.Link:
            {
                var n = RequestParser.ReadStruct<fuse_link_in>(args, out var a);
                return n < 0 || RequestParser.ReadName(args[n..], out var name) < 0
                    ? Invalid(r)
                    : Complete(r, _fs.LinkAsync(ctx, a.oldnodeid, node, name, ct), ReplyEntry, UndoEntry);
            }
            case FuseOpcode.Open:
            {
                return RequestParser.ReadStruct<fuse_open_in>(args, out var a) < 0
                    ? Invalid(r)
                    : Complete(r, _fs.OpenAsync(ctx, node, (int)a.flags, ct), ReplyOpen, h => Release(ctx, node, h.Handle, dir: false));
            }
            case FuseOpcode.Create:
            {
                var n = RequestParser.ReadStruct<fuse_create_in>(args, out var a);
                return n < 0 || RequestParser.ReadName(args[n..], out var name) < 0
                    ? Invalid(r)
                    : Complete(r, _fs.CreateAsync(ctx, node, name, a.mode, (int)a.flags, ct), ReplyCreate, c =>
                    {
                        Release(ctx, c.Entry.NodeId, c.Open.Handle, dir: false);
                        Forget(c.Entry.NodeId, 1);
                    });
            }
            case FuseOpcode.Read:
            {
                if (RequestParser.ReadStruct<fuse_read_in>(args, out var a) < 0)
                {
                    return Invalid(r);
                }
                var size = (int)Math.Min(a.size, (uint)(r.Buffer.Length - Replies.OutHeaderSize));
                return Complete(r, _fs.ReadAsync(ctx, node, a.fh, (long)a.offset, r.Payload[..size], ct), static (_, n) => n);
            }
            case FuseOpcode.Write:
            {
                var n = RequestParser.ReadStruct<fuse_write_in>(args, out var a);
                if (n < 0 || args.Length - n < a.size)
                {
                    return Invalid(r);
                }
                var data = r.Buffer.AsMemory(RequestParser.InHeaderSize + n, (int)a.size);
                return Complete(r, _fs.WriteAsync(ctx, node, a.fh, (long)a.offset, data, ct),
                    static (q, written) => Replies.Write(q.Payload.Span, new fuse_write_out { size = (uint)written }));
            }
            case FuseOpcode.StatFs:
                return Complete(r, _fs.StatFsAsync(ctx, node, ct), static (q, s) => Replies.Write(q.Payload.Span, Replies.ToKstatfs(s)));
            case FuseOpcode.Release:
            case FuseOpcode.ReleaseDir:
            {
                if (RequestParser.ReadStruct<fuse_release_in>(args, out var a) < 0)
                {
                    return Invalid(r);
                }
                if (r.Opcode == FuseOpcode.Release && (a.release_flags & FuseConstants.ReleaseFlockUnlock) != 0 && Locks is { } locks)
                {
                    return CompleteStatus(r, ReleaseWithFlocksAsync(locks, ctx, node, a.fh, a.lock_owner, ct));
                }
                return CompleteStatus(r, r.Opcode == FuseOpcode.Release
                    ? _fs.ReleaseAsync(ctx, node, a.fh, ct)
                    : _fs.ReleaseDirAsync(ctx, node, a.fh, ct));
            }
            case FuseOpcode.Flush:
            {
                if (RequestParser.ReadStruct<fuse_flush_in>(args, out var a) < 0)
                {
                    return Invalid(r);
                }
                return CompleteStatus(r, Locks is { } locks ? FlushWithLocksAsync(locks, ctx, node, a.fh, a.lock_owner, ct) : _fs.FlushAsync(ctx, node, a.fh, ct));
            }
            case FuseOpcode.GetLk:
            {
                if (RequestParser.ReadStruct<fuse_lk_in>(args, out var a) < 0)
                {
                    return Invalid(r);
                }
                if (Locks is not { } locks || !ValidLock(a.lk, allowUnlock: false))
                {
                    return Refuse(r, Locks is null ? FsErrno.ENOSYS : FsErrno.EINVAL);
                }
                return Complete(r, locks.GetLockAsync(ctx, node, a.fh, a.owner, ToLock(a.lk), ct),
                    static (q, l) => Replies.Write(q.Payload.Span, new fuse_lk_out { lk = new fuse_file_lock { start = l.Start, end = l.End, type = (uint)l.Type, pid = l.Pid } }));
            }
            case FuseOpcode.SetLk:
            case FuseOpcode.SetLkW:
            {
                if (RequestParser.ReadStruct<fuse_lk_in>(args, out var a) < 0)
                {
                    return Invalid(r);
                }
                if (Locks is not { } locks || !ValidLock(a.lk, allowUnlock: true))
                {
                    return Refuse(r, Locks is null ? FsErrno.ENOSYS : FsErrno.EINVAL);
                }
                var flock = (a.lk_flags & FuseConstants.LkFlock) != 0;
                var wait = r.Opcode == FuseOpcode.SetLkW;
                var request = ToLock(a.lk);
                var (fh, owner) = (a.fh, a.owner);
                // A grant the kernel never saw (answered EINTR or ETIMEDOUT first) is given back: the caller was told
                // it does not hold the lock.
                Action<bool>? undo = request.Type == FuseLockType.Unlock ? null : _ => Unlock(locks, ctx, node, fh, owner, request, flock);
                // F_SETLKW waits as long as the lock is held elsewhere (as on any filesystem): no deadline, only the
                // caller's interruption (INTERRUPT → EINTR) ends the wait; each try inside has its own deadline.
                return Complete(r, AsResult(locks.SetLockAsync(ctx, node, fh, owner, request, flock, wait, ct)), static (_, _) => 0, undo,
                    wait && request.Type != FuseLockType.Unlock ? Timeout.InfiniteTimeSpan : null);
            }
            case FuseOpcode.Fsync:
            case FuseOpcode.FsyncDir:
            {
                if (RequestParser.ReadStruct<fuse_fsync_in>(args, out var a) < 0)
                {
                    return Invalid(r);
                }
                var dataOnly = (a.fsync_flags & FuseConstants.FsyncFdatasync) != 0;
                return CompleteStatus(r, r.Opcode == FuseOpcode.Fsync
                    ? _fs.FsyncAsync(ctx, node, a.fh, dataOnly, ct)
                    : _fs.FsyncDirAsync(ctx, node, a.fh, dataOnly, ct));
            }
            case FuseOpcode.OpenDir:
            {
                return RequestParser.ReadStruct<fuse_open_in>(args, out var a) < 0
                    ? Invalid(r)
                    : Complete(r, _fs.OpenDirAsync(ctx, node, (int)a.flags, ct), ReplyOpen, h => Release(ctx, node, h.Handle, dir: true));
            }
            case FuseOpcode.ReadDir:
            case FuseOpcode.ReadDirPlus:
            {
                if (RequestParser.ReadStruct<fuse_read_in>(args, out var a) < 0)
                {
                    return Invalid(r);
                }
                var size = (int)Math.Min(a.size, (uint)(r.Buffer.Length - Replies.OutHeaderSize));
                var listing = new DirectoryBuffer(r.Payload[..size], r.Opcode == FuseOpcode.ReadDirPlus);
                return Complete(r, AsResult(_fs.ReadDirAsync(ctx, node, a.fh, (long)a.offset, listing, ct)), (_, _) => listing.Length, _ =>
                {
                    foreach (var id in listing.Counted)
                    {
                        Forget(id, 1);
                    }
                });
            }
            case FuseOpcode.SetXattr:
            {
                var n = RequestParser.ReadStruct<fuse_setxattr_in>(args, out var a);
                if (n < 0)
                {
                    return Invalid(r);
                }
                var m = RequestParser.ReadName(args[n..], out var name);
                if (m < 0 || args.Length - n - m < a.size)
                {
                    return Invalid(r);
                }
                var value = r.Buffer.AsMemory(RequestParser.InHeaderSize + n + m, (int)a.size);
                return CompleteStatus(r, _fs.SetXattrAsync(ctx, node, name, value, (int)a.flags, ct));
            }
            case FuseOpcode.GetXattr:
            {
                var n = RequestParser.ReadStruct<fuse_getxattr_in>(args, out var a);
                if (n < 0 || RequestParser.ReadName(args[n..], out var name) < 0)
                {
                    return Invalid(r);
                }
                var size = (int)Math.Min(a.size, (uint)(r.Buffer.Length - Replies.OutHeaderSize));
                return Complete(r, _fs.GetXattrAsync(ctx, node, name, r.Payload[..size], ct), size == 0 ? ReplyXattrSize : static (_, len) => len);
            }
            case FuseOpcode.ListXattr:
            {
                if (RequestParser.ReadStruct<fuse_getxattr_in>(args, out var a) < 0)
                {
                    return Invalid(r);
                }
                var size = (int)Math.Min(a.size, (uint)(r.Buffer.Length - Replies.OutHeaderSize));
                return Complete(r, _fs.ListXattrAsync(ctx, node, r.Payload[..size], ct), size == 0 ? ReplyXattrSize : static (_, len) => len);
            }
            case FuseOpcode.RemoveXattr:
                return RequestParser.ReadName(args, out var xattrName) < 0 ? Invalid(r) : CompleteStatus(r, _fs.RemoveXattrAsync(ctx, node, xattrName, ct));
            case FuseOpcode.Access:
            {
                return RequestParser.ReadStruct<fuse_access_in>(args, out var a) < 0 ? Invalid(r) : CompleteStatus(r, _fs.AccessAsync(ctx, node, (int)a.mask, ct));
            }
            case FuseOpcode.Fallocate:
            {
                return RequestParser.ReadStruct<fuse_fallocate_in>(args, out var a) < 0
                    ? Invalid(r)
                    : CompleteStatus(r, _fs.FallocateAsync(ctx, node, a.fh, (long)a.offset, (long)a.length, (int)a.mode, ct));
            }
            case FuseOpcode.Lseek:
            {
                return RequestParser.ReadStruct<fuse_lseek_in>(args, out var a) < 0
                    ? Invalid(r)
                    : Complete(r, _fs.LseekAsync(ctx, node, a.fh, (long)a.offset, (int)a.whence, ct),
                        static (q, offset) => Replies.Write(q.Payload.Span, new fuse_lseek_out { offset = (ulong)offset }));
            }
            case FuseOpcode.CopyFileRange:
            {
                if (RequestParser.ReadStruct<fuse_copy_file_range_in>(args, out var a) < 0)
                {
                    return Invalid(r);
                }
                var length = (long)Math.Min(a.len, uint.MaxValue & ~4095UL); // the reply's size is 32 bits
                return Complete(r, _fs.CopyFileRangeAsync(ctx, node, a.fh_in, (long)a.off_in, a.nodeid_out, a.fh_out, (long)a.off_out, length, ct),
                    static (q, copied) => Replies.Write(q.Payload.Span, new fuse_write_out { size = (uint)copied }));
            }
            default:
                // STATX, IOCTL, POLL, BMAP, SYNCFS, TMPFILE, ...: refused; the kernel falls back
                // (STATX → GETATTR) or reports ENOSYS/EOPNOTSUPP to the caller.
                if (r.TryClaim())
                {
                    SendError(r.Fd, r.Unique, FsErrno.ENOSYS);
                }
                r.Dispose();
                return false;
        }
    }

    private bool HandleRename(Request r, ReadOnlySpan<byte> args, int n, ulong newDir, uint flags)
    {
        if (n < 0)
        {
            return Invalid(r);
        }
        var m = RequestParser.ReadName(args[n..], out var oldName);
        if (m < 0 || RequestParser.ReadName(args[(n + m)..], out var newName) < 0)
        {
            return Invalid(r);
        }
        return CompleteStatus(r, _fs.RenameAsync(r.Context, r.NodeId, oldName, newDir, newName, (RenameFlags)flags, r.Token));
    }

    private void HandleInit(int fd, in fuse_in_header header, ReadOnlySpan<byte> args)
    {
        // Kernels before 7.36 send only the first four fields.
        if (args.Length < 16)
        {
            SendError(fd, header.unique, FsErrno.EINVAL);
            return;
        }
        Span<byte> full = stackalloc byte[Unsafe.SizeOf<fuse_init_in>()];
        full.Clear();
        args[..Math.Min(args.Length, full.Length)].CopyTo(full);
        RequestParser.ReadStruct<fuse_init_in>(full, out var init);
        if (init.major != FuseConstants.KernelVersion || init.minor < FuseConstants.MinimumMinorVersion)
        {
            _log($"fuse {MountPoint}: kernel offers protocol {init.major}.{init.minor}; we need 7.{FuseConstants.MinimumMinorVersion} or newer");
            SendError(fd, header.unique, FsErrno.EPROTO);
            return;
        }
        var kernelFlags = (InitFlags)init.flags;
        if ((kernelFlags & InitFlags.InitExt) != 0)
        {
            kernelFlags |= (InitFlags)((ulong)init.flags2 << 32);
        }
        var wanted = InitFlags.AsyncRead | InitFlags.AtomicOTrunc | InitFlags.ExportSupport | InitFlags.BigWrites
            | InitFlags.DoReaddirplus | InitFlags.ReaddirplusAuto | InitFlags.AsyncDio | InitFlags.ParallelDirops
            | InitFlags.MaxPages | InitFlags.AutoInvalData | InitFlags.InitExt
            | (_options.WritebackCache ? InitFlags.WritebackCache : InitFlags.None)
            | (_fs is IFuseLocks ? InitFlags.PosixLocks | InitFlags.FlockLocks : InitFlags.None);
        var agreed = kernelFlags & wanted;
        var minor = Math.Min(init.minor, FuseConstants.KernelMinorVersion);
        var reply = new fuse_init_out
        {
            major = FuseConstants.KernelVersion,
            minor = minor,
            max_readahead = init.max_readahead,
            flags = (uint)agreed,
            flags2 = (uint)((ulong)agreed >> 32),
            max_background = 64,
            congestion_threshold = 48,
            max_write = FuseConstants.MaxWrite,
            time_gran = 1,
            max_pages = FuseConstants.MaxPages,
        };
        Span<byte> message = stackalloc byte[Replies.OutHeaderSize + Unsafe.SizeOf<fuse_init_out>()];
        var n = Replies.Write(message[Replies.OutHeaderSize..], in reply);
        Replies.WriteHeader(message, n, 0, header.unique);
        var errno = Posix.write_message(fd, message);
        if (errno != 0)
        {
            _log($"fuse {MountPoint}: INIT reply failed (errno {errno})");
            return;
        }
        Connection = new FuseConnectionInfo(init.major, minor, kernelFlags, agreed, FuseConstants.MaxWrite, init.max_readahead);
        _initialized.Set();
    }

    private void HandleBatchForget(ReadOnlySpan<byte> args)
    {
        var n = RequestParser.ReadStruct<fuse_batch_forget_in>(args, out var batch);
        if (n < 0)
        {
            return;
        }
        var rest = args[n..];
        for (var i = 0; i < batch.count; i++)
        {
            var m = RequestParser.ReadStruct<fuse_forget_one>(rest, out var one);
            if (m < 0)
            {
                break;
            }
            Forget(one.nodeid, one.nlookup);
            rest = rest[m..];
        }
    }

    private void HandleInterrupt(int fd, in fuse_in_header header, ReadOnlySpan<byte> args)
    {
        if (RequestParser.ReadStruct<fuse_interrupt_in>(args, out var interrupt) < 0)
        {
            SendError(fd, header.unique, FsErrno.EINVAL);
            return;
        }
        if (_inflight.TryGetValue(interrupt.unique, out var target))
        {
            if (IsInterruptible(target.Opcode) || CallerIsDying(target.Context.Pid))
            {
                try
                {
                    target.Interrupt(); // its EINTR answer is the reply; the INTERRUPT itself is not answered
                }
                catch (AggregateException e)
                {
                    // A cancellation callback of the filesystem's failed: told, never the end of this reader thread
                    // (which would end the mount).
                    _log($"fuse {MountPoint}: interrupting {target.Opcode} on node {target.NodeId}: {e.InnerException?.Message ?? e.Message}");
                }
            }
            else
            {
                // Ignored (the protocol allows it): the request finishes and is answered as usual.
                Interlocked.Increment(ref _interruptsIgnored);
            }
            return;
        }
        // Not (yet) in flight here: it is still being dispatched on another thread, or already answered. EAGAIN
        // makes the kernel send the INTERRUPT again if the request is still pending.
        SendError(fd, header.unique, FsErrno.EAGAIN);
    }

    /// <summary>
    /// Whether an INTERRUPT ends a request with EINTR at once whatever the caller: only a lock wait (F_SETLKW, flock),
    /// where programs expect EINTR (`flock -w` ends its wait with an alarm) and the session gives back a grant the
    /// kernel never saw. Any other request is ended early only for a caller that is dying (<see cref="CallerIsDying"/>);
    /// otherwise it finishes and is answered as usual, as on a local filesystem, which never fails a stat or a write
    /// with EINTR: EINTR says nothing happened, while a write, a create or a rename may already have happened (a
    /// program that writes again would write twice: an O_APPEND line twice, or a hole where the first attempt took
    /// its room), and a stat failed with EINTR reads as "no such file" to many programs (.NET's File.Exists).
    /// </summary>
    internal static bool IsInterruptible(FuseOpcode op) => op is FuseOpcode.SetLkW;

    /// <summary>
    /// Whether the thread that made a request is being killed (or is gone): a fatal signal is turned by the kernel
    /// into SIGKILL pending on every thread of the process before the thread wakes and sends INTERRUPT, and the kernel
    /// waits for the answer of a request we already read even then — so Ctrl-C on a call hung in the cluster ends
    /// the program only if we answer. Nobody is left to repeat what EINTR says did not happen.
    /// </summary>
    internal static bool CallerIsDying(uint tid)
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines($"/proc/{tid}/status");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return e is FileNotFoundException or DirectoryNotFoundException;
        }
        foreach (var line in lines)
        {
            if ((line.StartsWith("SigPnd:", StringComparison.Ordinal) || line.StartsWith("ShdPnd:", StringComparison.Ordinal))
                && ulong.TryParse(line.AsSpan(7).Trim(), System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture, out var pending)
                && (pending & (1UL << (SigKill - 1))) != 0)
            {
                return true;
            }
        }
        return false;
    }

    private const int SigKill = 9;

    private void Forget(ulong nodeId, ulong nlookup)
    {
        try
        {
            _fs.Forget(nodeId, nlookup);
        }
        catch (Exception e)
        {
            Interlocked.Increment(ref _backendFaults);
            _log($"fuse {MountPoint}: Forget({nodeId}, {nlookup}) threw: {e}");
        }
    }

    private void Release(FuseContext ctx, ulong nodeId, ulong handle, bool dir)
    {
        // Undoing an open the kernel never saw: release it in the background, bounded like any call.
        _ = Task.Run(async () =>
        {
            using var cts = new CancellationTokenSource(_options.OperationTimeout);
            try
            {
                await (dir ? _fs.ReleaseDirAsync(ctx, nodeId, handle, cts.Token) : _fs.ReleaseAsync(ctx, nodeId, handle, cts.Token)).AsTask().WaitAsync(cts.Token);
            }
            catch (Exception e)
            {
                _log($"fuse {MountPoint}: releasing unanswered handle {handle} failed: {e.Message}");
            }
        });
    }

    /// <summary>The filesystem's own locks, when it keeps them (and the kernel agreed to send them).</summary>
    private IFuseLocks? Locks => _fs as IFuseLocks;

    private static bool ValidLock(in fuse_file_lock lk, bool allowUnlock) =>
        lk.type <= (allowUnlock ? 2u : 1u) && lk.start <= lk.end && lk.end <= long.MaxValue;

    private static FuseLock ToLock(in fuse_file_lock lk) => new(lk.start, lk.end, (FuseLockType)lk.type, lk.pid);

    private async ValueTask<FsError> FlushWithLocksAsync(IFuseLocks locks, FuseContext ctx, ulong node, ulong fh, ulong owner, CancellationToken ct)
    {
        var flushed = await _fs.FlushAsync(ctx, node, fh, ct);
        // A close by this process: its POSIX locks on the file go (the kernel leaves that to us once it sends them).
        var unlocked = await locks.ReleaseOwnerAsync(ctx, node, owner, flock: false, ct);
        return flushed.IsOk ? unlocked : flushed;
    }

    private async ValueTask<FsError> ReleaseWithFlocksAsync(IFuseLocks locks, FuseContext ctx, ulong node, ulong fh, ulong owner, CancellationToken ct)
    {
        // The last close of an open file that took flock locks: they go before the handle does.
        await locks.ReleaseOwnerAsync(ctx, node, owner, flock: true, ct);
        return await _fs.ReleaseAsync(ctx, node, fh, ct);
    }

    private void Unlock(IFuseLocks locks, FuseContext ctx, ulong node, ulong fh, ulong owner, FuseLock granted, bool flock)
    {
        _ = Task.Run(async () =>
        {
            using var cts = new CancellationTokenSource(_options.OperationTimeout);
            try
            {
                await locks.SetLockAsync(ctx, node, fh, owner, granted with { Type = FuseLockType.Unlock }, flock, wait: false, cts.Token).AsTask().WaitAsync(cts.Token);
            }
            catch (Exception e)
            {
                _log($"fuse {MountPoint}: giving back an unanswered lock on node {node} failed: {e.Message}");
            }
        });
    }

    private bool Refuse(Request r, int errno)
    {
        if (r.TryClaim())
        {
            SendError(r.Fd, r.Unique, errno);
        }
        r.Dispose();
        return false;
    }

    private static SetAttrRequest ToSetAttr(in fuse_setattr_in a)
    {
        var valid = (SetAttrValid)a.valid;
        var now = Timestamp.Now;
        var atime = new Timestamp((long)a.atime, a.atimensec);
        var mtime = new Timestamp((long)a.mtime, a.mtimensec);
        if ((valid & SetAttrValid.AtimeNow) != 0)
        {
            valid |= SetAttrValid.Atime;
            atime = now;
        }
        if ((valid & SetAttrValid.MtimeNow) != 0)
        {
            valid |= SetAttrValid.Mtime;
            mtime = now;
        }
        valid &= ~(SetAttrValid.AtimeNow | SetAttrValid.MtimeNow);
        ulong? handle = (valid & SetAttrValid.Fh) != 0 ? a.fh : null;
        return new SetAttrRequest(valid, handle, a.size, a.mode, a.uid, a.gid, atime, mtime, new Timestamp((long)a.ctime, a.ctimensec));
    }

    private bool Invalid(Request r)
    {
        if (r.TryClaim())
        {
            SendError(r.Fd, r.Unique, FsErrno.EINVAL);
        }
        r.Dispose();
        return false;
    }

    private static int ReplyEntry(Request r, Entry e) => Replies.Write(r.Payload.Span, Replies.ToEntryOut(e));

    private static int ReplyAttr(Request r, AttrReply a) => Replies.Write(r.Payload.Span, Replies.ToAttrOut(a));

    private static int ReplyOpen(Request r, OpenReply o) =>
        Replies.Write(r.Payload.Span, new fuse_open_out { fh = o.Handle, open_flags = (uint)o.Flags });

    private static int ReplyCreate(Request r, CreateReply c)
    {
        var n = Replies.Write(r.Payload.Span, Replies.ToEntryOut(c.Entry));
        return n + Replies.Write(r.Payload.Span[n..], new fuse_open_out { fh = c.Open.Handle, open_flags = (uint)c.Open.Flags });
    }

    private static int ReplyXattrSize(Request r, int size) => Replies.Write(r.Payload.Span, new fuse_getxattr_out { size = (uint)size });
}
