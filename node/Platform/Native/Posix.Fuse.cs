using System.Runtime.InteropServices;
using System.Text;

namespace Appliance.Platform.Native;

/// <summary>
/// Checked wrappers for the FUSE layer and its tests: EINTR retried, errors thrown as typed
/// <see cref="PlatformException"/>s (their <see cref="PlatformException.Errno"/> is what a test compares).
/// </summary>
public static unsafe partial class Posix
{
    /// <summary>_IOR(229, 0, uint32_t): attach a new /dev/fuse descriptor to the connection of another.</summary>
    public const uint FUSE_DEV_IOC_CLONE = 0x8004E500;
    public const int AF_UNIX = 1;
    public const int SOCK_STREAM = 1;
    public const int SOCK_SEQPACKET = 5;
    public const int SOL_SOCKET = 1;
    public const int SCM_RIGHTS = 1;
    public const int F_GETFD = 1;
    public const int F_SETFD = 2;
    public const int FD_CLOEXEC = 1;
    public const uint RENAME_NOREPLACE = 1;
    public const uint RENAME_EXCHANGE = 2;
    public const int AT_SYMLINK_NOFOLLOW = 0x100;
    public const int ENODEV = 19;
    public const int ENOENT = 2;
    public const int ECONNABORTED = 103;
    public const long UTIME_OMIT = (1L << 30) - 2;

    /// <summary>read(2) once (no loop: /dev/fuse returns one whole request per call). EINTR retried.</summary>
    public static int read(int fd, Span<byte> buffer, string? subject = null)
    {
        fixed (byte* p = buffer)
        {
            while (true)
            {
                var n = Libc.read(fd, p, (nuint)buffer.Length);
                if (n >= 0)
                {
                    return (int)n;
                }
                var errno = Marshal.GetLastPInvokeError();
                if (errno != Errno.EINTR)
                {
                    throw Throw.For("read", errno, subject);
                }
            }
        }
    }

    /// <summary>
    /// write(2) once, for message devices (/dev/fuse takes one whole reply per call). Returns 0 or the errno, so a
    /// caller that expects some errnos (ENOENT: the request was interrupted meanwhile) does not pay for an exception.
    /// EINTR retried.
    /// </summary>
    public static int write_message(int fd, ReadOnlySpan<byte> message)
    {
        fixed (byte* p = message)
        {
            while (true)
            {
                var n = Libc.write(fd, p, (nuint)message.Length);
                if (n >= 0)
                {
                    return 0;
                }
                var errno = Marshal.GetLastPInvokeError();
                if (errno != Errno.EINTR)
                {
                    return errno;
                }
            }
        }
    }

    /// <summary>writev(2) once, for message devices: header and payload from separate buffers in one message.
    /// Returns 0 or the errno. EINTR retried.</summary>
    public static int writev_message(int fd, ReadOnlySpan<byte> first, ReadOnlySpan<byte> second)
    {
        fixed (byte* p1 = first)
        fixed (byte* p2 = second)
        {
            var iov = stackalloc IoVec[2];
            iov[0].iov_base = p1;
            iov[0].iov_len = (nuint)first.Length;
            iov[1].iov_base = p2;
            iov[1].iov_len = (nuint)second.Length;
            while (true)
            {
                var n = Libc.writev(fd, iov, second.IsEmpty ? 1 : 2);
                if (n >= 0)
                {
                    return 0;
                }
                var errno = Marshal.GetLastPInvokeError();
                if (errno != Errno.EINTR)
                {
                    return errno;
                }
            }
        }
    }

    /// <summary>ioctl(FUSE_DEV_IOC_CLONE): makes <paramref name="fd"/> (a fresh open of /dev/fuse) a second queue
    /// reader of the connection <paramref name="sourceFd"/> belongs to.</summary>
    public static void ioctl_FUSE_DEV_IOC_CLONE(int fd, int sourceFd)
    {
        var source = (uint)sourceFd;
        if (Libc.ioctl(fd, FUSE_DEV_IOC_CLONE, &source) != 0)
        {
            throw Throw.LastError("ioctl(FUSE_DEV_IOC_CLONE)", "/dev/fuse");
        }
    }

