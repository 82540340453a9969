using System.Globalization;
using System.Net;
using Appliance.Platform.Native;

namespace Appliance.Cluster.Tests.Netns;

/// <summary>
/// The network of one run of the netns harness: a bridge in a hub namespace, one namespace per member (a daemon of
/// <see cref="NetnsCluster"/>, a node of <see cref="NetnsNodes"/>) with an <c>eth0</c> on the bridge and its own
/// address, a veth of the root namespace for the test process (.254), the cuts between members, probes, the
/// stale-run sweep and the clean-up.
/// <para>
/// Everything is named after the run id <c>nsx-PID-N</c> (PID of the test process, in hex; N counts the runs of this
/// process), so parallel runs never collide and leftovers are recognised. The /24 is picked for this run from
/// 10.200-249.x.0 (one no route or address of the root namespace uses).
/// </para>
/// </summary>
public sealed class NetnsNetwork : IAsyncDisposable
{
    /// <summary>Every name this harness gives a namespace or a link starts with this.</summary>
    public const string Prefix = "nsx-";

    /// <summary>Set to 1 on a machine that cannot make network namespaces: the netns tests are then skipped (reported as
    /// skipped, with this reason). Unset, a machine that cannot make them fails the tests, saying why.</summary>
    public const string NoNetnsVariable = "APPLIANCE_NO_NETNS";

    private static int _runs;
    private readonly Action<string> _log;
    private readonly List<string> _namespaces = [];
    private readonly Dictionary<string, IPAddress> _members = [];
    private readonly HashSet<string> _cut = [];
    private bool _hostLink;

    private NetnsNetwork(Action<string> log)
    {
        _log = log;
        RunId = $"{Prefix}{Environment.ProcessId.ToString("x", CultureInfo.InvariantCulture)}-{Interlocked.Increment(ref _runs).ToString("x", CultureInfo.InvariantCulture)}";
    }

    public string RunId { get; }

    /// <summary>The first three octets of this run's /24, e.g. "10.213.7".</summary>
    public string Subnet { get; private set; } = "";

    public string HubNamespace => RunId + "-hub";

    /// <summary>The namespaces made so far (the hub first).</summary>
    public IReadOnlyList<string> Namespaces => _namespaces;

    public string Namespace(string member) => $"{RunId}-{member}";

    /// <summary>Address .<paramref name="last"/> of this run's /24.</summary>
    public IPAddress At(int last) => IPAddress.Parse($"{Subnet}.{last.ToString(CultureInfo.InvariantCulture)}");

    /// <summary>The test process's address (on the root veth <see cref="RunId"/>).</summary>
    public IPAddress HostAddress => At(254);

    /// <summary>The address of a member added with <see cref="AddMemberAsync"/>.</summary>
    public IPAddress Address(string member) => _members.TryGetValue(member, out var a) ? a : throw new ArgumentException($"no member {member} in {RunId}", nameof(member));

    /// <summary>
    /// Checks this machine can make namespaces, sweeps leftovers of dead runs, and makes the hub (a bridge) and the
    /// test process's way in. What was made is removed again when a step fails.
    /// </summary>
    public static async Task<NetnsNetwork> CreateAsync(Action<string> log)
    {
        await PreflightAsync();
        await SweepStaleAsync(log);
        var network = new NetnsNetwork(log);
        try
        {
            await network.MakeAsync();
            return network;
        }
        catch
        {
            try
            {
                await network.DisposeAsync();
            }
            catch (InvalidOperationException c)
            {
                log(c.Message);
            }
            throw;
        }
    }

    /// <summary>Fails with what to do when this machine cannot make network namespaces.</summary>
    private static async Task PreflightAsync()
    {
        var fix = $"the netns cluster tests need root, iproute2 (`ip`), nftables (`nft`) and util-linux (`nsenter`); run them as root (scripts/test.sh does), " +
            $"install the packages of scripts/test-packages.txt, or set {NoNetnsVariable}=1 to skip them on a machine that cannot make network namespaces";
        if (Posix.getuid() != 0)
        {
            throw new InvalidOperationException($"not root: {fix}");
        }
        foreach (var tool in new[] { "ip", "nft", "nsenter" })
        {
            try
            {
                await Host.RunAsync(tool, [tool == "nsenter" ? "--version" : "-V"]);
            }
            catch (System.ComponentModel.Win32Exception e)
            {
                throw new InvalidOperationException($"`{tool}` cannot run ({e.Message}): {fix}");
            }
        }
    }

    /// <summary>Removes what earlier runs of this harness left behind (a test process killed before its clean-up):
    /// namespaces and root links named nsx-PID-… whose PID no longer runs, and any process still in them.</summary>
    public static async Task SweepStaleAsync(Action<string> log)
    {
        static bool Stale(string name)
        {
            if (!name.StartsWith(Prefix, StringComparison.Ordinal))
            {
                return false;
            }
            var parts = name.Split('-');
            return parts.Length >= 3 && int.TryParse(parts[1], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var pid)
                && pid != Environment.ProcessId && !Directory.Exists($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}");
        }
        foreach (var ns in (await Host.NamespacesAsync()).Where(Stale))
        {
            foreach (var pid in await Host.PidsInAsync(ns))
            {
                Posix.kill(pid, Posix.SIGKILL);
            }
            await Host.RunAsync("ip", ["netns", "del", ns]);
            log($"swept stale namespace {ns}");
        }
        foreach (var link in (await Host.LinksAsync()).Where(Stale))
        {
            await Host.RunAsync("ip", ["link", "del", link]);
            log($"swept stale link {link}");
        }
    }

