using System.Net;
using Appliance.Maps;
using Appliance.Maps.Client;
using Appliance.Maps.Protocol;
using Appliance.Wire.Auth;

namespace Appliance.Monitor.Daemon.Tests;

/// <summary>What the OSDs and the cluster client need from real monitors: `osd create`, boot with two addresses,
/// up_thru, pg_temp, the blocklist, immediate failures, past osdmaps, PG statistics with df and quota flags, and a
/// subscription that outlives its monitor and follows the monmap.</summary>
public sealed partial class MonitorClusterTests
{
    private static async Task<Cluster> StartedAsync(int n)
    {
        var c = new Cluster(n);
        for (var i = 0; i < n; i++)
        {
            await c.StartAsync(i);
        }
        return c;
    }

    [Fact]
    public async Task Osds_are_created_boot_with_two_addresses_and_ask_for_up_thru_and_pg_temp_and_admins_blocklist_clients()
    {
        await using var c = await StartedAsync(3);
        await using var admin = c.Client();
        var (uuid0, uuid1) = (Guid.NewGuid(), Guid.NewGuid());
        var (key0, key1, key2) = (Secret.Generate(), Secret.Generate(), Secret.Generate());
        Assert.Equal(0, await admin.CreateOsdAsync(uuid0, key0));
        Assert.Equal(0, await admin.CreateOsdAsync(uuid0, key0)); // a retry
        Assert.Equal(1, await admin.CreateOsdAsync(uuid1, key1));
        Assert.Equal(2, await admin.CreateOsdAsync(Guid.NewGuid(), key2));
        var other = await Assert.ThrowsAsync<MonRequestFailedException>(() => admin.CreateOsdAsync(uuid1, Secret.Generate()));
        Assert.Equal(MonErrorCode.AlreadyExists, other.Code);
        await Ok(admin.CommandAsync(new ConfigSet("mon_osd_min_down_reporters", "3")));

        // Each OSD talks to the monitors with the key it was created with.
        await using var osd0 = c.Client("osd.0", key0);
        await using var osd1 = c.Client("osd.1", key1);
        Assert.Equal(MonReplyStatus.Denied, (await osd0.CommandAsync(new OsdCreate(Guid.NewGuid(), Secret.Generate()))).Status);
        Assert.Equal(MonReplyStatus.Denied, (await osd0.CommandAsync(new OsdBlocklistAdd("client.x:1"))).Status);
        await Ok(osd0.CommandAsync(new OsdBoot(0, "127.0.0.1:6800", "h0", 0x10000, "127.0.0.2:6800", uuid0)));
        await Ok(osd1.CommandAsync(new OsdBoot(1, "127.0.0.1:6801", "h1", 0x10000, "127.0.0.2:6801", uuid1)));
        await using (var osd2 = c.Client("osd.2", key2))
        {
            await Ok(osd2.CommandAsync(new OsdBoot(2, "127.0.0.1:6802", "h2", 0x10000)));
        }
        var map = await FetchCurrentAsync(admin);
        Assert.Equal(("127.0.0.1:6800", "127.0.0.2:6800", true, true), (map.FindOsd(0)!.Address, map.FindOsd(0)!.ClusterAddress, map.FindOsd(0)!.Up, map.FindOsd(0)!.In));

        // up_thru: the next epoch, and the map says so.
        await Ok(osd0.CommandAsync(new OsdAlive(0, map.Epoch)));
        map = await FetchCurrentAsync(admin);
        Assert.Equal(map.Epoch, map.FindOsd(0)!.UpThru);
        Assert.Equal(MonReplyStatus.Denied, (await osd1.CommandAsync(new OsdAlive(0, map.Epoch))).Status);

        // pg_temp from a primary; nobody speaks for another OSD.
        await Ok(admin.CommandAsync(new PoolCreate("vm", Size: 2, PgNum: 8)));
        var pool = (await FetchCurrentAsync(admin)).FindPool("vm")!.Id;
        var pg = new PgId(pool, 3);
        await Ok(osd0.CommandAsync(new PgTemp(0, [new PgTempChange(pg, [1, 0], 1)])));
        Assert.Equal(MonReplyStatus.Denied, (await osd0.CommandAsync(new PgTemp(1, [new PgTempChange(pg, [])]))).Status);
        map = await FetchCurrentAsync(admin);
        Assert.Equal([1, 0], map.MapPg(pg).Acting);
        Assert.Equal(1, map.MapPg(pg).ActingPrimary);

        // The blocklist: added and listed, audited, removed.
        await Ok(admin.CommandAsync(new OsdBlocklistAdd("client.vm:4711", 600)));
        Assert.True((await FetchCurrentAsync(admin)).IsBlocklisted("client.vm:4711"));
        Assert.Contains("client.vm:4711", (await Ok(admin.QueryAsync(MonQuery.BlocklistList))).Message, StringComparison.Ordinal);
        Assert.Contains("osd blocklist add client.vm:4711 600", (await Ok(admin.QueryAsync(MonQuery.Audit))).Message, StringComparison.Ordinal);
        await Ok(admin.CommandAsync(new OsdBlocklistRemove("client.vm:4711")));
        Assert.Empty((await FetchCurrentAsync(admin)).Blocklist);
        // The same through the CLI.
        Assert.Equal(0, await RunCli(c, "osd", "blocklist", "add", "client.nbd:42", "30"));
        Assert.True((await FetchCurrentAsync(admin)).IsBlocklisted("client.nbd:42"));
        Assert.Equal(4, await RunCli(c, "osd", "blocklist", "add", "client.nbd"));
        Assert.Equal(0, await RunCli(c, "osd", "blocklist", "rm", "client.nbd:42"));
        Assert.Equal(3, await RunCli(c, "osd", "blocklist", "rm", "client.nbd:42"));

        // osd.1 finds osd.0's port closed: down at once, though heartbeat reports would be needed from two hosts.
        await Ok(osd1.CommandAsync(new OsdFailureReport(0, 1)));
        Assert.True((await FetchCurrentAsync(admin)).FindOsd(0)!.Up);
        await Ok(osd1.CommandAsync(new OsdFailureReport(0, 1, Immediate: true)));
        map = await FetchCurrentAsync(admin);
        Assert.False(map.FindOsd(0)!.Up);
        // The down member leaves the acting set; the primary_temp on it gives way.
        Assert.Equal([1], map.MapPg(pg).Acting);
    }

