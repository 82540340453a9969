namespace Appliance.Fs.Api;

/// <summary>
/// The errno a filesystem answers an operation with: <see cref="Ok"/> (0) or a positive errno
/// (<see cref="FsErrno"/>). Errors are values, not exceptions: ENOENT on a lookup is ordinary and frequent.
/// </summary>
public readonly record struct FsError(int Errno)
{
    public static FsError Ok => default;

    public bool IsOk => Errno == 0;

    public static implicit operator FsError(int errno) => new(errno);
}

/// <summary>A value or an errno. Converts implicitly from a value and from an <see cref="FsError"/>, so a
/// filesystem writes `return entry;` or `return new FsError(FsErrno.ENOENT);`.</summary>
public readonly struct FsResult<T>
{
    private FsResult(T value, int errno)
    {
        Value = value;
        Errno = errno;
    }

    /// <summary>The value when <see cref="Errno"/> is 0.</summary>
    public T Value { get; }

    /// <summary>0 on success, else a positive errno.</summary>
    public int Errno { get; }

    public bool IsOk => Errno == 0;

    public static implicit operator FsResult<T>(T value) => new(value, 0);

    public static implicit operator FsResult<T>(FsError error) =>
        error.Errno > 0 ? new(default!, error.Errno) : throw new ArgumentException("an error result needs a positive errno", nameof(error));
}

/// <summary>
/// Thrown by a filesystem that prefers exceptions for a rare failure; the session answers the kernel with
/// <see cref="Errno"/>. Any other exception escaping a filesystem is a bug: it is logged and answered with EIO.
/// </summary>
public sealed class FsException(int errno, string message) : Exception(message)
{
    public int Errno { get; } = errno;
}

/// <summary>The errno values filesystems answer with (asm-generic/errno-base.h and errno.h).</summary>
public static class FsErrno
{
    public const int EPERM = 1;
    public const int ENOENT = 2;
    public const int EINTR = 4;
    public const int EIO = 5;
    public const int ENXIO = 6;
    public const int E2BIG = 7;
    public const int EBADF = 9;
    public const int EAGAIN = 11;
    public const int ENOMEM = 12;
    public const int EACCES = 13;
    public const int EBUSY = 16;
    public const int EEXIST = 17;
    public const int EXDEV = 18;
    public const int ENODEV = 19;
    public const int ENOTDIR = 20;
    public const int EISDIR = 21;
    public const int EINVAL = 22;
    public const int EFBIG = 27;
    public const int ENOSPC = 28;
    public const int EROFS = 30;
    public const int EMLINK = 31;
    public const int ERANGE = 34;
    public const int ENAMETOOLONG = 36;
    public const int ENOSYS = 38;
    public const int ENOTEMPTY = 39;
    public const int ELOOP = 40;
    public const int ENODATA = 61;
    public const int EPROTO = 71;
    public const int EOPNOTSUPP = 95;
    public const int ECONNABORTED = 103;
    public const int ETIMEDOUT = 110;
}
