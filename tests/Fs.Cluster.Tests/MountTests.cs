using System.Text;
using Appliance.Fs.Meta;
using Appliance.Fs.Tests.Session;
using Appliance.Platform.Native;
using Xunit.Abstractions;

namespace Appliance.Fs.Cluster.Tests;

/// <summary>The cluster filesystem through the kernel: the seeded random-syscall comparison against ext4, files
/// and directories seen by a second mount, unlinked-while-open, hostile names.</summary>
public sealed class MountTests(ClusterFsFixture fixture, ITestOutputHelper output) : IClassFixture<ClusterFsFixture>
{
    [Fact]
    public async Task Random_syscalls_give_the_same_results_as_ext4()
    {
        var count = TestSeed.Soak ? 20_000 : 600;
        var seed = TestSeed.Get($"cluster fs RandomOperations ({count} operations)", output);
        var meta = await fixture.NewFsAsync("random");
        var local = ClusterMount.NewDirectory("local");
        var outcomes = new Dictionary<string, int>();
        await using (var m = ClusterMount.Start(fixture.FileSystem(meta)))
        {
            try
            {
                await Task.Run(() => SyscallComparison.Run(m.Path, local, count, seed, "cluster fs", outcomes));
            }
            finally
            {
                output.WriteLine(string.Join(", ", outcomes.OrderBy(o => o.Key, StringComparer.Ordinal).Select(o => $"{o.Key}: {o.Value}")));
                Directory.Delete(local, recursive: true);
            }
        }
        // Unmounted: fs check finds nothing wrong.
        var check = FsCheck.Run(await FsChecker.ReadAsync(fixture.Client, Record(meta), new MetaTime(1, 0), default));
        Assert.True(check.Clean, string.Join("\n", check.Problems));
    }

    private static FsRecord Record(MetaClient meta) => new(meta.FsName, ClusterFsFixture.MetaPool, ClusterFsFixture.DataPool, DataStriper.DefaultStripe);

    [Fact]
    public async Task Fs_check_finds_and_repairs_damage_and_the_files_come_back_in_lost_and_found()
    {
        var meta = await fixture.NewFsAsync("check");
        var data = new byte[5 << 20]; // two stripes
        new Random(11).NextBytes(data);
        await using (var m = ClusterMount.Start(fixture.FileSystem(meta)))
        {
            await Task.Run(() =>
            {
                Directory.CreateDirectory(m.P("dir"));
                File.WriteAllBytes(m.P("dir/big"), data);
                File.WriteAllText(m.P("dir/small"), "small");
            });
        }
        var record = Record(meta);
        Assert.True(FsCheck.Run(await FsChecker.ReadAsync(fixture.Client, record, new MetaTime(1, 0), default)).Clean);

        // Damage: dir's entry for big goes (big is reached from nowhere), a stray data object of no file appears.
        var big = await meta.CallAsync(new MetaRequest(MetaOp.Lookup, Caller.Root, default) { Ino = Superblock.RootIno, Name = "dir" }, default);
        var dirIno = big.Inode!.Ino;
        var bigIno = (await meta.CallAsync(new MetaRequest(MetaOp.Lookup, Caller.Root, default) { Ino = dirIno, Name = "big" }, default)).Inode!.Ino;
        await meta.Pool.RemoveOmapKeysAsync(MetaObjects.Inode(meta.FsName, dirIno), ["big"]);
        var striper = new DataStriper(fixture.Client.OpenPool(ClusterFsFixture.DataPool), meta.FsName);
        await fixture.Client.OpenPool(ClusterFsFixture.DataPool).WriteFullAsync(striper.ObjectName(0xdead, 0), new byte[100]);

        var found = FsCheck.Run(await FsChecker.ReadAsync(fixture.Client, record, new MetaTime(1, 0), default));
        Assert.Contains(found.Problems, p => p.Contains($"inode {bigIno} is reached from no directory"));
        Assert.Contains(found.Problems, p => p.Contains($"directory {dirIno} counts 2 entries, holds 1"));
        Assert.Contains(found.Problems, p => p.Contains("inode 57005, which does not exist"));
        await FsChecker.RepairAsync(fixture.Client, record, found, default);
        var again = FsCheck.Run(await FsChecker.ReadAsync(fixture.Client, record, new MetaTime(1, 0), default));
        Assert.True(again.Clean, string.Join("\n", again.Problems));

        await using (var m = ClusterMount.Start(fixture.FileSystem(meta)))
        {
            await Task.Run(() =>
            {
                Assert.Equal(data, File.ReadAllBytes(m.P($"lost+found/#{bigIno}")));
                Assert.Equal("small", File.ReadAllText(m.P("dir/small")));
                Assert.Equal(["small"], Directory.EnumerateFileSystemEntries(m.P("dir")).Select(Path.GetFileName));
            });
        }
    }