    /// <summary>socketpair(AF_UNIX, SOCK_STREAM or SOCK_SEQPACKET): both ends are inheritable (no CLOEXEC), as
    /// fusermount3 needs. SOCK_SEQPACKET keeps message boundaries, like /dev/fuse (tests use it as a stand-in).</summary>
    public static (int First, int Second) socketpair(int type = SOCK_STREAM)
    {
        var sv = stackalloc int[2];
        if (Libc.socketpair(AF_UNIX, type, 0, sv) != 0)
        {
            throw Throw.LastError("socketpair");
        }
        return (sv[0], sv[1]);
    }

    /// <summary>Sets or clears FD_CLOEXEC.</summary>
    public static void fcntl_set_cloexec(int fd, bool cloexec)
    {
        if (Libc.fcntl(fd, F_SETFD, cloexec ? FD_CLOEXEC : 0) != 0)
        {
            throw Throw.LastError("fcntl(F_SETFD)");
        }
    }

    public const int F_GETLK = 5;
    public const int F_SETLK = 6;
    public const int F_SETLKW = 7;

    /// <summary>fcntl(2) with a struct flock: F_GETLK fills <paramref name="l"/> with the conflicting lock (or type
    /// F_UNLCK); F_SETLK throws EAGAIN on a conflict; F_SETLKW waits (EINTR is not retried: it is what a caller
    /// that sets an alarm wants to see).</summary>
    public static void fcntl_lock(int fd, int cmd, ref PosixLock l)
    {
        fixed (PosixLock* p = &l)
        {
            if (Libc.fcntl_flock(fd, cmd, p) != 0)
            {
                throw Throw.LastError(cmd switch { F_GETLK => "fcntl(F_GETLK)", F_SETLK => "fcntl(F_SETLK)", _ => "fcntl(F_SETLKW)" });
            }
        }
    }

