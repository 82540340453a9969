using System.Globalization;
using System.Text.Json;
using Appliance.Bench.Common;
using static Appliance.Bench.Cluster.ClusterObjectsBenchmark;

namespace Appliance.Bench.Cluster;

/// <summary>
/// The cluster filesystem on a local cluster of ours (`appliance cluster up`: 3 OSDs, size-3 pools, filesystem fs0
/// mounted at DIR/mnt/fs0) beside CephFS through ceph-fuse on ../shared/reference/ceph (up.sh with WITH_MDS=1) in the
/// same run, the same programs on both mounts: create, stat and unlink of N files in one directory (this program as
/// `fs-meta-loop`, a child process per phase), 4 KiB buffered writes each followed by fsync at QD1, 1 MiB sequential
/// O_DIRECT write then read of one large file (fio, psync), and an untar of this repository's source tree
/// (`git archive`). Who goes first alternates from job to job and round to round; every timed command holds
/// `flock -o /tmp/bench.lock`. Prints ops/s or MB/s, p50/p99, the CPU per op of the mount process and of the servers
/// (our OSDs; Ceph's OSDs and MDS), and the mounts' RSS. Ceph is optional: without it ours is printed alone.
/// </summary>
public sealed class FsClusterBenchmark : IBenchmark
{
    public string Name => "fs-cluster";

    public string Description => "cluster filesystem vs ceph-fuse: create/stat/unlink xN, 4K write+fsync QD1, 1M seq write/read, untar; p50/p99, CPU/op, mount RSS [--files 10000] [--size 2G] [--seconds 20] [--rounds 1] [--dir D] [--disk-size 8G] [--appliance PATH] [--no-ceph] [--ceph-dir D] [--only create,stat,unlink,fsync4k,write1m,read1m,untar]";

    /// <summary>One measurement: the figure (ops/s or MB/s), latency in ms, ops done, CPU seconds of the mount process
    /// and of the servers over the job.</summary>
    private sealed record Figure(double Value, double P50, double P99, long Ops, double MountCpu, double ServerCpu);

    private sealed record Job(string Key, string Label, string Unit, string Aim, double AimRatio);

    private static readonly Job[] Jobs =
    [
        new("create", "create", "ops/s", ">= 4x", 4),
        new("stat", "stat", "ops/s", "", 0),
        new("unlink", "unlink", "ops/s", "", 0),
        new("fsync4k", "4K write+fsync QD1", "IOPS", ">= 4x", 4),
        new("write1m", "1M seq write", "MB/s", ">= 2x", 2),
        new("read1m", "1M seq read", "MB/s", ">= 2x", 2),
        new("untar", "untar", "files/s", "", 0),
    ];

    /// <summary>A mounted filesystem and how to read its processes' CPU.</summary>
    private sealed class Side(string name, string mount, Func<int> mountPid, Func<IEnumerable<int>> serverPids)
    {
        public string Name => name;
        public string Mount => mount;
        public int MountPid => mountPid();
        public (double Mount, double Servers) Cpu() => (Proc.CpuSeconds(mountPid()), serverPids().Sum(Proc.CpuSeconds));
    }