    [Fact]
    public async Task A_second_mount_sees_the_same_tree_and_data()
    {
        var meta = await fixture.NewFsAsync("two");
        await using var a = ClusterMount.Start(fixture.FileSystem(meta));
        await using var b = ClusterMount.Start(fixture.FileSystem(meta));
        var data = new byte[9 << 20]; // crosses two stripe boundaries
        new Random(7).NextBytes(data);
        await Task.Run(() =>
        {
            Directory.CreateDirectory(a.P("dir/sub"));
            File.WriteAllBytes(a.P("dir/sub/big"), data);
            File.WriteAllText(a.P("dir/small"), "hello");
            Assert.Equal(data, File.ReadAllBytes(b.P("dir/sub/big")));
            Assert.Equal("hello", File.ReadAllText(b.P("dir/small")));
            Assert.Equal(["big"], Directory.EnumerateFileSystemEntries(b.P("dir/sub")).Select(Path.GetFileName));
            File.Move(b.P("dir/small"), b.P("dir/sub/moved"));
            File.WriteAllText(b.P("dir/sub/moved"), "rewritten");
        });
        // The first mount's cached names and attributes expire within a second (close-to-open for data).
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (File.Exists(a.P("dir/small")) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }
        Assert.False(File.Exists(a.P("dir/small")));
        Assert.Equal("rewritten", File.ReadAllText(a.P("dir/sub/moved")));
    }

    /// <summary>Two mounts create, rename and remove files in one directory at once; afterwards both list the same
    /// tree, which is exactly what the operations made, with every file's content.</summary>
    [Fact]
    public async Task A_change_in_one_mount_reaches_another_at_once_not_when_its_cache_expires()
    {
        var meta = await fixture.NewFsAsync("coherent");
        // An hour of caching: only the notifies can make the second mount see a change within the test.
        var options = new ClusterFsOptions { CacheTimeout = TimeSpan.FromHours(1) };
        await using var a = await ClusterMount.StartCoherentAsync(fixture.FileSystem(meta, options: options), meta, "a");
        await using var b = await ClusterMount.StartCoherentAsync(fixture.FileSystem(meta, options: options), meta, "b");
        await Task.Run(() => File.WriteAllText(a.P("f"), "one"));
        Assert.Equal("one", await Task.Run(() => File.ReadAllText(b.P("f")))); // b caches the name and attributes

        await Task.Run(() => File.Move(a.P("f"), a.P("g")));
        await UntilAsync(() => !File.Exists(b.P("f")) && File.Exists(b.P("g")), "b to see the rename");
        await Task.Run(() => File.WriteAllText(a.P("g"), "two-two"));
        await UntilAsync(() => File.ReadAllText(b.P("g")) == "two-two", "b to read what a wrote after it closed the file");
        await Task.Run(() => File.SetUnixFileMode(a.P("g"), UnixFileMode.UserRead));
        await UntilAsync(() => File.GetUnixFileMode(b.P("g")) == UnixFileMode.UserRead, "b to see the chmod");
        await Task.Run(() => Directory.CreateDirectory(b.P("d")));
        await UntilAsync(() => Directory.Exists(a.P("d")), "a to see b's mkdir");
        // a finds "d" by a lookup of its own (it had cached nothing there); b's notify about it reaches a after that.
        await UntilAsync(() => b.Coherence!.Applied > 0 && a.Coherence!.Applied > 0, "both mounts to have applied a notify of the other's");
    }

    /// <summary>A mount alone sends no notifies for its changes; a second mount's announcement turns them on again
    /// before the second mount's start returns, so the second sees the first's changes at once.</summary>
    [Fact]
    public async Task A_mount_alone_sends_no_notifies_and_sends_them_again_once_another_mount_starts()
    {
        var meta = await fixture.NewFsAsync("alone");
        var options = new ClusterFsOptions { CacheTimeout = TimeSpan.FromHours(1) };
        await using var a = await ClusterMount.StartCoherentAsync(fixture.FileSystem(meta, options: options), meta, "a");
        Assert.False(a.Coherence!.HasCompany);
        await Task.Run(() => File.WriteAllText(a.P("f"), "one"));
        var sent = a.Coherence.Sent;
        Assert.True(a.Coherence.Skipped > 0, "a's changes while alone were not skipped");
        Assert.Equal(1, sent); // its announcement only

        await using var b = await ClusterMount.StartCoherentAsync(fixture.FileSystem(meta, options: options), meta, "b");
        Assert.True(a.Coherence.HasCompany, "b's announcement returned before a knew of b");
        Assert.True(b.Coherence!.HasCompany);
        Assert.Equal("one", await Task.Run(() => File.ReadAllText(b.P("f")))); // b caches the name for an hour
        await Task.Run(() => File.Move(a.P("f"), a.P("g")));
        await UntilAsync(() => !File.Exists(b.P("f")) && File.Exists(b.P("g")), "b to see a's rename");
        Assert.True(a.Coherence.Sent > sent);
    }

