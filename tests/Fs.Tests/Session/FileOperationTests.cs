using System.Security.Cryptography;
using Appliance.Fs.Session;
using Appliance.Platform.Native;

namespace Appliance.Fs.Tests.Session;

/// <summary>Each operation through ordinary syscalls, .NET file APIs and shell tools on a real kernel mount.</summary>
public class FileOperationTests
{
    [Fact]
    public async Task Files_are_written_read_appended_truncated_and_removed()
    {
        await using var m = TestMount.Start();
        var f = m.P("file.bin");
        var data = RandomNumberGenerator.GetBytes(300_000);
        await File.WriteAllBytesAsync(f, data);
        Assert.Equal(data, await File.ReadAllBytesAsync(f));
        await File.AppendAllTextAsync(f, "tail");
        Assert.Equal(300_004, new FileInfo(f).Length);
        Shell.Ok($"truncate -s 1000 {f}");
        Assert.Equal(data.AsSpan(0, 1000).ToArray(), await File.ReadAllBytesAsync(f));
        Assert.Equal("1000", Shell.Ok($"stat -c %s {f}").Trim());
        // O_TRUNC on open (ATOMIC_O_TRUNC: the filesystem truncates inside OPEN).
        using (var s = new FileStream(f, FileMode.Truncate, FileAccess.Write))
        {
            s.Write("new"u8);
        }
        Assert.Equal("new", await File.ReadAllTextAsync(f));
        File.Delete(f);
        Assert.False(File.Exists(f));
        Assert.Equal(Errno.ENOENT, Errnos.Of(() => Posix.lstatx(f)));
    }

    [Fact]
    public async Task Directories_are_created_listed_and_removed()
    {
        await using var m = TestMount.Start();
        Shell.Ok($"mkdir -p {m.P("a/b/c")} && touch {m.P("a/b/f1")} {m.P("a/b/f2")}");
        Assert.Equal("c\nf1\nf2\n", Shell.Ok($"ls {m.P("a/b")}"));
        Assert.Equal(3U, Posix.lstatx(m.P("a/b")).stx_nlink); // ".", "c/..", its name in a
        Assert.Equal(39, Errnos.Of(() => Posix.rmdir(m.P("a/b")))); // ENOTEMPTY
        Assert.Equal(Errno.EEXIST, Errnos.Of(() => Posix.mkdir(m.P("a/b"), 0x1ED)));
        Assert.Equal(Errno.ENOTDIR, Errnos.Of(() => Posix.rmdir(m.P("a/b/f1"))));
        Assert.Equal(Errno.EISDIR, Errnos.Of(() => Posix.unlink(m.P("a/b/c"))));
        Assert.Equal(36, Errnos.Of(() => Posix.mkdir(m.P(new string('x', 256)), 0x1ED))); // ENAMETOOLONG
        Posix.mkdir(m.P(new string('x', 255)), 0x1ED);
        Shell.Ok($"rm -r {m.P("a")}");
        Assert.False(Directory.Exists(m.P("a")));
        Assert.Equal(2U, Posix.lstatx(m.Path).stx_nlink - (uint)Directory.GetDirectories(m.Path).Length);
    }

    [Fact]
    public async Task Hard_links_share_an_inode_and_count_links()
    {
        await using var m = TestMount.Start();
        File.WriteAllText(m.P("a"), "shared");
        Shell.Ok($"ln {m.P("a")} {m.P("b")} && mkdir {m.P("d")} && ln {m.P("a")} {m.P("d/c")}");
        Assert.Equal("3", Shell.Ok($"stat -c %h {m.P("a")}").Trim());
        Assert.Equal(Posix.lstatx(m.P("a")).stx_ino, Posix.lstatx(m.P("d/c")).stx_ino);
        File.AppendAllText(m.P("b"), "!");
        Assert.Equal("shared!", File.ReadAllText(m.P("d/c")));
        File.Delete(m.P("a"));
        Assert.Equal(2U, Posix.lstatx(m.P("b")).stx_nlink);
        Assert.Equal(Errno.EPERM, Errnos.Of(() => Posix.link(m.P("d"), m.P("dlink"))));
        Assert.Equal(Errno.EEXIST, Errnos.Of(() => Posix.link(m.P("b"), m.P("d/c"))));
    }

