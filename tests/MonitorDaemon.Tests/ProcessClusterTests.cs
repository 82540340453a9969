using System.Diagnostics;
using System.Net;
using Appliance.Cli;
using Appliance.Maps;
using Appliance.Maps.Client;
using Appliance.Maps.Protocol;
using Appliance.Wire.Auth;

namespace Appliance.Monitor.Daemon.Tests;

/// <summary>
/// Three monitors as real `appliance mon run` processes on distinct loopback ports, killed with SIGKILL: the
/// leader under a stream of changes, then all three at once. No acknowledged change may be lost.
/// </summary>
public sealed class ProcessClusterTests
{
    private sealed class Cluster : IDisposable
    {
        private readonly Process?[] _processes;
        public readonly TempDir Dir = new();
        public readonly ClusterConf Conf;

        public Cluster(int n)
        {
            var mons = Enumerable.Range(0, n).Select(i => ($"{(char)('a' + i)}", $"127.0.0.1:{MonitorClusterTests.FreePort()}")).ToList();
            Conf = ClusterConf.Bootstrap(ConfDir, mons, DateTimeOffset.UtcNow);
            _processes = new Process?[n];
        }

        public string ConfDir => Path.Combine(Dir.Path, "conf");

        public Secret AdminKey => Keyring.Load(Path.Combine(ConfDir, ClusterConf.AdminKeyringName)).Find("client.admin")!.Key;

        public void Start(int i) =>
            _processes[i] = MonitorProcess.Start("dotnet",
                [typeof(CliApp).Assembly.Location, "mon", "run", "--conf-dir", ConfDir, "--name", Conf.Monitors[i].Name, "--data", Path.Combine(Dir.Path, "data-" + Conf.Monitors[i].Name)],
                Path.Combine(Dir.Path, $"mon-{Conf.Monitors[i].Name}.log"));

        /// <summary>SIGKILL: no chance to flush or say goodbye.</summary>
        public void Kill(int i) => MonitorProcess.Kill(ref _processes[i]);

        public MonClient Client() => new(Conf.Monitors.Select(m => IPEndPoint.Parse(m.Address)), "client.admin", AdminKey) { Deadline = TimeSpan.FromSeconds(30) };

        public async Task<int> LeaderAsync(MonClient client)
        {
            for (var attempt = 0; attempt < 100; attempt++)
            {
                for (var i = 0; i < Conf.Monitors.Count; i++)
                {
                    if (_processes[i] is null)
                    {
                        continue;
                    }
                    try
                    {
                        var r = await client.QueryMonitorAsync(IPEndPoint.Parse(Conf.Monitors[i].Address), MonQuery.MonStatus);
                        if (r.Message.Contains(": leader,", StringComparison.Ordinal) && r.Message.Contains("lease held", StringComparison.Ordinal))
                        {
                            return i;
                        }
                    }
                    catch (Exception e) when (e is TimeoutException or IOException or MonitorsUnavailableException)
                    {
                    }
                }
                await Task.Delay(100);
            }
            throw new TimeoutException("no monitor became leader: " + Logs());
        }

        public string Logs() => string.Join("\n", Directory.GetFiles(Dir.Path, "*.log").Select(f => $"== {f}\n{string.Join("\n", File.ReadAllLines(f).TakeLast(15))}"));

        public void Dispose()
        {
            for (var i = 0; i < _processes.Length; i++)
            {
                Kill(i);
            }
            Dir.Dispose();
        }
    }

    [Fact]
    public async Task Killing_the_leader_under_a_stream_of_changes_and_then_every_monitor_loses_no_acknowledged_change()
    {
        using var c = new Cluster(3);
        for (var i = 0; i < 3; i++)
        {
            c.Start(i);
        }
        var acked = new List<string>();
        string? lastInterval = null;
        await using (var client = c.Client())
        {
            // A stream of changes; the leader is killed after the first few.
            var leader = -1;
            for (var n = 0; n < 30; n++)
            {
                if (n == 8)
                {
                    leader = await c.LeaderAsync(client);
                    c.Kill(leader);
                }
                if (n % 3 == 2)
                {
                    // Pool and config changes interleaved: the config's last acknowledged value must survive.
                    var value = (600 + n).ToString(System.Globalization.CultureInfo.InvariantCulture);
                    var set = await client.CommandAsync(new ConfigSet("mon_osd_down_out_interval", value));
                    Assert.True(set.Status == MonReplyStatus.Ok, $"config set: {set.Status} {set.Message}\n{c.Logs()}");
                    lastInterval = value;
                }
                var name = $"pool{n}";
                var r = await client.CommandAsync(new PoolCreate(name));
                // A retry of a create that did commit before the failover answers AlreadyExists: still acknowledged.
                Assert.True(r.Status == MonReplyStatus.Ok || (r.Status == MonReplyStatus.Failed && r.Code == (int)MonErrorCode.AlreadyExists),
                    $"{name}: {r.Status} {r.Message}\n{c.Logs()}");
                acked.Add(name);
            }
            Assert.True(leader >= 0);
            var pools = await client.QueryAsync(MonQuery.PoolList);
            Assert.Equal(MonReplyStatus.Ok, pools.Status);
            foreach (var name in acked)
            {
                Assert.Contains(name + " ", pools.Message);
            }
            Assert.Equal(lastInterval, (await client.QueryAsync(MonQuery.ConfigGet, "mon_osd_down_out_interval")).Message.Trim());
            c.Start(leader);
        }

        // Every monitor killed at once, then all restarted: the maps come back from their stores.
        await Task.Delay(500);
        for (var i = 0; i < 3; i++)
        {
            c.Kill(i);
        }
        for (var i = 0; i < 3; i++)
        {
            c.Start(i);
        }
        await using var again = c.Client();
        var after = await again.QueryAsync(MonQuery.PoolList);
        Assert.True(after.Status == MonReplyStatus.Ok, $"{after.Status} {after.Message}\n{c.Logs()}");
        foreach (var name in acked)
        {
            Assert.Contains(name + " ", after.Message);
        }
        Assert.Equal(lastInterval, (await again.QueryAsync(MonQuery.ConfigGet, "mon_osd_down_out_interval")).Message.Trim());
        var audit = await again.QueryAsync(MonQuery.Audit, "100");
        Assert.Contains("pool create pool29", audit.Message);
    }
}