    /// <summary>The directory's attributes the mount answers after a create, mkdir or unlink in it (from the
    /// operation's reply, not a GETATTR of their own) are the metadata PG's, to the nanosecond.</summary>
    [Fact]
    public async Task A_directory_stat_after_each_change_in_it_is_what_the_metadata_pg_holds()
    {
        var meta = await fixture.NewFsAsync("dirattrs");
        await using var m = ClusterMount.Start(fixture.FileSystem(meta));
        var d = m.P("d");
        await Task.Run(() => Directory.CreateDirectory(d));
        var ino = Posix.lstatx(d).stx_ino;
        for (var i = 0; i < 12; i++)
        {
            await Task.Run(() =>
            {
                switch (i % 3)
                {
                    case 0:
                        File.WriteAllText(Path.Combine(d, $"f{i}"), "x");
                        break;
                    case 1:
                        Directory.CreateDirectory(Path.Combine(d, $"s{i}"));
                        break;
                    default:
                        File.Delete(Path.Combine(d, $"f{i - 2}"));
                        break;
                }
            });
            var seen = await Task.Run(() => Posix.lstatx(d));
            var truth = (await meta.CallAsync(new MetaRequest(MetaOp.GetAttr, Caller.Root, default) { Ino = ino }, default)).Inode!;
            Assert.Equal((truth.Nlink, truth.Mtime.Seconds, truth.Mtime.Nanoseconds, truth.Ctime.Seconds, truth.Ctime.Nanoseconds),
                (seen.stx_nlink, seen.stx_mtime.tv_sec, seen.stx_mtime.tv_nsec, seen.stx_ctime.tv_sec, seen.stx_ctime.tv_nsec));
        }
    }

    [Fact]
    public async Task Appends_from_two_mounts_at_once_all_land_whole_and_none_over_another()
    {
        var meta = await fixture.NewFsAsync("append");
        var startEpoch = fixture.Client.OsdMap!.Epoch;
        await using var a = await ClusterMount.StartCoherentAsync(fixture.FileSystem(meta), meta, "a");
        await using var b = await ClusterMount.StartCoherentAsync(fixture.FileSystem(meta), meta, "b");
        await Task.Run(() => File.WriteAllText(a.P("log"), "start\n"));
        const int PerWriter = 60;
        var writers = new[] { (a, "a0"), (a, "a1"), (b, "b0"), (b, "b1") }.Select(w => Task.Run(() =>
        {
            // Each writer its own descriptor opened O_APPEND; one write(2) per line (pwrite ignores the offset then).
            var fd = Posix.open(w.Item1.P("log"), Constants.O_WRONLY | 0x400);
            try
            {
                for (var i = 0; i < PerWriter; i++)
                {
                    Posix.pwrite(fd, Encoding.ASCII.GetBytes($"{w.Item2}:{i:D4}:{new string('x', 20)}\n"), 0);
                }
            }
            finally
            {
                Posix.close(fd);
            }
        })).ToArray();
        await Task.WhenAll(writers);
        // b learns the final size from a's notifies (or its cache expiring): wait for it, then read.
        var total = 6 + 4 * PerWriter * ("a0:0000:".Length + 20 + 1);
        await UntilAsync(() => new FileInfo(b.P("log")).Length == total, () => $"b to see the log's {total} bytes (b sees {new FileInfo(b.P("log")).Length}, a {new FileInfo(a.P("log")).Length}; content: {DescribeLog(a.P("log"))}; osdmap epochs {startEpoch}..{fixture.Client.OsdMap!.Epoch}, OSDs {string.Join(" ", fixture.Client.OsdMap!.Osds.Values.Select(o => $"{o.Id}:{(o.Up ? "up" : "down")}@{o.UpFrom}"))}; a: {a.Describe()}; b: {b.Describe()})");
        var lines = (await Task.Run(() => File.ReadAllText(b.P("log")))).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var expected = new[] { "a0", "a1", "b0", "b1" }.SelectMany(w => Enumerable.Range(0, PerWriter).Select(i => $"{w}:{i:D4}:{new string('x', 20)}"))
            .Append("start").Order(StringComparer.Ordinal).ToList();
        Assert.Equal(expected, lines.Order(StringComparer.Ordinal).ToList());
        // Each writer's lines in its own order.
        foreach (var w in new[] { "a0", "a1", "b0", "b1" })
        {
            var mine = lines.Where(l => l.StartsWith(w + ":", StringComparison.Ordinal)).ToList();
            Assert.Equal(mine.Order(StringComparer.Ordinal), mine);
        }
    }

