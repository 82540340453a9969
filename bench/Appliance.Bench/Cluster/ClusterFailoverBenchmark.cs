using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Appliance.Bench.Common;
using Appliance.Client;
using Appliance.Maps.Client;
using Appliance.Osd.Protocol;
using Appliance.Platform.Native;
using Appliance.Wire.Auth;

namespace Appliance.Bench.Cluster;

/// <summary>
/// Failover under load: a local cluster of ours (`appliance cluster up`, 3 OSDs, pool `data` size 3 min_size 2) with
/// a steady stream of 4 KiB writes (16 in flight, through the real cluster client, each timed), then one OSD killed
/// with SIGKILL, and in other rounds stopped with SIGSTOP. For each: seconds from the signal to the osdmap marking
/// the OSD down, and to the first write issued after the signal completing (every PG of a 3-OSD size-3 pool has
/// the OSD, so no write completes until it is marked down and the PGs peer without it). Medians over the rounds.
/// Between rounds the OSD is brought back (`cluster up` after a kill, SIGCONT after a stop) and every PG is
/// active+clean again.
///
/// Ceph beside it (../shared/reference/ceph/up.sh: 1 host, 3 BlueStore OSDs, pool rbd3 size 3 min_size 2, Ceph's
/// default failure settings) with the same load from `rados bench write -b 4096 -t 16`: it times no single write,
/// only prints each second's completed count, so "writes again" there is when the first second with completions
/// after a second without any was printed (1 s resolution; "under 1 s" when no second stalled); "marked down" polls
/// `ceph osd dump`. The killed ceph-osd is started again (`ceph-osd -i N`), the stopped one continued; the next round
/// waits for 3 OSDs up and every PG active (not clean: Ceph recovers at a few objects per second). One round of
/// SIGSTOP only, bounded at 60 s: on one host Ceph counts every reporter as the same host, so with its default
/// mon_osd_min_down_reporters 2 it never marks a stopped OSD down by reports (only after mon_osd_report_timeout,
/// 900 s).
/// </summary>
public sealed class ClusterFailoverBenchmark : IBenchmark
{
    public string Name => "cluster-failover";

    public string Description => "3-OSD local cluster under 4K writes QD16: SIGKILL / SIGSTOP one OSD, s to marked down and to writes completing again [--rounds 3] [--dir D] [--appliance PATH] [--no-ceph] [--ceph-dir D]";

    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(90);

    private sealed record Round(string Signal, int Osd, double MarkedDown, double WritesAgain);

    private static readonly TimeSpan CephBound = TimeSpan.FromSeconds(60);

