using Appliance.Client;
using Appliance.Maps.Protocol;
using Appliance.Osd.Protocol;
using Appliance.Store;
using Appliance.Tests.Support;

namespace Appliance.Osd.Tests;

/// <summary>
/// A whole cluster in this process: three monitors and three OSD daemons on file-backed disks, talking over
/// loopback through the messenger with tickets, used through the cluster client as any client would.
/// </summary>
public sealed class ClusterTests
{
    [Fact]
    public async Task Objects_survive_an_OSD_crash_and_the_OSD_catches_up_when_it_returns()
    {
        await using var c = new LoopbackCluster();
        var ids = await c.StartWithPoolsAsync(["data"], pgNum: 16);
        await using var admin = c.MonClient();
        // The primaries report their PGs to the monitors: `pg ls` shows every PG of the pool active+clean.
        var deadline = DateTime.UtcNow.AddSeconds(30);
        IReadOnlyList<PgStat> stats = [];
        while (DateTime.UtcNow < deadline)
        {
            stats = await admin.GetPgStatsAsync("data");
            if (stats.Count == 16 && stats.All(p => p.State == "active+clean" && p.Acting.Count == 3))
            {
                break;
            }
            await Task.Delay(100);
        }
        Assert.True(stats.Count == 16 && stats.All(p => p.State == "active+clean"), string.Join(' ', stats.Select(p => $"{p.Pg}:{p.State}")));

        await using var client = await ClusterClient.ConnectAsync(c.MonitorAddresses, "client.admin", c.Admin.Key);
        var pool = client.OpenPool("data");
        var rng = new Random(11);
        var expected = new Dictionary<string, byte[]>();
        for (var i = 0; i < 30; i++)
        {
            var data = new byte[rng.Next(1, 200_000)];
            rng.NextBytes(data);
            await pool.WriteFullAsync($"obj-{i}", data);
            expected[$"obj-{i}"] = data;
        }

        // osd.2 dies: its peers find its connections refused and the monitors mark it down; writes go on.
        await c.KillOsdAsync(ids[2]);
        for (var i = 0; i < 30; i += 2)
        {
            var data = new byte[rng.Next(1, 100_000)];
            rng.NextBytes(data);
            await pool.WriteFullAsync($"obj-{i}", data);
            expected[$"obj-{i}"] = data;
        }
        await pool.RemoveAsync("obj-1");
        expected.Remove("obj-1");
        foreach (var (name, data) in expected)
        {
            Assert.Equal(data, (await pool.ReadAsync(name, 0, 0)).ToArray());
        }

        // It comes back: it boots, peers, catches up; every PG is active+clean and every copy equal.
        await c.StartOsdAsync(ids[2]);
        await c.WaitCleanAsync();
        foreach (var (name, data) in expected)
        {
            Assert.Equal(data, (await pool.ReadAsync(name, 0, 0)).ToArray());
            var map = client.OsdMap!;
            var info = map.FindPool("data")!;
            var hash = OsdPlacement.ObjectHash(name);
            var pg = new OsdPlacement(map).PgOf(info, hash);
            foreach (var osd in ids)
            {
                var copy = await c.Osds[osd].Service!.Store.ReadAsync(pg.Collection, new ObjectId(hash, name));
                Assert.True(data.AsSpan().SequenceEqual(copy), $"osd.{osd} holds other bytes of {name}");
            }
        }
        var listed = new List<string>();
        await foreach (var name in pool.ListObjectsAsync())
        {
            listed.Add(name);
        }
        Assert.Equal(expected.Keys.Order(), listed.Order());
    }
}
