using Appliance.Platform.Native;

namespace Appliance.Platform.Devices;

/// <summary>What a <see cref="FileDevice"/> sits on.</summary>
public enum DeviceKind
{
    BlockDevice,
    RegularFile,
}

public sealed record FileDeviceOptions
{
    public bool ReadOnly { get; init; }

    /// <summary>Take an exclusive flock so that no second process opens the same disk (default on).</summary>
    public bool Exclusive { get; init; } = true;

    /// <summary>Refuse to open when the filesystem does not support O_DIRECT, instead of falling back to buffered
    /// I/O made durable by fdatasync.</summary>
    public bool RequireDirectIo { get; init; }

    /// <summary>How many I/Os may be in flight at once.</summary>
    public int QueueDepth { get; init; } = 128;
}

/// <summary>A second process holds the disk open.</summary>
public sealed class DeviceInUseException(string path, Exception inner)
    : IOException($"{path} is in use by another process (it holds a lock on it); stop that process first", inner);

/// <summary>
/// A raw block device or a regular file used as a disk: opened with O_DIRECT (no page cache between us and the
/// medium), positional asynchronous I/O through Linux AIO, flush by fdatasync. The size of a block device comes from
/// BLKGETSIZE64; of a file, from its length (see <see cref="CreateFile"/>).
/// </summary>
public sealed class FileDevice : IBlockDevice
{
    private readonly int _fd;
    private readonly AioEngine _aio;
    private int _disposed;

    private FileDevice(string path, int fd, DeviceKind kind, long size, int blockSize, bool direct, bool readOnly, int depth)
    {
        Name = path;
        _fd = fd;
        Kind = kind;
        Size = size;
        BlockSize = blockSize;
        DirectIo = direct;
        IsReadOnly = readOnly;
        _aio = new AioEngine(depth, path);
    }

    public string Name { get; }
    public DeviceKind Kind { get; }
    public long Size { get; }
    public int BlockSize { get; }

    /// <summary>O_DIRECT buffers must be aligned; 4096 satisfies every device and filesystem we know of.</summary>
    public int MemoryAlignment => 4096;

    public bool IsReadOnly { get; }

    /// <summary>Whether the descriptor bypasses the page cache (false only after a fallback on a filesystem
    /// without O_DIRECT).</summary>
    public bool DirectIo { get; }

    /// <summary>Opens an existing block device or file.</summary>
    public static FileDevice Open(string path, FileDeviceOptions? options = null)
    {
        options ??= new FileDeviceOptions();
        var access = options.ReadOnly ? Constants.O_RDONLY : Constants.O_RDWR;
        int fd;
        var direct = true;
        try
        {
            fd = Posix.open(path, access | Constants.O_DIRECT);
        }
        catch (PlatformUnsupportedException) when (!options.RequireDirectIo)
        {
            // The filesystem refuses O_DIRECT (EINVAL): use the page cache, durability still comes from fdatasync.
            fd = Posix.open(path, access);
            direct = false;
        }

        try
        {
            if (options.Exclusive)
            {
                try
                {
                    Posix.flock(fd, Constants.LOCK_EX | Constants.LOCK_NB, path);
                }
                catch (PlatformBusyException e)
                {
                    throw new DeviceInUseException(path, e);
                }
            }
            var st = Posix.fstatx(fd, path);
            DeviceKind kind;
            long size;
            int blockSize;
            if (st.IsBlockDevice)
            {
                kind = DeviceKind.BlockDevice;
                size = Posix.ioctl_BLKGETSIZE64(fd, path);
                blockSize = Posix.ioctl_BLKSSZGET(fd, path);
            }
            else if (st.IsRegularFile)
            {
                kind = DeviceKind.RegularFile;
                // The direct-I/O offset alignment when the kernel reports it (STATX_DIOALIGN), else the safe 4096.
                blockSize = !direct ? 512
                    : (st.stx_mask & Constants.STATX_DIOALIGN) != 0 && st.stx_dio_offset_align is >= 512 and <= 4096
                        ? (int)st.stx_dio_offset_align
                        : 4096;
                size = (long)st.stx_size;
            }
            else
            {
                throw new IOException($"{path} is neither a block device nor a regular file; give a disk such as /dev/vdb or a file made by 'appliance device create'");
            }
            size -= size % blockSize;
            if (size == 0)
            {
                throw new IOException($"{path} has no usable space ({st.stx_size} bytes); a disk needs at least one {blockSize}-byte block");
            }
            return new FileDevice(path, fd, kind, size, blockSize, direct, options.ReadOnly, options.QueueDepth);
        }
        catch
        {
            Posix.close(fd);
            throw;
        }
    }