    /// <summary>Sets O_NONBLOCK (reads then fail with EAGAIN instead of waiting).</summary>
    public static void fcntl_set_nonblock(int fd)
    {
        const int F_GETFL = 3, F_SETFL = 4, O_NONBLOCK = 0x800;
        var flags = Libc.fcntl(fd, F_GETFL, 0);
        if (flags < 0 || Libc.fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
        {
            throw Throw.LastError("fcntl(F_SETFL)");
        }
    }

    /// <summary>recvmsg(2) of one descriptor passed as SCM_RIGHTS (what fusermount3 sends). Returns -1 when the
    /// peer closed the socket without sending one.</summary>
    public static int recvmsg_fd(int socket)
    {
        byte data = 0;
        var iov = new IoVec { iov_base = &data, iov_len = 1 };
        // CMSG_SPACE(sizeof(int)) = 16 (header) + 8 (aligned int) on 64-bit.
        var control = stackalloc byte[32];
        new Span<byte>(control, 32).Clear();
        var msg = new MsgHdr { msg_iov = &iov, msg_iovlen = 1, msg_control = control, msg_controllen = 24 };
        while (true)
        {
            var n = Libc.recvmsg(socket, &msg, 0);
            if (n > 0)
            {
                break;
            }
            if (n == 0)
            {
                return -1;
            }
            var errno = Marshal.GetLastPInvokeError();
            if (errno != Errno.EINTR)
            {
                throw Throw.For("recvmsg", errno, null);
            }
        }
        var header = (CmsgHdr*)control;
        if (msg.msg_controllen < (nuint)sizeof(CmsgHdr) || header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS)
        {
            return -1;
        }
        return *(int*)(control + sizeof(CmsgHdr));
    }

    public static uint getuid() => Libc.getuid();

    public static uint getgid() => Libc.getgid();

    /// <summary>renameat2(2) of two paths (AT_FDCWD), with RENAME_NOREPLACE / RENAME_EXCHANGE.</summary>
    public static void renameat2(string oldpath, string newpath, uint flags) =>
        Check(Libc.renameat2(Constants.AT_FDCWD, oldpath, Constants.AT_FDCWD, newpath, flags), "renameat2", oldpath);

    public static void mkdir(string path, uint mode) => Check(Libc.mkdir(path, mode), "mkdir", path);

    public static void rmdir(string path) => Check(Libc.rmdir(path), "rmdir", path);

    public static void unlink(string path) => Check(Libc.unlink(path), "unlink", path);

    public static void link(string oldpath, string newpath) => Check(Libc.link(oldpath, newpath), "link", oldpath);

    public static void symlink(string target, string linkpath) => Check(Libc.symlink(target, linkpath), "symlink", linkpath);

    public static void chmod(string path, uint mode) => Check(Libc.chmod(path, mode), "chmod", path);

    public static void lchown(string path, uint owner, uint group) => Check(Libc.lchown(path, owner, group), "lchown", path);

    public static void truncate(string path, long length) => Check(Libc.truncate(path, length), "truncate", path);

    public static void mknod(string path, uint mode, ulong dev) => Check(Libc.mknod(path, mode, dev), "mknod", path);

    /// <summary>utimensat(2) on a path without following a final symlink; null leaves a time unchanged.</summary>
    public static void utimensat(string path, Timespec? atime, Timespec? mtime)
    {
        var times = stackalloc Timespec[2];
        times[0] = atime ?? new Timespec { tv_nsec = UTIME_OMIT };
        times[1] = mtime ?? new Timespec { tv_nsec = UTIME_OMIT };
        Check(Libc.utimensat(Constants.AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW), "utimensat", path);
    }

    public static string readlink(string path)
    {
        var buf = stackalloc byte[4096];
        var n = Libc.readlink(path, buf, 4096);
        return n < 0 ? throw Throw.LastError("readlink", path) : Encoding.UTF8.GetString(buf, (int)n);
    }

    /// <summary>statx(2) of a path without following a final symlink.</summary>
    public static Statx lstatx(string path)
    {
        if (Libc.statx(Constants.AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, Constants.STATX_BASIC_STATS, out var buf) != 0)
        {
            throw Throw.LastError("statx", path);
        }
        return buf;
    }

    public static void lsetxattr(string path, string name, ReadOnlySpan<byte> value, int flags)
    {
        fixed (byte* p = value)
        {
            Check(Libc.lsetxattr(path, name, p, (nuint)value.Length, flags), "lsetxattr", path);
        }
    }

    /// <summary>lgetxattr(2) into a buffer; returns the value's length.</summary>
    public static int lgetxattr(string path, string name, Span<byte> value)
    {
        fixed (byte* p = value)
        {
            var n = Libc.lgetxattr(path, name, p, (nuint)value.Length);
            return n < 0 ? throw Throw.LastError("lgetxattr", path) : (int)n;
        }
    }

    /// <summary>llistxattr(2) into a buffer; returns the list's length (NUL-separated names).</summary>
    public static int llistxattr(string path, Span<byte> list)
    {
        fixed (byte* p = list)
        {
            var n = Libc.llistxattr(path, p, (nuint)list.Length);
            return n < 0 ? throw Throw.LastError("llistxattr", path) : (int)n;
        }
    }

    public static void lremovexattr(string path, string name) => Check(Libc.lremovexattr(path, name), "lremovexattr", path);

    /// <summary>copy_file_range(2) between explicit offsets; returns the bytes copied.</summary>
    public static long copy_file_range(int fdIn, long offIn, int fdOut, long offOut, long length)
    {
        while (true)
        {
            var n = Libc.copy_file_range(fdIn, &offIn, fdOut, &offOut, (nuint)length, 0);
            if (n >= 0)
            {
                return n;
            }
            var errno = Marshal.GetLastPInvokeError();
            if (errno != Errno.EINTR)
            {
                throw Throw.For("copy_file_range", errno, null);
            }
        }
    }

    private static void Check(int result, string call, string? subject)
    {
        if (result != 0)
        {
            throw Throw.LastError(call, subject);
        }
    }
}
