using System.Collections.Concurrent;
using System.Text;
using Appliance.Fs.Api;
using Appliance.Fs.Protocol;
using Appliance.Platform.Native;

namespace Appliance.Fs.Session;

/// <summary>
/// A mounted filesystem: the /dev/fuse connection, its reader threads (one cloned descriptor each), INIT
/// negotiation, and dispatch of every request to an <see cref="IFuseFileSystem"/> with a deadline.
/// Lifecycle: <see cref="Mount"/> → (serving) → <see cref="Unmount"/> or an external umount → readers see ENODEV
/// → <see cref="Completion"/> ends. <see cref="DisposeAsync"/> unmounts and, if the connection still does not end
/// in time, aborts it.
/// </summary>
public sealed partial class FuseSession : IAsyncDisposable
{
    private readonly IFuseFileSystem _fs;
    private readonly FuseOptions _options;
    private readonly BufferPool _pool;
    private readonly ConcurrentDictionary<ulong, Request> _inflight = new();
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ManualResetEventSlim _initialized = new();
    private readonly List<int> _fds = [];
    private readonly bool _viaFusermount;
    private readonly Action<string> _log;
    private int _running;
    private int _unmounted;
    private long _timeouts;
    private long _interrupts;
    private long _backendFaults;
    private long _lateAnswers;

    private FuseSession(IFuseFileSystem fs, string mountPoint, FuseOptions options, bool viaFusermount)
    {
        _fs = fs;
        _options = options;
        _viaFusermount = viaFusermount;
        MountPoint = Path.GetFullPath(mountPoint);
        _pool = new BufferPool(options.Threads * 4);
        _log = options.Log ?? (line => Console.Error.WriteLine(line));
    }

    public string MountPoint { get; }

    /// <summary>The /sys/fs/fuse/connections id, for <see cref="Abort"/>.</summary>
    public string? ConnectionId { get; private set; }

    /// <summary>What INIT agreed on (null until the kernel's INIT was answered).</summary>
    public FuseConnectionInfo? Connection { get; private set; }

    /// <summary>Completes when every reader thread has ended (the connection is gone).</summary>
    public Task Completion => _completion.Task;

    /// <summary>Requests answered ETIMEDOUT because their backend call passed the deadline.</summary>
    public long Timeouts => Interlocked.Read(ref _timeouts);

    /// <summary>Requests answered EINTR because the caller was interrupted.</summary>
    public long Interrupts => Interlocked.Read(ref _interrupts);

    /// <summary>INTERRUPTs of requests that are not ended early (<see cref="IsInterruptible"/>): they finish as usual.</summary>
    public long InterruptsIgnored => Interlocked.Read(ref _interruptsIgnored);

    private long _interruptsIgnored;

    /// <summary>Backend results dropped because the request had already been answered (deadline or interrupt);
    /// the lookups and handles they created were given back.</summary>
    public long LateAnswers => Interlocked.Read(ref _lateAnswers);

    /// <summary>Backend calls that threw something other than <see cref="FsException"/> (bugs; answered EIO).</summary>
    public long BackendFaults => Interlocked.Read(ref _backendFaults);

    /// <summary>Mounts <paramref name="fs"/> at <paramref name="mountPoint"/> and serves it until unmounted. Returns
    /// once the kernel's INIT has been answered, so the mount is usable.</summary>
    public static FuseSession Mount(IFuseFileSystem fs, string mountPoint, FuseOptions? options = null)
    {
        options ??= new FuseOptions();
        if (!Directory.Exists(mountPoint))
        {
            throw new FuseMountException($"mount point {mountPoint} does not exist; create the directory first");
        }
        var viaFusermount = options.UseFusermount || !FuseMounter.IsRoot;
        var session = new FuseSession(fs, mountPoint, options, viaFusermount);
        var fd = viaFusermount ? FuseMounter.MountFusermount(session.MountPoint, options) : FuseMounter.MountKernel(session.MountPoint, options);
        try
        {
            session.Start(fd);
        }
        catch
        {
            // No reader runs yet: take the mount away again (the kernel then ends the connection) and close ours.
            FuseMounter.Unmount(session.MountPoint, viaFusermount);
            lock (session._fds)
            {
                if (session._fds.Count == 0)
                {
                    session._fds.Add(fd);
                }
                foreach (var open in session._fds)
                {
                    Posix.close(open);
                }
                session._fds.Clear();
            }
            throw;
        }
        if (!session._initialized.Wait(options.InitTimeout) || session.Connection is null)
        {
            session.AbortAndUnmount();
            throw new FuseMountException($"the kernel's INIT on {mountPoint} was not answered within {options.InitTimeout.TotalSeconds:0} s (or the protocol was refused; see the log)");
        }
        return session;
    }

    /// <summary>A session with no connection, for tests that feed requests to <see cref="DispatchForTest"/>.</summary>
    internal static FuseSession CreateForTest(IFuseFileSystem fs, FuseOptions options) => new(fs, Path.GetTempPath(), options, viaFusermount: false);

    /// <summary>Handles one request as a reader thread would, answering on <paramref name="fd"/>.</summary>
    internal bool DispatchForTest(int fd, byte[] buffer, int length) => Dispatch(fd, buffer, length);

    /// <summary>
    /// Unmounts (as umount would). Returns false when the mount was busy and was detached instead: it disappears
    /// from the tree now and the connection ends when the last open file on it is closed.
    /// </summary>
    public bool Unmount()
    {
        if (Interlocked.Exchange(ref _unmounted, 1) == 1 || Completion.IsCompleted)
        {
            return true;
        }
        return FuseMounter.Unmount(MountPoint, _viaFusermount);
    }

