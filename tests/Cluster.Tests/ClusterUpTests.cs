using System.Diagnostics;
using System.Globalization;

namespace Appliance.Cluster.Tests;

/// <summary>
/// `appliance cluster up|down` run as processes on a temporary directory, as a user runs them: three monitors and
/// three OSDs on 64 MiB sparse disks, the NBD server and the mount of filesystem fs0 come up as background processes
/// with pid files; a file written through the mount reads back; running `up` again starts nothing, or only what was
/// killed (a killed mount's dead FUSE mount is detached and mounted again); `down` leaves none of them and no mount;
/// `--purge` without its confirmation deletes nothing. Every process the test sees is killed by its pid at the end,
/// whatever happened, and a mount left behind is detached.
/// </summary>
public sealed class ClusterUpTests : IDisposable
{
    private static readonly string[] Daemons = ["fs.fs0", "mon.a", "mon.b", "mon.c", "nbd", "osd.0", "osd.1", "osd.2"];

    private readonly TempDir _dir = new();
    private readonly HashSet<int> _seen = [];

    private string Data => Path.Combine(_dir.Path, "cluster");

    private string Mount => Path.Combine(Data, "mnt", "fs0");

    [Fact]
    public async Task Up_starts_what_is_not_running_and_down_stops_everything_it_started()
    {
        var (code, output) = await LocalCluster.ApplianceAsync("cluster", "up", "--data", Data, "--osds", "3", "--disk-size", "64M", "--timeout", "90");
        Assert.True(code == 0, $"cluster up exited {code}:\n{output}\n{Logs()}");
        Assert.Contains("export APPLIANCE_CONF_DIR=" + Path.Combine(Data, "conf"), output);
        Assert.Contains($"cluster down --data {Data}", output);
        var first = Pids();
        Assert.Equal(Daemons, first.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, pid) in first)
        {
            Assert.True(IsOurs(pid, name), $"{name}'s pid file names {pid}, which is not running it: {LocalCluster.Cmdline(pid)}");
        }

        // `status` counts OSDs up/in and, once every primary has reported (every 2 s), every PG active+clean.
        var status = "";
        for (var deadline = Stopwatch.GetTimestamp() + Stopwatch.Frequency * 30; Stopwatch.GetTimestamp() < deadline;)
        {
            (code, status) = await LocalCluster.ApplianceAsync("status", "--conf-dir", Path.Combine(Data, "conf"));
            if (code == 0 && System.Text.RegularExpressions.Regex.IsMatch(status, @"pgs +(\d+) PGs: \1 active\+clean\n"))
            {
                break;
            }
            await Task.Delay(200);
        }
        Assert.Matches(@"pgs +(\d+) PGs: \1 active\+clean\n", status);
        Assert.Contains("3 OSDs, 3 up, 3 in", status);

        // The filesystem is mounted and holds what is written to it.
        Assert.Contains($"filesystem fs0 mounted at {Mount}", output);
        var payload = System.Text.Encoding.UTF8.GetBytes($"written through the mount at {DateTime.UtcNow:O}");
        await File.WriteAllBytesAsync(Path.Combine(Mount, "hello.txt"), payload);
        Assert.Equal(payload, await File.ReadAllBytesAsync(Path.Combine(Mount, "hello.txt")));

        // Everything runs: a second `up` starts nothing.
        (code, output) = await LocalCluster.ApplianceAsync("cluster", "up", "--data", Data, "--osds", "3", "--disk-size", "64M", "--timeout", "90");
        Assert.True(code == 0, $"second cluster up exited {code}:\n{output}\n{Logs()}");
        Assert.DoesNotContain(" started (pid", output);
        Assert.Equal(first, Pids());

        // One OSD and the mount killed without warning: `up` restarts them, and only them (the dead FUSE mount the
        // killed mount left is detached first), and the file is still there.
        var victim = first["osd.1"];
        Process.GetProcessById(victim).Kill();
        Process.GetProcessById(first["fs.fs0"]).Kill();
        await UntilAsync(() => !IsOurs(victim, "osd.1") && !IsOurs(first["fs.fs0"], "fs.fs0"), "osd.1 and fs.fs0 to die after SIGKILL");
        (code, output) = await LocalCluster.ApplianceAsync("cluster", "up", "--data", Data, "--timeout", "90");
        Assert.True(code == 0, $"cluster up after a kill exited {code}:\n{output}\n{Logs()}");
        var after = Pids();
        Assert.NotEqual(victim, after["osd.1"]);
        Assert.True(IsOurs(after["osd.1"], "osd.1"), $"osd.1 restarted as {after["osd.1"]}: {LocalCluster.Cmdline(after["osd.1"])}");
        Assert.True(IsOurs(after["fs.fs0"], "fs.fs0"), $"fs.fs0 restarted as {after["fs.fs0"]}: {LocalCluster.Cmdline(after["fs.fs0"])}");
        foreach (var name in Daemons.Where(n => n is not "osd.1" and not "fs.fs0"))
        {
            Assert.Equal(first[name], after[name]);
        }
        Assert.Contains("osd.1 started (pid", output);
        Assert.Contains($"{Mount}: its mount process is gone; unmounted", output);
        Assert.Equal(payload, await File.ReadAllBytesAsync(Path.Combine(Mount, "hello.txt")));

