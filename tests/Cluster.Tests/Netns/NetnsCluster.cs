using System.Diagnostics;
using System.Globalization;
using System.Net;
using Appliance.Cli;
using Appliance.Client;
using Appliance.Maps;
using Appliance.Maps.Client;
using Appliance.Maps.Protocol;
using Appliance.Platform.Native;
using Appliance.Wire.Auth;

namespace Appliance.Cluster.Tests.Netns;

/// <summary>
/// A cluster of real daemons (the built `appliance` program: 3 monitors, N OSDs on sparse file disks), each in a
/// network namespace of its own with its own address, so that a test can partition, kill, stop and restart them.
/// <para>
/// Network (<see cref="NetnsNetwork"/>): a bridge in a hub namespace, each daemon's namespace (<c>RUN-mon.a</c>,
/// <c>RUN-osd.0</c>) with an <c>eth0</c> on it, the test process on a root veth (.254). Monitors are .1-.3 (port
/// 6789), osd.N is .(10+N).
/// </para>
/// <para>
/// Faults: SIGKILL / SIGSTOP / SIGCONT to a daemon by the pid it was started with (checked against
/// /proc/PID/cmdline first), restarts of one or all, and partitions made of nftables rules inside a daemon's
/// namespace (table <c>inet nsx_cut</c>, both directions: the peer's packets are refused with a TCP reset and the
/// connections open across the cut are reset, or every packet is dropped silently).
/// </para>
/// <para>
/// Clean-up (<see cref="DisposeAsync"/>, also when starting fails half-way): every process it started is killed by
/// pid, then whatever still runs in its namespaces, then the namespaces (their veths and rules go with them), the
/// root veth and the data directory. Before it makes anything it sweeps leftovers of earlier runs of this harness:
/// namespaces and links named <c>nsx-PID-…</c> whose PID no longer runs (and the processes still in them).
/// </para>
/// </summary>
public sealed class NetnsCluster : IAsyncDisposable
{
    /// <summary>Every name this harness gives a namespace or a link starts with this.</summary>
    public const string Prefix = NetnsNetwork.Prefix;

    /// <summary>Set to 1 on a machine that cannot make network namespaces (see <see cref="NetnsNetwork.NoNetnsVariable"/>).</summary>
    public const string NoNetnsVariable = NetnsNetwork.NoNetnsVariable;

    public const string Pool = "data";
    public const int MonitorPort = 6789;
    public static readonly string[] Monitors = ["mon.a", "mon.b", "mon.c"];

    private readonly TempDir _dir = new();
    private readonly Action<string> _log;
    private readonly NetnsNetwork _network;
    private readonly Dictionary<string, int> _pids = [];
    private readonly HashSet<int> _started = [];
    private readonly List<int> _osds = [];

    private NetnsCluster(NetnsNetwork network, Action<string> log)
    {
        _network = network;
        _log = log;
        Directory.CreateDirectory(LogDir);
    }

    public string RunId => _network.RunId;

    /// <summary>The first three octets of this run's /24, e.g. "10.213.7".</summary>
    public string Subnet => _network.Subnet;

    /// <summary>The network: namespaces, cuts, probes.</summary>
    public NetnsNetwork Network => _network;

    public string Data => _dir.Path;
    public string ConfDir => Path.Combine(Data, "conf");
    public string LogDir => Path.Combine(Data, "log");
    public IReadOnlyList<int> Osds => _osds;
    public IEnumerable<string> Daemons => [.. Monitors, .. _osds.Select(OsdName)];
    public string HubNamespace => _network.HubNamespace;

    public static string OsdName(int id) => "osd." + id.ToString(CultureInfo.InvariantCulture);

    public string Namespace(string daemon) => _network.Namespace(daemon);

    /// <summary>The address of a daemon, or of the test process for "host".</summary>
    public IPAddress Address(string daemon)
    {
        var last = daemon switch
        {
            "host" => 254,
            "mon.a" => 1,
            "mon.b" => 2,
            "mon.c" => 3,
            _ when daemon.StartsWith("osd.", StringComparison.Ordinal) => 10 + int.Parse(daemon[4..], CultureInfo.InvariantCulture),
            _ => throw new ArgumentException($"no daemon {daemon}", nameof(daemon)),
        };
        return _network.At(last);
    }