    /// <summary>Aborts the connection (/sys/fs/fuse/connections/N/abort): for a connection stuck in the kernel.
    /// Processes using the mount get ENOTCONN; the mount point must still be unmounted.</summary>
    public void Abort()
    {
        if (ConnectionId is { } id && !Completion.IsCompleted)
        {
            FuseMounter.Abort(id);
        }
    }

    /// <summary>Drops the kernel's cached attributes and data of a node (FUSE_NOTIFY_INVAL_INODE). Offset 0 and
    /// length 0 drop all data; a negative offset drops only attributes. Returns false when the kernel does not have
    /// the node cached. Must not be called from inside a filesystem call for the same node.</summary>
    public bool NotifyInvalInode(ulong nodeId, long offset = 0, long length = 0)
    {
        Span<byte> message = stackalloc byte[64];
        var n = Replies.WriteNotifyInvalInode(message, nodeId, offset, length);
        return Notify(message[..n]);
    }

    /// <summary>Drops the kernel's cached name <paramref name="name"/> in <paramref name="parent"/>
    /// (FUSE_NOTIFY_INVAL_ENTRY). Must not be called from inside a filesystem call on that directory (the kernel
    /// holds its lock while it waits for our answer).</summary>
    public bool NotifyInvalEntry(ulong parent, string name)
    {
        var nameBytes = Encoding.UTF8.GetBytes(name);
        var message = new byte[Replies.OutHeaderSize + 16 + nameBytes.Length + 1];
        var n = Replies.WriteNotifyInvalEntry(message, parent, nameBytes);
        return Notify(message.AsSpan(0, n));
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            Unmount();
        }
        catch (PlatformException e)
        {
            _log($"fuse {MountPoint}: unmount failed: {e.Message}");
        }
        if (await WaitAsync(TimeSpan.FromSeconds(5)))
        {
            return;
        }
        _log($"fuse {MountPoint}: connection did not end after unmount; aborting it");
        AbortAndUnmount();
        await WaitAsync(TimeSpan.FromSeconds(5));
    }

    private async Task<bool> WaitAsync(TimeSpan timeout)
    {
        try
        {
            await Completion.WaitAsync(timeout);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    private void AbortAndUnmount()
    {
        try
        {
            Abort();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log($"fuse {MountPoint}: abort failed: {e.Message}");
        }
        try
        {
            Interlocked.Exchange(ref _unmounted, 0);
            Unmount();
        }
        catch (PlatformException e)
        {
            _log($"fuse {MountPoint}: unmount failed: {e.Message}");
        }
    }

    private bool Notify(ReadOnlySpan<byte> message)
    {
        int fd;
        lock (_fds)
        {
            if (_fds.Count == 0)
            {
                return false;
            }
            fd = _fds[0];
        }
        var errno = Posix.write_message(fd, message);
        return errno == 0;
    }

    private void Start(int masterFd)
    {
        _fds.Add(masterFd);
        ConnectionId = FuseMounter.ConnectionId(MountPoint);
        var readers = new List<int> { masterFd };
        for (var i = 1; i < _options.Threads; i++)
        {
            int clone;
            try
            {
                clone = Posix.open("/dev/fuse", Constants.O_RDWR);
            }
            catch (PlatformAccessException)
            {
                // Not root and /dev/fuse is 0600: fusermount3 opened the connection for us, but we cannot open more.
                // Several threads then read the one descriptor (the kernel hands each request to one reader).
                readers.Add(masterFd);
                continue;
            }
            try
            {
                Posix.ioctl_FUSE_DEV_IOC_CLONE(clone, masterFd);
            }
            catch
            {
                Posix.close(clone);
                throw;
            }
            _fds.Add(clone);
            readers.Add(clone);
        }
        _running = readers.Count;
        for (var i = 0; i < readers.Count; i++)
        {
            var fd = readers[i];
            var thread = new Thread(() => ReadLoop(fd)) { IsBackground = true, Name = $"fuse-reader-{i}" };
            thread.Start();
        }
    }

    private void ReadLoop(int fd)
    {
        Exception? failure = null;
        var buffer = _pool.Rent();
        try
        {
            while (true)
            {
                int n;
                try
                {
                    n = Posix.read(fd, buffer, "/dev/fuse");
                }
                catch (PlatformException e) when (e.Errno is Errno.ENODEV or Posix.ECONNABORTED)
                {
                    break; // unmounted or aborted: the connection is gone
                }
                catch (PlatformException e) when (e.Errno == Errno.ENOENT)
                {
                    continue; // the request we were about to read was interrupted and withdrawn
                }
                if (Dispatch(fd, buffer, n))
                {
                    buffer = _pool.Rent(); // the request kept ours until its backend call ends
                }
            }
        }
        catch (Exception e)
        {
            failure = e;
            _log($"fuse {MountPoint}: reader failed: {e}");
        }
        finally
        {
            ReaderEnded(failure);
        }
    }

    private void ReaderEnded(Exception? failure)
    {
        if (Interlocked.Decrement(ref _running) != 0)
        {
            if (failure is not null)
            {
                _completion.TrySetException(failure);
            }
            return;
        }
        lock (_fds)
        {
            foreach (var fd in _fds)
            {
                Posix.close(fd);
            }
            _fds.Clear();
        }
        _initialized.Set();
        if (failure is null)
        {
            _completion.TrySetResult();
        }
        else
        {
            _completion.TrySetException(failure);
        }
    }
}
