using System.Runtime.InteropServices;

namespace Appliance.Platform.Native;

/// <summary>Flag and request values of Linux, with their C names. Architecture-dependent ones are properties.</summary>
public static class Constants
{
    private static readonly bool Arm64 = RuntimeInformation.ProcessArchitecture == Architecture.Arm64;

    public const int O_RDONLY = 0x0;
    public const int O_WRONLY = 0x1;
    public const int O_RDWR = 0x2;
    public const int O_CREAT = 0x40;
    public const int O_EXCL = 0x80;
    public const int O_TRUNC = 0x200;
    public const int O_DSYNC = 0x1000;
    public const int O_CLOEXEC = 0x80000;
    public static int O_DIRECT => Arm64 ? 0x10000 : 0x4000;
    public static int O_NOFOLLOW => Arm64 ? 0x8000 : 0x20000;

    public const int SEEK_SET = 0;
    public const int SEEK_CUR = 1;
    public const int SEEK_END = 2;
    public const int SEEK_DATA = 3;
    public const int SEEK_HOLE = 4;

    public const int AT_FDCWD = -100;
    public const int AT_EMPTY_PATH = 0x1000;
    public const uint STATX_BASIC_STATS = 0x7ff;
    public const uint STATX_DIOALIGN = 0x2000;
    public const ushort S_IFMT = 0xF000;
    public const ushort S_IFREG = 0x8000;
    public const ushort S_IFBLK = 0x6000;

    public const int FALLOC_FL_KEEP_SIZE = 0x01;
    public const int FALLOC_FL_PUNCH_HOLE = 0x02;
    public const int FALLOC_FL_ZERO_RANGE = 0x10;

    public const int LOCK_SH = 1;
    public const int LOCK_EX = 2;
    public const int LOCK_NB = 4;
    public const int LOCK_UN = 8;

    /// <summary>_IOR(0x12, 114, size_t): size of a block device in bytes.</summary>
    public const uint BLKGETSIZE64 = 0x80081272;
    /// <summary>_IO(0x12, 104): logical sector size of a block device.</summary>
    public const uint BLKSSZGET = 0x1268;
    /// <summary>_IO(0x12, 119): discard a byte range (uint64 start, uint64 length).</summary>
    public const uint BLKDISCARD = 0x1277;

    public const ulong MS_RDONLY = 1;
    public const ulong MS_NOSUID = 2;
    public const ulong MS_NODEV = 4;
    public const int MNT_FORCE = 1;
    public const int MNT_DETACH = 2;

    public const ushort IOCB_CMD_PREAD = 0;
    public const ushort IOCB_CMD_PWRITE = 1;
    public const ushort IOCB_CMD_FSYNC = 2;
    public const ushort IOCB_CMD_FDSYNC = 3;

    public static long SYS_io_setup => Arm64 ? 0 : 206;
    public static long SYS_io_destroy => Arm64 ? 1 : 207;
    public static long SYS_io_submit => Arm64 ? 2 : 209;
    public static long SYS_io_getevents => Arm64 ? 4 : 208;
}
