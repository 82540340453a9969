using System.Diagnostics;
using System.Globalization;
using System.Net;
using Appliance.Cli;
using Appliance.Cli.Commands;
using Appliance.Client;
using Appliance.Maps.Client;
using Appliance.Maps.Protocol;
using Appliance.Platform.Native;
using Appliance.Wire.Auth;

namespace Appliance.Cluster.Tests;

/// <summary>
/// A local cluster of real processes made by `appliance cluster up --data DIR` (3 monitors, 3 OSDs on 64 MiB
/// sparse disks, pool `data` size 3 min_size 2), shared by the tests of a class (xunit class fixture). It kills
/// OSDs with SIGKILL by the pid in their pid file, restarts them (all with `cluster up`, or one as `cluster up`
/// would), connects clients with the cluster's conf and admin keyring as the CLI does, and at the end runs
/// `cluster down` and kills, by pid, every daemon of this cluster it ever saw that still runs.
/// </summary>
public class LocalCluster : IAsyncLifetime
{
    public static readonly string[] Daemons = ["mon.a", "mon.b", "mon.c", "nbd", "osd.0", "osd.1", "osd.2"];
    private static readonly TimeSpan CommandBound = TimeSpan.FromSeconds(90);

    private readonly TempDir _dir = new();
    private readonly HashSet<int> _seen = [];

    public string Data => Path.Combine(_dir.Path, "cluster");
    public string ConfDir => Path.Combine(Data, "conf");

    /// <summary>Size of each OSD's sparse disk file (`cluster up --disk-size`).</summary>
    protected virtual string DiskSize => "64M";

    public async Task InitializeAsync() => await UpAsync();

    /// <summary>`cluster up`: makes the cluster the first time, starts whatever is not running, returns once every
    /// PG takes writes.</summary>
    public async Task<string> UpAsync()
    {
        var (code, output) = await ApplianceAsync("cluster", "up", "--data", Data, "--osds", "3", "--disk-size", DiskSize, "--timeout", "80", "--no-fs");
        Pids();
        Assert.True(code == 0, $"cluster up exited {code}:\n{output}\n{Logs()}");
        return output;
    }

    /// <summary>A cluster client as `appliance object` makes one: the monitors of CONF/cluster.conf, client.admin
    /// with its keyring.</summary>
    public async Task<ClusterClient> ConnectAsync(TimeSpan opTimeout)
    {
        var (monitors, key) = Credentials();
        var options = new ClusterClientOptions { ConnectTimeout = TimeSpan.FromSeconds(30), OpTimeout = opTimeout };
        return await ClusterClient.ConnectAsync(monitors, "client.admin", key, options);
    }

    public MonClient Monitors()
    {
        var (monitors, key) = Credentials();
        return new MonClient(monitors, "client.admin", key) { Deadline = TimeSpan.FromSeconds(20) };
    }

    private (List<IPEndPoint> Monitors, Secret Key) Credentials()
    {
        var conf = ClusterConf.Load(ConfDir);
        var admin = Keyring.Load(Path.Combine(ConfDir, ClusterConf.AdminKeyringName)).Find("client.admin")
            ?? throw new InvalidOperationException($"{ConfDir} holds no key for client.admin");
        return (conf.Monitors.Select(m => IPEndPoint.Parse(m.Address)).ToList(), admin.Key);
    }

    /// <summary>SIGKILL to osd.<paramref name="id"/> by its pid file's pid (only when that pid runs this cluster's
    /// osd.N); returns once the process is gone.</summary>
    public async Task<int> KillOsdAsync(int id)
    {
        var name = Osd(id);
        var pid = Pids()[name];
        Assert.True(IsOurs(pid, name), $"{name}'s pid file names {pid}, which is not running it: {Cmdline(pid)}");
        Assert.True(Posix.kill(pid, Posix.SIGKILL), $"kill -9 {pid} ({name}) failed");
        await Poll.UntilAsync(() => !IsOurs(pid, name), TimeSpan.FromSeconds(10), $"{name} (pid {pid}) to die after SIGKILL");
        return pid;
    }

    /// <summary>Sends <paramref name="signal"/> (SIGSTOP, SIGCONT) to osd.<paramref name="id"/> by its pid file's pid
    /// (only when that pid runs this cluster's osd.N); returns the pid.</summary>
    public int SignalOsd(int id, int signal)
    {
        var name = Osd(id);
        var pid = Pids()[name];
        Assert.True(IsOurs(pid, name), $"{name}'s pid file names {pid}, which is not running it: {Cmdline(pid)}");
        Assert.True(Posix.kill(pid, signal), $"kill -{signal} {pid} ({name}) failed");
        return pid;
    }

    /// <summary>Starts osd.<paramref name="id"/> alone, exactly as `cluster up` starts it (setsid, log, pid file).</summary>
    public int StartOsd(int id)
    {
        var local = new LocalDaemons(Data);
        var daemon = local.Osd(id);
        Assert.Null(local.RunningPid(daemon));
        var pid = local.Start(daemon);
        _seen.Add(pid);
        return pid;
    }

    public bool IsRunning(int id) => Pids().TryGetValue(Osd(id), out var pid) && IsOurs(pid, Osd(id));

    private static string Osd(int id) => "osd." + id.ToString(CultureInfo.InvariantCulture);

