using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using Appliance.Cli;
using Appliance.Client;
using Appliance.Maps.Client;
using Appliance.Platform.Native;
using Appliance.Wire.Auth;

namespace Appliance.Cluster.Tests.Netns;

/// <summary>
/// Whole nodes on the netns network (<see cref="NetnsNetwork"/>): node nK is namespace <c>RUN-nK</c> at address .K,
/// with a configuration directory and a data directory of its own under a temporary directory. Nothing is started
/// here: a test provisions the nodes with the program's own commands, run in a node's namespace
/// (<see cref="RunAsync"/>: `nsenter --net` — the network namespace only, so a FUSE mount a node makes is one of this
/// machine's mount namespace, as on a real machine), `appliance bootstrap` on the first, `join-token`/`join`, `disk
/// add`; the daemons those commands start as background processes (pid files in the node's DATA/run) inherit the
/// namespace. A process the test itself keeps running on a node (an NBD server) is started with
/// <see cref="StartProcess"/> and stopped by its pid.
/// <para>
/// Clean-up (<see cref="DisposeAsync"/>): the processes it started, killed by pid; whatever is left in the nodes'
/// namespaces, killed; what is still mounted under its directory, detached; then the network (namespaces, veths) and
/// the directory. A test that brings the nodes down itself asserts nothing was left for this to do
/// (<see cref="LeftoversAsync"/>).
/// </para>
/// </summary>
public sealed class NetnsNodes : IAsyncDisposable
{
    public const int MonitorPort = 6789;

    private readonly TempDir _dir = new();
    private readonly NetnsNetwork _network;
    private readonly Action<string> _log;
    private readonly List<string> _nodes = [];
    private readonly Dictionary<string, (int Pid, string Identity)> _processes = [];

    private NetnsNodes(NetnsNetwork network, Action<string> log)
    {
        _network = network;
        _log = log;
    }

    public NetnsNetwork Network => _network;
    public IReadOnlyList<string> Nodes => _nodes;
    public string Data => _dir.Path;

    public string ConfDir(string node) => Path.Combine(Data, node, "conf");
    public string DataDir(string node) => Path.Combine(Data, node, "data");
    public string LogDir(string node) => Path.Combine(DataDir(node), "log");
    public IPAddress Address(string node) => _network.Address(node);
    public string Namespace(string node) => _network.Namespace(node);

    /// <summary>The network and <paramref name="count"/> empty nodes n1…nN (namespaces, addresses, directories).</summary>
    public static async Task<NetnsNodes> CreateAsync(int count, Action<string> log)
    {
        var nodes = new NetnsNodes(await NetnsNetwork.CreateAsync(log), log);
        try
        {
            for (var i = 1; i <= count; i++)
            {
                var name = "n" + i.ToString(CultureInfo.InvariantCulture);
                await nodes._network.AddMemberAsync(name, nodes._network.At(i));
                Directory.CreateDirectory(nodes.ConfDir(name));
                Directory.CreateDirectory(nodes.DataDir(name));
                nodes._nodes.Add(name);
            }
            log($"nodes {string.Join(", ", nodes._nodes.Select(n => $"{n} at {nodes.Address(n)}"))} in {nodes.Data}");
            return nodes;
        }
        catch
        {
            await nodes.DisposeAsync();
            throw;
        }
    }

    private static IReadOnlyList<string> Program => ["dotnet", typeof(CliApp).Assembly.Location];

