using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Appliance.Cli;
using Appliance.Maps.Client;

namespace Appliance.Monitor.Daemon.Tests;

/// <summary>
/// Three `appliance mon run` processes, each in a network namespace of its own with its own address, joined by a
/// bridge in a fourth namespace where the clients (real `appliance` CLI processes) run. The leader is cut off with
/// firewall rules inside its namespace: the majority must elect a new leader and go on committing, the old leader must
/// answer nothing (not even stale maps); after the rules are removed it must rejoin and catch up; after all three are
/// killed with SIGKILL and restarted, the maps must be intact. Needs root (namespaces, iptables), as CI runs.
/// </summary>
public sealed partial class PartitionTests : IDisposable
{
    private const string Subnet = "10.77.0";
    private readonly string _tag = "apm" + (Environment.ProcessId % 100000).ToString(CultureInfo.InvariantCulture);
    private readonly TempDir _dir = new();
    private readonly List<string> _namespaces = [];
    private readonly Process?[] _mons = new Process?[3];
    private static readonly string[] Names = ["a", "b", "c"];

    private string Ns(string name) => $"{_tag}{name}";
    private string Hub => Ns("h");
    private string ConfDir => Path.Combine(_dir.Path, "conf");

    [Fact]
    public async Task A_leader_cut_off_by_firewall_stops_answering_the_majority_goes_on_and_it_rejoins_after_healing()
    {
        Assert.True(Environment.UserName == "root", "network namespaces and iptables need root (CI runs as root)");
        SetUpNetwork();
        var mons = Names.Select((n, i) => (n, $"{Subnet}.{i + 1}:6789")).ToList();
        ClusterConf.Bootstrap(ConfDir, mons, DateTimeOffset.UtcNow);
        for (var i = 0; i < 3; i++)
        {
            StartMonitor(i);
        }

        Cli(Hub, "pool", "create", "before");
        var leader = await LeaderAsync();

        // Cut the leader off: nothing in or out of its namespace but loopback.
        Sh($"ip netns exec {Ns(Names[leader])} iptables -I INPUT ! -i lo -j DROP && ip netns exec {Ns(Names[leader])} iptables -I OUTPUT ! -o lo -j DROP");
        // The majority elects a new leader (after the old lease runs out) and commits.
        Cli(Hub, "pool", "create", "during");
        Assert.Contains("during", Cli(Hub, "pool", "ls"));
        // The old leader, asked from inside its own namespace (the only place it can be reached), answers nothing:
        // a map without `during` would be stale, and it cannot have one with it.
        var solo = SoloConf(leader);
        var (exit, output) = Run(Ns(Names[leader]), ["pool", "ls", "--conf-dir", solo, "--timeout", "5"]);
        Assert.NotEqual(0, exit);
        Assert.DoesNotContain("before", output);
        Assert.Contains("no monitor answered", output);
        var own = Cli(Ns(Names[leader]), "mon", "status", "--conf-dir", solo);
        Assert.DoesNotContain("lease held", own);

        // Heal: it rejoins as a follower and catches up to the majority's osdmap epoch.
        Sh($"ip netns exec {Ns(Names[leader])} iptables -F INPUT && ip netns exec {Ns(Names[leader])} iptables -F OUTPUT");
        Cli(Hub, "pool", "create", "after");
        var target = Epoch(Cli(Hub, "mon", "status"), Names[(leader + 1) % 3]);
        var caughtUp = false;
        for (var attempt = 0; attempt < 100 && !caughtUp; attempt++)
        {
            var status = Cli(Ns(Names[leader]), "mon", "status", "--conf-dir", solo);
            caughtUp = Epoch(status, Names[leader]) >= target;
            if (!caughtUp)
            {
                await Task.Delay(200);
            }
        }
        Assert.True(caughtUp, $"mon.{Names[leader]} did not catch up to osdmap epoch {target}\n{Logs()}");

        // All three killed at once and restarted: every acknowledged change is still there.
        for (var i = 0; i < 3; i++)
        {
            Kill(i);
        }
        for (var i = 0; i < 3; i++)
        {
            StartMonitor(i);
        }
        var pools = Cli(Hub, "pool", "ls");
        foreach (var p in new[] { "before", "during", "after" })
        {
            Assert.Contains(p, pools);
        }
    }

    [GeneratedRegex(@"^mon\.(?<name>\w+): .*osdmap epoch (?<epoch>\d+)", RegexOptions.Multiline)]
    private static partial Regex StatusLine();

    private static uint Epoch(string status, string name)
    {
        foreach (Match m in StatusLine().Matches(status))
        {
            if (m.Groups["name"].Value == name)
            {
                return uint.Parse(m.Groups["epoch"].Value, CultureInfo.InvariantCulture);
            }
        }
        return 0;
    }

