using Appliance.Client;
using Appliance.Maps;
using Appliance.Maps.Client;
using Appliance.Maps.Protocol;
using Appliance.Osd.Daemon;
using Appliance.Tests.Support;
using Appliance.Wire.Auth;

namespace Appliance.Osd.Tests;

/// <summary>
/// An OSD that runs stays up in the osdmap: it sends beacons, so the monitors never mark it down for silence, and
/// when they mark it down anyway (a peer reported it) it boots again — else its PGs would stay undersized for good.
/// </summary>
public sealed class LivenessTests
{
    private static async Task<(LoopbackCluster Cluster, MonClient Admin, List<int> Ids)> StartAsync(Func<OsdDaemonOptions, OsdDaemonOptions>? configure = null,
        Func<MonClient, Task>? beforeOsds = null)
    {
        var c = new LoopbackCluster();
        await c.StartMonitorsAsync();
        var admin = c.MonClient();
        if (beforeOsds is not null)
        {
            await beforeOsds(admin);
        }
        var ids = new List<int>();
        for (var i = 0; i < 3; i++)
        {
            ids.Add(await c.CreateOsdAsync(admin));
        }
        foreach (var id in ids)
        {
            await c.StartOsdAsync(id, configure);
        }
        var created = await admin.CommandAsync(new PoolCreate("data", Size: 3, MinSize: 2, PgNum: 8));
        Assert.True(created.Status == MonReplyStatus.Ok, created.Message);
        await c.WaitCleanAsync();
        return (c, admin, ids);
    }

    private static OsdMap NewestMap(LoopbackCluster c) => c.Osds.Values.Select(o => o.Service!.Map).OfType<OsdMap>().MaxBy(m => m.Epoch)!;

    [Fact]
    public async Task An_OSD_marked_down_while_it_runs_boots_again()
    {
        var (c, admin, ids) = await StartAsync();
        await using var _ = c;
        await using var __ = admin;
        var victim = ids[0];
        var before = NewestMap(c).FindOsd(victim)!.UpFrom;

        // A peer reports it (as after a connection reset), though it runs: the monitors mark it down at once.
        var reporter = ids[1];
        var key = Keyring.Load(OsdDaemon.KeyringPath(c.ConfDir, reporter)).Find($"osd.{reporter}")!.Key;
        await using (var asPeer = new MonClient(c.MonitorAddresses, $"osd.{reporter}", key))
        {
            var r = await asPeer.CommandAsync(new OsdFailureReport(victim, reporter, Immediate: true));
            Assert.True(r.Status == MonReplyStatus.Ok && r.Message.Contains("marked down", StringComparison.Ordinal), r.Message);
        }

        // It sees itself down in the osdmap and boots again: up from a later epoch, every PG active+clean.
        var until = DateTime.UtcNow.AddSeconds(30);
        while (NewestMap(c).FindOsd(victim) is { Up: true } o && o.UpFrom == before)
        {
            Assert.True(DateTime.UtcNow < until, $"no OSD saw osd.{victim} marked down within 30 s");
            await Task.Delay(20);
        }
        await c.WaitCleanAsync();
        var after = NewestMap(c).FindOsd(victim)!;
        Assert.True(after.Up && after.UpFrom > before, $"osd.{victim} up {after.Up} from epoch {after.UpFrom} (was up from {before})");
    }

    [Fact]
    public async Task OSDs_send_beacons_so_the_monitors_keep_them_up_past_the_report_timeout()
    {
        // The shortest report timeout the monitors take (10 s), and beacons every second.
        var (c, admin, _) = await StartAsync(o => o with { BeaconInterval = TimeSpan.FromSeconds(1) }, async admin =>
        {
            var r = await admin.CommandAsync(new ConfigSet("mon_osd_report_timeout", "10"));
            Assert.True(r.Status == MonReplyStatus.Ok, r.Message);
        });
        await using var _ = c;
        await using var __ = admin;
        var first = NewestMap(c);

        // A property over time: for one and a half report timeouts, no OSD is marked down (a silent OSD would be,
        // and would come back from a later epoch).
        await Task.Delay(TimeSpan.FromSeconds(15));
        var now = NewestMap(c);
        foreach (var osd in first.Osds.Values)
        {
            var later = now.FindOsd(osd.Id)!;
            Assert.True(later.Up && later.UpFrom == osd.UpFrom, $"osd.{osd.Id} up {later.Up} from epoch {later.UpFrom} (was up from {osd.UpFrom}; osdmap epoch {now.Epoch})");
        }
    }

    [Fact]
    public async Task Writes_complete_while_OSDs_are_marked_down_and_boot_again_one_after_another()
    {
        // Each OSD in turn is reported failed while it runs (as a loaded machine's late heartbeats do): marked down,
        // it boots again after its backoff. Writers go on throughout; every write must complete (none lost in an
        // OSD across the interval changes: a lost request would hang until its deadline) and read back.
        var (c, admin, ids) = await StartAsync();
        await using var _ = c;
        await using var __ = admin;
        await using var client = await ClusterClient.ConnectAsync(c.MonitorAddresses, "client.admin", c.Admin.Key,
            new ClusterClientOptions { OpTimeout = TimeSpan.FromSeconds(60) });
        var pool = client.OpenPool("data");
        var acked = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
        using var stop = new CancellationTokenSource();
        var writers = Enumerable.Range(0, 8).Select(w => Task.Run(async () =>
        {
            for (var n = 0; !stop.IsCancellationRequested; n++)
            {
                var name = $"flap-{w}-{n % 16}";
                await pool.WriteFullAsync(name, BitConverter.GetBytes(n));
                acked[name] = n;
            }
        })).ToArray();
        // APPLIANCE_SOAK=1: three rounds (each OSD's rejoin backoff grows: 1, 2, 4 s).
        foreach (var victim in Enumerable.Repeat(ids, Appliance.Tests.Common.TestSeed.Soak ? 3 : 1).SelectMany(x => x))
        {
            var before = NewestMap(c).FindOsd(victim)!.UpFrom;
            var reporter = ids.First(i => i != victim);
            var key = Keyring.Load(OsdDaemon.KeyringPath(c.ConfDir, reporter)).Find($"osd.{reporter}")!.Key;
            await using (var asPeer = new MonClient(c.MonitorAddresses, $"osd.{reporter}", key))
            {
                var r = await asPeer.CommandAsync(new OsdFailureReport(victim, reporter, Immediate: true));
                Assert.True(r.Status == MonReplyStatus.Ok, r.Message);
            }
            var until = DateTime.UtcNow.AddSeconds(60);
            while (NewestMap(c).FindOsd(victim) is not { Up: true } o || o.UpFrom == before)
            {
                Assert.True(DateTime.UtcNow < until, $"osd.{victim} did not boot again within 60 s");
                if (writers.FirstOrDefault(t => t.IsFaulted) is { } failed)
                {
                    Assert.Fail($"a write failed: {failed.Exception?.InnerException}");
                }
                await Task.Delay(50);
            }
        }
        stop.Cancel();
        await Task.WhenAll(writers);
        await c.WaitCleanAsync();
        Assert.True(acked.Count > 0);
        foreach (var (name, n) in acked)
        {
            Assert.Equal(n, BitConverter.ToInt32((await pool.ReadAsync(name, 0, 4)).Span));
        }
    }
}