    /// <summary>
    /// Makes the network, defines the cluster, starts its monitors, creates and starts <paramref name="osds"/> OSDs
    /// (disks of <paramref name="diskBytes"/>, sparse), creates pool `data` (size 3, min_size 2; fewer with fewer OSDs;
    /// <paramref name="pgNum"/> PGs) and returns once every PG is active+clean. Anything made is removed again when a
    /// step fails.
    /// </summary>
    public static async Task<NetnsCluster> StartAsync(int osds, long diskBytes, int pgNum, Action<string> log)
    {
        var cluster = new NetnsCluster(await NetnsNetwork.CreateAsync(log), log);
        try
        {
            foreach (var m in Monitors)
            {
                await cluster._network.AddMemberAsync(m, cluster.Address(m));
            }
            var clock = Stopwatch.StartNew();
            ClusterConf.Bootstrap(cluster.ConfDir,
                [.. Monitors.Select(m => (m[4..], $"{cluster.Address(m)}:{MonitorPort.ToString(CultureInfo.InvariantCulture)}"))], DateTimeOffset.UtcNow);
            foreach (var m in Monitors)
            {
                cluster.Start(m);
            }
            for (var i = 0; i < osds; i++)
            {
                cluster._osds.Add(await cluster.CreateOsdAsync(diskBytes));
            }
            foreach (var id in cluster._osds)
            {
                await cluster._network.AddMemberAsync(OsdName(id), cluster.Address(OsdName(id)));
                cluster.Start(OsdName(id));
            }
            await using (var mon = cluster.MonitorClient())
            {
                var size = Math.Min(3, osds);
                var reply = await mon.CommandAsync(new PoolCreate(Pool, PoolType.Replicated, Size: size, MinSize: size - (size / 2), PgNum: pgNum));
                if (reply.Status != MonReplyStatus.Ok)
                {
                    throw new InvalidOperationException($"pool create {Pool}: {reply.Status} {reply.Message}");
                }
            }
            await using (var client = await cluster.ConnectAsync(TimeSpan.FromSeconds(30)))
            await using (var mon = cluster.MonitorClient())
            {
                await cluster.WaitCleanAsync(client, mon, TimeSpan.FromSeconds(90));
            }
            log($"netns cluster {cluster.RunId} on {cluster.Subnet}.0/24 is active+clean ({osds} OSDs, {pgNum} PGs) after {clock.Elapsed.TotalSeconds:0.0} s");
            return cluster;
        }
        catch (Exception e)
        {
            log(cluster.Logs());
            var cleanup = "";
            try
            {
                await cluster.DisposeAsync();
            }
            catch (InvalidOperationException c)
            {
                cleanup = "; and " + c.Message;
            }
            throw new InvalidOperationException($"netns cluster {cluster.RunId} (data {cluster.Data}) did not start: {e.Message}{cleanup}", e);
        }
    }

    /// <summary>`osd create` (run in this process, as `cluster up` does): a new id from the monitors, its store on a
    /// sparse file; returns the id.</summary>
    private async Task<int> CreateOsdAsync(long diskBytes)
    {
        var pending = Path.Combine(Data, "osd.new.disk");
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = await CliApp.RunAsync(
            ["osd", "create", "--data", pending, "--size", diskBytes.ToString(CultureInfo.InvariantCulture), "--conf-dir", ConfDir, "--timeout", "60"],
            stdout, stderr);
        if (code != 0 || !int.TryParse(stdout.ToString().Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var id))
        {
            throw new InvalidOperationException($"osd create exited {code}: {stdout}{stderr}");
        }
        if (id > 200)
        {
            throw new InvalidOperationException($"osd create gave id {id}: osd.N's address is .(10+N) of a /24");
        }
        File.Move(pending, Disk(id));
        return id;
    }

    private string Disk(int id) => Path.Combine(Data, OsdName(id) + ".disk");

    /// <summary>The argument that tells daemon <paramref name="daemon"/> of this cluster apart from every other process.</summary>
    private string Identity(string daemon) => daemon.StartsWith("osd.", StringComparison.Ordinal) ? Path.Combine(Data, daemon + ".disk") : Path.Combine(Data, daemon);

    private IReadOnlyList<string> Args(string daemon)
    {
        if (daemon.StartsWith("mon.", StringComparison.Ordinal))
        {
            return ["mon", "run", "--name", daemon[4..], "--data", Identity(daemon), "--conf-dir", ConfDir];
        }
        var id = daemon[4..];
        // Each OSD is a CRUSH host of its own, so the three copies land on three OSDs.
        return ["osd", "run", id, "--data", Identity(daemon), "--addr", Address(daemon).ToString(), "--host", $"netns-osd{id}", "--conf-dir", ConfDir];
    }