        // --purge without the confirmation: refused, nothing stopped, nothing deleted.
        (code, output) = await LocalCluster.ApplianceAsync("cluster", "down", "--data", Data, "--purge");
        Assert.True(code == 6, $"down --purge without confirmation exited {code}:\n{output}");
        Assert.Contains("--yes-i-really-mean-it", output);
        Assert.True(File.Exists(Path.Combine(Data, "conf", "cluster.conf")));
        Assert.True(File.Exists(Path.Combine(Data, "osd.0.disk")));
        Assert.All(after, d => Assert.True(IsOurs(d.Value, d.Key), $"{d.Key} stopped by a refused purge"));

        (code, output) = await LocalCluster.ApplianceAsync("cluster", "down", "--data", Data);
        Assert.True(code == 0, $"cluster down exited {code}:\n{output}");
        foreach (var pid in _seen)
        {
            Assert.False(Daemons.Any(n => IsOurs(pid, n)), $"process {pid} still runs after cluster down: {LocalCluster.Cmdline(pid)}");
        }
        Assert.Empty(Directory.GetFiles(Path.Combine(Data, "run"), "*.pid"));
        Assert.False(IsMounted(Mount), $"{Mount} is still mounted after cluster down");
        Assert.True(File.Exists(Path.Combine(Data, "osd.0.disk")), "down without --purge keeps the data");
    }

    /// <summary>The pid in each pid file of DIR/run (remembered for the clean-up).</summary>
    private Dictionary<string, int> Pids()
    {
        var run = Path.Combine(Data, "run");
        var pids = new Dictionary<string, int>();
        if (Directory.Exists(run))
        {
            foreach (var file in Directory.GetFiles(run, "*.pid"))
            {
                var pid = int.Parse(File.ReadAllText(file).Trim(), CultureInfo.InvariantCulture);
                pids[Path.GetFileNameWithoutExtension(file)] = pid;
                _seen.Add(pid);
            }
        }
        return pids;
    }

    /// <summary>Whether <paramref name="pid"/> is this test's cluster running daemon <paramref name="name"/>.</summary>
    private bool IsOurs(int pid, string name)
    {
        var args = LocalCluster.Cmdline(pid).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        // The NBD server (`nbd serve`) is known by its socket, the mount (`fs mount`) by its mount point, monitors and
        // OSDs (`… run`) by their data paths.
        var (verb, identity) = name switch
        {
            "nbd" => ("serve", Path.Combine(Data, "run/nbd.sock")),
            "fs.fs0" => ("mount", Mount),
            _ => ("run", Path.Combine(Data, name.StartsWith("osd.", StringComparison.Ordinal) ? name + ".disk" : name)),
        };
        return args.Any(a => a.EndsWith("appliance.dll", StringComparison.Ordinal)) && args.Contains(verb) && args.Contains(identity);
    }

    private static bool IsMounted(string path) =>
        File.ReadLines("/proc/self/mountinfo").Any(l => l.Split(' ') is { Length: > 4 } f && f[4] == path);

    private static async Task UntilAsync(Func<bool> condition, string what)
    {
        var until = Stopwatch.GetTimestamp() + 10 * Stopwatch.Frequency;
        while (!condition())
        {
            Assert.True(Stopwatch.GetTimestamp() < until, $"waited 10 s for {what}");
            await Task.Delay(20);
        }
    }

    private string Logs()
    {
        var log = Path.Combine(Data, "log");
        return Directory.Exists(log)
            ? string.Join("\n", Directory.GetFiles(log).Select(f => $"== {f}\n{string.Join("\n", File.ReadLines(f).TakeLast(20))}"))
            : "(no logs)";
    }

    public void Dispose()
    {
        // Whatever happened: every daemon of this test's cluster is killed by its pid.
        Pids();
        foreach (var pid in _seen)
        {
            if (Daemons.Any(n => IsOurs(pid, n)))
            {
                try
                {
                    using var p = Process.GetProcessById(pid);
                    p.Kill();
                    p.WaitForExit(10_000);
                }
                catch (ArgumentException)
                {
                    // Gone between the check and the kill.
                }
            }
        }
        if (IsMounted(Mount))
        {
            // A killed mount process leaves a dead FUSE mount: detached, so the directory can go.
            using var umount = Process.Start("umount", ["-l", Mount]);
            umount.WaitForExit(10_000);
        }
        _dir.Dispose();
    }
}