    public async Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        var a = new BenchArgs(args);
        var rounds = Math.Max(1, a.Get("--rounds", 3));
        var baseDir = a.Get("--dir", "/var/tmp/appliance-bench");
        var root = ClusterObjectsBenchmark.RepoRoot();
        var appliance = a.Get("--appliance") ?? ClusterObjectsBenchmark.DefaultAppliance(root);
        if (!File.Exists(appliance))
        {
            Console.Error.WriteLine($"error: {appliance} does not exist; build it (dotnet build -c Release bench/Appliance.Bench builds node/Cli too) or give --appliance PATH");
            return 2;
        }
        Directory.CreateDirectory(baseDir);
        var dataDir = Path.Combine(baseDir, $"cluster-failover-{Environment.ProcessId}");
        var ours = new ClusterObjectsBenchmark.OurCluster(appliance, dataDir);
        var cephScripts = a.Get("--ceph-dir") ?? (root is null ? "/work/shared/reference/ceph" : Path.GetFullPath(Path.Combine(root, "..", "shared", "reference", "ceph")));
        var ceph = a.Has("--no-ceph") ? null : ClusterObjectsBenchmark.CephCluster.Find(cephScripts, Path.Combine(baseDir, $"ceph-failover-{Environment.ProcessId}"));
        var cephNote = ceph is null ? "ceph: skipped (--no-ceph)" : ceph.Missing;
        var cephResults = new List<Round>();
        Console.WriteLine($"cluster-failover: 3 OSDs, pool data size 3 min_size 2, 4 KiB writes with 16 in flight; {rounds} round(s) of SIGKILL and of SIGSTOP");
        Console.WriteLine($"ours: {appliance}; load before start: {File.ReadAllText("/proc/loadavg").Trim()}");
        var results = new List<Round>();
        try
        {
            await ours.UpAsync("2G", ct);
            var conf = ClusterConf.Load(ours.ConfDir);
            var key = Keyring.Load(Path.Combine(ours.ConfDir, ClusterConf.AdminKeyringName)).Find("client.admin")!.Key;
            var monitors = conf.Monitors.Select(m => IPEndPoint.Parse(m.Address)).ToList();
            await using var client = await ClusterClient.ConnectAsync(monitors, "client.admin", key,
                new ClusterClientOptions { ConnectTimeout = TimeSpan.FromSeconds(30), OpTimeout = TimeSpan.FromSeconds(120) }, ct);
            await using var mon = new MonClient(monitors, "client.admin", key) { Deadline = TimeSpan.FromSeconds(20) };
            await using var writes = new TimedWrites(client.OpenPool("data"), 16);

            foreach (var signal in new[] { "SIGKILL", "SIGSTOP" })
            {
                for (var r = 0; r < rounds; r++)
                {
                    ct.ThrowIfCancellationRequested();
                    var victim = r % 3;
                    await WaitHealthyAsync(client, mon, ct);
                    writes.Mark();
                    await UntilAsync(() => writes.CompletedSinceMark >= 50, "writes to flow", ct);
                    var (osd, pid) = ours.OsdPids().Single(p => p.Osd == $"osd.{victim}");
                    var upFrom = client.OsdMap!.FindOsd(victim)!.UpFrom;
                    var t0 = writes.Mark();
                    Posix.kill(pid, signal == "SIGKILL" ? Posix.SIGKILL : Posix.SIGSTOP);
                    double down = double.NaN, again = double.NaN;
                    try
                    {
                        // Both watched at once: the first write may complete before the map reaches this client.
                        var downTask = WhenAsync(() => client.OsdMap!.FindOsd(victim) is { Up: false }, ct);
                        var againTask = WhenAsync(() => writes.FirstEndSinceMark != 0, ct);
                        if (await downTask is { } d)
                        {
                            down = Stopwatch.GetElapsedTime(t0, d).TotalSeconds;
                        }
                        if (await againTask is not null)
                        {
                            again = Stopwatch.GetElapsedTime(t0, writes.FirstEndSinceMark).TotalSeconds;
                        }
                    }
                    finally
                    {
                        if (signal == "SIGSTOP")
                        {
                            Posix.kill(pid, Posix.SIGCONT);
                        }
                    }
                    results.Add(new Round(signal, victim, down, again));
                    Console.WriteLine($"  {signal} {osd}: marked down after {Fmt(down)}, writes completing again after {Fmt(again)}");
                    if (signal == "SIGKILL")
                    {
                        await ours.UpAsync("2G", ct); // starts what is not running
                    }
                    await UntilAsync(() => client.OsdMap!.FindOsd(victim) is { Up: true } o && o.UpFrom > upFrom, $"{osd} up again", ct);
                }
            }
            Console.WriteLine($"writes: {writes.Summary()}");
        }
        finally
        {
            await ours.DownAsync(purge: true);
        }
        if (ceph is not null && cephNote is null)
        {
            try
            {
                var up = await ceph.UpAsync(ct);
                Console.WriteLine($"ceph: up.sh {up:0.0} s, {ceph.Version()}");
                await CephRoundsAsync(ceph, rounds, cephResults, ct);
            }
            catch (Exception e) when (e is InvalidOperationException or TimeoutException or JsonException)
            {
                cephNote = $"ceph: failed, its figures are incomplete: {e.Message}";
            }
            finally
            {
                if (ceph.Started)
                {
                    await ceph.DownAsync();
                }
            }
        }
        if (cephNote is not null)
        {
            Console.WriteLine(cephNote);
        }

