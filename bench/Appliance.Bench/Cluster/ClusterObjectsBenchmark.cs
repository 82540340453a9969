using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Appliance.Bench.Common;

namespace Appliance.Bench.Cluster;

/// <summary>
/// A local cluster of ours (`appliance cluster up`, 3 OSDs on sparse files, pool `data` of size 3) beside a real Ceph
/// (../shared/reference/ceph/up.sh, pool rbd3 of size 3) in the same run: `appliance object bench` and `rados bench`
/// with the same jobs (4 KiB writes and random reads, 4 MiB writes and sequential reads, 16 in flight), then the RSS
/// of every OSD, the write amplification of the write jobs, and how long `cluster up` takes on an existing data dir.
/// Ours runs the `appliance` program the bench project builds (node/Cli, a build-only project reference) or
/// `--appliance PATH`; Ceph is optional and never installed here.
/// </summary>
public sealed class ClusterObjectsBenchmark : IBenchmark
{
    public string Name => "cluster-objects";

    public string Description => "3-OSD local cluster: appliance object bench vs rados bench, 4K write/randread, 4M write/read QD16, OSD RSS, write amp, cluster up s [--seconds 20] [--rounds 1] [--dir D] [--disk-size 8G] [--appliance PATH] [--no-ceph] [--ceph-dir D]";

    internal const string BenchLock = "/tmp/bench.lock";

    /// <summary>One job on both sides. A read job reads what the write job before it left.</summary>
    internal sealed record Job(string Label, long Size, bool Write, bool Bandwidth, string[] Ours, string[] Rados, string Aim, double AimRatio);

    private static readonly Job[] Jobs =
    [
        new("4K write QD16", 4096, true, false, ["--op", "write", "--size", "4K"], ["write", "-b", "4096", "-t", "16", "--no-cleanup"], ">= 5x", 5),
        new("4K randread QD16", 4096, false, false, ["--op", "randread"], ["rand", "-t", "16"], ">= 2x", 2),
        new("4M write QD16", 4 << 20, true, true, ["--op", "write", "--size", "4M"], ["write", "-b", "4194304", "-t", "16", "--no-cleanup"], ">= 2x", 2),
        new("4M read QD16", 4 << 20, false, true, ["--op", "read"], ["seq", "-t", "16"], "", 0),
    ];

    /// <summary>One run of one job. Latencies in ms: ours gives p50/p99; rados bench gives average, min and max.</summary>
    internal sealed record Result(long Ops, long Errors, double Seconds, double P50, double P99, double Avg, double Min, double Max, long DiskWriteBytes)
    {
        /// <summary>CPU seconds (user + system) over the job: every OSD, every monitor, the bench client.</summary>
        public Cpu Cpu { get; init; } = Cpu.None;

        public double Iops => Ops / Seconds;

        /// <summary>10^6 bytes per second on both sides (rados prints MiB/s as "MB/sec"; we count from ops).</summary>
        public double MBps(long size) => Ops * (double)size / Seconds / 1e6;
    }

    public async Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        var a = new BenchArgs(args);
        var seconds = a.Get("--seconds", 20);
        var rounds = Math.Max(1, a.Get("--rounds", 1));
        var diskSize = a.Get("--disk-size", "8G");
        var baseDir = a.Get("--dir", "/var/tmp/appliance-bench");
        var root = RepoRoot();
        var appliance = a.Get("--appliance") ?? DefaultAppliance(root);
        if (!File.Exists(appliance))
        {
            Console.Error.WriteLine($"error: {appliance} does not exist; build it (dotnet build -c Release bench/Appliance.Bench builds node/Cli too) or give --appliance PATH");
            return 2;
        }
        var cephScripts = a.Get("--ceph-dir") ?? (root is null ? "/work/shared/reference/ceph" : Path.GetFullPath(Path.Combine(root, "..", "shared", "reference", "ceph")));
        Directory.CreateDirectory(baseDir);
        // A directory of this run's own, so nothing here can be a cluster (or a daemon) another run started.
        var ours = new OurCluster(appliance, Path.Combine(baseDir, $"cluster-objects-{Environment.ProcessId}"));
        var ceph = a.Has("--no-ceph") ? null : CephCluster.Find(cephScripts, Path.Combine(baseDir, $"ceph-{Environment.ProcessId}"));
        Console.WriteLine($"cluster-objects: 3 OSDs, size 3, sparse {diskSize} disk files on {baseDir}; {seconds} s per job, 16 in flight, {rounds} round(s), each timed command under flock -o {BenchLock}");
        Console.WriteLine($"ours: {appliance}; load before start: {File.ReadAllText("/proc/loadavg").Trim()}");