    /// <summary>Creates a new sparse file of <paramref name="size"/> bytes and opens it. Refuses to touch an
    /// existing file (EEXIST), so that it never truncates someone's data.</summary>
    public static FileDevice CreateFile(string path, long size, FileDeviceOptions? options = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 4096);
        var fd = Posix.open(path, Constants.O_RDWR | Constants.O_CREAT | Constants.O_EXCL, 0x180 /* 0600 */);
        try
        {
            Posix.ftruncate(fd, size - size % 4096, path);
            Posix.fsync(fd, path);
        }
        finally
        {
            Posix.close(fd);
        }
        return Open(path, options);
    }

    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken ct = default)
    {
        DeviceChecks.Io(this, offset, destination.Length, destination, write: false);
        var done = 0;
        while (done < destination.Length)
        {
            var rest = destination[done..];
            var n = await _aio.SubmitAsync(Constants.IOCB_CMD_PREAD, _fd, rest.Pin(), rest.Length, offset + done, ct);
            if (n <= 0 || n % BlockSize != 0)
            {
                // Past the end or an unaligned partial read: the medium changed size under us.
                throw Throw.For("pread (aio)", Errno.EIO, Name);
            }
            done += (int)n;
        }
    }

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken ct = default)
    {
        DeviceChecks.Io(this, offset, source.Length, source, write: true);
        var done = 0;
        while (done < source.Length)
        {
            var rest = source[done..];
            var n = await _aio.SubmitAsync(Constants.IOCB_CMD_PWRITE, _fd, rest.Pin(), rest.Length, offset + done, ct);
            if (n <= 0 || n % BlockSize != 0)
            {
                // A short write of a file on a full filesystem comes back as 0 bytes for the rest.
                throw Throw.For("pwrite (aio)", n == 0 ? Errno.ENOSPC : Errno.EIO, Name);
            }
            done += (int)n;
        }
    }

    /// <summary>The writes go to the kernel in as few io_submit calls as the queue allows (one for up to half the
    /// queue depth): one plug of the block layer, one notification of a virtual disk.</summary>
    public async ValueTask WriteManyAsync(IReadOnlyList<(long Offset, ReadOnlyMemory<byte> Source)> writes, CancellationToken ct = default)
    {
        if (writes.Count <= 1)
        {
            if (writes.Count == 1)
            {
                await WriteAsync(writes[0].Offset, writes[0].Source, ct);
            }
            return;
        }
        var ios = new (ReadOnlyMemory<byte>, long)[writes.Count];
        for (var i = 0; i < writes.Count; i++)
        {
            var (offset, source) = writes[i];
            DeviceChecks.Io(this, offset, source.Length, source, write: true);
            ios[i] = (source, offset);
        }
        var done = await _aio.SubmitManyAsync(Constants.IOCB_CMD_PWRITE, _fd, ios, ct);
        for (var i = 0; i < done.Length; i++)
        {
            var (offset, source) = writes[i];
            if (done[i] == source.Length)
            {
                continue;
            }
            if (done[i] <= 0 || done[i] % BlockSize != 0)
            {
                // As in WriteAsync: a full filesystem returns 0 bytes for the rest.
                throw Throw.For("pwrite (aio)", done[i] == 0 ? Errno.ENOSPC : Errno.EIO, Name);
            }
            // Short but aligned: the rest the ordinary way.
            await WriteAsync(offset + done[i], source[(int)done[i]..], ct);
        }
    }

    /// <summary>
    /// fdatasync, called on the caller's thread: it blocks that thread for the flush (a pool thread for a few
    /// milliseconds; the store has one flusher). Through AIO (IOCB_CMD_FDSYNC) the flush ran on a kernel worker and
    /// came back through the reaper and a thread-pool continuation — two more thread wake-ups per flush, which on
    /// a virtual machine cost a large share of a small synchronous write (store bench QD1: ~0.6 to ~0.77 of fio).
    /// </summary>
    public ValueTask FlushAsync(CancellationToken ct = default)
    {
        ct.ThrowIfCancellationRequested();
        if (!IsReadOnly)
        {
            Posix.fdatasync(_fd, Name);
        }
        return ValueTask.CompletedTask;
    }

    public async ValueTask DiscardAsync(long offset, long length, CancellationToken ct = default)
    {
        DeviceChecks.Range(this, offset, length);
        if (IsReadOnly)
        {
            throw new InvalidOperationException($"{Name} is open read-only");
        }
        if (length == 0)
        {
            return;
        }
        await Task.Run(() =>
        {
            if (Kind == DeviceKind.BlockDevice)
            {
                Posix.ioctl_BLKDISCARD(_fd, offset, length, Name);
            }
            else
            {
                Posix.fallocate(_fd, Constants.FALLOC_FL_PUNCH_HOLE | Constants.FALLOC_FL_KEEP_SIZE, offset, length, Name);
            }
        }, ct);
    }

    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _aio.Dispose();
            Posix.close(_fd);
        }
        return ValueTask.CompletedTask;
    }
}