    private async Task MakeAsync()
    {
        // A /24 that no address or route of the root namespace touches (the check and the claim race another run's;
        // the chance that two runs pick the same of 12800 at the same moment is left).
        var used = await Host.IpAsync("-4", "-o", "addr", "show") + await Host.IpAsync("-4", "route", "show");
        for (var attempt = 0; Subnet.Length == 0; attempt++)
        {
            var candidate = $"10.{Random.Shared.Next(200, 250).ToString(CultureInfo.InvariantCulture)}.{Random.Shared.Next(0, 256).ToString(CultureInfo.InvariantCulture)}";
            if (!used.Contains(candidate + ".", StringComparison.Ordinal))
            {
                Subnet = candidate;
            }
            if (attempt > 100)
            {
                throw new InvalidOperationException("no free 10.200-249.x.0/24 in the root namespace");
            }
        }

        await AddNamespaceAsync(HubNamespace);
        await Host.IpAsync("-n", HubNamespace, "link", "add", "br0", "type", "bridge");
        await Host.IpAsync("-n", HubNamespace, "link", "set", "br0", "up");

        // The test process's way in: RUN in the root namespace, its peer h-host on the bridge.
        await Host.IpAsync("link", "add", RunId, "type", "veth", "peer", "name", "h-host", "netns", HubNamespace);
        _hostLink = true;
        _members["host"] = HostAddress;
        await Host.IpAsync("-n", HubNamespace, "link", "set", "h-host", "master", "br0", "up");
        await Host.IpAsync("addr", "add", $"{HostAddress}/24", "dev", RunId);
        await Host.IpAsync("link", "set", RunId, "up");
        _log($"network {Subnet}.0/24: bridge in {HubNamespace}, test process at {HostAddress} on {RunId}");
    }

    /// <summary>The namespace of <paramref name="member"/>: lo, and eth0 with <paramref name="address"/> on the bridge.
    /// (Interface names stay under 15 characters: the hub side is h-MEMBER.)</summary>
    public async Task AddMemberAsync(string member, IPAddress address)
    {
        var ns = Namespace(member);
        await AddNamespaceAsync(ns);
        _members[member] = address;
        var hubSide = "h-" + member;
        await Host.IpAsync("-n", HubNamespace, "link", "add", hubSide, "type", "veth", "peer", "name", "eth0", "netns", ns);
        await Host.IpAsync("-n", HubNamespace, "link", "set", hubSide, "master", "br0", "up");
        await Host.IpAsync("-n", ns, "addr", "add", $"{address}/24", "dev", "eth0");
        await Host.IpAsync("-n", ns, "link", "set", "eth0", "up");
        await Host.IpAsync("-n", ns, "link", "set", "lo", "up");
    }

    private async Task AddNamespaceAsync(string ns)
    {
        await Host.IpAsync("netns", "add", ns);
        _namespaces.Add(ns);
    }

    /// <summary>Cuts <paramref name="member"/> off from <paramref name="from"/> (members, or "host" for the test
    /// process), both ways, with nftables rules in its namespace: TCP to and from them is refused with a reset (or,
    /// <paramref name="silent"/>, every packet dropped). Replaces an earlier cut of that member.</summary>
    public Task PartitionAsync(string member, IEnumerable<string> from, bool silent = false)
    {
        var addresses = from.Distinct().Select(d => Address(d).ToString()).ToList();
        var set = string.Join(", ", addresses);
        return CutAsync(member, $"ip saddr {{ {set} }}", $"ip daddr {{ {set} }}", silent, $"from {set}",
            $"( {string.Join(" or ", addresses.Select(a => "dst " + a))} )");
    }

    /// <summary>Cuts a member off from everything: every other member and the test process.</summary>
    public Task IsolateAsync(string member, bool silent = false) =>
        CutAsync(member, "iifname \"eth0\"", "oifname \"eth0\"", silent, "from everyone",
            $"( dst {Subnet}.0/24 ) and not ( dst {Address(member)} )");

