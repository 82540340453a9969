using System.Runtime.InteropServices;

namespace Appliance.Platform.Native;

/// <summary>
/// A system call failed. Carries the call's C name, the errno and the path or device it was about, so the message
/// reads like `open(/dev/vdb): Permission denied (errno 13)`. Subclasses exist for the errnos callers act on.
/// </summary>
public class PlatformException : IOException
{
    public PlatformException(string call, int errno, string? subject)
        : base(Describe(call, errno, subject))
    {
        Call = call;
        Errno = errno;
        Subject = subject;
        HResult = errno;
    }

    /// <summary>The C name of the failed call (open, pwrite, ioctl(BLKGETSIZE64), ...).</summary>
    public string Call { get; }

    /// <summary>The errno the call returned.</summary>
    public int Errno { get; }

    /// <summary>The path or device the call was about, when known.</summary>
    public string? Subject { get; }

    private static string Describe(string call, int errno, string? subject)
    {
        var what = subject is null ? call : $"{call}({subject})";
        return $"{what}: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})";
    }
}

/// <summary>EIO: the device failed the I/O; its data may be damaged.</summary>
public sealed class PlatformIOException(string call, int errno, string? subject) : PlatformException(call, errno, subject);

/// <summary>ENOSPC: no space left.</summary>
public sealed class PlatformNoSpaceException(string call, int errno, string? subject) : PlatformException(call, errno, subject);

/// <summary>ENOENT / ENODEV: the file or device does not exist.</summary>
public sealed class PlatformNotFoundException(string call, int errno, string? subject) : PlatformException(call, errno, subject);

/// <summary>EACCES / EPERM / EROFS: not allowed.</summary>
public sealed class PlatformAccessException(string call, int errno, string? subject) : PlatformException(call, errno, subject);

/// <summary>EBUSY / EWOULDBLOCK on a lock: someone else holds it.</summary>
public sealed class PlatformBusyException(string call, int errno, string? subject) : PlatformException(call, errno, subject);

/// <summary>EINVAL / EOPNOTSUPP / ENOSYS: the call or its arguments are not supported here (e.g. O_DIRECT on tmpfs).</summary>
public sealed class PlatformUnsupportedException(string call, int errno, string? subject) : PlatformException(call, errno, subject);

/// <summary>The one throw helper of the platform layer: errno to typed exception.</summary>
public static class Throw
{
    public static PlatformException For(string call, int errno, string? subject) => errno switch
    {
        Native.Errno.EIO => new PlatformIOException(call, errno, subject),
        Native.Errno.ENOSPC => new PlatformNoSpaceException(call, errno, subject),
        Native.Errno.ENOENT or Native.Errno.ENODEV => new PlatformNotFoundException(call, errno, subject),
        Native.Errno.EACCES or Native.Errno.EPERM or Native.Errno.EROFS => new PlatformAccessException(call, errno, subject),
        Native.Errno.EBUSY or Native.Errno.EWOULDBLOCK => new PlatformBusyException(call, errno, subject),
        Native.Errno.EINVAL or Native.Errno.EOPNOTSUPP or Native.Errno.ENOSYS => new PlatformUnsupportedException(call, errno, subject),
        _ => new PlatformException(call, errno, subject),
    };

    /// <summary>Throws for the errno of the last P/Invoke.</summary>
    public static PlatformException LastError(string call, string? subject = null) =>
        For(call, Marshal.GetLastPInvokeError(), subject);
}