    [Fact]
    public async Task Symlinks_resolve_and_dangle()
    {
        await using var m = TestMount.Start();
        Directory.CreateDirectory(m.P("dir"));
        File.WriteAllText(m.P("dir/target"), "t");
        Shell.Ok($"ln -s dir/target {m.P("rel")} && ln -s /nonexistent/x {m.P("dangling")} && ln -s dir {m.P("dirlink")}");
        Assert.Equal("dir/target", Posix.readlink(m.P("rel")));
        Assert.Equal("dir/target\n", Shell.Ok($"readlink {m.P("rel")}"));
        Assert.Equal("t", File.ReadAllText(m.P("rel")));
        Assert.Equal("t", File.ReadAllText(m.P("dirlink/target")));
        Assert.Equal("symbolic link", Shell.Ok($"stat -c %F {m.P("rel")}").Trim());
        Assert.Equal("regular file", Shell.Ok($"stat -L -c %F {m.P("rel")}").Trim());
        Assert.Equal(10UL, Posix.lstatx(m.P("rel")).stx_size);
        Assert.Equal(Errno.ENOENT, Errnos.Of(() => Posix.statx(m.P("dangling"))));
        Assert.Equal(Errno.EINVAL, Errnos.Of(() => Posix.readlink(m.P("dir/target"))));
    }

    [Fact]
    public async Task Mode_owner_and_times_are_set()
    {
        await using var m = TestMount.Start();
        var f = m.P("f");
        File.WriteAllText(f, "x");
        Shell.Ok($"chown 1000:2000 {f} && chmod 4751 {f} && touch -m -d '2001-02-03 04:05:06.123456789' {f}");
        Assert.Equal("4751 1000 2000 981173106", Shell.Ok($"stat -c '%a %u %g %Y' {f}").Trim());
        var st = Posix.lstatx(f);
        Assert.Equal(123456789U, st.stx_mtime.tv_nsec);
        Posix.utimensat(f, new Timespec { tv_sec = 5, tv_nsec = 6 }, null);
        st = Posix.lstatx(f);
        Assert.Equal(5L, st.stx_atime.tv_sec);
        Assert.Equal(981173106L, st.stx_mtime.tv_sec);
        Posix.lchown(f, 0, 0);
        Posix.chmod(f, 0x1A4);
        Assert.Equal("644 0 0", Shell.Ok($"stat -c '%a %u %g' {f}").Trim());
        Shell.Ok($"touch {f}"); // utimensat(UTIME_NOW): MTIME_NOW / ATIME_NOW
        Assert.True(Posix.lstatx(f).stx_mtime.tv_sec > 981173106L);
    }

    [Fact]
    public async Task Special_files_are_created_with_mknod()
    {
        await using var m = TestMount.Start();
        Shell.Ok($"mkfifo {m.P("fifo")} && mknod {m.P("null")} c 1 3 && mknod {m.P("blk")} b 7 0");
        Assert.Equal("fifo", Shell.Ok($"stat -c %F {m.P("fifo")}").Trim());
        Assert.Equal("character special file 1 3", Shell.Ok($"stat -c '%F %Hr %Lr' {m.P("null")}").Trim());
        Assert.Equal("block special file 7 0", Shell.Ok($"stat -c '%F %Hr %Lr' {m.P("blk")}").Trim());
    }

    [Fact]
    public async Task Extended_attributes_are_set_listed_read_and_removed()
    {
        await using var m = TestMount.Start();
        var f = m.P("f");
        File.WriteAllText(f, "x");
        Shell.Ok($"setfattr -n user.colour -v blue {f} && setfattr -n user.empty {f} && setfattr -n trusted.t -v 1 {f}");
        var dump = Shell.Ok($"getfattr -d -m - {f}");
        Assert.Contains("user.colour=\"blue\"", dump);
        Assert.Contains("trusted.t=\"1\"", dump);
        Assert.Contains("user.empty", dump);
        Span<byte> value = stackalloc byte[16];
        Assert.Equal(4, Posix.lgetxattr(f, "user.colour", value));
        Assert.Equal("blue"u8.ToArray(), value[..4].ToArray());
        Assert.Equal(34, Errnos.Of(() => Posix.lgetxattr(f, "user.colour", new byte[2]))); // ERANGE
        Assert.Equal(61, Errnos.Of(() => Posix.lgetxattr(f, "user.none", new byte[8]))); // ENODATA
        Assert.Equal(Errno.EEXIST, Errnos.Of(() => Posix.lsetxattr(f, "user.colour", "red"u8, 1))); // XATTR_CREATE
        Assert.Equal(61, Errnos.Of(() => Posix.lsetxattr(f, "user.new", "red"u8, 2))); // XATTR_REPLACE
        var list = new byte[256];
        var n = Posix.llistxattr(f, list);
        Assert.Equal("trusted.t\0user.colour\0user.empty\0", System.Text.Encoding.UTF8.GetString(list, 0, n));
        Shell.Ok($"setfattr -x user.colour {f}");
        Assert.DoesNotContain("user.colour", Shell.Ok($"getfattr -d {f}"));
        Assert.Equal(61, Errnos.Of(() => Posix.lremovexattr(f, "user.colour")));
    }