    [Fact]
    public async Task Orphans_a_dead_mount_left_are_swept_with_their_data()
    {
        var meta = await fixture.NewFsAsync("sweep");
        // What a mount that died holding an unlinked file open leaves: the inode on the orphan list, its data.
        var now = MetaTime.FromDateTime(DateTime.UtcNow);
        var made = await meta.CallAsync(new MetaRequest(MetaOp.Make, Caller.Root, now) { Ino = Superblock.RootIno, Name = "f", Mode = ModeBits.IfReg | 0x1A4 }, default);
        var ino = made.Inode!.Ino;
        var striper = new DataStriper(fixture.Client.OpenPool(ClusterFsFixture.DataPool), meta.FsName);
        await striper.WriteAsync(ino, 0, new byte[5 << 20], default);
        Assert.True((await meta.CallAsync(new MetaRequest(MetaOp.Written, Caller.Root, now) { Ino = ino, Size = 5 << 20, Mtime = now }, default)).IsOk);
        Assert.True((await meta.CallAsync(new MetaRequest(MetaOp.Unlink, Caller.Root, now) { Ino = Superblock.RootIno, Name = "f" }, default)).IsOk);
        Assert.Equal([ino], (await meta.CallAsync(new MetaRequest(MetaOp.ListOrphans, Caller.Root, now) { Limit = 10 }, default)).Orphans);

        Assert.Equal(1, await fixture.FileSystem(meta).SweepOrphansAsync(default));
        Assert.Empty((await meta.CallAsync(new MetaRequest(MetaOp.ListOrphans, Caller.Root, now) { Limit = 10 }, default)).Orphans);
        var data = fixture.Client.OpenPool(ClusterFsFixture.DataPool);
        await Assert.ThrowsAsync<Appliance.Client.ObjectNotFoundException>(() => data.StatAsync(striper.ObjectName(ino, 0)));
        await Assert.ThrowsAsync<Appliance.Client.ObjectNotFoundException>(() => data.StatAsync(striper.ObjectName(ino, 1)));
        var check = FsCheck.Run(await FsChecker.ReadAsync(fixture.Client, Record(meta), now, default));
        Assert.True(check.Clean, string.Join("\n", check.Problems));
    }

    private static string DescribeLog(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var text = Encoding.ASCII.GetString(bytes).Replace("\0", "", StringComparison.Ordinal);
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var dups = lines.GroupBy(l => l).Where(g => g.Count() > 1).Select(g => $"{g.Key} x{g.Count()}");
        return $"{bytes.Length} bytes, {bytes.Count(b => b == 0)} NUL, {lines.Length} lines, duplicated: [{string.Join(", ", dups)}]";
    }

    private static Task UntilAsync(Func<bool> condition, string what) => UntilAsync(condition, () => what);