    /// <summary>`appliance ARGS` in <paramref name="node"/>'s network namespace, with APPLIANCE_CONF_DIR and
    /// APPLIANCE_DATA_DIR set to the node's directories (as /etc/appliance and /var/lib/appliance on a real node);
    /// killed past <paramref name="bound"/> (default 120 s).</summary>
    public async Task<(int Code, string Stdout, string Stderr)> RunAsync(string node, IReadOnlyList<string> args, TimeSpan? bound = null)
    {
        var psi = new ProcessStartInfo("nsenter")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in (string[])[$"--net=/run/netns/{Namespace(node)}", "--", .. Program, .. args])
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["APPLIANCE_CONF_DIR"] = ConfDir(node);
        psi.Environment["APPLIANCE_DATA_DIR"] = DataDir(node);
        var clock = Stopwatch.StartNew();
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start nsenter");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        var limit = bound ?? TimeSpan.FromSeconds(120);
        using (var cts = new CancellationTokenSource(limit))
        {
            try
            {
                await p.WaitForExitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                // nsenter execs the program in place: this pid is the command's own.
                Posix.kill(p.Id, Posix.SIGKILL);
                await p.WaitForExitAsync();
                Assert.Fail($"{node}: appliance {string.Join(' ', args)} did not finish within {limit.TotalSeconds:0} s:\n{await stdout}{await stderr}\n{Logs()}");
            }
        }
        _log($"{node}: appliance {string.Join(' ', args)} → {p.ExitCode} ({clock.Elapsed.TotalSeconds:0.0} s)");
        return (p.ExitCode, await stdout, await stderr);
    }

    /// <summary><see cref="RunAsync"/>, which must exit 0; returns its standard output.</summary>
    public async Task<string> OkAsync(string node, params string[] args)
    {
        var (code, stdout, stderr) = await RunAsync(node, args);
        Assert.True(code == 0, $"{node}: appliance {string.Join(' ', args)} exited {code}:\n{stdout}{stderr}\n{Logs()}");
        return stdout;
    }

    /// <summary>
    /// Starts `appliance ARGS` in <paramref name="node"/>'s namespace as a background process named
    /// <paramref name="name"/> (`nsenter --net … setsid sh -c 'exec …'`: each execs in place, so the pid is the
    /// program's), its output in the node's log directory as NAME.log. <paramref name="identity"/> is an argument
    /// that tells this process apart (checked in /proc/PID/cmdline before any signal). Returns its pid.
    /// </summary>
    public int StartProcess(string node, string name, string identity, params string[] args)
    {
        Assert.Contains(identity, args);
        Directory.CreateDirectory(LogDir(node));
        var psi = new ProcessStartInfo("nsenter") { UseShellExecute = false };
        foreach (var a in (string[])[$"--net=/run/netns/{Namespace(node)}", "--", "setsid", "sh", "-c", "log=$1; shift; exec \"$@\" </dev/null >>\"$log\" 2>&1", "sh",
            Path.Combine(LogDir(node), name + ".log"), .. Program, .. args])
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["APPLIANCE_CONF_DIR"] = ConfDir(node);
        psi.Environment["APPLIANCE_DATA_DIR"] = DataDir(node);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {name}");
        _processes[name] = (p.Id, identity);
        _log($"{name} started in {Namespace(node)} (pid {p.Id})");
        return p.Id;
    }

    private static bool Runs(int pid, string identity)
    {
        var cmdline = LocalCluster.Cmdline(pid);
        return cmdline.Contains("appliance.dll", StringComparison.Ordinal) && cmdline.Split(' ').Contains(identity);
    }

    /// <summary>SIGTERM to the process <see cref="StartProcess"/> started as <paramref name="name"/>; returns once it
    /// is gone.</summary>
    public async Task StopProcessAsync(string name, TimeSpan bound)
    {
        var (pid, identity) = _processes[name];
        if (Runs(pid, identity))
        {
            Posix.kill(pid, Posix.SIGTERM);
            await Poll.UntilAsync(() => !Runs(pid, identity), bound, $"{name} (pid {pid}) to exit after SIGTERM", () => Logs());
        }
        _processes.Remove(name);
        _log($"{name} (pid {pid}) stopped");
    }

    /// <summary>The monitors as the nodes' configurations list them (each node's cluster.conf lists those it knew of
    /// when it joined; the union is all of them).</summary>
    public IReadOnlyList<IPEndPoint> Monitors() =>
        [.. _nodes.Where(n => File.Exists(Path.Combine(ConfDir(n), ClusterConf.FileName)))
            .SelectMany(n => ClusterConf.Load(ConfDir(n)).Monitors.Select(m => IPEndPoint.Parse(m.Address))).Distinct()];

    private Secret AdminKey() =>
        Keyring.Load(Path.Combine(ConfDir(_nodes[0]), ClusterConf.AdminKeyringName)).Find("client.admin")?.Key
            ?? throw new InvalidOperationException($"{ConfDir(_nodes[0])} holds no key for client.admin");

    /// <summary>A cluster client of the test process (client.admin of the first node), through the root veth.</summary>
    public Task<ClusterClient> ConnectAsync(TimeSpan opTimeout) =>
        ClusterClient.ConnectAsync(Monitors(), "client.admin", AdminKey(),
            new ClusterClientOptions { ConnectTimeout = TimeSpan.FromSeconds(30), OpTimeout = opTimeout });

    public MonClient MonitorClient() => new(Monitors(), "client.admin", AdminKey()) { Deadline = TimeSpan.FromSeconds(20) };

    /// <summary>The last <paramref name="lines"/> lines of every log of every node, for a failure's message.</summary>
    public string Logs(int lines = 20)
    {
        var text = new StringBuilder();
        foreach (var node in _nodes.Where(n => Directory.Exists(LogDir(n))))
        {
            foreach (var f in Directory.GetFiles(LogDir(node)).Order(StringComparer.Ordinal))
            {
                text.Append(CultureInfo.InvariantCulture, $"== {f}\n{string.Join("\n", File.ReadLines(f).TakeLast(lines))}\n");
            }
        }
        return text.Length == 0 ? "(no logs)" : text.ToString();
    }

    /// <summary>Mount points under this run's directory (as this machine's mount table lists them).</summary>
    public IReadOnlyList<string> Mounts() =>
        [.. File.ReadLines("/proc/self/mountinfo").Select(l => l.Split(' ')).Where(f => f.Length > 4 && f[4].StartsWith(Data + "/", StringComparison.Ordinal))
            .Select(f => f[4])];

    /// <summary>Processes whose command line names this run's directory (daemons of its nodes, wherever they run).</summary>
    public IReadOnlyList<string> Processes() =>
        [.. Directory.GetDirectories("/proc").Select(Path.GetFileName)
            .Where(n => int.TryParse(n, NumberStyles.None, CultureInfo.InvariantCulture, out _))
            .Select(n => (Pid: n!, Cmdline: LocalCluster.Cmdline(int.Parse(n!, CultureInfo.InvariantCulture))))
            .Where(x => x.Cmdline.Contains(Data, StringComparison.Ordinal)).Select(x => $"{x.Pid}: {x.Cmdline}")];

    /// <summary>What would be left if the nodes were gone now: processes in the nodes' namespaces or naming this run's
    /// directory, and mounts under it.</summary>
    public async Task<IReadOnlyList<string>> LeftoversAsync()
    {
        var left = new List<string>();
        foreach (var ns in _network.Namespaces)
        {
            foreach (var pid in await Host.PidsInAsync(ns))
            {
                left.Add($"process {pid} in {ns}: {LocalCluster.Cmdline(pid)}");
            }
        }
        left.AddRange(Processes().Select(p => "process " + p));
        left.AddRange(Mounts().Select(m => "mount " + m));
        return left;
    }

    /// <summary>Kills what it started (by pid), then anything in the nodes' namespaces, detaches what is mounted under
    /// its directory, removes the network and the directory. Every step runs; what could not be removed is thrown at
    /// the end.</summary>
    public async ValueTask DisposeAsync()
    {
        var problems = new List<string>();
        foreach (var (name, (pid, identity)) in _processes)
        {
            if (Runs(pid, identity))
            {
                Posix.kill(pid, Posix.SIGKILL);
                _log($"{name} (pid {pid}) killed");
            }
        }
        foreach (var ns in _network.Namespaces)
        {
            foreach (var pid in await Host.PidsInAsync(ns))
            {
                Posix.kill(pid, Posix.SIGKILL);
            }
        }
        try
        {
            await Poll.UntilAsync(async () =>
            {
                foreach (var ns in _network.Namespaces)
                {
                    if ((await Host.PidsInAsync(ns)).Count > 0)
                    {
                        return false;
                    }
                }
                return true;
            }, TimeSpan.FromSeconds(15), "the nodes' processes to die");
        }
        catch (Xunit.Sdk.XunitException e)
        {
            problems.Add(e.Message);
        }
        // A mount whose process was killed stays as a dead FUSE mount until it is detached.
        foreach (var mount in Mounts().OrderByDescending(m => m.Length))
        {
            var (code, output) = await Host.RunAsync("umount", ["-l", mount]);
            _log($"{mount} detached{(code == 0 ? "" : $" (umount: {output.Trim()})")}");
        }
        try
        {
            await _network.DisposeAsync();
        }
        catch (InvalidOperationException e)
        {
            problems.Add(e.Message);
        }
        if (Mounts() is { Count: > 0 } mounts)
        {
            problems.Add($"still mounted: {string.Join(", ", mounts)}");
        }
        else
        {
            _dir.Dispose();
        }
        if (problems.Count > 0)
        {
            throw new InvalidOperationException($"netns nodes {_network.RunId} clean-up left something:\n{string.Join("\n", problems)}");
        }
    }
}
