using System.Diagnostics;
using Appliance.Fs.Meta;

namespace Appliance.Fs.Cluster.Tests;

/// <summary>
/// Cluster-wide locks through the kernel: two mounts of one filesystem, each `appliance fs mount` in a process of
/// its own, and the contenders processes of their own (util-linux flock, tests/Fs.Locker). Without cluster locks the
/// kernel keeps locks local to each mount and none of these exclusions happen.
/// </summary>
public sealed class LockTests(ClusterFsFixture fixture) : IClassFixture<ClusterFsFixture>
{
    /// <summary>The default lease, where no test waits for one to run out (a loaded machine never loses one).</summary>
    private const double LeaseSeconds = 30;
    /// <summary>Short, so a killed mount's locks go within the test; mounts renew every third of it.</summary>
    private const double ShortLeaseSeconds = 5;

    private async Task<(MetaClient Meta, MountProcess A, MountProcess B)> TwoMountsAsync(string what, double leaseSeconds = LeaseSeconds)
    {
        var meta = await fixture.NewRegisteredFsAsync(what);
        var a = await MountProcess.StartAsync(fixture.Cluster.ConfDir, meta.FsName, leaseSeconds);
        var b = await MountProcess.StartAsync(fixture.Cluster.ConfDir, meta.FsName, leaseSeconds);
        return (meta, a, b);
    }

    [Fact]
    public async Task Flock_excludes_across_two_mounts_and_goes_with_the_last_close()
    {
        var (_, a, b) = await TwoMountsAsync("flock");
        await using (a)
        await using (b)
        {
            // A flock lock is released by the kernel's RELEASE of its open file, which FUSE sends after close(2) (and
            // the holder's exit) returned: a lock that was just let go by a close may still be held for a moment. So
            // where a step needs such a lock gone, it waits for it (flock -w, a blocking flock); where it needs a lock
            // held, it tries without waiting (-n).
            await using var holder = await Locker.StartAsync(a.P("f"));
            Assert.Equal("ok", await holder.AskAsync("flock ex nb"));
            Assert.Equal(1, await FlockTool.RunAsync(b.P("f"), "-n"));
            Assert.Equal(1, await FlockTool.RunAsync(b.P("f"), "-n", "-s"));
            Assert.Equal(1, await FlockTool.RunAsync(a.P("f"), "-n")); // another open file on the same mount
            Assert.Equal("ok", await holder.AskAsync("flock sh nb")); // converted to shared
            Assert.Equal(0, await FlockTool.RunAsync(b.P("f"), "-n", "-s"));
            Assert.Equal(1, await FlockTool.RunAsync(b.P("f"), "-n"));
            Assert.Equal("ok", await holder.AskAsync("flock un"));
            Assert.Equal(0, await FlockTool.RunAsync(b.P("f"), "-w", "30"));
            // The last close of the open file releases its flock lock (RELEASE with FLOCK_UNLOCK).
            Assert.Equal("ok", await holder.AskAsync("flock ex"));
            Assert.Equal(1, await FlockTool.RunAsync(b.P("f"), "-n"));
            Assert.Equal("ok", await holder.AskAsync("close"));
            Assert.Equal(0, await FlockTool.RunAsync(b.P("f"), "-w", "30"));
            // flock and POSIX locks are apart, as Linux keeps them.
            await using var posix = await Locker.StartAsync(b.P("f"));
            Assert.Equal("ok", await posix.AskAsync("lock wr 0 0"));
            Assert.Equal(0, await FlockTool.RunAsync(a.P("f"), "-w", "30"));
        }
    }

    [Fact]
    public async Task Fcntl_byte_range_locks_exclude_across_mounts_and_getlk_names_the_holder()
    {
        var (_, a, b) = await TwoMountsAsync("fcntl");
        await using (a)
        await using (b)
        {
            await using var one = await Locker.StartAsync(a.P("f"));
            await using var two = await Locker.StartAsync(b.P("f"));
            Assert.Equal("ok", await one.AskAsync("lock wr 0 100"));
            Assert.Equal("err 11", await two.AskAsync("lock wr 50 10"));
            Assert.Equal("err 11", await two.AskAsync("lock rd 99 1"));
            Assert.Equal("ok", await two.AskAsync("lock wr 100 10"));
            Assert.Equal($"wr 0 100 {one.Pid}", await two.AskAsync("test wr 0 10"));
            Assert.Equal($"wr 100 10 {two.Pid}", await one.AskAsync("test rd 105 0"));
            // Read locks share; a write lock waits for every reader.
            Assert.Equal("ok", await two.AskAsync("lock rd 200 10"));
            Assert.Equal("ok", await one.AskAsync("lock rd 205 10"));
            Assert.Equal("err 11", await one.AskAsync("lock wr 200 1"));
            // An unlock of part of a range splits it: the rest stays locked.
            Assert.Equal("ok", await one.AskAsync("lock un 0 50"));
            Assert.Equal("ok", await two.AskAsync("lock rd 0 10"));
            Assert.Equal($"wr 50 50 {one.Pid}", await two.AskAsync("test wr 60 1"));
            // A close by the holder drops all its POSIX locks on the file (FLUSH with its lock owner).
            Assert.Equal("ok", await one.AskAsync("close"));
            Assert.Equal("unlck", await two.AskAsync("test wr 0 0"));
            await using var three = await Locker.StartAsync(a.P("f"));
            Assert.Equal($"rd 0 10 {two.Pid}", await three.AskAsync("test wr 0 0")); // the first conflicting lock
        }
    }