    public async Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        var a = new BenchArgs(args);
        var files = a.Get("--files", 10_000);
        var size = a.Get("--size", "2G");
        var seconds = a.Get("--seconds", 20);
        var rounds = Math.Max(1, a.Get("--rounds", 1));
        var diskSize = a.Get("--disk-size", "8G");
        var baseDir = a.Get("--dir", "/var/tmp/appliance-bench");
        var only = a.Get("--only")?.Split(',').ToHashSet(StringComparer.Ordinal);
        var root = RepoRoot();
        var appliance = a.Get("--appliance") ?? DefaultAppliance(root);
        if (!File.Exists(appliance) || root is null)
        {
            Console.Error.WriteLine($"error: {appliance} does not exist (or this program is not inside a checkout); build it (dotnet build -c Release bench/Appliance.Bench builds node/Cli too) or give --appliance PATH");
            return 2;
        }
        Fio.EnsureCommand("fio", "fio");
        var jobs = Jobs.Where(j => only is null || only.Contains(j.Key)).ToArray();
        var cephScripts = a.Get("--ceph-dir") ?? Path.GetFullPath(Path.Combine(root, "..", "shared", "reference", "ceph"));
        Directory.CreateDirectory(baseDir);
        var dataDir = Path.Combine(baseDir, $"fs-cluster-{Environment.ProcessId}");
        var ours = new OurCluster(appliance, dataDir);
        var ceph = a.Has("--no-ceph") ? null : CephCluster.Find(cephScripts, Path.Combine(baseDir, $"ceph-{Environment.ProcessId}"));
        var cephNote = ceph is null ? "ceph: skipped (--no-ceph)" : ceph.Missing is { } m ? m : Fio.Which("ceph-fuse") is null || Fio.Which("ceph-mds") is null
            ? "ceph: ceph-fuse or ceph-mds missing, `sudo apt-get install -y ceph-fuse ceph-mds` per ../shared/reference/ceph/README.md"
            : null;
        var tarball = Path.Combine(baseDir, $"fs-cluster-{Environment.ProcessId}.tar");
        Console.WriteLine($"fs-cluster: 3 OSDs, size 3, sparse {diskSize} disk files on {baseDir}; {files} files per metadata phase, {seconds} s for the 4K job, a {size} file for the 1M jobs, {rounds} round(s); each timed command under flock -o {BenchLock}");
        Console.WriteLine($"ours: {appliance}; load before start: {File.ReadAllText("/proc/loadavg").Trim()}");
        var results = jobs.ToDictionary(j => j.Key, _ => (Ours: new List<Figure>(), Ceph: new List<Figure>()));
        (long Rss, long Hwm) ourMem = default, cephMem = default;
        Side? cephSide = null;
        try
        {
            await Proc.RunAsync(("git", ["-C", root, "archive", "--format=tar", "-o", tarball, "HEAD"]), TimeSpan.FromMinutes(2), ct);
            var tarFiles = (await Proc.RunAsync(("tar", ["-tf", tarball]), TimeSpan.FromMinutes(1), ct)).Output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length;
            Console.WriteLine($"untar: this checkout's HEAD as a tar ({tarFiles} entries, {new FileInfo(tarball).Length >> 20} MiB)");

            var up = await ours.UpAsync(diskSize, ct);
            var ourMount = Path.Combine(dataDir, "mnt", "fs0");
            if (!File.ReadAllText("/proc/self/mountinfo").Contains(" " + ourMount + " ", StringComparison.Ordinal))
            {
                Console.Error.WriteLine($"error: cluster up did not mount fs0 at {ourMount} (see {dataDir}/log)");
                return 1;
            }
            Console.WriteLine($"ours: cluster up {up:0.0} s, fs0 mounted at {ourMount}");
            var ourSide = new Side("ours", ourMount, () => ours.DaemonPids("fs.").Select(p => p.Pid).FirstOrDefault(), () => ours.OsdPids().Select(p => p.Pid));
            if (ceph is not null && cephNote is null)
            {
                try
                {
                    ceph.Env["WITH_MDS"] = "1";
                    var cephUp = await ceph.UpAsync(ct);
                    var cephMount = Path.Combine(ceph.Work, "mnt");
                    var pidFile = Path.Combine(ceph.Work, "run", "ceph-fuse.pid");
                    await Proc.RunAsync(("ceph-fuse", ["--pid-file", pidFile, cephMount]), TimeSpan.FromMinutes(1), ct, env: ceph.Env);
                    cephSide = new Side("ceph", cephMount, () => CephPids(ceph.Work, "ceph-fuse").FirstOrDefault(),
                        () => CephPids(ceph.Work, "ceph-osd").Concat(CephPids(ceph.Work, "ceph-mds")));
                    Console.WriteLine($"ceph: up.sh (WITH_MDS=1) {cephUp:0.0} s, {ceph.Version()}, ceph-fuse at {cephMount}");
                }
                catch (InvalidOperationException e)
                {
                    cephNote = $"ceph: setting up CephFS failed, comparing nothing: {e.Message}";
                }
            }
            if (cephNote is not null)
            {
                Console.WriteLine(cephNote);
            }

            // Warm-up, not timed: freshly started daemons run their first ops at tier 0 of the JIT.
            foreach (var side in new[] { ourSide, cephSide }.OfType<Side>())
            {
                foreach (var phase in new[] { "create", "stat", "unlink" })
                {
                    await RunJobAsync(Jobs.First(j => j.Key == phase), side, Math.Min(files, 300), size, seconds, tarball, 0, ct);
                }
            }

            for (var r = 1; r <= rounds; r++)
            {
                for (var i = 0; i < jobs.Length; i++)
                {
                    ct.ThrowIfCancellationRequested();
                    var job = jobs[i];
                    var sides = (r + i) % 2 == 1 || cephSide is null ? new[] { ourSide, cephSide } : [cephSide, ourSide];
                    foreach (var side in sides.OfType<Side>())
                    {
                        var f = await RunJobAsync(job, side, files, size, seconds, tarball, r, ct);
                        (side == ourSide ? results[job.Key].Ours : results[job.Key].Ceph).Add(f);
                        Console.WriteLine($"  round {r} {job.Label,-19} {side.Name,-4} {f.Value,10:0.0} {job.Unit,-7} p50/p99 {f.P50,7:0.000}/{f.P99,7:0.000} ms   CPU us/op mount {f.MountCpu * 1e6 / f.Ops,6:0} servers {f.ServerCpu * 1e6 / f.Ops,6:0}");
                    }
                }
            }
            ourMem = (Proc.Status(ourSide.MountPid, "VmRSS"), Proc.Status(ourSide.MountPid, "VmHWM"));
            if (cephSide is not null)
            {
                cephMem = (Proc.Status(cephSide.MountPid, "VmRSS"), Proc.Status(cephSide.MountPid, "VmHWM"));
            }
            Print(jobs, results, rounds, cephSide is not null, ourMem, cephMem);
        }
        finally
        {
            await ours.DownAsync(purge: true);
            if (ceph is not null && ceph.Started)
            {
                await ceph.DownAsync(); // unmounts ceph-fuse first
            }
            File.Delete(tarball);
        }
        return 0;
    }

    private static async Task<Figure> RunJobAsync(Job job, Side side, int files, string size, int seconds, string tarball, int round, CancellationToken ct)
    {
        var work = Path.Combine(side.Mount, "bench");
        Directory.CreateDirectory(work);
        var (mount0, servers0) = side.Cpu();
        Figure f;
        switch (job.Key)
        {
            case "create" or "stat" or "unlink":
            {
                var self = Environment.ProcessPath!;
                var dll = Path.Combine(AppContext.BaseDirectory, "Appliance.Bench.dll");
                (string, List<string>) command = Path.GetFileNameWithoutExtension(self) == "dotnet"
                    ? (self, [dll, "fs-meta-loop", job.Key, Path.Combine(work, "meta"), files.ToString(CultureInfo.InvariantCulture)])
                    : (self, ["fs-meta-loop", job.Key, Path.Combine(work, "meta"), files.ToString(CultureInfo.InvariantCulture)]);
                var (output, _) = await Proc.RunAsync(command, TimeSpan.FromHours(2), ct, locked: true);
                var v = output.Trim().Split(' ').Select(x => double.Parse(x, CultureInfo.InvariantCulture)).ToArray();
                f = new Figure(v[0], v[1], v[2], files, 0, 0);
                if (job.Key == "unlink")
                {
                    Directory.Delete(Path.Combine(work, "meta"));
                }
                break;
            }
            case "fsync4k":
            {
                var (iops, _, p50, p99, ops) = await FioAsync(work, "fsync4k.dat", "write", ct,
                    "--rw=randwrite", "--bs=4k", "--size=64M", "--fsync=1", "--time_based=1", $"--runtime={seconds}");
                File.Delete(Path.Combine(work, "fsync4k.dat"));
                f = new Figure(iops, p50, p99, ops, 0, 0);
                break;
            }
            case "write1m" or "read1m":
            {
                var write = job.Key == "write1m";
                var (_, bw, p50, p99, ops) = await FioAsync(work, "seq1m.dat", write ? "write" : "read", ct,
                    $"--rw={(write ? "write" : "read")}", "--bs=1M", $"--size={size}", "--direct=1", write ? "--end_fsync=1" : "--invalidate=1");
                if (!write)
                {
                    File.Delete(Path.Combine(work, "seq1m.dat"));
                }
                f = new Figure(bw / 1e6, p50, p99, ops, 0, 0);
                break;
            }
            default:
            {
                var target = Path.Combine(work, $"untar-{round}");
                Directory.CreateDirectory(target);
                var (listing, _) = await Proc.RunAsync(("tar", ["-tf", tarball]), TimeSpan.FromMinutes(1), ct);
                var entries = listing.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length;
                var (_, secs) = await Proc.RunAsync(("tar", ["-xf", tarball, "-C", target]), TimeSpan.FromHours(1), ct, locked: true);
                f = new Figure(entries / secs, double.NaN, double.NaN, entries, 0, 0);
                await Proc.RunAsync(("rm", ["-rf", target]), TimeSpan.FromHours(1), ct);
                break;
            }
        }
        var (mount1, servers1) = side.Cpu();
        return f with { MountCpu = mount1 - mount0, ServerCpu = servers1 - servers0 };
    }

    /// <summary>fio psync QD1 on one file of the mount; returns IOPS, bytes/s, completion p50/p99 (ms; for a job with
    /// fsync, of the write and its fsync together: the sum of the two percentiles, an upper bound) and ops.</summary>
    private static async Task<(double Iops, double Bw, double P50, double P99, long Ops)> FioAsync(string dir, string file, string direction, CancellationToken ct, params string[] job)
    {
        var (output, _) = await Proc.RunAsync(("fio", [
            "--name=fs", $"--filename={Path.Combine(dir, file)}", "--ioengine=psync", "--iodepth=1", "--randrepeat=0",
            "--output-format=json", .. job]), TimeSpan.FromHours(2), ct, locked: true);
        using var doc = JsonDocument.Parse(output[output.IndexOf('{', StringComparison.Ordinal)..]);
        var j = doc.RootElement.GetProperty("jobs")[0];
        var d = j.GetProperty(direction);
        static double Pct(JsonElement lat, string key) =>
            lat.TryGetProperty("percentile", out var p) && p.TryGetProperty(key, out var v) ? v.GetDouble() / 1e6 : 0;
        var clat = d.GetProperty("clat_ns");
        double p50 = Pct(clat, "50.000000"), p99 = Pct(clat, "99.000000");
        if (j.TryGetProperty("sync", out var sync) && sync.TryGetProperty("lat_ns", out var slat) && slat.TryGetProperty("percentile", out _))
        {
            p50 += Pct(slat, "50.000000");
            p99 += Pct(slat, "99.000000");
        }
        return (d.GetProperty("iops").GetDouble(), d.GetProperty("bw_bytes").GetDouble(), p50, p99, d.GetProperty("total_ios").GetInt64());
    }

    /// <summary>Pids in CEPH_WORK/run/*.pid whose command line runs <paramref name="program"/>.</summary>
    private static IEnumerable<int> CephPids(string work, string program) =>
        Directory.Exists(Path.Combine(work, "run"))
            ? Directory.EnumerateFiles(Path.Combine(work, "run"), "*.pid")
                .Select(f => int.TryParse(File.ReadAllText(f).Trim(), CultureInfo.InvariantCulture, out var p) ? p : 0)
                .Where(p => p > 0 && Proc.CmdlineContains(p, program))
                .ToList()
            : [];

    private static void Print(Job[] jobs, Dictionary<string, (List<Figure> Ours, List<Figure> Ceph)> results, int rounds, bool withCeph,
        (long Rss, long Hwm) ourMem, (long Rss, long Hwm) cephMem)
    {
        Console.WriteLine();
        Console.WriteLine($"medians over {rounds} round(s); MB/s = 10^6 bytes/s; ratio = ours / ceph (median of the rounds' ratios); p50/p99 in ms");
        Console.WriteLine("(4K write+fsync: the write's and the fsync's percentiles added); CPU = user+system microseconds per op from /proc/PID/stat:");
        Console.WriteLine("mount = our fs mount process / ceph-fuse, servers = our 3 OSDs / Ceph's 3 OSDs and its MDS (monitors left out on both sides)");
        Console.WriteLine($"{"job",-19} {"ours",16} {"ceph",16} {"ratio",6} {"aim",6}  {"ours p50/p99",15} {"ceph p50/p99",15}  {"ours CPU mnt/srv",17} {"ceph CPU mnt/srv",17}");
        foreach (var job in jobs)
        {
            var (o, c) = results[job.Key];
            var ceph = withCeph && c.Count > 0;
            string Fig(List<Figure> fs) => $"{Stats.Median(fs.Select(f => f.Value)):0.0} {job.Unit}";
            string Lat(List<Figure> fs) => $"{Stats.Median(fs.Select(f => f.P50)):0.00}/{Stats.Median(fs.Select(f => f.P99)):0.00}";
            string Cpu(List<Figure> fs) => $"{Stats.Median(fs.Select(f => f.MountCpu * 1e6 / f.Ops)):0}/{Stats.Median(fs.Select(f => f.ServerCpu * 1e6 / f.Ops)):0}";
            var ratio = ceph ? Stats.Median(o.Zip(c, (x, y) => x.Value / y.Value)).ToString("0.00", CultureInfo.InvariantCulture) : "-";
            Console.WriteLine($"{job.Label,-19} {Fig(o),16} {(ceph ? Fig(c) : "-"),16} {ratio,6} {job.Aim,6}  {Lat(o),15} {(ceph ? Lat(c) : "-"),15}  {Cpu(o),17} {(ceph ? Cpu(c) : "-"),17}");
        }
        Console.WriteLine();
        Console.WriteLine($"mount RSS after the runs, MiB (VmRSS / VmHWM): ours {ourMem.Rss >> 20} / {ourMem.Hwm >> 20}   ceph-fuse {(withCeph ? $"{cephMem.Rss >> 20} / {cephMem.Hwm >> 20}" : "-")}");
        var load = File.ReadAllText("/proc/loadavg").Trim();
        Console.WriteLine($"load after the runs: {load}");
        if (double.Parse(load.Split(' ')[0], CultureInfo.InvariantCulture) > Environment.ProcessorCount)
        {
            Console.WriteLine($"note: taken under load (1-minute load above {Environment.ProcessorCount} cores): compare the CPU per op rather than the rates");
        }
    }
}