    /// <summary>The index of the monitor that says it leads with its lease held.</summary>
    private async Task<int> LeaderAsync()
    {
        for (var attempt = 0; attempt < 50; attempt++)
        {
            var (_, status) = Run(Hub, ["mon", "status", "--conf-dir", ConfDir]);
            foreach (Match m in LeaderLine().Matches(status))
            {
                return Array.IndexOf(Names, m.Groups["name"].Value);
            }
            await Task.Delay(200);
        }
        throw new TimeoutException("no monitor leads\n" + Logs());
    }

    [GeneratedRegex(@"^mon\.(?<name>\w+): leader,.*lease held", RegexOptions.Multiline)]
    private static partial Regex LeaderLine();

    /// <summary>A configuration directory naming only monitor <paramref name="i"/> (for a client that may reach only it).</summary>
    private string SoloConf(int i)
    {
        var dir = Path.Combine(_dir.Path, "solo-" + Names[i]);
        Directory.CreateDirectory(dir);
        var lines = File.ReadAllLines(Path.Combine(ConfDir, ClusterConf.FileName))
            .Where(l => !l.StartsWith("mon.", StringComparison.Ordinal) || l.StartsWith($"mon.{Names[i]} ", StringComparison.Ordinal));
        File.WriteAllLines(Path.Combine(dir, ClusterConf.FileName), lines);
        File.Copy(Path.Combine(ConfDir, ClusterConf.AdminKeyringName), Path.Combine(dir, ClusterConf.AdminKeyringName));
        return dir;
    }

    private void SetUpNetwork()
    {
        // Leftovers of an earlier run of this process id (a crashed test) would make `ip netns add` fail.
        foreach (var n in Names.Append("h"))
        {
            Sh($"ip netns del {Ns(n)} 2>/dev/null || true");
        }
        Sh($"ip netns add {Hub}");
        _namespaces.Add(Hub);
        Sh($"ip -n {Hub} link set lo up && ip -n {Hub} link add br0 type bridge && ip -n {Hub} link set br0 up && ip -n {Hub} addr add {Subnet}.254/24 dev br0");
        for (var i = 0; i < 3; i++)
        {
            var ns = Ns(Names[i]);
            Sh($"ip netns add {ns}");
            _namespaces.Add(ns);
            Sh($"ip -n {Hub} link add v{Names[i]} type veth peer name eth0 netns {ns} && ip -n {Hub} link set v{Names[i]} master br0 up && " +
               $"ip -n {ns} link set lo up && ip -n {ns} addr add {Subnet}.{i + 1}/24 dev eth0 && ip -n {ns} link set eth0 up");
        }
    }

    private void StartMonitor(int i)
    {
        // `ip netns exec` execs the program: the PID is the monitor's.
        _mons[i] = MonitorProcess.Start("ip",
            ["netns", "exec", Ns(Names[i]), "dotnet", typeof(CliApp).Assembly.Location, "mon", "run", "--conf-dir", ConfDir, "--name", Names[i], "--data", Path.Combine(_dir.Path, "data-" + Names[i])],
            Path.Combine(_dir.Path, $"mon-{Names[i]}.log"));
    }

    private void Kill(int i) => MonitorProcess.Kill(ref _mons[i]);

    /// <summary>Runs the CLI in a namespace; fails the test unless it succeeds.</summary>
    private string Cli(string ns, params string[] args)
    {
        var all = args.Contains("--conf-dir") ? args : [.. args, "--conf-dir", ConfDir];
        var (exit, output) = Run(ns, all);
        Assert.True(exit == 0, $"appliance {string.Join(' ', all)} in {ns} exited {exit}: {output}\n{Logs()}");
        return output;
    }

    private static (int Exit, string Output) Run(string ns, string[] args)
    {
        var psi = new ProcessStartInfo("ip") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in new[] { "netns", "exec", ns, "dotnet", typeof(CliApp).Assembly.Location }.Concat(args))
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(90)))
        {
            p.Kill();
            p.WaitForExit();
            return (-1, "timed out after 90 s: " + stdout.Result + stderr.Result);
        }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    private static void Sh(string command)
    {
        var psi = new ProcessStartInfo("/bin/sh") { RedirectStandardError = true, RedirectStandardOutput = true };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(command);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEnd();
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException($"`{command}` failed ({p.ExitCode}): {err}");
        }
    }

    private string Logs() => string.Join("\n", Directory.GetFiles(_dir.Path, "*.log").Select(f => $"== {f}\n{string.Join("\n", File.ReadAllLines(f).TakeLast(15))}"));

    public void Dispose()
    {
        for (var i = 0; i < 3; i++)
        {
            Kill(i);
        }
        foreach (var ns in _namespaces)
        {
            try
            {
                Sh($"ip netns del {ns}");
            }
            catch (InvalidOperationException)
            {
                // Best effort: reported by the next run's clean-up.
            }
        }
        _dir.Dispose();
    }
}