        Console.WriteLine();
        Console.WriteLine($"medians over {rounds} round(s), seconds from the signal (n/a: not within {Bound.TotalSeconds:0} s)");
        Console.WriteLine($"{"signal",-8} {"ours: down",11} {"writes again",13}   {"ceph: down",11} {"writes again",13}   aim (issue 18): down within 1 s of a kill, I/O again within 5 s of a hang");
        foreach (var signal in new[] { "SIGKILL", "SIGSTOP" })
        {
            var rs = results.Where(x => x.Signal == signal).ToList();
            var cs = cephResults.Where(x => x.Signal == signal).ToList();
            var cephDown = cs.Count == 0 ? "-" : Fmt(Median(cs.Select(x => x.MarkedDown)), CephBound);
            var cephAgain = cs.Count == 0 ? "-" : Fmt(Median(cs.Select(x => x.WritesAgain)), CephBound, resolution: true);
            Console.WriteLine($"{signal,-8} {Fmt(Median(rs.Select(x => x.MarkedDown))),11} {Fmt(Median(rs.Select(x => x.WritesAgain))),13}   {cephDown,11} {cephAgain,13}   ({rs.Count} of ours, {cs.Count} of ceph)");
        }
        var load = File.ReadAllText("/proc/loadavg").Trim();
        Console.WriteLine($"load after the runs: {load}");
        return 0;
    }

    private static double Median(IEnumerable<double> xs)
    {
        var list = xs.ToList();
        return list.Any(double.IsNaN) && list.Count(double.IsNaN) * 2 >= list.Count ? double.NaN : Stats.Median(list.Where(x => !double.IsNaN(x)));
    }

    private static string Fmt(double s) => double.IsNaN(s) ? "n/a" : s.ToString("0.00", CultureInfo.InvariantCulture) + " s";

    /// <summary>Ceph's figures: NaN past the bound, 0 for "no stalled second" (with 1 s resolution).</summary>
    private static string Fmt(double s, TimeSpan bound, bool resolution = false) =>
        double.IsNaN(s) ? $"> {bound.TotalSeconds:0} s" : resolution && s == 0 ? "< 1 s" : s.ToString(resolution ? "0" : "0.0", CultureInfo.InvariantCulture) + " s";

    private static async Task<string> CephAsync(ClusterObjectsBenchmark.CephCluster ceph, CancellationToken ct, params string[] args) =>
        (await ClusterObjectsBenchmark.Proc.RunAsync(("ceph", [.. args]), TimeSpan.FromSeconds(60), ct, env: ceph.Env)).Output;

    /// <summary>Up (true), down (false) of ceph osd.N in the newest osdmap.</summary>
    private static async Task<bool> CephOsdUpAsync(ClusterObjectsBenchmark.CephCluster ceph, int osd, CancellationToken ct)
    {
        using var dump = JsonDocument.Parse(await CephAsync(ceph, ct, "osd", "dump", "-f", "json"));
        return dump.RootElement.GetProperty("osds").EnumerateArray().Single(o => o.GetProperty("osd").GetInt32() == osd).GetProperty("up").GetInt32() == 1;
    }

    private static async Task CephWaitHealthyAsync(ClusterObjectsBenchmark.CephCluster ceph, CancellationToken ct)
    {
        var until = Stopwatch.GetTimestamp() + (long)(Bound.TotalSeconds * 2 * Stopwatch.Frequency);
        while (true)
        {
            // "65 pgs: 9 active+recovery_wait+degraded, 56 active+clean; ...": every PG active (serving writes). Not
            // clean: Ceph recovers a returning OSD at a few objects per second by default, minutes here.
            var stat = await CephAsync(ceph, ct, "pg", "stat");
            var m = Regex.Match(stat, @"^\d+ pgs: ([^;]*);");
            var up = await CephAsync(ceph, ct, "osd", "stat");
            if (m.Success && m.Groups[1].Value.Split(", ").All(x => x.Split(' ')[1].StartsWith("active", StringComparison.Ordinal))
                && Regex.IsMatch(up, @"3 osds: 3 up"))
            {
                return;
            }
            if (Stopwatch.GetTimestamp() >= until)
            {
                throw new TimeoutException($"ceph: waited {Bound.TotalSeconds * 2:0} s for 3 OSDs up and every PG active: {stat.Trim()} {up.Trim()}");
            }
            await Task.Delay(500, ct);
        }
    }

    /// <summary>The same experiment on Ceph (see the class summary).</summary>
    private static async Task CephRoundsAsync(ClusterObjectsBenchmark.CephCluster ceph, int rounds, List<Round> results, CancellationToken ct)
    {
        foreach (var signal in new[] { "SIGKILL", "SIGSTOP" })
        {
            for (var r = 0; r < (signal == "SIGSTOP" ? 1 : rounds); r++)
            {
                var victim = r % 3;
                await CephWaitHealthyAsync(ceph, ct);
                var (osd, pid) = ceph.OsdPids().Single(p => p.Osd == $"osd.{victim}");
                // rados bench prints a line per second: sec, in flight, started, finished, ...; line-buffered by stdbuf.
                var psi = new ProcessStartInfo("stdbuf") { RedirectStandardOutput = true, RedirectStandardError = true };
                foreach (var x in new[] { "-oL", "rados", "-p", "rbd3", "bench", "600", "write", "-b", "4096", "-t", "16", "--no-cleanup" })
                {
                    psi.ArgumentList.Add(x);
                }
                foreach (var (k, v) in ceph.Env)
                {
                    psi.Environment[k] = v;
                }
                using var bench = Process.Start(psi) ?? throw new InvalidOperationException("cannot start rados bench");
                var seconds = new List<(long At, long Finished)>();
                _ = bench.StandardError.ReadToEndAsync(CancellationToken.None);
                var reader = Task.Run(async () =>
                {
                    while (await bench.StandardOutput.ReadLineAsync(CancellationToken.None) is { } line)
                    {
                        var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                        if (f.Length >= 4 && long.TryParse(f[0], CultureInfo.InvariantCulture, out _) && long.TryParse(f[3], CultureInfo.InvariantCulture, out var finished))
                        {
                            lock (seconds)
                            {
                                seconds.Add((Stopwatch.GetTimestamp(), finished));
                            }
                        }
                    }
                }, CancellationToken.None);
                double down = double.NaN, again = double.NaN;
                try
                {
                    await UntilAsync(() => { lock (seconds) { return seconds.Count >= 3 && seconds[^1].Finished > 50; } }, "rados bench to write", ct);
                    var t0 = Stopwatch.GetTimestamp();
                    Posix.kill(pid, signal == "SIGKILL" ? Posix.SIGKILL : Posix.SIGSTOP);
                    try
                    {
                        var until = t0 + (long)(CephBound.TotalSeconds * Stopwatch.Frequency);
                        while (Stopwatch.GetTimestamp() < until && (double.IsNaN(down) || double.IsNaN(again)))
                        {
                            if (double.IsNaN(down) && !await CephOsdUpAsync(ceph, victim, ct))
                            {
                                down = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                            }
                            // Writes again: the first second with completions after a second without any (0: none stalled).
                            lock (seconds)
                            {
                                var after = seconds.Where(x => x.At > t0).ToList();
                                var before = seconds.LastOrDefault(x => x.At <= t0).Finished;
                                var stalled = -1;
                                for (var i = 0; i < after.Count && double.IsNaN(again); i++)
                                {
                                    var prev = i == 0 ? before : after[i - 1].Finished;
                                    if (after[i].Finished == prev && stalled < 0)
                                    {
                                        stalled = i;
                                    }
                                    else if (stalled >= 0 && after[i].Finished > prev)
                                    {
                                        again = Stopwatch.GetElapsedTime(t0, after[i].At).TotalSeconds;
                                    }
                                }
                                if (stalled < 0 && after.Count >= 3)
                                {
                                    again = 0;
                                }
                            }
                            await Task.Delay(50, ct);
                        }
                    }
                    finally
                    {
                        if (signal == "SIGSTOP")
                        {
                            Posix.kill(pid, Posix.SIGCONT);
                        }
                    }
                }
                finally
                {
                    bench.Kill(entireProcessTree: true);
                    await bench.WaitForExitAsync(CancellationToken.None);
                    await reader;
                }
                results.Add(new Round(signal, victim, down, again));
                Console.WriteLine($"  ceph {signal} {osd}: marked down after {Fmt(down, CephBound)}, writes completing again after {Fmt(again, CephBound, resolution: true)}");
                if (signal == "SIGKILL")
                {
                    await ClusterObjectsBenchmark.Proc.RunAsync(("ceph-osd", ["-i", victim.ToString(CultureInfo.InvariantCulture)]), TimeSpan.FromSeconds(60), ct, env: ceph.Env);
                }
                var back = Stopwatch.GetTimestamp() + (long)(Bound.TotalSeconds * Stopwatch.Frequency);
                while (!await CephOsdUpAsync(ceph, victim, ct))
                {
                    if (Stopwatch.GetTimestamp() >= back)
                    {
                        throw new TimeoutException($"ceph: osd.{victim} not up again within {Bound.TotalSeconds:0} s");
                    }
                    await Task.Delay(500, ct);
                }
            }
        }
    }

    /// <summary>Polls every 5 ms until the condition holds; throws past the bound.</summary>
    private static async Task UntilAsync(Func<bool> condition, string what, CancellationToken ct)
    {
        if (await WhenAsync(condition, ct) is null)
        {
            throw new TimeoutException($"waited {Bound.TotalSeconds:0} s for {what}");
        }
    }

    /// <summary>Polls every 5 ms: when (Stopwatch ticks) the condition was first seen to hold, or null past the bound.</summary>
    private static async Task<long?> WhenAsync(Func<bool> condition, CancellationToken ct)
    {
        var until = Stopwatch.GetTimestamp() + (long)(Bound.TotalSeconds * Stopwatch.Frequency);
        while (!condition())
        {
            if (Stopwatch.GetTimestamp() >= until)
            {
                return null;
            }
            await Task.Delay(5, ct);
        }
        return Stopwatch.GetTimestamp();
    }

    /// <summary>Until 3 OSDs are up and every PG of pool data is reported active+clean at the newest map.</summary>
    private static async Task WaitHealthyAsync(ClusterClient client, MonClient mon, CancellationToken ct)
    {
        var until = Stopwatch.GetTimestamp() + (long)(Bound.TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            var map = client.OsdMap!;
            var stats = await mon.GetPgStatsAsync("data", ct);
            if (map.UpCount == 3 && stats.Count == map.FindPool("data")!.PgNum
                && stats.All(s => s.State == "active+clean" && s.ReportedEpoch >= map.Epoch))
            {
                return;
            }
            if (Stopwatch.GetTimestamp() >= until)
            {
                throw new TimeoutException($"waited {Bound.TotalSeconds:0} s for every PG active+clean");
            }
            await Task.Delay(100, ct);
        }
    }

    /// <summary>Writers of 4 KiB objects (each over its own 64 names, so the disks never fill), each write timed
    /// against a mark (<see cref="Mark"/>): how many issued after it completed, and when the first of them did.</summary>
    private sealed class TimedWrites : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly Lock _lock = new();
        private readonly Task[] _writers;
        private long _mark = long.MaxValue;
        private long _firstEnd;
        private long _sinceMark;
        private long _ok;
        private long _failed;

        public TimedWrites(IoContext io, int writers)
        {
            _writers = [.. Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
            {
                var data = new byte[4096];
                Random.Shared.NextBytes(data);
                for (var n = 0; !_stop.IsCancellationRequested; n++)
                {
                    var start = Stopwatch.GetTimestamp();
                    try
                    {
                        await io.ExecuteAsync($"failover-{w}-{n % 64}", [OsdOp.WriteFull(data)], TimeSpan.FromSeconds(120));
                    }
                    catch (ClusterClientException)
                    {
                        Interlocked.Increment(ref _failed);
                        continue;
                    }
                    var end = Stopwatch.GetTimestamp();
                    Interlocked.Increment(ref _ok);
                    // Under the lock: a write issued before a new mark never counts after it.
                    lock (_lock)
                    {
                        if (start >= _mark)
                        {
                            _sinceMark++;
                            _firstEnd = _firstEnd == 0 ? end : _firstEnd;
                        }
                    }
                }
            }))];
        }

        /// <summary>Counts from now on (a write issued before the mark never counts).</summary>
        public long Mark()
        {
            lock (_lock)
            {
                _mark = Stopwatch.GetTimestamp();
                _firstEnd = 0;
                _sinceMark = 0;
                return _mark;
            }
        }

        public long CompletedSinceMark
        {
            get
            {
                lock (_lock)
                {
                    return _sinceMark;
                }
            }
        }

        /// <summary>When the first write issued after the mark completed (Stopwatch ticks), or 0.</summary>
        public long FirstEndSinceMark
        {
            get
            {
                lock (_lock)
                {
                    return _firstEnd;
                }
            }
        }

        public string Summary() => $"{Interlocked.Read(ref _ok)} acknowledged, {Interlocked.Read(ref _failed)} failed";

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            await Task.WhenAll(_writers);
            _stop.Dispose();
        }
    }
}