    /// <summary>Installs the cut of <paramref name="member"/>: nft matches <paramref name="inbound"/> and
    /// <paramref name="outbound"/>, and <paramref name="connections"/> an ss(8) filter of the TCP connections that cross
    /// it (by remote address); <paramref name="what"/> for the log.</summary>
    private async Task CutAsync(string member, string inbound, string outbound, bool silent, string what, string connections)
    {
        string Rule(string match) => silent ? $"{match} drop" : $"{match} meta l4proto tcp reject with tcp reset\n    {match} drop";
        // Resets pass both ways: the one the input chain sends back to a peer leaves through the output hook, and the
        // one the output chain makes for a local connect comes in through the input hook (as from the peer). Caught by
        // the other chain's reject they would be dropped (nft never answers a reset with a reset), and the cut would
        // be silent. A reset only ever ends a connection, so letting them through opens nothing.
        string Resets(string match) => silent ? "" : $"{match} tcp flags & rst == rst accept\n    ";
        // add + delete + define in one transaction: replaces an earlier cut atomically.
        var script = $$"""
            table inet nsx_cut
            delete table inet nsx_cut
            table inet nsx_cut {
              chain input {
                type filter hook input priority 0; policy accept;
                {{Resets(inbound)}}{{Rule(inbound)}}
              }
              chain output {
                type filter hook output priority 0; policy accept;
                {{Resets(outbound)}}{{Rule(outbound)}}
              }
            }
            """;
        await Host.InAsync(Namespace(member), "nft", ["-f", "-"], script);
        _cut.Add(member);
        if (!silent)
        {
            // The open connections across the cut are reset too (ss -K aborts them; each sends its peer a reset), as
            // the kernel of a dead process would: otherwise a request that crossed before the cut waits, silently, for
            // a reply the cut drops, and nothing on the other side learns of the cut until its own timeout.
            await Host.InAsync(Namespace(member), "ss", ["-K", "-t", "-n", connections]);
        }
        _log($"{member} cut off {what} ({(silent ? "packets dropped" : "connections reset")})");
    }

    /// <summary>Removes the cut of <paramref name="member"/>.</summary>
    public async Task HealAsync(string member)
    {
        await Host.InAsync(Namespace(member), "nft", ["-f", "-"], "table inet nsx_cut\ndelete table inet nsx_cut\n");
        _cut.Remove(member);
        _log($"{member} healed");
    }

    public async Task HealAllAsync()
    {
        foreach (var d in _cut.ToList())
        {
            await HealAsync(d);
        }
    }

    /// <summary>What a TCP connect from <paramref name="from"/> (a member's namespace, or "host": the test process) to
    /// <paramref name="to"/> meets: "connected", "refused" or "timeout" (no answer within 2 s).</summary>
    public async Task<string> ProbeAsync(string from, IPEndPoint to)
    {
        if (from == "host")
        {
            using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            try
            {
                await socket.ConnectAsync(to, bound.Token);
                return "connected";
            }
            catch (OperationCanceledException)
            {
                return "timeout";
            }
            catch (System.Net.Sockets.SocketException e) when (e.SocketErrorCode is System.Net.Sockets.SocketError.ConnectionRefused or System.Net.Sockets.SocketError.ConnectionReset)
            {
                return "refused";
            }
        }
        var (code, output) = await Host.RunAsync("ip", ["netns", "exec", Namespace(from), "timeout", "2", "bash", "-c", $"exec 3<>/dev/tcp/{to.Address}/{to.Port.ToString(CultureInfo.InvariantCulture)}"]);
        return code switch
        {
            0 => "connected",
            124 => "timeout",
            _ when output.Contains("refused", StringComparison.OrdinalIgnoreCase) || output.Contains("reset", StringComparison.OrdinalIgnoreCase) => "refused",
            _ => throw new InvalidOperationException($"probe {from} → {to} exited {code}: {output.Trim()}"),
        };
    }

    /// <summary>
    /// Kills whatever still runs in its namespaces (only processes in a namespace this run made), deletes them (their
    /// veths and nft tables go with them) and the root veth. Every step runs; what could not be removed is thrown at
    /// the end. Processes the caller started should be ended (by pid) before this.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        var problems = new List<string>();
        foreach (var ns in _namespaces.AsEnumerable().Reverse())
        {
            try
            {
                foreach (var pid in await Host.PidsInAsync(ns))
                {
                    Posix.kill(pid, Posix.SIGKILL);
                }
                var (code, output) = await Host.RunAsync("ip", ["netns", "del", ns]);
                if (code != 0)
                {
                    problems.Add($"ip netns del {ns}: {output.Trim()}");
                }
            }
            catch (Exception e) when (e is InvalidOperationException or TimeoutException or IOException)
            {
                problems.Add($"{ns}: {e.Message}");
            }
        }
        _namespaces.Clear();
        if (_hostLink)
        {
            // It goes with the hub namespace (a veth dies with its peer), a moment after `ip netns del` returns.
            try
            {
                await Poll.UntilAsync(async () => !(await Host.LinksAsync()).Contains(RunId), TimeSpan.FromSeconds(5), $"link {RunId} to go with {HubNamespace}");
            }
            catch (Xunit.Sdk.XunitException)
            {
                var (code, output) = await Host.RunAsync("ip", ["link", "del", RunId]);
                if (code != 0 && !output.Contains("Cannot find device", StringComparison.Ordinal))
                {
                    problems.Add($"ip link del {RunId}: {output.Trim()}");
                }
            }
            _hostLink = false;
        }
        if (problems.Count > 0)
        {
            throw new InvalidOperationException($"netns network {RunId} clean-up left something:\n{string.Join("\n", problems)}");
        }
    }
}