    [Fact]
    public async Task Statfs_reports_the_filesystem()
    {
        await using var m = TestMount.Start();
        Assert.Equal("4096 255", Shell.Ok($"stat -f -c '%S %l' {m.Path}").Trim());
        var vfs = Posix.statvfs(m.Path);
        Assert.Equal(4096UL, vfs.f_bsize);
        Assert.Equal((ulong)m.Fs.Capacity / 4096, vfs.f_blocks);
        Assert.Equal(255UL, vfs.f_namemax);
        Assert.Contains("appliance", Shell.Ok($"df {m.Path}"));
    }

    [Fact]
    public async Task Fallocate_allocates_punches_and_zeroes()
    {
        await using var m = TestMount.Start();
        var f = m.P("f");
        Shell.Ok($"fallocate -l 1M {f}");
        Assert.Equal(1L << 20, new FileInfo(f).Length);
        Assert.Equal(2048UL, Posix.lstatx(f).stx_blocks);
        File.WriteAllBytes(f, Enumerable.Repeat((byte)7, 1 << 20).ToArray());
        Shell.Ok($"fallocate -p -o 65536 -l 131072 {f}");
        var data = File.ReadAllBytes(f);
        Assert.Equal(1 << 20, data.Length);
        Assert.All(data.AsSpan(65536, 131072).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(7, data[65535]);
        Assert.Equal(7, data[65536 + 131072]);
        Assert.Equal(2048UL - 256, Posix.lstatx(f).stx_blocks); // two 64 KiB chunks became a hole
        Shell.Ok($"fallocate -z -o 10 -l 10 {f}");
        data = File.ReadAllBytes(f);
        Assert.Equal(7, data[9]);
        Assert.All(data.AsSpan(10, 10).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(7, data[20]);
        Shell.Ok($"fallocate -n -l 4M {f}"); // KEEP_SIZE
        Assert.Equal(1L << 20, new FileInfo(f).Length);
    }

    [Fact]
    public async Task Copy_file_range_copies_between_files()
    {
        await using var m = TestMount.Start();
        var data = RandomNumberGenerator.GetBytes(200_000);
        File.WriteAllBytes(m.P("src"), data);
        File.WriteAllBytes(m.P("dst"), []);
        var src = Posix.open(m.P("src"), Constants.O_RDONLY);
        var dst = Posix.open(m.P("dst"), Constants.O_RDWR);
        try
        {
            var copied = 0L;
            while (copied < 150_000)
            {
                var n = Posix.copy_file_range(src, 1000 + copied, dst, 5 + copied, 150_000 - copied);
                Assert.True(n > 0);
                copied += n;
            }
            Posix.fsync(dst);
            Posix.fdatasync(dst);
        }
        finally
        {
            Posix.close(src);
            Posix.close(dst);
        }
        var result = File.ReadAllBytes(m.P("dst"));
        Assert.Equal(150_005, result.Length);
        Assert.Equal(data.AsSpan(1000, 150_000).ToArray(), result.AsSpan(5).ToArray());
        Shell.Ok($"cp {m.P("src")} {m.P("copy")} && cmp {m.P("src")} {m.P("copy")} && sync {m.P("copy")}");
    }

    [Fact]
    public async Task Sparse_files_report_holes_and_handle_offsets_beyond_4_GiB()
    {
        await using var m = TestMount.Start();
        var f = m.P("sparse");
        const long Far = (5L << 30) + 12345; // past 4 GiB: 64-bit offsets end to end
        var fd = Posix.open(f, Constants.O_RDWR | Constants.O_CREAT, 0x1A4);
        try
        {
            Posix.pwrite(fd, "begin"u8, 0);
            Posix.pwrite(fd, "far away"u8, Far);
            Assert.Equal(Far + 8, Posix.lseek(fd, 0, Constants.SEEK_END));
            Assert.Equal(0, Posix.lseek(fd, 0, Constants.SEEK_DATA));
            Assert.Equal(65536, Posix.lseek(fd, 0, Constants.SEEK_HOLE));
            var dataAt = Posix.lseek(fd, 65536, Constants.SEEK_DATA);
            Assert.Equal(Far / 65536 * 65536, dataAt);
            Assert.Equal(Far + 8, Posix.lseek(fd, Far, Constants.SEEK_HOLE)); // the implicit hole at end of file
            Assert.Equal(-1, Posix.lseek(fd, Far + 8, Constants.SEEK_DATA)); // ENXIO past the end
            var buf = new byte[8];
            Assert.Equal(8, Posix.pread(fd, buf, Far));
            Assert.Equal("far away"u8.ToArray(), buf);
            Assert.Equal(8, Posix.pread(fd, buf, 3L << 30));
            Assert.All(buf, b => Assert.Equal(0, b));
        }
        finally
        {
            Posix.close(fd);
        }
        Assert.Equal((ulong)(Far + 8), Posix.lstatx(f).stx_size);
        Assert.Equal(256UL, Posix.lstatx(f).stx_blocks); // two 64 KiB chunks, not 5 GiB
        Assert.Equal($"{Far + 8}", Shell.Ok($"stat -c %s {f}").Trim());
    }

    [Fact]
    public async Task Writes_of_1_MiB_reach_the_filesystem_whole()
    {
        await using var m = TestMount.Start();
        Assert.Equal(1U << 20, m.Session.Connection!.MaxWrite);
        Assert.True(m.Session.Connection.Flags.HasFlag(Appliance.Fs.Protocol.InitFlags.MaxPages));
        var data = RandomNumberGenerator.GetBytes(8 << 20);
        var fd = Posix.open(m.P("big"), Constants.O_RDWR | Constants.O_CREAT | Constants.O_DIRECT, 0x1A4);
        try
        {
            using var aligned = new Appliance.Platform.Devices.AlignedBuffer(1 << 20, 4096);
            for (var i = 0; i < 8; i++)
            {
                data.AsSpan(i << 20, 1 << 20).CopyTo(aligned.GetSpan());
                Posix.pwrite(fd, aligned.GetSpan(), (long)i << 20);
            }
        }
        finally
        {
            Posix.close(fd);
        }
        Assert.Equal(1 << 20, m.Fs.LargestWrite);
        Assert.Equal(data, File.ReadAllBytes(m.P("big")));
    }

    [Fact]
    public async Task A_full_filesystem_says_ENOSPC()
    {
        await using var m = TestMount.Start(new Appliance.Fs.TestFs.MemoryFileSystem { Capacity = 1 << 20 });
        var fd = Posix.open(m.P("f"), Constants.O_RDWR | Constants.O_CREAT, 0x1A4);
        try
        {
            Posix.pwrite(fd, new byte[1 << 20], 0);
            Assert.Equal(Errno.ENOSPC, Errnos.Of(() => Posix.pwrite(fd, new byte[4096], 1 << 20)));
            Assert.Equal(Errno.ENOSPC, Errnos.Of(() => Posix.fallocate(fd, 0, 2 << 20, 4096)));
        }
        finally
        {
            Posix.close(fd);
        }
        Assert.Equal(0UL, Posix.statvfs(m.Path).f_bfree);
        File.Delete(m.P("f"));
        // Space comes back with the inode, once the kernel lets go of it: it sends RELEASE for the closed file and
        // FORGET for the unlinked inode in the background, so the first write may come before them (CI saw it).
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (Posix.statvfs(m.Path).f_bfree == 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10);
        }
        File.WriteAllBytes(m.P("g"), new byte[4096]);
    }

    [Fact]
    public async Task Access_and_fsync_of_directories_are_answered()
    {
        await using var m = TestMount.Start(options: new FuseOptions { DefaultPermissions = false });
        File.WriteAllText(m.P("f"), "x");
        Posix.chmod(m.P("f"), 0x124); // r--r--r--
        Assert.Equal(0, Shell.Run($"test -r {m.P("f")}").Exit);
        Assert.NotEqual(0, Shell.Run($"test -x {m.P("f")}").Exit); // root may not execute a file nobody may
        Assert.Equal(0, Shell.Run($"test -w {m.P("f")}", asNobody: false).Exit);
        Assert.NotEqual(0, Shell.Run($"test -w {m.P("f")}", asNobody: true).Exit);
        Shell.Ok($"sync {m.Path}");
    }
}
