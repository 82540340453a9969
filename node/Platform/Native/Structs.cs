using System.Runtime.InteropServices;

namespace Appliance.Platform.Native;

/// <summary>struct statvfs of glibc on 64-bit Linux (every field 8 bytes, then int __f_spare[6]).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct StatVfs
{
    public ulong f_bsize;
    public ulong f_frsize;
    public ulong f_blocks;
    public ulong f_bfree;
    public ulong f_bavail;
    public ulong f_files;
    public ulong f_ffree;
    public ulong f_favail;
    public ulong f_fsid;
    public ulong f_flag;
    public ulong f_namemax;
    private unsafe fixed int _spare[6];
}

/// <summary>struct statx_timestamp (include/uapi/linux/stat.h).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct StatxTimestamp
{
    public long tv_sec;
    public uint tv_nsec;
    private readonly int _reserved;
}

/// <summary>struct statx (include/uapi/linux/stat.h): 256 bytes, the same layout on every architecture.</summary>
[StructLayout(LayoutKind.Sequential, Size = 256)]
public struct Statx
{
    public uint stx_mask;
    public uint stx_blksize;
    public ulong stx_attributes;
    public uint stx_nlink;
    public uint stx_uid;
    public uint stx_gid;
    public ushort stx_mode;
    private readonly ushort _spare0;
    public ulong stx_ino;
    public ulong stx_size;
    public ulong stx_blocks;
    public ulong stx_attributes_mask;
    public StatxTimestamp stx_atime;
    public StatxTimestamp stx_btime;
    public StatxTimestamp stx_ctime;
    public StatxTimestamp stx_mtime;
    public uint stx_rdev_major;
    public uint stx_rdev_minor;
    public uint stx_dev_major;
    public uint stx_dev_minor;
    public ulong stx_mnt_id;
    public uint stx_dio_mem_align;
    public uint stx_dio_offset_align;

    public readonly bool IsBlockDevice => (stx_mode & Constants.S_IFMT) == Constants.S_IFBLK;
    public readonly bool IsRegularFile => (stx_mode & Constants.S_IFMT) == Constants.S_IFREG;
}

/// <summary>struct iocb of the Linux native AIO interface (include/uapi/linux/aio_abi.h), little-endian layout.</summary>
[StructLayout(LayoutKind.Sequential, Size = 64)]
public struct IoCb
{
    public ulong aio_data;
    public uint aio_key;
    public int aio_rw_flags;
    public ushort aio_lio_opcode;
    public short aio_reqprio;
    public uint aio_fildes;
    public ulong aio_buf;
    public ulong aio_nbytes;
    public long aio_offset;
    public ulong aio_reserved2;
    public uint aio_flags;
    public uint aio_resfd;
}

/// <summary>struct io_event (include/uapi/linux/aio_abi.h).</summary>
[StructLayout(LayoutKind.Sequential, Size = 32)]
public struct IoEvent
{
    public ulong data;
    public ulong obj;
    public long res;
    public long res2;
}

/// <summary>struct timespec on 64-bit Linux.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct Timespec
{
    public long tv_sec;
    public long tv_nsec;
}