    /// <summary>Runs the `appliance` CLI against the cluster; its exit code.</summary>
    private static async Task<int> RunCli(Cluster c, params string[] args)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        return await Appliance.Cli.CliApp.RunAsync([.. args, "--conf-dir", Path.Combine(c.Dir.Path, "conf")], new StringWriter(), new StringWriter(), cts.Token);
    }

    private static async Task<string> CliOutput(Cluster c, params string[] args)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var stdout = new StringWriter();
        Assert.Equal(0, await Appliance.Cli.CliApp.RunAsync([.. args, "--conf-dir", Path.Combine(c.Dir.Path, "conf")], stdout, new StringWriter(), cts.Token));
        return stdout.ToString();
    }

    private static async Task<OsdMap> FetchCurrentAsync(MonClient client)
    {
        var epochs = (await Ok(client.QueryAsync(MonQuery.Epochs))).Message.Split(' ');
        return await client.GetOsdMapAsync(uint.Parse(epochs[3], System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task Past_osdmaps_are_fetched_by_epoch_while_kept_and_an_older_one_says_which_are()
    {
        await using var c = await StartedAsync(3);
        await using var admin = c.Client();
        await Ok(admin.CommandAsync(new ConfigSet("mon_min_osdmap_epochs", "10")));
        var first = (await FetchCurrentAsync(admin)).Epoch;
        for (var i = 0; i < 15; i++)
        {
            await Ok(admin.CommandAsync(new PoolCreate($"p{i}")));
        }
        var current = await FetchCurrentAsync(admin);
        Assert.Equal(first + 15, current.Epoch);
        var past = await admin.GetOsdMapAsync(current.Epoch - 5);
        Assert.Equal(current.Epoch - 5, past.Epoch);
        Assert.Equal(10, past.Pools.Count);
        Assert.NotNull(past.FindPool("p9"));
        Assert.Null(past.FindPool("p10"));

        var tooOld = await Assert.ThrowsAsync<MonRequestFailedException>(() => admin.GetOsdMapAsync(first));
        Assert.Equal(MonErrorCode.NotFound, tooOld.Code);
        Assert.Contains($"keep epochs {current.Epoch - 9} to {current.Epoch}", tooOld.Message, StringComparison.Ordinal);
        var future = await Assert.ThrowsAsync<MonRequestFailedException>(() => admin.GetOsdMapAsync(current.Epoch + 1));
        Assert.Equal(MonErrorCode.NotFound, future.Code);

        // The next leader applied the same epochs: it answers the same bytes.
        await c.StopAsync(c.LeaderIndex());
        Assert.Equal(past.ToBytes(), (await admin.GetOsdMapAsync(current.Epoch - 5)).ToBytes());
    }

    [Fact]
    public async Task Pg_statistics_reach_the_leader_sum_into_df_and_set_and_clear_the_quota_flag()
    {
        await using var c = await StartedAsync(3);
        await using var admin = c.Client();
        var key0 = Secret.Generate();
        Assert.Equal(0, await admin.CreateOsdAsync(Guid.NewGuid(), key0));
        Assert.Equal(1, await admin.CreateOsdAsync(Guid.NewGuid(), Secret.Generate()));
        await using var osd0 = c.Client("osd.0", key0);
        await Ok(osd0.CommandAsync(new OsdBoot(0, "127.0.0.1:6800", "h0", 0x10000)));
        await Ok(admin.CommandAsync(new PoolCreate("q", Size: 1, PgNum: 4, QuotaMaxObjects: 100)));
        var map = await FetchCurrentAsync(admin);
        var pool = map.FindPool("q")!.Id;
        PgStatsReport Report(ulong objects) => new(0, map.Epoch, 1 << 30, 1 << 20,
            [.. Enumerable.Range(0, 4).Select(s => new PgStat(new PgId(pool, (uint)s), "active+clean", objects, objects * 4096, [0], 0, map.Epoch))]);

        await osd0.ReportPgStatsAsync(Report(30));
        var stats = await admin.GetPgStatsAsync("q");
        Assert.Equal([.. Enumerable.Range(0, 4).Select(s => new PgId(pool, (uint)s))], stats.Select(s => s.Pg).ToArray());
        Assert.All(stats, s => Assert.Equal(("active+clean", 30ul), (s.State, s.Objects)));
        var lines = (await CliOutput(c, "pg", "ls", "q")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(5, lines.Length);
        Assert.Matches($"^{pool}\\.3 +active\\+clean +30 +122880 +\\[0\\] +0 ", lines[4]);
        Assert.Matches("q +[0-9]+ +120 +491520 +100 +N/A +4/4", await CliOutput(c, "df"));
        var df = await admin.GetDfAsync();
        var usage = df.Pools.Single(p => p.Name == "q");
        Assert.Equal((120ul, 120ul * 4096, 4), (usage.Objects, usage.Bytes, usage.PgsReported));
        Assert.Equal((1ul << 30, 1ul << 20, 4), (df.Osds.Single(o => o.Osd == 0).TotalBytes, df.Osds.Single(o => o.Osd == 0).UsedBytes, df.Osds.Single(o => o.Osd == 0).Primaries));

        // Over the quota: the leader flags the pool in the osdmap (OSDs refuse writes from that epoch).
        await Until(() => c.Daemons.Any(d => d?.Committed?.Osd.FindPool("q")?.Flags.HasFlag(PoolFlags.FullQuota) == true), () => "the pool was never flagged full");
        // Below it again (objects deleted): the flag goes.
        await osd0.ReportPgStatsAsync(Report(10));
        await Until(() => c.Daemons.All(d => d?.Committed?.Osd.FindPool("q")?.Flags.HasFlag(PoolFlags.FullQuota) != true), () => "the flag stayed");

        // Only osd.N reports as N; a report is not a command anyone else may send.
        var forged = await Assert.ThrowsAsync<MonRequestFailedException>(() => osd0.ReportPgStatsAsync(Report(1) with { Osd = 1 }));
        Assert.Equal(MonReplyStatus.Denied, forged.Status);
        await Assert.ThrowsAsync<MonRequestFailedException>(() => admin.ReportPgStatsAsync(Report(1)));
    }

    [Fact]
    public async Task A_subscription_outlives_the_monitor_it_polled_and_follows_the_monmap_to_monitors_it_was_never_told_of()
    {
        await using var c = await StartedAsync(1);
        var onlyA = IPEndPoint.Parse(c.Conf.Monitors[0].Address);
        await using var watcher = new MonClient([onlyA], "client.admin", c.Admin.Key)
        {
            Deadline = TimeSpan.FromSeconds(20),
            PollWait = TimeSpan.FromMilliseconds(500),
            MonMapCheckInterval = TimeSpan.FromMilliseconds(200),
        };
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        var seen = new List<OsdMap>();
        var watch = Task.Run(async () =>
        {
            await foreach (var map in watcher.WatchOsdMapAsync(null, cts.Token))
            {
                lock (seen)
                {
                    seen.Add(map);
                }
                if (map.FindPool("after") is not null)
                {
                    return;
                }
            }
        }, cts.Token);

        // Two monitors join (one at a time: with a in a one-member cluster, the second member must be up before a
        // third is proposed); the one the subscriber knew leaves and stops.
        var addresses = new[] { $"127.0.0.1:{FreePort()}", $"127.0.0.1:{FreePort()}" };
        await using (var admin = c.Client())
        {
            await Ok(admin.CommandAsync(new PoolCreate("before")));
        }
        for (var i = 0; i < 2; i++)
        {
            var name = i == 0 ? "b" : "c";
            await using (var admin = c.Client())
            {
                await Ok(admin.CommandAsync(new MonAdd(name, addresses[i])));
            }
            c.Conf = c.Conf.WithMonitor(name, addresses[i]);
            c.Daemons = [.. c.Daemons, null];
            await c.StartAsync(i + 1);
            int[] members = i == 0 ? [1, 2] : [1, 2, 3];
            await Until(() => c.Daemons.All(m => m!.Members.SequenceEqual(members)), () => $"members {string.Join(" / ", c.Daemons.Select(m => string.Join(",", m!.Members)))}");
        }
        await Until(() => watcher.Monitors.Count == 3, () => $"the subscriber asks {string.Join(", ", watcher.Monitors)}");
        await using (var admin = c.Client())
        {
            await Ok(admin.CommandAsync(new MonRemove("a")));
            await Until(() => c.Daemons[1]!.Members.SequenceEqual([2, 3]), () => $"members {string.Join(",", c.Daemons[1]!.Members)}");
            await c.StopAsync(0);
            await Until(() => !watcher.Monitors.Contains(onlyA), () => $"the subscriber still asks {string.Join(", ", watcher.Monitors)}");
            await Ok(admin.CommandAsync(new PoolCreate("after")));
        }
        await watch.WaitAsync(TimeSpan.FromSeconds(60));
        lock (seen)
        {
            for (var i = 1; i < seen.Count; i++)
            {
                Assert.Equal(seen[i - 1].Epoch + 1, seen[i].Epoch);
            }
            Assert.NotNull(seen[^1].FindPool("after"));
        }
    }
}