    public string LogFile(string daemon) => Path.Combine(LogDir, daemon + ".log");

    /// <summary>
    /// Starts <paramref name="daemon"/> in its namespace: `ip netns exec NS setsid sh -c 'exec …'` (each execs in place,
    /// so the pid we get is the daemon's), its output appended to its log; returns its pid.
    /// </summary>
    public int Start(string daemon)
    {
        Assert.False(IsRunning(daemon), $"{daemon} is running already (pid {_pids.GetValueOrDefault(daemon)})");
        var psi = new ProcessStartInfo("ip") { UseShellExecute = false };
        foreach (var a in (string[])["netns", "exec", Namespace(daemon), "setsid", "sh", "-c", "log=$1; shift; exec \"$@\" </dev/null >>\"$log\" 2>&1", "sh",
            LogFile(daemon), "dotnet", typeof(CliApp).Assembly.Location, .. Args(daemon)])
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {daemon}");
        _pids[daemon] = p.Id;
        _started.Add(p.Id);
        _log($"{daemon} started in {Namespace(daemon)} (pid {p.Id})");
        return p.Id;
    }

    public void StartAll()
    {
        foreach (var d in Daemons.Where(d => !IsRunning(d)))
        {
            Start(d);
        }
    }

    public int Pid(string daemon) => _pids[daemon];

    /// <summary>Whether the pid <paramref name="daemon"/> was last started with still runs it (a zombie has an empty
    /// cmdline: gone).</summary>
    public bool IsRunning(string daemon) => _pids.TryGetValue(daemon, out var pid) && IsOurs(pid, daemon);

    private bool IsOurs(int pid, string daemon)
    {
        var args = LocalCluster.Cmdline(pid).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return args.Any(a => a.EndsWith("appliance.dll", StringComparison.Ordinal)) && args.Contains("run") && args.Contains(Identity(daemon));
    }

    /// <summary>Sends <paramref name="signal"/> to <paramref name="daemon"/> by its pid, after checking the pid still runs it.</summary>
    public int Signal(string daemon, int signal)
    {
        var pid = _pids[daemon];
        Assert.True(IsOurs(pid, daemon), $"{daemon}'s pid {pid} does not run it: {LocalCluster.Cmdline(pid)}");
        Assert.True(Posix.kill(pid, signal), $"kill -{signal} {pid} ({daemon}) failed");
        return pid;
    }