        var results = Jobs.ToDictionary(j => j.Label, _ => (Ours: new List<Result>(), Ceph: new List<Result>()));
        double firstUp = double.NaN, restartUp = double.NaN, cephUp = double.NaN;
        var ourMem = new List<(string Osd, long Rss, long Hwm)>();
        var cephMem = new List<(string Osd, long Rss, long Hwm)>();
        var cephNote = ceph is null ? "ceph: skipped (--no-ceph)" : ceph.Missing;
        try
        {
            firstUp = await ours.UpAsync(diskSize, ct);
            await ours.DownAsync(purge: false);
            restartUp = await ours.UpAsync(diskSize, ct);
            Console.WriteLine($"ours: cluster up {firstUp:0.0} s from nothing, {restartUp:0.0} s on the existing data dir");
            if (ceph is not null && cephNote is null)
            {
                try
                {
                    cephUp = await ceph.UpAsync(ct);
                    Console.WriteLine($"ceph: up.sh {cephUp:0.0} s from nothing (mkfs, pools, every PG active+clean), {ceph.Version()}");
                }
                catch (InvalidOperationException e)
                {
                    cephNote = $"ceph: up.sh failed, comparing nothing: {e.Message}";
                }
            }
            if (cephNote is not null)
            {
                Console.WriteLine(cephNote);
            }
            var withCeph = cephNote is null;

            for (var r = 1; r <= rounds; r++)
            {
                for (var i = 0; i < Jobs.Length; i++)
                {
                    ct.ThrowIfCancellationRequested();
                    var job = Jobs[i];
                    // Alternate who goes first from job to job and, for each job, from round to round, so drift in the
                    // machine's load does not always favour one side.
                    var oursFirst = (r + i) % 2 == 1;
                    if (oursFirst || !withCeph)
                    {
                        results[job.Label].Ours.Add(await ours.BenchAsync(job, seconds, ct));
                    }
                    if (withCeph)
                    {
                        results[job.Label].Ceph.Add(await ceph!.BenchAsync(job, seconds, ct));
                    }
                    if (!oursFirst && withCeph)
                    {
                        results[job.Label].Ours.Add(await ours.BenchAsync(job, seconds, ct));
                    }
                    var o = results[job.Label].Ours[^1];
                    var c = withCeph ? results[job.Label].Ceph[^1] : null;
                    Console.WriteLine($"  round {r} {job.Label,-17} ours {Figure(job, o)}{(c is null ? "" : $"  ceph {Figure(job, c)}")}   ours CPU us/op osd/mon/client/all {o.Cpu.PerOp(o.Ops)}   p50/p99 {o.P50:0.00}/{o.P99:0.00} ms");
                }
            }
            ourMem = ours.Memory();
            if (withCeph)
            {
                cephMem = ceph!.Memory();
            }
            Print(results, rounds, withCeph, ourMem, cephMem, firstUp, restartUp, cephUp);
        }
        finally
        {
            await ours.DownAsync(purge: true);
            if (ceph is not null && ceph.Started)
            {
                await ceph.DownAsync();
            }
        }
        return 0;
    }

    /// <summary>CPU seconds a job cost each side: on a shared machine this is the steadier figure (throughput moves
    /// with the other load; the CPU an op takes much less).</summary>
    internal sealed record Cpu(double Osd, double Mon, double Client)
    {
        public static readonly Cpu None = new(double.NaN, double.NaN, double.NaN);

        public string PerOp(long ops) =>
            $"{Osd * 1e6 / ops,7:0} {Mon * 1e6 / ops,6:0} {Client * 1e6 / ops,7:0} {(Osd + Mon + Client) * 1e6 / ops,7:0}";
    }

    private static string Figure(Job job, Result r) =>
        job.Bandwidth ? $"{r.MBps(job.Size),8:0.0} MB/s" : $"{r.Iops,8:0} IOPS";

    private static void Print(
        Dictionary<string, (List<Result> Ours, List<Result> Ceph)> results, int rounds, bool withCeph,
        List<(string Osd, long Rss, long Hwm)> ourMem, List<(string Osd, long Rss, long Hwm)> cephMem,
        double firstUp, double restartUp, double cephUp)
    {
        Console.WriteLine();
        Console.WriteLine($"medians over {rounds} round(s); MB/s = 10^6 bytes/s on both sides; ratio = ours / ceph (median of the rounds' ratios)");
        Console.WriteLine($"{"job",-17} {"ours",14} {"ceph",14} {"ratio",6} {"aim",6}   {"ours p50/p99 ms",16}   {"ceph avg (min-max) ms",22}");
        foreach (var job in Jobs)
        {
            var (o, c) = results[job.Label];
            double Fig(List<Result> rs) => Stats.Median(rs.Select(r => job.Bandwidth ? r.MBps(job.Size) : r.Iops));
            var unit = job.Bandwidth ? " MB/s" : " IOPS";
            var of = Fig(o);
            var cf = withCeph ? Fig(c) : double.NaN;
            var ceph = withCeph ? (cf.ToString("0", CultureInfo.InvariantCulture) + unit) : "-";
            // The median of each round's ratio: only figures from the same round compare (the load drifts).
            var ratio = withCeph ? Stats.Median(o.Zip(c, (x, y) => job.Bandwidth ? x.MBps(job.Size) / y.MBps(job.Size) : x.Iops / y.Iops)).ToString("0.00", CultureInfo.InvariantCulture) : "-";
            var lat = $"{Stats.Median(o.Select(r => r.P50)):0.00}/{Stats.Median(o.Select(r => r.P99)):0.00}";
            var cephLat = withCeph ? $"{Stats.Median(c.Select(r => r.Avg)):0.00} ({Stats.Median(c.Select(r => r.Min)):0.00}-{Stats.Median(c.Select(r => r.Max)):0.00})" : "-";
            var errors = o.Sum(r => r.Errors);
            Console.WriteLine($"{job.Label,-17} {of.ToString("0", CultureInfo.InvariantCulture) + unit,14} {ceph,14} {ratio,6} {job.Aim,6}   {lat,16}   {cephLat,22}{(errors > 0 ? $"   ours: {errors} failed requests" : "")}");
        }
        Console.WriteLine();
        Console.WriteLine("ours, CPU microseconds per op (user + system from /proc/PID/stat over the job; osd = the 3 OSDs together, mon = the 3");
        Console.WriteLine("monitors, client = the bench process), median of the rounds");
        Console.WriteLine($"{"job",-17} {"osd",7} {"mon",6} {"client",7} {"all",7}");
        foreach (var job in Jobs)
        {
            var o = results[job.Label].Ours;
            double Med(Func<Result, double> f) => Stats.Median(o.Select(f));
            Console.WriteLine($"{job.Label,-17} {Med(r => r.Cpu.Osd * 1e6 / r.Ops),7:0} {Med(r => r.Cpu.Mon * 1e6 / r.Ops),6:0} {Med(r => r.Cpu.Client * 1e6 / r.Ops),7:0} {Med(r => (r.Cpu.Osd + r.Cpu.Mon + r.Cpu.Client) * 1e6 / r.Ops),7:0}");
        }
        Console.WriteLine();
        // Write amplification per client byte: a size-3 pool writes each byte on three OSDs, so ~3 is the ideal.
        Console.WriteLine("write amplification = bytes the OSD processes caused to be written to storage (/proc/PID/io write_bytes, summed");
        Console.WriteLine("over the OSDs, during the write job) / bytes the job acknowledged (ops x size, counted once per client byte; ideal ~3)");
        foreach (var job in Jobs.Where(j => j.Write))
        {
            var (o, c) = results[job.Label];
            string Amp(List<Result> rs) => Stats.Median(rs.Select(r => r.DiskWriteBytes / (r.Ops * (double)job.Size))).ToString("0.00", CultureInfo.InvariantCulture);
            Console.WriteLine($"{job.Label,-17} ours {Amp(o),7}   ceph {(withCeph ? Amp(c) : "-"),7}");
        }
        Console.WriteLine();
        Console.WriteLine("OSD memory after the runs, MiB (VmRSS / VmHWM from /proc/PID/status); aim: < 300 MiB RSS per OSD");
        for (var i = 0; i < Math.Max(ourMem.Count, cephMem.Count); i++)
        {
            var o = i < ourMem.Count ? $"{ourMem[i].Osd} {ourMem[i].Rss >> 20} / {ourMem[i].Hwm >> 20}" : "";
            var c = i < cephMem.Count ? $"{cephMem[i].Osd} {cephMem[i].Rss >> 20} / {cephMem[i].Hwm >> 20}" : "";
            Console.WriteLine($"  ours {o,-22} ceph {(withCeph ? c : "-")}");
        }
        Console.WriteLine();
        Console.WriteLine($"cluster up on an existing data dir to every PG active+clean: ours {restartUp:0.0} s (aim: < 5 s; Ceph per its README: 35-41 s, not measured here)");
        Console.WriteLine($"cluster up from nothing: ours {firstUp:0.0} s, ceph up.sh {(withCeph ? cephUp.ToString("0.0", CultureInfo.InvariantCulture) + " s" : "-")}");
        var load = File.ReadAllText("/proc/loadavg").Trim();
        Console.WriteLine($"load after the runs: {load}");
        if (double.Parse(load.Split(' ')[0], CultureInfo.InvariantCulture) > Environment.ProcessorCount)
        {
            Console.WriteLine($"note: taken under load (1-minute load above {Environment.ProcessorCount} cores): both sides shared the machine with other work");
        }
    }

    /// <summary>Our cluster, through the `appliance` program: every command a process of its own.</summary>
    internal sealed class OurCluster(string appliance, string dataDir)
    {
        internal string DataDir => dataDir;

        internal string ConfDir => Path.Combine(dataDir, "conf");

        /// <summary>`cluster up`; returns its wall time in seconds (it returns once every PG is active+clean).</summary>
        public async Task<double> UpAsync(string diskSize, CancellationToken ct)
        {
            var (_, seconds) = await Proc.RunAsync(Command(["cluster", "up", "--data", dataDir, "--osds", "3", "--disk-size", diskSize]), TimeSpan.FromMinutes(3), ct, locked: true);
            return seconds;
        }

        /// <summary>`cluster down` (with --purge at the end, always): it stops only the daemons whose pid files in
        /// our data dir name processes of this program running them.</summary>
        public async Task DownAsync(bool purge)
        {
            if (!Directory.Exists(dataDir))
            {
                return;
            }
            List<string> args = ["cluster", "down", "--data", dataDir];
            if (purge)
            {
                args.AddRange(["--purge", "--yes-i-really-mean-it"]);
            }
            try
            {
                await Proc.RunAsync(Command(args), TimeSpan.FromMinutes(2), CancellationToken.None);
            }
            catch (InvalidOperationException e) when (purge)
            {
                // Cleanup must not hide the error that brought us here; say what is left behind.
                Console.Error.WriteLine($"warning: cluster down failed, {dataDir} may be left: {e.Message}");
            }
        }

        public async Task<Result> BenchAsync(Job job, int seconds, CancellationToken ct)
        {
            var before = OsdWriteBytes();
            var (osdCpu, monCpu, clientCpu) = (DaemonCpu("osd."), DaemonCpu("mon."), Proc.ChildrenCpu());
            var (output, _) = await Proc.RunAsync(
                Command(["object", "bench", "data", .. job.Ours, "--threads", "16", "--seconds", seconds.ToString(CultureInfo.InvariantCulture), "--conf-dir", ConfDir]),
                TimeSpan.FromSeconds((seconds * 3) + 120), ct, locked: true);
            var written = OsdWriteBytes() - before;
            var cpu = new Cpu(DaemonCpu("osd.") - osdCpu, DaemonCpu("mon.") - monCpu, Proc.ChildrenCpu() - clientCpu);
            var f = Fields(output, ':');
            return new Result(
                (long)Num(f, "ops"), (long)Num(f, "errors"), Num(f, "seconds"), Num(f, "p50 latency ms"), Num(f, "p99 latency ms"),
                double.NaN, double.NaN, double.NaN, written)
            { Cpu = cpu };
        }

        /// <summary>CPU seconds so far of every daemon whose pid file name starts with <paramref name="prefix"/>.</summary>
        internal double DaemonCpu(string prefix) =>
            DaemonPids(prefix).Sum(p => Proc.CpuSeconds(p.Pid));

        public List<(string Osd, long Rss, long Hwm)> Memory() =>
            [.. OsdPids().Select(p => (p.Osd, Proc.Status(p.Pid, "VmRSS"), Proc.Status(p.Pid, "VmHWM")))];

        private long OsdWriteBytes() => OsdPids().Sum(p => Proc.WriteBytes(p.Pid));

        /// <summary>DIR/run/osd.N.pid, trusted only while /proc/PID/cmdline is a daemon running from our data dir.</summary>
        internal List<(string Osd, int Pid)> OsdPids() => DaemonPids("osd.");

        internal List<(string Osd, int Pid)> DaemonPids(string prefix) =>
            [.. Directory.EnumerateFiles(Path.Combine(dataDir, "run"), prefix + "*.pid").Order(StringComparer.Ordinal)
                .Select(f => (Osd: Path.GetFileNameWithoutExtension(f), Pid: int.TryParse(File.ReadAllText(f).Trim(), CultureInfo.InvariantCulture, out var p) ? p : 0))
                .Where(p => p.Pid > 0 && Proc.CmdlineContains(p.Pid, dataDir))];

        private (string File, List<string> Args) Command(IEnumerable<string> args) =>
            appliance.EndsWith(".dll", StringComparison.Ordinal) ? ("dotnet", [appliance, .. args]) : (appliance, [.. args]);
    }

    /// <summary>A real Ceph from ../shared/reference/ceph (up.sh, down.sh), in a work dir of this run's own.</summary>
    internal sealed class CephCluster
    {
        private readonly string _scripts;
        private readonly string _work;
        private readonly Dictionary<string, string> _env;

        private CephCluster(string scripts, string work, string? missing)
        {
            _scripts = scripts;
            _work = work;
            Missing = missing;
            _env = new() { ["CEPH_WORK"] = work, ["CEPH_CONF"] = Path.Combine(work, "ceph.conf") };
        }

        /// <summary>Why Ceph cannot run here, or null.</summary>
        public string? Missing { get; }

        public bool Started { get; private set; }

        /// <summary>The environment of its commands (CEPH_CONF, CEPH_WORK).</summary>
        internal Dictionary<string, string> Env => _env;

        /// <summary>Its work dir (CEPH_WORK): pid files in run/, the ceph-fuse mount point mnt/.</summary>
        internal string Work => _work;

        public static CephCluster Find(string scripts, string work)
        {
            string? missing = null;
            if (!File.Exists(Path.Combine(scripts, "up.sh")))
            {
                missing = $"ceph: no reference scripts at {scripts} (give --ceph-dir); comparing nothing";
            }
            else if (Fio.Which("rados") is null || Fio.Which("ceph-osd") is null)
            {
                missing = "ceph: not installed, `sudo apt-get install -y ceph fio jq bc uuid-runtime` per ../shared/reference/ceph/README.md";
            }
            else if (new[] { "jq", "bc", "uuidgen" }.FirstOrDefault(c => Fio.Which(c) is null) is { } tool)
            {
                missing = $"ceph: up.sh needs {tool}: `sudo apt-get install -y jq bc uuid-runtime`";
            }
            return new CephCluster(scripts, work, missing);
        }

        public async Task<double> UpAsync(CancellationToken ct)
        {
            // up.sh's default monitor ports may belong to another engineer's Ceph: take free ones then.
            if (!PortFree(3300) || !PortFree(6789))
            {
                _env["MONPORT2"] = FreePort().ToString(CultureInfo.InvariantCulture);
                _env["MONPORT1"] = FreePort().ToString(CultureInfo.InvariantCulture);
            }
            Started = true;
            var (_, seconds) = await Proc.RunAsync(("bash", [Path.Combine(_scripts, "up.sh")]), TimeSpan.FromMinutes(6), ct, locked: true, env: _env);
            return seconds;
        }

        public async Task DownAsync()
        {
            try
            {
                await Proc.RunAsync(("bash", [Path.Combine(_scripts, "down.sh")]), TimeSpan.FromMinutes(2), CancellationToken.None, env: _env);
            }
            catch (InvalidOperationException e)
            {
                Console.Error.WriteLine($"warning: down.sh failed, {_work} may be left: {e.Message}");
            }
        }

        public async Task<Result> BenchAsync(Job job, int seconds, CancellationToken ct)
        {
            var before = OsdWriteBytes();
            var (output, _) = await Proc.RunAsync(
                ("rados", ["-p", "rbd3", "bench", seconds.ToString(CultureInfo.InvariantCulture), .. job.Rados]),
                TimeSpan.FromSeconds((seconds * 3) + 120), ct, locked: true, env: _env);
            var written = OsdWriteBytes() - before;
            // rados bench's summary: "Total writes made:" or "Total reads made:", "Total time run:", latencies in s.
            var f = Fields(output, ':');
            var ops = (long)Num(f, job.Write ? "Total writes made" : "Total reads made");
            return new Result(
                ops, 0, Num(f, "Total time run"), double.NaN, double.NaN,
                Num(f, "Average Latency(s)") * 1000, Num(f, "Min latency(s)") * 1000, Num(f, "Max latency(s)") * 1000, written);
        }

        public string Version()
        {
            try
            {
                return Fio.RunChecked("ceph", ["--version"]).Trim();
            }
            catch (InvalidOperationException)
            {
                return "(unknown version)";
            }
        }

        public List<(string Osd, long Rss, long Hwm)> Memory() =>
            [.. OsdPids().Select(p => (p.Osd, Proc.Status(p.Pid, "VmRSS"), Proc.Status(p.Pid, "VmHWM")))];

        private long OsdWriteBytes() => OsdPids().Sum(p => Proc.WriteBytes(p.Pid));

        internal List<(string Osd, int Pid)> OsdPids()
        {
            var run = Path.Combine(_work, "run");
            return !Directory.Exists(run) ? [] :
                [.. Directory.EnumerateFiles(run, "osd.*.pid").Order(StringComparer.Ordinal)
                    .Select(f => (Osd: Path.GetFileNameWithoutExtension(f), Pid: int.TryParse(File.ReadAllText(f).Trim(), CultureInfo.InvariantCulture, out var p) ? p : 0))
                    .Where(p => p.Pid > 0 && Proc.CmdlineContains(p.Pid, "ceph-osd"))];
        }

        private static bool PortFree(int port)
        {
            try
            {
                using var l = new TcpListener(IPAddress.Loopback, port);
                l.Start();
                return true;
            }
            catch (SocketException)
            {
                return false;
            }
        }

        private static int FreePort()
        {
            using var l = new TcpListener(IPAddress.Loopback, 0);
            l.Start();
            return ((IPEndPoint)l.LocalEndpoint).Port;
        }
    }

    /// <summary>Child processes with a bound, and what /proc says about the daemons.</summary>
    internal static class Proc
    {
        /// <summary>Runs a command to its end (under `flock -o` the bench lock when <paramref name="locked"/>) and returns
        /// its standard output and its wall time in seconds (from the moment it held the lock, when locked); throws with its standard error when it fails or outlives <paramref name="timeout"/>
        /// (then it and its children are killed: they are ours).</summary>
        public static async Task<(string Output, double Seconds)> RunAsync(
            (string File, List<string> Args) command, TimeSpan timeout, CancellationToken ct, bool locked = false, Dictionary<string, string>? env = null)
        {
            var psi = new ProcessStartInfo(locked ? "flock" : command.File) { RedirectStandardOutput = true, RedirectStandardError = true };
            if (locked)
            {
                // -o: the lock's descriptor is closed in the command, so daemons it starts do not hold the lock.
                // The wrapper prints the time it got the lock first, so waiting for another bench is not timed.
                foreach (var x in new[] { "-o", BenchLock, "bash", "-c", "date +%s.%N; exec \"$@\"", "bash", command.File })
                {
                    psi.ArgumentList.Add(x);
                }
            }
            command.Args.ForEach(psi.ArgumentList.Add);
            foreach (var (k, v) in env ?? [])
            {
                psi.Environment[k] = v;
            }
            var sw = Stopwatch.StartNew();
            using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {command.File}");
            var stdout = p.StandardOutput.ReadToEndAsync(CancellationToken.None);
            var stderr = p.StandardError.ReadToEndAsync(CancellationToken.None);
            using var bound = CancellationTokenSource.CreateLinkedTokenSource(ct);
            bound.CancelAfter(timeout);
            try
            {
                await p.WaitForExitAsync(bound.Token);
            }
            catch (OperationCanceledException)
            {
                p.Kill(entireProcessTree: true);
                await p.WaitForExitAsync(CancellationToken.None);
                ct.ThrowIfCancellationRequested();
                throw new InvalidOperationException($"{command.File} {string.Join(' ', command.Args)} still running after {timeout.TotalSeconds:0} s: killed");
            }
            if (p.ExitCode != 0)
            {
                throw new InvalidOperationException($"{command.File} {string.Join(' ', command.Args)} exited {p.ExitCode}: {(await stderr).Trim()} {(await stdout).Trim()}");
            }
            var output = await stdout;
            if (!locked)
            {
                return (output, sw.Elapsed.TotalSeconds);
            }
            var newline = output.IndexOf('\n', StringComparison.Ordinal);
            var held = DateTimeOffset.UtcNow - DateTimeOffset.FromUnixTimeMilliseconds((long)(double.Parse(output[..newline], CultureInfo.InvariantCulture) * 1000));
            return (output[(newline + 1)..], held.TotalSeconds);
        }

        public static bool CmdlineContains(int pid, string text)
        {
            try
            {
                return File.ReadAllText($"/proc/{pid}/cmdline").Contains(text, StringComparison.Ordinal);
            }
            catch (IOException)
            {
                return false;
            }
        }

        /// <summary>A `kB` line of /proc/PID/status, in bytes (0 when the process is gone).</summary>
        public static long Status(int pid, string key)
        {
            try
            {
                var f = Fields(File.ReadAllText($"/proc/{pid}/status"), ':');
                return f.TryGetValue(key, out var v) ? long.Parse(v.Split(' ')[0], CultureInfo.InvariantCulture) << 10 : 0;
            }
            catch (IOException)
            {
                return 0;
            }
        }

        /// <summary>CPU seconds (utime + stime, /proc/PID/stat fields 14 and 15) of a process; 0 when it is gone.</summary>
        public static double CpuSeconds(int pid)
        {
            try
            {
                return Ticks(File.ReadAllText($"/proc/{pid}/stat"), 0);
            }
            catch (IOException)
            {
                return 0;
            }
        }

        /// <summary>CPU seconds of this process's waited-for children and their descendants (cutime + cstime): a
        /// timed command's own CPU, read before and after it (one runs at a time).</summary>
        public static double ChildrenCpu() => Ticks(File.ReadAllText("/proc/self/stat"), 2);

        /// <summary>Fields 14+15 (or 16+17 with <paramref name="skip"/> 2) of a stat line, in seconds; the command name
        /// in parentheses may hold spaces, so fields count from its closing parenthesis. USER_HZ is 100 on Linux.</summary>
        private static double Ticks(string stat, int skip)
        {
            var f = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            // f[0] is field 3 (state): utime is field 14 = f[11], stime f[12], cutime f[13], cstime f[14].
            return (long.Parse(f[11 + skip], CultureInfo.InvariantCulture) + long.Parse(f[12 + skip], CultureInfo.InvariantCulture)) / 100.0;
        }

        /// <summary>Bytes the process caused to be written to storage (/proc/PID/io write_bytes; 0 when gone).</summary>
        public static long WriteBytes(int pid)
        {
            try
            {
                var f = Fields(File.ReadAllText($"/proc/{pid}/io"), ':');
                return long.Parse(f["write_bytes"], CultureInfo.InvariantCulture);
            }
            catch (IOException)
            {
                return 0;
            }
        }
    }

    /// <summary>"key: value" lines (the last of a repeated key wins).</summary>
    private static Dictionary<string, string> Fields(string text, char separator)
    {
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n'))
        {
            var i = line.IndexOf(separator, StringComparison.Ordinal);
            if (i > 0)
            {
                d[line[..i].Trim()] = line[(i + 1)..].Trim();
            }
        }
        return d;
    }

    private static double Num(Dictionary<string, string> fields, string key) =>
        fields.TryGetValue(key, out var v) && double.TryParse(v.Split(' ')[0], NumberStyles.Float, CultureInfo.InvariantCulture, out var d)
            ? d
            : throw new InvalidOperationException($"no '{key}:' line in the bench output: {string.Join("; ", fields.Select(kv => kv.Key + ": " + kv.Value))}");

    /// <summary>The checkout this program was built in (the directory holding node/Cli), or null.</summary>
    internal static string? RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "node", "Cli", "Appliance.Cli.csproj")))
            {
                return d.FullName;
            }
        }
        return null;
    }

    /// <summary>node/Cli/bin/CONFIG/net10.0/appliance.dll, CONFIG being this program's own (bin/CONFIG/net10.0/).</summary>
    internal static string DefaultAppliance(string? root)
    {
        var config = new DirectoryInfo(AppContext.BaseDirectory).Parent?.Name ?? "Release";
        return Path.Combine(root ?? ".", "node", "Cli", "bin", config, "net10.0", "appliance.dll");
    }
}
