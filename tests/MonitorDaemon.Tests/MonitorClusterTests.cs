using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Appliance.Maps;
using Appliance.Maps.Client;
using Appliance.Maps.Protocol;
using Appliance.Paxos.Core;
using Appliance.Wire.Auth;
using Appliance.Wire.Messenger;

namespace Appliance.Monitor.Daemon.Tests;

/// <summary>Three real monitors in this process, talking over loopback TCP through the messenger, each with its own
/// store directory.</summary>
public sealed partial class MonitorClusterTests
{
    private static readonly PaxosOptions Fast = new()
    {
        HeartbeatInterval = TimeSpan.FromMilliseconds(50),
        LeaseDuration = TimeSpan.FromMilliseconds(400),
        ElectionTimeout = TimeSpan.FromMilliseconds(500),
    };

    internal static int FreePort()
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)s.LocalEndPoint!).Port;
    }

    private sealed class Cluster : IAsyncDisposable
    {
        public readonly TempDir Dir = new();
        public ClusterConf Conf;
        public MonitorDaemon?[] Daemons;

        public Cluster(int n)
        {
            var mons = Enumerable.Range(0, n).Select(i => ($"{(char)('a' + i)}", $"127.0.0.1:{FreePort()}")).ToList();
            Conf = ClusterConf.Bootstrap(Path.Combine(Dir.Path, "conf"), mons, DateTimeOffset.UtcNow);
            Daemons = new MonitorDaemon?[n];
        }

        public KeyringEntry Admin => Keyring.Load(Path.Combine(Dir.Path, "conf", ClusterConf.AdminKeyringName)).Entries.Single();

        public async Task StartAsync(int i)
        {
            var monKey = Keyring.Load(Path.Combine(Dir.Path, "conf", ClusterConf.MonKeyringName)).Find(ClusterConf.MonEntity)!.Key;
            var d = new MonitorDaemon(new MonitorDaemonOptions
            {
                Name = Conf.Monitors[i].Name,
                DataDirectory = Path.Combine(Dir.Path, $"mon-{Conf.Monitors[i].Name}"),
                Conf = Conf,
                MonKey = monKey,
                Admin = Admin,
                Paxos = Fast,
            }, new Appliance.Tests.Support.MemoryLoggers($"mon.{Conf.Monitors[i].Name}"));
            await d.StartAsync();
            Daemons[i] = d;
        }

        /// <summary>Stops monitor <paramref name="i"/>: an orderly stop (a leader hands off), or as a crash would.</summary>
        public async Task StopAsync(int i, bool handOff = true)
        {
            if (Daemons[i] is { } d)
            {
                Daemons[i] = null;
                await d.StopAsync(handOff);
            }
        }

        public MonClient Client(string? entity = null, Secret? key = null) =>
            new(Conf.Monitors.Select(m => IPEndPoint.Parse(m.Address)), entity ?? "client.admin", key ?? Admin.Key) { Deadline = TimeSpan.FromSeconds(20) };

        public int LeaderIndex() => Array.FindIndex(Daemons, d => d is not null && d.StatusLine.StartsWith("leader", StringComparison.Ordinal));

        public async ValueTask DisposeAsync()
        {
            for (var i = 0; i < Daemons.Length; i++)
            {
                await StopAsync(i);
            }
            Dir.Dispose();
        }
    }

    private static async Task<MonReply> Ok(Task<MonReply> t)
    {
        var r = await t;
        Assert.True(r.Status == MonReplyStatus.Ok, $"{r.Status}: {r.Message}");
        return r;
    }

    [Fact]
    public async Task Three_monitors_commit_serve_reads_and_survive_the_loss_of_the_leader_and_a_full_restart()
    {
        await using var c = new Cluster(3);
        for (var i = 0; i < 3; i++)
        {
            await c.StartAsync(i);
        }
        await using var admin = c.Client();
        await Ok(admin.CommandAsync(new PoolCreate("vm", Size: 3, MinSize: 2)));
        await Ok(admin.CommandAsync(new ConfigSet("mon_osd_down_out_interval", "300")));
        var pools = await Ok(admin.QueryAsync(MonQuery.PoolList));
        Assert.Contains("vm", pools.Message);

        // Lose the leader: a new one is elected and nothing acknowledged is lost.
        var leader = c.LeaderIndex();
        Assert.True(leader >= 0, "someone leads after the first commits");
        await c.StopAsync(leader, handOff: false);
        await Ok(admin.CommandAsync(new PoolCreate("backup")));
        pools = await Ok(admin.QueryAsync(MonQuery.PoolList));
        Assert.Contains("vm", pools.Message);
        Assert.Contains("backup", pools.Message);
        Assert.Contains("300", (await Ok(admin.QueryAsync(MonQuery.ConfigGet, "mon_osd_down_out_interval"))).Message);

        // The old leader comes back and catches up; then everyone restarts from disk.
        await c.StartAsync(leader);
        for (var i = 0; i < 3; i++)
        {
            await c.StopAsync(i);
        }
        for (var i = 0; i < 3; i++)
        {
            await c.StartAsync(i);
        }
        await using var again = c.Client();
        pools = await Ok(again.QueryAsync(MonQuery.PoolList));
        Assert.Contains("vm", pools.Message);
        Assert.Contains("backup", pools.Message);
        var audit = await Ok(again.QueryAsync(MonQuery.Audit));
        Assert.Contains("client.admin", audit.Message);
        Assert.Contains("pool create vm", audit.Message);
    }

    [Fact]
    public async Task A_subscriber_gets_every_osdmap_epoch_in_order_across_the_loss_of_the_leader()
    {
        await using var c = new Cluster(3);
        for (var i = 0; i < 3; i++)
        {
            await c.StartAsync(i);
        }
        await using var admin = c.Client();
        await Ok(admin.CommandAsync(new PoolCreate("before")));
        // A long poll wait: a subscriber that were only answered when its wait runs out would not see 12 epochs
        // within the test's deadline.
        await using var watcher = new MonClient(c.Conf.Monitors.Select(m => IPEndPoint.Parse(m.Address)), "client.admin", c.Admin.Key)
        {
            Deadline = TimeSpan.FromSeconds(20),
            PollWait = TimeSpan.FromSeconds(20),
        };
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var seen = new List<OsdMap>();
        var target = new TaskCompletionSource();
        var watch = Task.Run(async () =>
        {
            await foreach (var map in watcher.WatchOsdMapAsync(null, cts.Token))
            {
                lock (seen)
                {
                    seen.Add(map);
                }
                if (map.FindPool("after-5") is not null)
                {
                    target.TrySetResult();
                    return;
                }
            }
        });
        for (var i = 0; i < 6; i++)
        {
            if (i == 3)
            {
                await c.StopAsync(c.LeaderIndex(), handOff: true);
            }
            await Ok(admin.CommandAsync(new PoolCreate($"after-{i}")));
        }
        await Task.WhenAny(target.Task, watch, Task.Delay(TimeSpan.FromSeconds(60), cts.Token));
        await cts.CancelAsync();
        Assert.True(target.Task.IsCompleted, $"the subscriber saw {seen.Count} maps, the last at epoch {seen.LastOrDefault()?.Epoch}; watch: {watch.Exception}");
        lock (seen)
        {
            // The first answer is the full map then; after it every epoch, one by one.
            Assert.NotNull(seen[0].FindPool("before"));
            for (var i = 1; i < seen.Count; i++)
            {
                Assert.Equal(seen[i - 1].Epoch + 1, seen[i].Epoch);
            }
            var last = seen[^1];
            var live = c.Daemons.First(d => d is not null && d.Committed!.Osd.Epoch == last.Epoch)!;
            Assert.Equal(live.Committed!.Osd.ToBytes(), last.ToBytes());
        }
    }

    [Fact]
    public async Task Osd_watch_prints_the_current_map_then_each_change()
    {
        await using var c = new Cluster(3);
        for (var i = 0; i < 3; i++)
        {
            await c.StartAsync(i);
        }
        await using var admin = c.Client();
        await Ok(admin.CommandAsync(new PoolCreate("vm")));
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var confDir = Path.Combine(c.Dir.Path, "conf");
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var watch = Cli.CliApp.RunAsync(["osd", "watch", "--count", "3", "--conf-dir", confDir], stdout, stderr, cts.Token);
        // The first line is the current map; wait for it so the changes below come after it.
        while (!stdout.ToString().Contains("osdmap e", StringComparison.Ordinal) && !watch.IsCompleted)
        {
            await Task.Delay(20);
        }
        await Ok(admin.CommandAsync(new PoolCreate("backup")));
        await Ok(admin.CommandAsync(new PoolRemove("vm")));
        Assert.Equal(0, await watch);
        var lines = stdout.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        Assert.Matches("^osdmap e[0-9]+: 0 OSDs \\(0 up, 0 in\\), 1 pools$", lines[0]);
        Assert.EndsWith("2 pools; pool backup created", lines[1]);
        Assert.EndsWith("1 pools; pool vm removed", lines[2]);
    }

    [Fact]
    public async Task Osds_boot_are_reported_down_go_out_on_the_leaders_tick_and_come_back_in()
    {
        await using var c = new Cluster(3);
        for (var i = 0; i < 3; i++)
        {
            await c.StartAsync(i);
        }
        await using var admin = c.Client();
        var keys = new[] { Secret.Generate(), Secret.Generate() };
        for (var i = 0; i < 2; i++)
        {
            await Ok(admin.CommandAsync(new AuthAdd($"osd.{i}", new Dictionary<string, string> { ["mon"] = "allow rx" }, keys[i])));
        }
        await Ok(admin.CommandAsync(new ConfigSet("mon_osd_down_out_interval", "1")));
        await using var osd0 = c.Client("osd.0", keys[0]);
        await using var osd1 = c.Client("osd.1", keys[1]);
        await Ok(osd0.CommandAsync(new OsdBoot(0, "127.0.0.1:6800", "h0", 0x10000)));
        await Ok(osd1.CommandAsync(new OsdBoot(1, "127.0.0.1:6801", "h1", 0x10000)));

        // Nobody speaks for another OSD, and the tick is the monitors' own.
        Assert.Equal(MonReplyStatus.Denied, (await osd0.CommandAsync(new OsdBoot(1, "127.0.0.1:6802", "h0", 0x10000))).Status);
        Assert.Equal(MonReplyStatus.Denied, (await osd0.CommandAsync(new OsdFailureReport(1, 1))).Status);
        Assert.Equal(MonReplyStatus.Denied, (await admin.CommandAsync(new OsdBeacon(0))).Status);
        Assert.Equal(MonReplyStatus.Denied, (await osd0.CommandAsync(new OsdTick())).Status);
        // An OSD key cannot administer the cluster.
        Assert.Equal(MonReplyStatus.Denied, (await osd0.CommandAsync(new PoolCreate("mine"))).Status);

        await Ok(osd0.CommandAsync(new OsdBeacon(0)));
        var tree = await Ok(admin.QueryAsync(MonQuery.OsdTree));
        Assert.Contains("osd.0", tree.Message);
        Assert.Contains("osd.1", tree.Message);

        // osd.1 reports osd.0 failed (the only other host, so its report is enough): down at once; the leader's own
        // tick marks it out once it has been down for mon_osd_down_out_interval.
        await Ok(osd1.CommandAsync(new OsdFailureReport(0, 1)));
        OsdInfo? state = null;
        for (var attempt = 0; attempt < 200; attempt++)
        {
            state = c.Daemons.First(d => d is not null)!.Committed!.Osd.FindOsd(0);
            if (state is { Up: false, In: false })
            {
                break;
            }
            await Task.Delay(50);
        }
        Assert.True(state is { Up: false, In: false, AutoOut: true }, $"osd.0 is {state}");

        // It boots again: up, and in again (the monitors, not an administrator, had marked it out).
        await Ok(osd0.CommandAsync(new OsdBoot(0, "127.0.0.1:6800", "h0", 0x10000)));
        var osdmap = await Ok(admin.QueryAsync(MonQuery.Status));
        Assert.Contains("2 OSDs, 2 up, 2 in", osdmap.Message);
    }

    [Fact]
    public async Task A_monitor_is_added_catches_up_and_votes_and_a_removed_leader_hands_off()
    {
        await using var c = new Cluster(3);
        for (var i = 0; i < 3; i++)
        {
            await c.StartAsync(i);
        }
        await using (var admin = c.Client())
        {
            await Ok(admin.CommandAsync(new PoolCreate("one")));
            var address = $"127.0.0.1:{FreePort()}";
            var added = await Ok(admin.CommandAsync(new MonAdd("d", address)));
            Assert.Contains("member id 4", added.Message);
            c.Conf = c.Conf.WithMonitor("d", address);
            c.Daemons = [.. c.Daemons, null];
        }
        await c.StartAsync(3);
        var d = c.Daemons[3]!;
        Assert.Equal(4, d.Id);
        await Until(() => c.Daemons.All(m => m!.Members.SequenceEqual([1, 2, 3, 4])) && d.Committed!.Osd.FindPool("one") is not null,
            () => $"members {string.Join(" / ", c.Daemons.Select(m => string.Join(",", m!.Members)))}");

        // Remove the leader: it hands off, the other three go on.
        var leader = c.LeaderIndex();
        Assert.True(leader >= 0);
        await using (var admin = c.Client())
        {
            await Ok(admin.CommandAsync(new MonRemove(c.Conf.Monitors[leader].Name)));
            var remaining = Enumerable.Range(0, 4).Where(i => i != leader).ToList();
            var ids = remaining.Select(i => c.Daemons[i]!.Id).Order().ToList();
            await Until(() => remaining.All(i => c.Daemons[i]!.Members.SequenceEqual(ids)), () => $"members {string.Join(" / ", c.Daemons.Select(m => string.Join(",", m!.Members)))}");
            await c.StopAsync(leader);
            await Ok(admin.CommandAsync(new PoolCreate("two")));
            // One of the three remaining stops: two of three are a majority of the new configuration (two of the old
            // four would not be).
            var stopped = remaining.First(i => i != 3);
            await c.StopAsync(stopped);
            await Ok(admin.CommandAsync(new PoolCreate("three")));
            var pools = await Ok(admin.QueryAsync(MonQuery.PoolList));
            Assert.Contains("three", pools.Message);
        }
    }

    private static async Task Until(Func<bool> condition, Func<string> describe)
    {
        for (var attempt = 0; attempt < 300; attempt++)
        {
            if (condition())
            {
                return;
            }
            await Task.Delay(50);
        }
        Assert.Fail("timed out waiting: " + describe());
    }

    /// <summary>Starts every monitor of <paramref name="c"/>, commits one command and returns who leads then.</summary>
    private static async Task<int> StartAllAndCommitAsync(Cluster c)
    {
        for (var i = 0; i < c.Conf.Monitors.Count; i++)
        {
            await c.StartAsync(i);
        }
        await using (var first = c.Client())
        {
            await Ok(first.CommandAsync(new ConfigSet("osd_heartbeat_grace", "20")));
        }
        var leader = c.LeaderIndex();
        Assert.True(leader >= 0, "someone leads after the first commit");
        return leader;
    }

    [Fact]
    public async Task A_command_answered_through_a_peon_sends_the_client_to_the_leader_and_a_stopped_monitor_is_passed_over_at_once()
    {
        await using var c = new Cluster(3);
        var leader = await StartAllAndCommitAsync(c);
        var leaderAddress = c.Conf.Monitors[leader].Address;

        // A client starts at a random monitor: take one whose first command a peon forwarded (its answer names the
        // leader); its next command goes to the leader itself (answered without a hint).
        var via = false;
        for (var attempt = 0; attempt < 40 && !via; attempt++)
        {
            await using var client = c.Client();
            var r = await Ok(client.CommandAsync(new ConfigSet("osd_heartbeat_grace", "21")));
            if (r.Leader is null)
            {
                continue; // it started at the leader
            }
            via = true;
            Assert.Equal(leaderAddress, r.Leader);
            var next = await Ok(client.CommandAsync(new ConfigSet("osd_heartbeat_grace", "22")));
            Assert.True(next.Leader is null, $"the second command was still answered through a peon (hint {next.Leader})");
        }
        Assert.True(via, "no client ever started at a peon in 40 tries");

        // A stopped monitor refuses connections: a client that starts there moves on at once, not after its attempt's
        // time (longer than the whole deadline here, so waiting it out would fail the command).
        var stopped = (leader + 1) % 3;
        var alive = (leader + 2) % 3;
        await c.StopAsync(stopped);
        var endpoints = new[] { IPEndPoint.Parse(c.Conf.Monitors[stopped].Address), IPEndPoint.Parse(c.Conf.Monitors[alive].Address) };
        for (var i = 0; i < 10; i++)
        {
            await using var client = new MonClient(endpoints, "client.admin", c.Admin.Key)
            {
                AttemptTimeout = TimeSpan.FromSeconds(120),
                Deadline = TimeSpan.FromSeconds(20),
            };
            await Ok(client.CommandAsync(new ConfigSet("osd_heartbeat_grace", (30 + i).ToString(System.Globalization.CultureInfo.InvariantCulture))));
        }
    }

    [Fact]
    public async Task A_client_that_knows_only_a_peon_follows_its_hint_to_a_leader_it_did_not_know_and_learns_the_monmap()
    {
        await using var c = new Cluster(3);
        var leader = await StartAllAndCommitAsync(c);
        var peon = (leader + 1) % 3;

        // As a daemon of a node whose cluster.conf predates the monitors that joined later: it lists one peon only.
        // Reads are the leader's; the peon names a leader this client does not list, and it goes there.
        await using var client = new MonClient([IPEndPoint.Parse(c.Conf.Monitors[peon].Address)], "client.admin", c.Admin.Key)
        {
            Deadline = TimeSpan.FromSeconds(10),
        };
        using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await foreach (var map in client.WatchOsdMapAsync(null, bound.Token))
        {
            Assert.True(map.Epoch > 0);
            break;
        }
        // Its first poll learnt the monmap: every monitor, not only the one it was given and the leader it was sent to.
        Assert.Equal(c.Conf.Monitors.Select(m => IPEndPoint.Parse(m.Address).ToString()).Order(StringComparer.Ordinal),
            client.Monitors.Select(m => m.ToString()).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task The_leader_rotates_service_keys_and_a_client_reaches_a_service_with_a_ticket_from_the_monitors()
    {
        await using var c = new Cluster(3);
        for (var i = 0; i < 3; i++)
        {
            await c.StartAsync(i);
        }
        await using var admin = c.Client();
        var vmKey = Secret.Generate();
        var osdKey = Secret.Generate();
        await Ok(admin.CommandAsync(new AuthAdd("client.vm", new Dictionary<string, string> { ["mon"] = "allow r", ["osd"] = "allow rw pool=vm" }, vmKey)));
        await Ok(admin.CommandAsync(new AuthAdd("osd.0", new Dictionary<string, string> { ["mon"] = "allow rx" }, osdKey)));
        await using var vm = c.Client("client.vm", vmKey);
        await using var osd0 = c.Client("osd.0", osdKey);

        // The leader proposes the first osd key on its own, within a check interval or two.
        ServiceSecrets? keys = null;
        for (var waited = 0; waited < 200 && keys?.Find(1) is null; waited++)
        {
            keys = await osd0.GetServiceKeysAsync("osd");
            await Task.Delay(100);
        }
        Assert.NotNull(keys?.Find(1));

        // A service (as an OSD runs it): holds no client keys, verifies tickets with the keys from the monitors.
        var received = Channel.CreateUnbounded<(MessageSession Session, byte[] Payload)>();
        await using var service = new MessengerServer(_ => null, new MessengerOptions(),
            async (session, m) => await received.Writer.WriteAsync((session, m.Payload.ToArray())), _ => { },
            new TicketVerifier(keys!, TimeSpan.FromMinutes(5)));
        var endpoint = service.ListenTcp(new IPEndPoint(IPAddress.Loopback, 0));
        await using (var client = new MessengerClient(endpoint, "client.vm", vm.TicketSource("osd"), ConnectionMode.Secure, new MessengerOptions(),
            (_, _) => ValueTask.CompletedTask, _ => { }))
        {
            await client.StartAsync().WaitAsync(TimeSpan.FromSeconds(30));
            await client.Session.SendAsync(300, "write to vm"u8.ToArray());
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            var (session, payload) = await received.Reader.ReadAsync(cts.Token);
            Assert.Equal("write to vm"u8.ToArray(), payload);
            Assert.Equal("client.vm", session.PeerEntity);
            Assert.True(Authorizer.IsAllowed(session.PeerCaps!, "osd", Access.Write, "vm"));
            Assert.False(Authorizer.IsAllowed(session.PeerCaps!, "osd", Access.Write, "other"));
        }

        // The keys are the service's daemons' only; no client may rotate them.
        await Assert.ThrowsAsync<AuthenticationException>(() => vm.GetServiceKeysAsync("osd"));
        await Assert.ThrowsAsync<AuthenticationException>(() => admin.GetServiceKeysAsync("osd"));
        Assert.Equal(MonReplyStatus.Denied, (await admin.CommandAsync(new ServiceKeyRotate("osd", Secret.Generate()))).Status);

        // The keys are replicated state: the next leader grants tickets the keys fetched before accept.
        await c.StopAsync(c.LeaderIndex());
        var ticket = await vm.GetTicketAsync("osd");
        var now = DateTimeOffset.UtcNow;
        var identity = new TicketVerifier(keys!, TimeSpan.FromMinutes(5)).Verify(ticket.Ticket, Tickets.Authenticator(ticket.SessionKey, now), now);
        Assert.Equal("client.vm", identity.Entity);
    }

    [Fact]
    public async Task Refused_commands_denied_callers_and_a_lone_monitor_without_quorum()
    {
        await using var c = new Cluster(3);
        for (var i = 0; i < 3; i++)
        {
            await c.StartAsync(i);
        }
        await using var admin = c.Client();
        await Ok(admin.CommandAsync(new PoolCreate("vm")));
        var dup = await admin.CommandAsync(new PoolCreate("vm"));
        Assert.Equal(MonReplyStatus.Failed, dup.Status);
        Assert.Equal((int)MonErrorCode.AlreadyExists, dup.Code);

        // A reader may read but not write; an unknown entity cannot connect at all.
        var readerKey = Secret.Generate();
        await Ok(admin.CommandAsync(new AuthAdd("client.reader", new Dictionary<string, string> { ["mon"] = "allow r" }, readerKey)));
        await using (var reader = c.Client("client.reader", readerKey))
        {
            await Ok(reader.QueryAsync(MonQuery.PoolList));
            var denied = await reader.CommandAsync(new PoolRemove("vm"));
            Assert.Equal(MonReplyStatus.Denied, denied.Status);
        }
        await using (var stranger = c.Client("client.stranger", Secret.Generate()))
        {
            await Assert.ThrowsAsync<MonitorsUnavailableException>(() => stranger.QueryAsync(MonQuery.PoolList));
        }

        // Two of three down: the survivor answers nothing but "no quorum" — never its possibly stale maps.
        var survivor = (c.LeaderIndex() + 1) % 3;
        for (var i = 0; i < 3; i++)
        {
            if (i != survivor)
            {
                await c.StopAsync(i);
            }
        }
        await Task.Delay(Fast.LeaseDuration * 3);
        await using var lone = new MonClient([IPEndPoint.Parse(c.Conf.Monitors[survivor].Address)], "client.admin", c.Admin.Key) { Deadline = TimeSpan.FromSeconds(3) };
        await Assert.ThrowsAsync<MonitorsUnavailableException>(() => lone.QueryAsync(MonQuery.PoolList));
        await Assert.ThrowsAsync<MonitorsUnavailableException>(() => lone.CommandAsync(new PoolCreate("never")));
    }
}
