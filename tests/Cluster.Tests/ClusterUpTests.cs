using System.Diagnostics;
using System.Globalization;

namespace Appliance.Cluster.Tests;

/// <summary>
/// `appliance cluster up|down` run as processes on a temporary directory, as a user runs them: three monitors and
/// three OSDs on 64 MiB sparse disks come up as background processes with pid files; running `up` again starts
/// nothing, or only what was killed; `down` leaves none of them; `--purge` without its confirmation deletes nothing.
/// Every process the test sees is killed by its pid at the end, whatever happened.
/// </summary>
public sealed class ClusterUpTests : IDisposable
{
    private static readonly string[] Daemons = ["mon.a", "mon.b", "mon.c", "nbd", "osd.0", "osd.1", "osd.2"];

    private readonly TempDir _dir = new();
    private readonly HashSet<int> _seen = [];

    private string Data => Path.Combine(_dir.Path, "cluster");

    [Fact]
    public async Task Up_starts_what_is_not_running_and_down_stops_everything_it_started()
    {
        var (code, output) = await LocalCluster.ApplianceAsync("cluster", "up", "--data", Data, "--osds", "3", "--disk-size", "64M", "--timeout", "50");
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

        // Everything runs: a second `up` starts nothing.
        (code, output) = await LocalCluster.ApplianceAsync("cluster", "up", "--data", Data, "--osds", "3", "--disk-size", "64M", "--timeout", "50");
        Assert.True(code == 0, $"second cluster up exited {code}:\n{output}\n{Logs()}");
        Assert.DoesNotContain(" started (pid", output);
        Assert.Equal(first, Pids());

        // One OSD killed without warning: `up` restarts it, and only it.
        var victim = first["osd.1"];
        Process.GetProcessById(victim).Kill();
        await UntilAsync(() => !IsOurs(victim, "osd.1"), "osd.1 to die after SIGKILL");
        (code, output) = await LocalCluster.ApplianceAsync("cluster", "up", "--data", Data, "--timeout", "50");
        Assert.True(code == 0, $"cluster up after a kill exited {code}:\n{output}\n{Logs()}");
        var after = Pids();
        Assert.NotEqual(victim, after["osd.1"]);
        Assert.True(IsOurs(after["osd.1"], "osd.1"), $"osd.1 restarted as {after["osd.1"]}: {LocalCluster.Cmdline(after["osd.1"])}");
        foreach (var name in Daemons.Where(n => n != "osd.1"))
        {
            Assert.Equal(first[name], after[name]);
        }
        Assert.Contains("osd.1 started (pid", output);

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
        // The NBD server (`nbd serve`) is known by its socket, monitors and OSDs (`… run`) by their data paths.
        var identity = Path.Combine(Data, name == "nbd" ? "run/nbd.sock" : name.StartsWith("osd.", StringComparison.Ordinal) ? name + ".disk" : name);
        return args.Any(a => a.EndsWith("appliance.dll", StringComparison.Ordinal)) && args.Contains(name == "nbd" ? "serve" : "run") && args.Contains(identity);
    }

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
        _dir.Dispose();
    }
}
