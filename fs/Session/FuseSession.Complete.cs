using Appliance.Fs.Api;
using Appliance.Fs.Protocol;
using Appliance.Platform.Native;

namespace Appliance.Fs.Session;

/// <summary>Answering requests: exactly once, within the deadline, undoing what the kernel never saw.</summary>
public sealed partial class FuseSession
{
    private Action<Entry>? _undoEntryCache;
    private Action<Request>? _onCancelCache;

    private Action<Entry> UndoEntry => _undoEntryCache ??= e =>
    {
        if (e.NodeId != 0)
        {
            Forget(e.NodeId, 1);
        }
    };

    private Action<Request> OnCancel => _onCancelCache ??= r =>
    {
        if (!r.TryClaim())
        {
            return;
        }
        if (r.CancelErrno == FsErrno.EINTR)
        {
            Interlocked.Increment(ref _interrupts);
        }
        else
        {
            Interlocked.Increment(ref _timeouts);
            _log($"fuse {MountPoint}: {r.Opcode} on node {r.NodeId} passed its {_options.OperationTimeout.TotalSeconds:0.###} s deadline; answered ETIMEDOUT");
        }
        SendError(r.Fd, r.Unique, r.CancelErrno);
    };

    private bool CompleteStatus(Request r, ValueTask<FsError> task) => Complete(r, AsResult(task), static (_, _) => 0);

    /// <summary>
    /// Answers <paramref name="r"/> with the result of <paramref name="task"/>: at once when it already completed
    /// (the common case for an in-memory or cached answer), else when it completes or its deadline passes. Returns
    /// true when the request keeps its buffer (still running).
    /// </summary>
    private bool Complete<T>(Request r, ValueTask<FsResult<T>> task, Func<Request, T, int> reply, Action<T>? undo = null, TimeSpan? deadline = null)
    {
        if (task.IsCompleted)
        {
            FsResult<T> result;
            try
            {
                result = task.Result;
            }
            catch (Exception e)
            {
                result = new FsError(ErrnoOf(r, e));
            }
            Finish(r, result, reply, undo);
            r.Dispose();
            return false;
        }
        _ = CompleteLaterAsync(r, task, reply, undo, deadline ?? _options.OperationTimeout);
        return true;
    }

    private async Task CompleteLaterAsync<T>(Request r, ValueTask<FsResult<T>> task, Func<Request, T, int> reply, Action<T>? undo, TimeSpan timeout)
    {
        // Lost race, on purpose: an INTERRUPT read before this line finds nothing and is answered EAGAIN, so the
        // kernel sends it again.
        _inflight[r.Unique] = r;
        var deadline = r.Arm(timeout, OnCancel);
        FsResult<T> result;
        try
        {
            result = await task;
        }
        catch (Exception e)
        {
            result = new FsError(ErrnoOf(r, e));
        }
        finally
        {
            _inflight.TryRemove(r.Unique, out _);
            deadline.Dispose();
        }
        Finish(r, result, reply, undo);
        r.Dispose();
        _pool.Return(r.Buffer); // the backend is done with it only now, even if the kernel was answered long ago
    }

    private void Finish<T>(Request r, FsResult<T> result, Func<Request, T, int> reply, Action<T>? undo)
    {
        if (!r.TryClaim())
        {
            // Already answered (deadline or interrupt): the kernel never sees this result.
            if (result.IsOk)
            {
                undo?.Invoke(result.Value);
            }
            Interlocked.Increment(ref _lateAnswers);
            return;
        }
        if (!result.IsOk)
        {
            SendError(r.Fd, r.Unique, result.Errno);
            return;
        }
        var n = reply(r, result.Value);
        Replies.WriteHeader(r.Buffer, n, 0, r.Unique);
        var errno = Posix.write_message(r.Fd, r.Buffer.AsSpan(0, Replies.OutHeaderSize + n));
        if (errno != 0)
        {
            // ENOENT: the kernel withdrew the request (interrupted, or the connection is going away).
            if (errno != Errno.ENOENT)
            {
                _log($"fuse {MountPoint}: reply to {r.Opcode} failed (errno {errno})");
            }
            undo?.Invoke(result.Value);
        }
    }

    private void SendError(int fd, ulong unique, int errno)
    {
        if (errno is < 0 or > 4095)
        {
            errno = FsErrno.EIO;
        }
        Span<byte> message = stackalloc byte[Replies.OutHeaderSize];
        Replies.WriteHeader(message, 0, errno, unique);
        var failed = Posix.write_message(fd, message);
        if (failed != 0 && failed != Errno.ENOENT && failed != Errno.ENODEV)
        {
            _log($"fuse {MountPoint}: error reply failed (errno {failed})");
        }
    }

    /// <summary>The one place exceptions from a filesystem become errnos.</summary>
    private int ErrnoOf(Request r, Exception e)
    {
        switch (e)
        {
            case FsException fs:
                return fs.Errno;
            case OperationCanceledException when r.Token.IsCancellationRequested:
                return r.CancelErrno;
            case PlatformException p when p.Errno > 0:
                return p.Errno;
            default:
                Interlocked.Increment(ref _backendFaults);
                _log($"fuse {MountPoint}: {r.Opcode} on node {r.NodeId} threw (answered EIO): {e}");
                return FsErrno.EIO;
        }
    }

    private static ValueTask<FsResult<bool>> AsResult(ValueTask<FsError> task)
    {
        if (task.IsCompletedSuccessfully)
        {
            var error = task.Result;
            return new(error.IsOk ? true : error);
        }
        return Slow(task);

        static async ValueTask<FsResult<bool>> Slow(ValueTask<FsError> task)
        {
            var error = await task;
            return error.IsOk ? true : error;
        }
    }
}
