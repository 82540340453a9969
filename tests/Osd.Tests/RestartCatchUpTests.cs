using Appliance.Client;
using Appliance.Maps;
using Appliance.Maps.Protocol;
using Appliance.Tests.Support;

namespace Appliance.Osd.Tests;

/// <summary>
/// An OSD that starts again after epochs went by brings its PGs' past intervals through those epochs before it boots,
/// applying them to the history only. Had it replayed them as live maps after its boot (as it once did), every PG of
/// which it was the primary in one of those epochs would peer in that long-gone interval, and each member that had
/// meanwhile entered the current interval with it as primary would take the old interval's epoch from it, ending
/// the current one — while the monitors already showed the OSD up and clients and peers waited on it (seen in CI as
/// reads and writes unanswered for 30-60 s after an OSD restart under load).
/// </summary>
public sealed class RestartCatchUpTests
{
    [Fact]
    public async Task A_restarted_OSD_catches_up_before_it_boots_and_no_member_takes_an_old_interval_from_it()
    {
        var c = new LoopbackCluster();
        await using var _ = c;
        var ids = await c.StartWithPoolsAsync(["data"], pgNum: 8);
        await using var admin = c.MonClient();
        await using var client = await ClusterClient.ConnectAsync(c.MonitorAddresses, "client.admin", c.Admin.Key,
            new ClusterClientOptions { OpTimeout = TimeSpan.FromSeconds(60) });
        var pool = client.OpenPool("data");
        for (var n = 0; n < 16; n++)
        {
            await pool.WriteFullAsync($"obj-{n}", BitConverter.GetBytes(n));
        }

        // Epochs that change no PG's interval: the victim is the primary of a third of the PGs all along them, so a
        // live replay of them would peer in those intervals for a while after its boot.
        await BumpEpochsAsync(admin, "before", 30);
        var victim = ids[0];
        await c.KillOsdAsync(victim);
        var until = DateTime.UtcNow.AddSeconds(60);
        while (NewestMap(c).FindOsd(victim) is { Up: true })
        {
            Assert.True(DateTime.UtcNow < until, $"osd.{victim} not marked down within 60 s of its end");
            await Task.Delay(20);
        }
        for (var n = 0; n < 16; n++)
        {
            await pool.WriteFullAsync($"obj-{n}", BitConverter.GetBytes(n + 100));
        }
        await BumpEpochsAsync(admin, "after", 10);
        var takenBefore = ids.Where(c.Osds.ContainsKey).Sum(id => c.Osds[id].Service!.IntervalsTaken);
        var downAt = NewestMap(c).Epoch;

        await c.StartOsdAsync(victim);
        // It booted with its history brought to the epoch it saw before its boot (at least the one that marked it down).
        Assert.True(c.Osds[victim].Service!.HistoryEpoch >= downAt, $"osd.{victim} booted with past intervals through epoch {c.Osds[victim].Service!.HistoryEpoch}, before {downAt}");
        await c.WaitCleanAsync();
        for (var n = 0; n < 16; n++)
        {
            Assert.Equal(n + 100, BitConverter.ToInt32((await pool.ReadAsync($"obj-{n}", 0, 4)).Span));
            await pool.WriteFullAsync($"obj-{n}", BitConverter.GetBytes(n + 200));
        }

        // No PG anywhere ended its interval to take an old one's epoch, and every member names each PG's interval as
        // its primary does.
        var taken = ids.Sum(id => c.Osds[id].Service!.IntervalsTaken);
        Assert.True(taken == takenBefore, $"PGs took {taken - takenBefore} intervals from their primaries after osd.{victim} restarted");
        var map = NewestMap(c);
        foreach (var id in Enumerable.Range(0, 8).Select(s => new PgId(map.FindPool("data")!.Id, (uint)s)))
        {
            var m = map.MapPg(id);
            var primary = c.Osds[m.ActingPrimary].Service!.FindPg(id)!.Interval!;
            foreach (var member in m.Acting)
            {
                var i = c.Osds[member].Service!.FindPg(id)!.Interval!;
                Assert.True(i.Since == primary.Since, $"{id}: osd.{member} names its interval {i.Since}, its primary osd.{m.ActingPrimary} {primary.Since}");
            }
        }
    }

    private static async Task BumpEpochsAsync(Maps.Client.MonClient admin, string tag, int count)
    {
        for (var i = 0; i < count; i++)
        {
            var r = await admin.CommandAsync(new OsdBlocklistAdd($"client.gone-{tag}:{i}", 3600));
            Assert.True(r.Status == MonReplyStatus.Ok, r.Message);
        }
    }

    private static OsdMap NewestMap(LoopbackCluster c) => c.Osds.Values.Select(o => o.Service!.Map).OfType<OsdMap>().MaxBy(m => m.Epoch)!;
}
