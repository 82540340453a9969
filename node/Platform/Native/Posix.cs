using System.Runtime.InteropServices;

namespace Appliance.Platform.Native;

/// <summary>
/// The checked wrappers over <see cref="Libc"/>: C names, EINTR retried, short reads and writes completed, errors
/// thrown as typed <see cref="PlatformException"/>s naming the call and the subject.
/// </summary>
public static unsafe partial class Posix
{
    public static int open(string path, int flags, uint mode = 0)
    {
        while (true)
        {
            var fd = Libc.open(path, flags | Constants.O_CLOEXEC, mode);
            if (fd >= 0)
            {
                return fd;
            }
            var errno = Marshal.GetLastPInvokeError();
            if (errno != Errno.EINTR)
            {
                throw Throw.For("open", errno, path);
            }
        }
    }

    /// <summary>Closes a descriptor. EINTR is not retried: on Linux the descriptor is released either way.</summary>
    public static void close(int fd)
    {
        if (Libc.close(fd) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno != Errno.EINTR)
            {
                throw Throw.For("close", errno, null);
            }
        }
    }

    /// <summary>Reads until the buffer is full or end of file; returns the bytes read.</summary>
    public static int pread(int fd, Span<byte> buffer, long offset, string? subject = null)
    {
        var done = 0;
        fixed (byte* p = buffer)
        {
            while (done < buffer.Length)
            {
                var n = Libc.pread(fd, p + done, (nuint)(buffer.Length - done), offset + done);
                if (n < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    if (errno == Errno.EINTR)
                    {
                        continue;
                    }
                    throw Throw.For("pread", errno, subject);
                }
                if (n == 0)
                {
                    break;
                }
                done += (int)n;
            }
        }
        return done;
    }

    /// <summary>Writes the whole buffer (a short write is continued).</summary>
    public static void pwrite(int fd, ReadOnlySpan<byte> buffer, long offset, string? subject = null)
    {
        var done = 0;
        fixed (byte* p = buffer)
        {
            while (done < buffer.Length)
            {
                var n = Libc.pwrite(fd, p + done, (nuint)(buffer.Length - done), offset + done);
                if (n < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    if (errno == Errno.EINTR)
                    {
                        continue;
                    }
                    throw Throw.For("pwrite", errno, subject);
                }
                if (n == 0)
                {
                    throw Throw.For("pwrite", Errno.ENOSPC, subject);
                }
                done += (int)n;
            }
        }
    }

    /// <summary>lseek(2). For SEEK_DATA / SEEK_HOLE past the last data, returns -1 (ENXIO) instead of throwing,
    /// so callers can walk the allocation map of a sparse file.</summary>
    public static long lseek(int fd, long offset, int whence, string? subject = null)
    {
        var r = Libc.lseek(fd, offset, whence);
        if (r >= 0)
        {
            return r;
        }
        var errno = Marshal.GetLastPInvokeError();
        return errno == Errno.ENXIO && whence is Constants.SEEK_DATA or Constants.SEEK_HOLE
            ? -1
            : throw Throw.For("lseek", errno, subject);
    }

    public static void fdatasync(int fd, string? subject = null) => Retry(() => Libc.fdatasync(fd), "fdatasync", subject);

    public static void fsync(int fd, string? subject = null) => Retry(() => Libc.fsync(fd), "fsync", subject);

    public static void ftruncate(int fd, long length, string? subject = null) => Retry(() => Libc.ftruncate(fd, length), "ftruncate", subject);

    public static void fallocate(int fd, int mode, long offset, long length, string? subject = null) =>
        Retry(() => Libc.fallocate(fd, mode, offset, length), "fallocate", subject);

    /// <summary>ioctl(BLKGETSIZE64): the size in bytes of a block device.</summary>
    public static long ioctl_BLKGETSIZE64(int fd, string? subject = null)
    {
        ulong size = 0;
        if (Libc.ioctl(fd, Constants.BLKGETSIZE64, &size) != 0)
        {
            throw Throw.LastError("ioctl(BLKGETSIZE64)", subject);
        }
        return (long)size;
    }

    /// <summary>ioctl(BLKSSZGET): the logical sector size of a block device.</summary>
    public static int ioctl_BLKSSZGET(int fd, string? subject = null)
    {
        var size = 0;
        if (Libc.ioctl(fd, Constants.BLKSSZGET, &size) != 0)
        {
            throw Throw.LastError("ioctl(BLKSSZGET)", subject);
        }
        return size;
    }

    /// <summary>ioctl(BLKDISCARD): tells the device a byte range is unused.</summary>
    public static void ioctl_BLKDISCARD(int fd, long offset, long length, string? subject = null)
    {
        var range = stackalloc ulong[2];
        range[0] = (ulong)offset;
        range[1] = (ulong)length;
        if (Libc.ioctl(fd, Constants.BLKDISCARD, range) != 0)
        {
            throw Throw.LastError("ioctl(BLKDISCARD)", subject);
        }
    }

    /// <summary>flock(2). With LOCK_NB, a lock held elsewhere throws <see cref="PlatformBusyException"/>.</summary>
    public static void flock(int fd, int operation, string? subject = null) => Retry(() => Libc.flock(fd, operation), "flock", subject);

    public static StatVfs statvfs(string path)
    {
        while (true)
        {
            if (Libc.statvfs(path, out var buf) == 0)
            {
                return buf;
            }
            var errno = Marshal.GetLastPInvokeError();
            if (errno != Errno.EINTR)
            {
                throw Throw.For("statvfs", errno, path);
            }
        }
    }

    /// <summary>statx(2) of an open descriptor (AT_EMPTY_PATH), with the basic fields and direct-I/O alignment.</summary>
    public static Statx fstatx(int fd, string? subject = null)
    {
        if (Libc.statx(fd, "", Constants.AT_EMPTY_PATH, Constants.STATX_BASIC_STATS | Constants.STATX_DIOALIGN, out var buf) != 0)
        {
            throw Throw.LastError("statx", subject);
        }
        return buf;
    }

    /// <summary>statx(2) of a path.</summary>
    public static Statx statx(string path)
    {
        if (Libc.statx(Constants.AT_FDCWD, path, 0, Constants.STATX_BASIC_STATS | Constants.STATX_DIOALIGN, out var buf) != 0)
        {
            throw Throw.LastError("statx", path);
        }
        return buf;
    }

    public static void mount(string? source, string target, string? filesystemtype, ulong mountflags, string? data)
    {
        if (Libc.mount(source, target, filesystemtype, (nuint)mountflags, data) != 0)
        {
            throw Throw.LastError("mount", target);
        }
    }

    public static void umount2(string target, int flags)
    {
        if (Libc.umount2(target, flags) != 0)
        {
            throw Throw.LastError("umount2", target);
        }
    }

    private static void Retry(Func<int> call, string name, string? subject)
    {
        while (call() != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno != Errno.EINTR)
            {
                throw Throw.For(name, errno, subject);
            }
        }
    }
}
