using System.Diagnostics;
using Appliance.Fs.Session;
using Appliance.Fs.TestFs;
using Appliance.Platform.Native;

namespace Appliance.Fs.Tests.Session;

/// <summary>Mounting, unmounting (clean, busy, external), aborting, fusermount3, and the appliance-testfs program.</summary>
public class LifecycleTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task External_umount_ends_the_reader_threads()
    {
        await using var m = TestMount.Start(options: new FuseOptions { Threads = 3 });
        File.WriteAllText(m.P("f"), "x");
        Assert.NotNull(m.Session.ConnectionId);
        Assert.True(Directory.Exists($"/sys/fs/fuse/connections/{m.Session.ConnectionId}") || !Directory.Exists("/sys/fs/fuse/connections/1"));
        Shell.Ok($"umount {m.Path}");
        await m.Session.Completion.WaitAsync(Bound); // every reader saw ENODEV
        Assert.False(TestMount.IsMounted(m.Path));
    }

    [Fact]
    public async Task Unmount_while_busy_detaches_and_ends_when_the_last_file_closes()
    {
        await using var m = TestMount.Start();
        File.WriteAllText(m.P("open"), "still readable");
        var fd = Posix.open(m.P("open"), Constants.O_RDONLY);
        try
        {
            Assert.Equal(Errno.EBUSY, Errnos.Of(() => Posix.umount2(m.Path, 0)));
            Assert.False(m.Session.Unmount()); // busy: detached instead
            Assert.False(TestMount.IsMounted(m.Path));
            Assert.False(m.Session.Completion.IsCompleted);
            var buf = new byte[14];
            Assert.Equal(14, Posix.pread(fd, buf, 0)); // the open file is still served
            Assert.Equal("still readable"u8.ToArray(), buf);
        }
        finally
        {
            Posix.close(fd);
        }
        await m.Session.Completion.WaitAsync(Bound);
    }

    [Fact]
    public async Task Abort_frees_callers_stuck_on_a_hung_filesystem()
    {
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var fs = new MemoryFileSystem
        {
            Gate = (_, name, _) =>
            {
                if (name != "stuck")
                {
                    return Task.CompletedTask;
                }
                entered.TrySetResult();
                return new TaskCompletionSource().Task; // never completes, ignores cancellation
            },
        };
        await using var m = TestMount.Start(fs, new FuseOptions { OperationTimeout = TimeSpan.FromMinutes(10) });
        using var stat = Process.Start(new ProcessStartInfo("stat", m.P("stuck")) { RedirectStandardError = true, RedirectStandardOutput = true })!;
        await entered.Task.WaitAsync(Bound);
        Assert.False(stat.HasExited);
        m.Session.Abort();
        await stat.WaitForExitAsync().WaitAsync(Bound);
        Assert.NotEqual(0, stat.ExitCode);
        var error = await stat.StandardError.ReadToEndAsync();
        Assert.True(error.Contains("not connected", StringComparison.Ordinal) || error.Contains("connection abort", StringComparison.Ordinal), error);
        await m.Session.Completion.WaitAsync(Bound);
    }

    [Fact]
    public async Task Mounting_through_fusermount3_works_and_unmounts()
    {
        await using var m = TestMount.Start(options: new FuseOptions { UseFusermount = true });
        File.WriteAllText(m.P("f"), "via fusermount3");
        Assert.Equal("via fusermount3", File.ReadAllText(m.P("f")));
        Assert.Contains("fuse.appliance", File.ReadAllText("/proc/self/mounts").Split('\n').Single(l => l.Contains(m.Path, StringComparison.Ordinal)));
        Assert.True(m.Session.Unmount());
        await m.Session.Completion.WaitAsync(Bound);
        Assert.False(TestMount.IsMounted(m.Path));
    }

    [Fact]
    public async Task Writeback_cache_mounts_serve_reads_and_writes()
    {
        await using var m = TestMount.Start(options: new FuseOptions { WritebackCache = true });
        Assert.True(m.Session.Connection!.Flags.HasFlag(Appliance.Fs.Protocol.InitFlags.WritebackCache));
        var data = new byte[5 << 20];
        new Random(3).NextBytes(data);
        File.WriteAllBytes(m.P("f"), data);
        Shell.Ok($"sync {m.P("f")}");
        Assert.Equal(data, File.ReadAllBytes(m.P("f")));
    }

    [Fact]
    public async Task The_testfs_program_mounts_until_sigterm_then_unmounts()
    {
        var dir = TestMount.NewDirectory("prog");
        var program = Path.Combine(AppContext.BaseDirectory, "appliance-testfs.dll");
        using var p = Process.Start(new ProcessStartInfo("dotnet") { ArgumentList = { program, dir }, RedirectStandardOutput = true, RedirectStandardError = true })!;
        try
        {
            var line = await p.StandardOutput.ReadLineAsync().WaitAsync(Bound);
            Assert.Equal($"mounted {dir}", line);
            Shell.Ok($"echo hi > {dir}/f && cat {dir}/f && ls -l {dir}");
            Shell.Ok($"kill -TERM {p.Id}");
            await p.WaitForExitAsync().WaitAsync(Bound);
            Assert.Equal(0, p.ExitCode);
            Assert.False(TestMount.IsMounted(dir));
        }
        finally
        {
            if (!p.HasExited)
            {
                p.Kill();
            }
            if (TestMount.IsMounted(dir))
            {
                Posix.umount2(dir, Constants.MNT_DETACH);
            }
            Directory.Delete(dir);
        }
    }

    [Fact]
    public async Task An_unprivileged_user_mounts_through_fusermount3_and_unmounts()
    {
        // /dev/fuse is 0600 on this machine (Debian makes it 0666): give the scenario a private mount namespace in
        // which a 0666 node is bound over it, so nothing outside changes. Inside, nobody runs appliance-testfs
        // (fusermount3 mounts and passes the descriptor back by SCM_RIGHTS), uses the mount, and unmounts it with
        // fusermount3 -u; the program must then exit 0 by itself.
        var dir = TestMount.NewDirectory("user");
        var work = TestMount.NewDirectory("userwork");
        try
        {
            Posix.lchown(dir, Shell.Nobody, Shell.Nobody);
            Posix.chmod(dir, 0x1ED);
            Posix.chmod(work, 0x1ED);
            // nobody must be able to reach the program: the checkout may sit under a directory only root can enter
            // (a CI clone in a 0700 mktemp directory), so run a copy from the world-readable work directory.
            var bin = Path.Combine(work, "bin");
            Directory.CreateDirectory(bin);
            foreach (var name in new[] { "appliance-testfs.dll", "appliance-testfs.deps.json", "appliance-testfs.runtimeconfig.json", "Appliance.Fs.dll", "Appliance.Platform.dll" })
            {
                File.Copy(Path.Combine(AppContext.BaseDirectory, name), Path.Combine(bin, name));
                Posix.chmod(Path.Combine(bin, name), 0x1A4); // 0644
            }
            Posix.chmod(bin, 0x1ED);
            var program = Path.Combine(bin, "appliance-testfs.dll");
            var asNobody = "setpriv --reuid=65534 --regid=65534 --clear-groups";
            var script = $$"""
                set -e
                mknod -m 666 {{work}}/fuse c 10 229
                mount --bind {{work}}/fuse /dev/fuse
                HOME=/tmp DOTNET_CLI_TELEMETRY_OPTOUT=1 {{asNobody}} dotnet {{program}} {{dir}} --no-allow-other > {{work}}/log 2>&1 &
                pid=$!
                for i in $(seq 150); do grep -q mounted {{work}}/log && break; sleep 0.2; done
                {{asNobody}} sh -c "echo hi > {{dir}}/f && stat -c '%U %a' {{dir}}/f && grep -c ' {{dir}} fuse.appliance .*user_id=65534' /proc/self/mounts && fusermount3 -u {{dir}}"
                wait $pid
                echo "program exit $?"
                """;
            File.WriteAllText(Path.Combine(work, "run.sh"), script);
            var (exit, stdout, stderr) = await Task.Run(() => Shell.Run($"unshare -m --propagation private sh {work}/run.sh"));
            var log = File.Exists(Path.Combine(work, "log")) ? File.ReadAllText(Path.Combine(work, "log")) : "";
            Assert.True(exit == 0, $"exit {exit}: {stdout}\n{stderr}\n{log}");
            Assert.Equal($"nobody 644\n1\nprogram exit 0\n", stdout);
            Assert.Empty(Directory.GetFileSystemEntries(dir)); // the file lived in the mount, not in the directory
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
            Directory.Delete(work, recursive: true);
        }
    }

    [Fact]
    public void Mounting_on_a_missing_directory_says_what_to_do()
    {
        var e = Assert.Throws<FuseMountException>(() => FuseSession.Mount(new MemoryFileSystem(), "/nonexistent/appliance-mnt"));
        Assert.Contains("create the directory", e.Message);
    }
}