    private static async Task UntilAsync(Func<bool> condition, Func<string> what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!await Task.Run(condition))
        {
            if (DateTime.UtcNow >= deadline)
            {
                Assert.Fail($"waited 30 s for {what()}");
            }
            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task Two_mounts_working_in_one_directory_see_the_same_tree()
    {
        var meta = await fixture.NewFsAsync("shared");
        await using var a = ClusterMount.Start(fixture.FileSystem(meta));
        await using var b = ClusterMount.Start(fixture.FileSystem(meta));
        Directory.CreateDirectory(a.P("d"));
        static void Work(ClusterMount m, string who)
        {
            for (var i = 0; i < 40; i++)
            {
                File.WriteAllText(m.P($"d/{who}{i}"), $"{who} {i}");
                if (i % 4 == 1)
                {
                    File.Move(m.P($"d/{who}{i}"), m.P($"d/{who}{i}.moved"));
                }
                if (i % 4 == 2)
                {
                    File.Delete(m.P($"d/{who}{i}"));
                }
            }
        }
        await Task.WhenAll(Task.Run(() => Work(a, "a")), Task.Run(() => Work(b, "b")));
        var expected = new[] { "a", "b" }.SelectMany(who => Enumerable.Range(0, 40).Where(i => i % 4 != 2)
            .Select(i => i % 4 == 1 ? $"{who}{i}.moved" : $"{who}{i}")).Order(StringComparer.Ordinal).ToList();
        foreach (var m in new[] { a, b })
        {
            Assert.Equal(expected, Directory.EnumerateFiles(m.P("d")).Select(Path.GetFileName).Order(StringComparer.Ordinal));
            foreach (var name in expected)
            {
                var content = await File.ReadAllTextAsync(m.P($"d/{name}"));
                Assert.Equal($"{name[0]} {name[1..].Replace(".moved", "", StringComparison.Ordinal)}", content);
            }
        }
    }

    [Fact]
    public async Task An_unlinked_file_stays_readable_while_open_and_is_purged_at_close()
    {
        var meta = await fixture.NewFsAsync("orphan");
        var fs = fixture.FileSystem(meta);
        await using var m = ClusterMount.Start(fs);
        await Task.Run(() =>
        {
            File.WriteAllText(m.P("f"), "still here");
            var fd = Posix.open(m.P("f"), Constants.O_RDONLY);
            try
            {
                Posix.unlink(m.P("f"));
                Assert.False(File.Exists(m.P("f")));
                var buffer = new byte[64];
                var n = Posix.pread(fd, buffer, 0);
                Assert.Equal("still here", Encoding.UTF8.GetString(buffer, 0, n));
            }
            finally
            {
                Posix.close(fd);
            }
        });
        // Released by the kernel after close: the orphan list empties and the data object goes.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (DateTime.UtcNow < deadline)
        {
            var orphans = await meta.CallAsync(new Meta.MetaRequest(Meta.MetaOp.ListOrphans, Meta.Caller.Root, default), default);
            if (orphans.Orphans.Count == 0)
            {
                break;
            }
            await Task.Delay(50);
        }
        Assert.Empty((await meta.CallAsync(new Meta.MetaRequest(Meta.MetaOp.ListOrphans, Meta.Caller.Root, default), default)).Orphans);
        var leftovers = new List<string>();
        await foreach (var name in fixture.Client.OpenPool(ClusterFsFixture.DataPool).ListObjectsAsync())
        {
            if (name.StartsWith(meta.FsName + ".d.", StringComparison.Ordinal))
            {
                leftovers.Add(name);
            }
        }
        Assert.Empty(leftovers);
    }

    [Fact]
    public async Task Hostile_names_get_the_right_errno_and_corrupt_nothing()
    {
        var meta = await fixture.NewFsAsync("hostile");
        await using var m = ClusterMount.Start(fixture.FileSystem(meta));
        await Task.Run(() =>
        {
            Assert.Equal(36, Errno(() => Posix.mkdir(m.P(new string('x', 256)), 0x1ED))); // ENAMETOOLONG
            Posix.mkdir(m.P(new string('x', 255)), 0x1ED);
            Assert.Equal(2, Errno(() => Posix.mkdir(m.P("missing/child"), 0x1ED))); // ENOENT
            // A name with '/' is a path to the kernel; with NUL it ends at the NUL: both reach us as plain names or
            // not at all. The metadata class itself refuses them (tests/Fs.Meta.Tests); here: nothing was created.
            var deep = m.Path;
            for (var i = 0; i < 40; i++)
            {
                deep = Path.Combine(deep, "d");
                Posix.mkdir(deep, 0x1ED);
            }
            File.WriteAllText(Path.Combine(deep, "leaf"), "deep");
            Posix.symlink("loop2", m.P("loop1"));
            Posix.symlink("loop1", m.P("loop2"));
            Assert.Equal(40, Errno(() => Posix.open(m.P("loop1"), Constants.O_RDONLY))); // ELOOP
            Posix.mkdir(m.P("gone"), 0x1ED);
            var fd = Posix.open(m.P("gone"), Constants.O_RDONLY);
            try
            {
                Posix.rmdir(m.P("gone"));
                Assert.Equal(2, Errno(() => Posix.mkdir(m.P("gone/x"), 0x1ED)));
            }
            finally
            {
                Posix.close(fd);
            }
            Assert.Equal(["d", "loop1", "loop2", new string('x', 255)],
                Directory.EnumerateFileSystemEntries(m.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal));
            Assert.Equal("deep", File.ReadAllText(Path.Combine(deep, "leaf")));
        });
    }

    private static int Errno(Action a)
    {
        try
        {
            a();
            return 0;
        }
        catch (PlatformException e)
        {
            return e.Errno;
        }
    }
}