    /// <summary>The pid in each pid file of DIR/run (remembered for the clean-up).</summary>
    public Dictionary<string, int> Pids()
    {
        var run = Path.Combine(Data, "run");
        var pids = new Dictionary<string, int>();
        if (Directory.Exists(run))
        {
            foreach (var file in Directory.GetFiles(run, "*.pid"))
            {
                if (int.TryParse(File.ReadAllText(file).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
                {
                    pids[Path.GetFileNameWithoutExtension(file)] = pid;
                    _seen.Add(pid);
                }
            }
        }
        return pids;
    }

    public static string Cmdline(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/cmdline").Replace('\0', ' ');
        }
        catch (IOException)
        {
            return "(no such process)";
        }
    }

    /// <summary>Whether <paramref name="pid"/> is this cluster running daemon <paramref name="name"/>.</summary>
    public bool IsOurs(int pid, string name)
    {
        var args = Cmdline(pid).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        // The NBD server (`nbd serve`) is known by its socket, monitors and OSDs (`… run`) by their data paths.
        var identity = Path.Combine(Data, name == "nbd" ? "run/nbd.sock" : name.StartsWith("osd.", StringComparison.Ordinal) ? name + ".disk" : name);
        return args.Any(a => a.EndsWith("appliance.dll", StringComparison.Ordinal)) && args.Contains(name == "nbd" ? "serve" : "run") && args.Contains(identity);
    }

    /// <summary>Until every PG of <paramref name="pool"/> is reported active+clean with all three OSDs acting, by
    /// reports made at the newest osdmap or later (older reports may be a dead primary's); then logs the epoch.</summary>
    public async Task WaitCleanAsync(ClusterClient client, MonClient mon, string pool, TimeSpan bound, Action<string> log)
    {
        IReadOnlyList<PgStat> stats = [];
        await Poll.UntilAsync(async () =>
        {
            var map = client.OsdMap!;
            var pgNum = map.FindPool(pool)!.PgNum;
            stats = await mon.GetPgStatsAsync(pool);
            return map.UpCount == 3
                && stats.Count == pgNum
                && stats.All(s => s.State == "active+clean" && s.Acting.Count(o => o >= 0) == 3 && s.ReportedEpoch >= map.Epoch);
        }, bound, "every PG active+clean",
            () => string.Join("\n", stats.Where(s => s.State != "active+clean").Take(10).Select(s => $"{s.Pg} {s.State} [{string.Join(",", s.Acting)}] epoch {s.ReportedEpoch}")) + "\n" + Logs());
        log($"every PG active+clean in epoch {client.OsdMap!.Epoch}");
    }

    /// <summary>The last <paramref name="lines"/> lines of every daemon's log, for a failure's message.</summary>
    public string Logs(int lines = 30)
    {
        var log = Path.Combine(Data, "log");
        return Directory.Exists(log)
            ? string.Join("\n", Directory.GetFiles(log).Order(StringComparer.Ordinal).Select(f => $"== {f}\n{string.Join("\n", File.ReadLines(f).TakeLast(lines))}"))
            : "(no logs)";
    }

    /// <summary>Runs the program, returning its exit code and stdout+stderr; killed (by its pid) past the bound.</summary>
    public static async Task<(int Code, string Output)> ApplianceAsync(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(typeof(CliApp).Assembly.Location);
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var bound = new CancellationTokenSource(CommandBound);
        try
        {
            await p.WaitForExitAsync(bound.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill();
            await p.WaitForExitAsync();
            throw new TimeoutException($"appliance {string.Join(' ', args)} did not return within {CommandBound.TotalSeconds} s:\n{await stdout}\n{await stderr}");
        }
        return (p.ExitCode, await stdout + await stderr);
    }

    public async Task DisposeAsync()
    {
        try
        {
            await ApplianceAsync("cluster", "down", "--data", Data);
        }
        catch (TimeoutException)
        {
            // The kills below end what `down` could not.
        }
        finally
        {
            // Whatever happened: every daemon of this cluster the fixture saw is killed by its pid.
            Pids();
            foreach (var pid in _seen)
            {
                if (Daemons.Any(n => IsOurs(pid, n)))
                {
                    Posix.kill(pid, Posix.SIGKILL);
                }
            }
            _dir.Dispose();
        }
    }
}

/// <summary>Bounded polling of an observed condition (no sleeps standing in for a wait).</summary>
public static class Poll
{
    public static async Task UntilAsync(Func<bool> condition, TimeSpan bound, string what, Func<string>? detail = null)
    {
        var until = Stopwatch.GetTimestamp() + (long)(bound.TotalSeconds * Stopwatch.Frequency);
        while (!condition())
        {
            Assert.True(Stopwatch.GetTimestamp() < until, $"waited {bound.TotalSeconds:0} s for {what}{(detail is null ? "" : "\n" + detail())}");
            await Task.Delay(20);
        }
    }

    public static async Task UntilAsync(Func<Task<bool>> condition, TimeSpan bound, string what, Func<string>? detail = null)
    {
        var until = Stopwatch.GetTimestamp() + (long)(bound.TotalSeconds * Stopwatch.Frequency);
        while (!await condition())
        {
            Assert.True(Stopwatch.GetTimestamp() < until, $"waited {bound.TotalSeconds:0} s for {what}{(detail is null ? "" : "\n" + detail())}");
            await Task.Delay(100);
        }
    }
}
