using System.Runtime.InteropServices;

namespace Appliance.Platform.Native;

/// <summary>
/// The raw libc entry points, C names kept so that `grep pwrite` works across the boundary. Nothing outside this
/// folder declares a P/Invoke. Callers use <see cref="Posix"/>, which retries EINTR and throws typed exceptions.
/// Linux, 64-bit (x86_64 and aarch64) only: struct layouts and flag values below assume it.
/// </summary>
internal static unsafe partial class Libc
{
    private const string Lib = "libc.so.6";

    [LibraryImport(Lib, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int open(string path, int flags, uint mode);

    [LibraryImport(Lib, SetLastError = true)]
    internal static partial int close(int fd);

    [LibraryImport(Lib, SetLastError = true)]
    internal static partial nint pread(int fd, void* buf, nuint count, long offset);

    [LibraryImport(Lib, SetLastError = true)]
    internal static partial nint pwrite(int fd, void* buf, nuint count, long offset);

    [LibraryImport(Lib, SetLastError = true)]
    internal static partial long lseek(int fd, long offset, int whence);

    [LibraryImport(Lib, SetLastError = true)]
    internal static partial int fdatasync(int fd);

    [LibraryImport(Lib, SetLastError = true)]
    internal static partial int fsync(int fd);

    [LibraryImport(Lib, SetLastError = true)]
    internal static partial int ftruncate(int fd, long length);

    [LibraryImport(Lib, SetLastError = true)]
    internal static partial int fallocate(int fd, int mode, long offset, long len);

    [LibraryImport(Lib, SetLastError = true)]
    internal static partial int ioctl(int fd, nuint request, void* arg);

    [LibraryImport(Lib, SetLastError = true)]
    internal static partial int flock(int fd, int operation);

    [LibraryImport(Lib, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int statvfs(string path, out StatVfs buf);

    [LibraryImport(Lib, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int statx(int dirfd, string path, int flags, uint mask, out Statx buf);

    [LibraryImport(Lib, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int mount(string? source, string target, string? filesystemtype, nuint mountflags, string? data);

    [LibraryImport(Lib, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int umount2(string target, int flags);

    [LibraryImport(Lib, SetLastError = true)]
    internal static partial long syscall(long number, long a1, long a2, long a3, long a4, long a5);
}
