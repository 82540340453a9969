using System.Diagnostics;
using System.Globalization;
using Appliance.Platform.Native;

namespace Appliance.Cluster.Tests.Netns;

/// <summary>
/// The harness's own promises that the failure tests do not exercise: the stale-run sweep removes leftovers of dead
/// runs of this harness only, and a cluster that fails half-way through starting leaves nothing behind.
/// </summary>
[Collection(NetnsFixture.Collection)]
public sealed class NetnsHarnessTests(ITestOutputHelper output)
{
    [NetnsFact]
    public async Task Sweep_removes_what_dead_runs_left_and_nothing_else()
    {
        // A pid that ran and is gone (reuse within the test is possible, and would make the test fail, not pass).
        int dead;
        using (var p = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!)
        {
            await p.WaitForExitAsync();
            dead = p.Id;
        }
        Assert.False(Directory.Exists($"/proc/{dead.ToString(CultureInfo.InvariantCulture)}"), $"pid {dead} was reused at once");
        var hex = dead.ToString("x", CultureInfo.InvariantCulture);
        var staleNs = $"{NetnsCluster.Prefix}{hex}-1-osd.0";
        var staleLink = $"{NetnsCluster.Prefix}{hex}-1";
        // pid 1 always runs: a run of it is live. A name without the prefix is someone else's.
        var liveNs = $"{NetnsCluster.Prefix}1-ff-hub";
        var foreignNs = $"nsxtest-{hex}-1-hub";
        Process? sleeper = null;
        try
        {
            foreach (var ns in new[] { staleNs, liveNs, foreignNs })
            {
                await Host.IpAsync("netns", "add", ns);
            }
            // A veth pair, as the harness makes (no dummy driver everywhere); its peer's name is not the harness's.
            await Host.IpAsync("link", "add", staleLink, "type", "veth", "peer", "name", "nsxp" + hex);
            sleeper = Process.Start(new ProcessStartInfo("ip", ["netns", "exec", staleNs, "sleep", "300"]) { UseShellExecute = false })!;
            await Poll.UntilAsync(async () => (await Host.PidsInAsync(staleNs)).Contains(sleeper.Id), TimeSpan.FromSeconds(10), "the sleeper to run in the stale namespace");

            var swept = new List<string>();
            await NetnsNetwork.SweepStaleAsync(swept.Add);
            output.WriteLine(string.Join("\n", swept));

            var namespaces = await Host.NamespacesAsync();
            Assert.DoesNotContain(staleNs, namespaces);
            Assert.DoesNotContain(staleLink, await Host.LinksAsync());
            await Poll.UntilAsync(async () => !(await Host.LinksAsync()).Contains("nsxp" + hex), TimeSpan.FromSeconds(5), "the stale veth's peer to go with it");
            Assert.True(sleeper.WaitForExit(10_000), $"the process in {staleNs} (pid {sleeper.Id}) still runs");
            Assert.Contains(liveNs, namespaces);
            Assert.Contains(foreignNs, namespaces);
        }
        finally
        {
            if (sleeper is { HasExited: false })
            {
                Posix.kill(sleeper.Id, Posix.SIGKILL);
            }
            sleeper?.Dispose();
            foreach (var ns in new[] { staleNs, liveNs, foreignNs })
            {
                await Host.RunAsync("ip", ["netns", "del", ns]);
            }
            await Host.RunAsync("ip", ["link", "del", staleLink]);
            await Host.RunAsync("ip", ["link", "del", "nsxp" + hex]);
        }
    }

    [NetnsFact]
    public async Task A_cluster_that_fails_to_start_leaves_no_namespace_link_process_or_file()
    {
        // pg_num 0 is refused by the monitors, after the network, the monitors and the OSD are up.
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => NetnsCluster.StartAsync(osds: 1, 64L << 20, pgNum: 0, output.WriteLine));
        output.WriteLine(e.Message);
        Assert.Contains("pg_num 0", e.Message);
        var m = System.Text.RegularExpressions.Regex.Match(e.Message, @"netns cluster (nsx-[0-9a-f]+-[0-9a-f]+) \(data ([^)]+)\)");
        Assert.True(m.Success, e.Message);
        var (run, data) = (m.Groups[1].Value, m.Groups[2].Value);

        Assert.DoesNotContain(await Host.NamespacesAsync(), ns => ns.StartsWith(run + "-", StringComparison.Ordinal));
        Assert.DoesNotContain(run, await Host.LinksAsync());
        Assert.False(Directory.Exists(data), $"{data} is still there");
        var daemons = Directory.GetDirectories("/proc").Select(d => Path.GetFileName(d))
            .Where(n => int.TryParse(n, NumberStyles.None, CultureInfo.InvariantCulture, out _))
            .Select(n => (Pid: n, Cmdline: LocalCluster.Cmdline(int.Parse(n, CultureInfo.InvariantCulture))))
            .Where(x => x.Cmdline.Contains(data, StringComparison.Ordinal)).ToList();
        Assert.True(daemons.Count == 0, $"still running: {string.Join("; ", daemons.Select(d => $"{d.Pid}: {d.Cmdline}"))}");
    }
}