    /// <summary>The state letter of /proc/PID/stat of <paramref name="daemon"/>'s process: R, S, D, T (stopped), Z…; '-'
    /// when it is gone.</summary>
    public char State(string daemon)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{_pids[daemon].ToString(CultureInfo.InvariantCulture)}/stat");
            // "PID (COMM) S …": the command may hold spaces and parentheses; the state follows the last ')'.
            return stat[(stat.LastIndexOf(')') + 2)..][0];
        }
        catch (IOException)
        {
            return '-';
        }
    }

    /// <summary>SIGKILL to <paramref name="daemon"/>; returns once the process is gone.</summary>
    public async Task<int> KillAsync(string daemon)
    {
        var pid = Signal(daemon, Posix.SIGKILL);
        await Poll.UntilAsync(() => !IsOurs(pid, daemon), TimeSpan.FromSeconds(15), $"{daemon} (pid {pid}) to die after SIGKILL");
        _log($"{daemon} (pid {pid}) killed");
        return pid;
    }

    /// <summary>SIGKILL to every daemon at once (then waits until all are gone).</summary>
    public async Task KillAllAsync()
    {
        var running = Daemons.Where(IsRunning).ToList();
        var pids = running.Select(d => (d, Signal(d, Posix.SIGKILL))).ToList();
        await Poll.UntilAsync(() => pids.All(x => !IsOurs(x.Item2, x.d)), TimeSpan.FromSeconds(15), "every daemon to die after SIGKILL");
        _log($"killed {string.Join(", ", pids.Select(x => $"{x.d} (pid {x.Item2})"))}");
    }

    public async Task<int> RestartAsync(string daemon)
    {
        if (IsRunning(daemon))
        {
            await KillAsync(daemon);
        }
        return Start(daemon);
    }

    /// <summary>Every daemon killed at once, then all started again.</summary>
    public async Task RestartAllAsync()
    {
        await KillAllAsync();
        StartAll();
    }

    /// <summary>SIGCONT to every daemon that is stopped (a test that failed between its SIGSTOP and SIGCONT).</summary>
    public void ContinueAll()
    {
        foreach (var d in Daemons.Where(d => IsRunning(d) && State(d) == 'T'))
        {
            Signal(d, Posix.SIGCONT);
            _log($"{d} continued (it was stopped)");
        }
    }

    /// <summary>Cuts <paramref name="daemon"/> off from <paramref name="from"/> (daemon names, or "host" for the test
    /// process), both ways (<see cref="NetnsNetwork.PartitionAsync"/>).</summary>
    public Task PartitionAsync(string daemon, IEnumerable<string> from, bool silent = false) => _network.PartitionAsync(daemon, from, silent);

    /// <summary>Cuts an OSD off from every other OSD (not from the monitors nor the test process).</summary>
    public Task CutFromPeersAsync(int osd, bool silent = false) => PartitionAsync(OsdName(osd), _osds.Where(o => o != osd).Select(OsdName), silent);

    /// <summary>Cuts a daemon off from the monitors (not from the OSDs nor the test process).</summary>
    public Task CutFromMonitorsAsync(string daemon, bool silent = false) => PartitionAsync(daemon, Monitors.Where(m => m != daemon), silent);

    /// <summary>Cuts a daemon off from everything: monitors, OSDs and the test process.</summary>
    public Task IsolateAsync(string daemon, bool silent = false) => _network.IsolateAsync(daemon, silent);

    public Task HealAsync(string daemon) => _network.HealAsync(daemon);

    public Task HealAllAsync() => _network.HealAllAsync();

    /// <summary>What a TCP connect from <paramref name="from"/> (a daemon's namespace, or "host") to <paramref name="to"/>
    /// meets: "connected", "refused" or "timeout".</summary>
    public Task<string> ProbeAsync(string from, IPEndPoint to) => _network.ProbeAsync(from, to);

    /// <summary>A cluster client of the test process (client.admin), through the root veth.</summary>
    public async Task<ClusterClient> ConnectAsync(TimeSpan opTimeout)
    {
        var (monitors, key) = Credentials();
        return await ClusterClient.ConnectAsync(monitors, "client.admin", key,
            new ClusterClientOptions { ConnectTimeout = TimeSpan.FromSeconds(30), OpTimeout = opTimeout });
    }

    public MonClient MonitorClient()
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

    /// <summary>What monitor <paramref name="mon"/> says of itself (`mon status`): its role ("leader", "follower",
    /// "candidate"), the leader it knows ("mon.b", or null) and its osdmap epoch; null when it does not answer within
    /// 3 s.</summary>
    public async Task<(string Role, string? Leader, uint Epoch)?> MonitorStatusAsync(string mon)
    {
        await using var client = MonitorClient();
        using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(3));
        MonReply reply;
        try
        {
            reply = await client.QueryMonitorAsync(new IPEndPoint(Address(mon), MonitorPort), MonQuery.MonStatus, bound.Token);
        }
        catch (Exception e) when (e is TimeoutException or IOException or MonitorsUnavailableException or OperationCanceledException
            or System.Net.Sockets.SocketException or Appliance.Wire.Auth.AuthenticationException)
        {
            return null;
        }
        // "mon.a: leader, leader mon.a, members mon.a,mon.b,mon.c, committed index 9, lease held, osdmap epoch 12"
        var m = System.Text.RegularExpressions.Regex.Match(reply.Message, @"^mon\.\w+: (\w+)[^,]*, leader ([^,]+), .*osdmap epoch (\d+)");
        Assert.True(m.Success, $"{mon} answered mon status with '{reply.Message.Trim()}'");
        var leader = m.Groups[2].Value.StartsWith("mon.", StringComparison.Ordinal) ? m.Groups[2].Value : null;
        return (m.Groups[1].Value, leader, uint.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture));
    }

    /// <summary>Until one of <paramref name="among"/> says it is the leader, and every other of them that answers names
    /// it; returns it.</summary>
    public async Task<string> WaitLeaderAsync(IReadOnlyCollection<string> among, TimeSpan bound)
    {
        string? leader = null;
        var seen = "";
        await Poll.UntilAsync(async () =>
        {
            var views = new List<(string Mon, (string Role, string? Leader, uint Epoch)? View)>();
            foreach (var mon in among)
            {
                views.Add((mon, await MonitorStatusAsync(mon)));
            }
            seen = string.Join("; ", views.Select(v => v.View is { } x ? $"{v.Mon}: {x.Role}, leader {x.Leader ?? "none"}" : $"{v.Mon}: no answer"));
            var leaders = views.Where(v => v.View?.Role == "leader").Select(v => v.Mon).ToList();
            leader = leaders.Count == 1 && views.All(v => v.View is null || v.View.Value.Leader == leaders[0]) ? leaders[0] : null;
            return leader is not null;
        }, bound, $"one leader among {string.Join(", ", among)}", () => seen + "\n" + Logs());
        return leader!;
    }

    /// <summary>Until the client's osdmap shows <paramref name="osds"/> up (or down).</summary>
    public async Task WaitMarkedAsync(ClusterClient client, IEnumerable<int> osds, bool up, TimeSpan bound)
    {
        var list = osds.ToList();
        await Poll.UntilAsync(() => client.OsdMap is { } m && list.All(o => m.FindOsd(o)?.Up == up), bound,
            $"the monitors to mark osd.{string.Join(", osd.", list)} {(up ? "up" : "down")}", () => Logs());
    }

    /// <summary>Until every OSD is up and every PG of the pool is reported active+clean with all its copies acting, by
    /// reports made at the newest osdmap or later (older ones may be a dead primary's).</summary>
    public Task WaitCleanAsync(ClusterClient client, MonClient mon, TimeSpan bound) => WaitCleanAsync(client, mon, _osds, Pool, bound, () => Logs(), _log);

    /// <summary>Until every OSD of <paramref name="osds"/> is up and every PG of <paramref name="poolName"/> is reported
    /// active+clean with all its copies acting, by reports made at the newest osdmap or later.</summary>
    public static async Task WaitCleanAsync(ClusterClient client, MonClient mon, IReadOnlyCollection<int> osds, string poolName, TimeSpan bound,
        Func<string> logs, Action<string> log)
    {
        IReadOnlyList<PgStat> stats = [];
        await Poll.UntilAsync(async () =>
        {
            if (client.OsdMap is not { } map || map.FindPool(poolName) is not { } pool)
            {
                return false;
            }
            try
            {
                stats = await mon.GetPgStatsAsync(poolName);
            }
            catch (MonitorsUnavailableException)
            {
                return false;
            }
            return osds.All(o => map.FindOsd(o)?.Up == true)
                && stats.Count == pool.PgNum
                && stats.All(s => s.State == "active+clean" && s.Acting.Count(o => o >= 0) == pool.Size && s.ReportedEpoch >= map.Epoch);
        }, bound, "every OSD up and every PG active+clean",
            () => $"osdmap epoch {client.OsdMap?.Epoch}: " + string.Join("\n", stats.Where(s => s.State != "active+clean").Take(10)
                .Select(s => $"{s.Pg} {s.State} [{string.Join(",", s.Acting)}] epoch {s.ReportedEpoch}")) + "\n" + logs());
        log($"every PG of {poolName} active+clean in epoch {client.OsdMap!.Epoch}");
    }

    /// <summary>The last <paramref name="lines"/> lines of every daemon's log, for a failure's message.</summary>
    public string Logs(int lines = 25) =>
        Directory.Exists(LogDir)
            ? string.Join("\n", Directory.GetFiles(LogDir).Order(StringComparer.Ordinal).Select(f => $"== {f}\n{string.Join("\n", File.ReadLines(f).TakeLast(lines))}"))
            : "(no logs)";

    /// <summary>Kills every process it started (by pid), then any left in its namespaces, removes the namespaces,
    /// the root veth and the data. Every step runs; what could not be removed is thrown at the end.</summary>
    public async ValueTask DisposeAsync()
    {
        var problems = new List<string>();
        var daemons = _pids.Keys.ToList();
        foreach (var pid in _started)
        {
            if (daemons.Any(d => IsOurs(pid, d)))
            {
                Posix.kill(pid, Posix.SIGKILL);
            }
        }
        try
        {
            await Poll.UntilAsync(() => _started.All(pid => !daemons.Any(d => IsOurs(pid, d))), TimeSpan.FromSeconds(15), "the daemons to die");
        }
        catch (Exception e) when (e is Xunit.Sdk.XunitException)
        {
            problems.Add(e.Message);
        }
        try
        {
            // Then whatever is left in its namespaces, and the namespaces and links themselves.
            await _network.DisposeAsync();
        }
        catch (InvalidOperationException e)
        {
            problems.Add(e.Message);
        }
        _dir.Dispose();
        if (problems.Count > 0)
        {
            throw new InvalidOperationException($"netns cluster {RunId} clean-up left something:\n{string.Join("\n", problems)}");
        }
    }
}