    [Fact]
    public async Task Setlkw_waits_for_the_holder_on_another_mount_and_an_interrupted_wait_gets_eintr()
    {
        var (_, a, b) = await TwoMountsAsync("wait");
        await using (a)
        await using (b)
        {
            await using var holder = await Locker.StartAsync(a.P("f"));
            await using var waiter = await Locker.StartAsync(b.P("f"));
            Assert.Equal("ok", await holder.AskAsync("lock wr 0 0"));
            var granted = await waiter.SendAsync("lockw wr 10 5");
            // More waiters on b than it has FUSE reader threads (2 on this machine's cores, at most 8): waits hold
            // none, so b still serves every other call.
            var others = new List<(Locker Locker, Task<string?> Granted)>();
            for (var i = 0; i < 8; i++)
            {
                var other = await Locker.StartAsync(b.P("f"));
                others.Add((other, await other.SendAsync($"lockw rd {100 + i} 1")));
            }
            await Task.Run(() =>
            {
                File.WriteAllText(b.P("g"), "served while locks are waited for");
                Assert.Equal("served while locks are waited for", File.ReadAllText(b.P("g")));
            }).WaitAsync(TimeSpan.FromSeconds(60));
            // The holder still answers, and still holds the range: the waiter cannot have it.
            Assert.Equal("unlck", await holder.AskAsync("test wr 0 0"));
            Assert.False(granted.IsCompleted, "F_SETLKW answered while the range was held on the other mount");
            Assert.Equal("ok", await holder.AskAsync("lock un 0 0"));
            Assert.Equal("ok", await granted.WaitAsync(TimeSpan.FromSeconds(60)));
            foreach (var (other, got) in others)
            {
                Assert.Equal("ok", await got.WaitAsync(TimeSpan.FromSeconds(60)));
                await other.DisposeAsync();
            }
            Assert.Equal($"wr 10 5 {waiter.Pid}", await holder.AskAsync("test rd 12 1"));

            // flock -w 1 waits in F_SETLKW (flock) until its alarm: the signal makes the kernel send INTERRUPT, the
            // wait ends with EINTR, and flock(1) says "timeout" with the exit code -E asked for (an ETIMEDOUT or
            // another error would be 65; a wait that ignores the interrupt never ends).
            Assert.Equal("ok", await holder.AskAsync("flock ex nb"));
            var timedOut = await FlockTool.RunAsync(b.P("f"), "-w", "1", "-E", "42");
            Assert.True(timedOut == 42, $"flock -w 1 -E 42 exited {timedOut}; mount b said:\n{b.Output}");
            Assert.Equal("ok", await holder.AskAsync("flock un"));
            Assert.Equal(0, await FlockTool.RunAsync(b.P("f"), "-w", "30", "-E", "42"));
        }
    }

    [Fact]
    public async Task A_killed_mounts_locks_are_released_after_its_lease_and_fs_check_is_clean()
    {
        var (meta, a, b) = await TwoMountsAsync("killed", ShortLeaseSeconds);
        await using (a)
        await using (b)
        {
            await using (var holder = await Locker.StartAsync(a.P("f")))
            {
                Assert.Equal("ok", await holder.AskAsync("flock ex nb"));
                Assert.Equal("ok", await holder.AskAsync("lock wr 0 0"));
                Assert.Equal(1, await FlockTool.RunAsync(b.P("f"), "-n"));
                await a.KillAsync();
                await holder.KillAsync();
            }
            // No unmount, no release: the locks stay until a's lease runs out (5 s), then b's next try gets them.
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (await FlockTool.RunAsync(b.P("f"), "-n") != 0)
            {
                Assert.True(DateTime.UtcNow < deadline, "the killed mount's flock lock was not released within 60 s");
                await Task.Delay(100);
            }
            await using (var other = await Locker.StartAsync(b.P("f")))
            {
                Assert.Equal("ok", await other.AskAsync("lockw wr 0 0"));
            }
            // b's sweep (about once a lease) removes the dead mount's lease and mount record.
            while ((await OmapKeysAsync(meta, MetaObjects.LeasePrefix)).Count != 1 || (await OmapKeysAsync(meta, MetaObjects.MountPrefix)).Count != 1)
            {
                Assert.True(DateTime.UtcNow < deadline, $"the killed mount's lease was not swept within 60 s: {string.Join(", ", await OmapKeysAsync(meta, ""))}");
                await Task.Delay(100);
            }
        }
        // Both ended (b orderly: its lease and locks went with it): nothing of either is left, and fs check is clean.
        Assert.Empty(await OmapKeysAsync(meta, MetaObjects.LeasePrefix));
        Assert.Empty(await OmapKeysAsync(meta, MetaObjects.LockPrefix));
        var (code, output) = await RunCliAsync("fs", "check", meta.FsName, "--conf-dir", fixture.Cluster.ConfDir);
        Assert.True(code == 0 && output.Contains($"filesystem {meta.FsName}: clean", StringComparison.Ordinal), output);
    }

    private static async Task<List<string>> OmapKeysAsync(MetaClient meta, string prefix)
    {
        var keys = new List<string>();
        await foreach (var (key, _) in meta.Pool.ListOmapAsync(meta.SuperObject, prefix))
        {
            keys.Add(key);
        }
        return keys;
    }

    private static async Task<(int Code, string Output)> RunCliAsync(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "appliance.dll"));
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEndAsync();
        var error = p.StandardError.ReadToEndAsync();
        using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        await p.WaitForExitAsync(bound.Token);
        return (p.ExitCode, await output + await error);
    }
}
