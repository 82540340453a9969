using Appliance.Platform.Devices;
using Appliance.Platform.Native;

namespace Appliance.Platform.Tests.Native;

public sealed class PosixTests
{
    [Fact]
    public void Errors_are_typed_and_name_the_call_the_subject_and_errno()
    {
        var e = Assert.Throws<PlatformNotFoundException>(() => Posix.open("/nonexistent/x", Constants.O_RDONLY));
        Assert.Equal("open", e.Call);
        Assert.Equal(Errno.ENOENT, e.Errno);
        Assert.Equal("/nonexistent/x", e.Subject);
        Assert.Contains("errno 2", e.Message);
    }

    [Fact]
    public void Ioctl_on_a_regular_file_fails_with_the_request_name()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("f"), "x");
        var fd = Posix.open(dir.File("f"), Constants.O_RDONLY);
        try
        {
            var e = Assert.ThrowsAny<PlatformException>(() => Posix.ioctl_BLKGETSIZE64(fd, dir.File("f")));
            Assert.Equal("ioctl(BLKGETSIZE64)", e.Call);
        }
        finally
        {
            Posix.close(fd);
        }
    }

    [Fact]
    public void Pread_and_pwrite_round_trip_and_statx_sees_the_size()
    {
        using var dir = new TempDir();
        var fd = Posix.open(dir.File("f"), Constants.O_RDWR | Constants.O_CREAT, 0x180);
        try
        {
            Posix.pwrite(fd, "hello world"u8, 100);
            var buf = new byte[11];
            Assert.Equal(11, Posix.pread(fd, buf, 100));
            Assert.Equal("hello world"u8.ToArray(), buf);
            Assert.Equal(0, Posix.pread(fd, buf, 1000));
            Posix.fdatasync(fd);
            var st = Posix.fstatx(fd);
            Assert.True(st.IsRegularFile);
            Assert.Equal(111UL, st.stx_size);
        }
        finally
        {
            Posix.close(fd);
        }
    }

    [Fact]
    public void Lseek_walks_data_and_holes_of_a_sparse_file()
    {
        using var dir = new TempDir();
        var fd = Posix.open(dir.File("sparse"), Constants.O_RDWR | Constants.O_CREAT, 0x180);
        try
        {
            Posix.ftruncate(fd, 16 << 20);
            Posix.pwrite(fd, new byte[65536].AsSpan().ToArray().Select(_ => (byte)1).ToArray(), 8 << 20);
            Posix.fsync(fd);
            Assert.Equal(8L << 20, Posix.lseek(fd, 0, Constants.SEEK_DATA));
            Assert.Equal((8L << 20) + 65536, Posix.lseek(fd, 8L << 20, Constants.SEEK_HOLE));
            Assert.Equal(-1, Posix.lseek(fd, (8L << 20) + 65536, Constants.SEEK_DATA));
        }
        finally
        {
            Posix.close(fd);
        }
    }

    [Fact]
    public void Flock_conflicts_between_two_open_descriptions()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("lock"), "");
        var a = Posix.open(dir.File("lock"), Constants.O_RDONLY);
        var b = Posix.open(dir.File("lock"), Constants.O_RDONLY);
        try
        {
            Posix.flock(a, Constants.LOCK_EX | Constants.LOCK_NB);
            Assert.Throws<PlatformBusyException>(() => Posix.flock(b, Constants.LOCK_EX | Constants.LOCK_NB));
            Posix.flock(a, Constants.LOCK_UN);
            Posix.flock(b, Constants.LOCK_EX | Constants.LOCK_NB);
        }
        finally
        {
            Posix.close(a);
            Posix.close(b);
        }
    }

    [Fact]
    public void Statvfs_reports_the_filesystem()
    {
        var st = Posix.statvfs(Path.GetTempPath());
        Assert.True(st.f_frsize > 0 && st.f_blocks > 0 && st.f_bavail <= st.f_blocks);
    }

    [Fact]
    public void Mount_and_umount2_a_tmpfs()
    {
        Assert.True(Environment.UserName == "root", "this test needs root (mount); the test command runs as root");
        using var dir = new TempDir();
        Posix.mount("appliance-test", dir.Path, "tmpfs", Constants.MS_NOSUID | Constants.MS_NODEV, "size=1m");
        try
        {
            File.WriteAllText(dir.File("x"), "on tmpfs");
            var st = Posix.statvfs(dir.Path);
            Assert.Equal(256UL, st.f_blocks * st.f_frsize / 4096);
        }
        finally
        {
            Posix.umount2(dir.Path, 0);
        }
        Assert.False(File.Exists(dir.File("x")));
    }

    [Fact]
    public void Aligned_buffers_are_aligned_and_zeroed()
    {
        foreach (var alignment in new[] { 512, 4096, 65536 })
        {
            using var b = new AlignedBuffer(12345, alignment);
            unsafe
            {
                Assert.Equal(0UL, (ulong)b.Pointer % (ulong)alignment);
            }
            Assert.True(b.GetSpan().IndexOfAnyExcept((byte)0) < 0);
        }
        Assert.Throws<ArgumentException>(() => new AlignedBuffer(10, 3000));
    }
}
