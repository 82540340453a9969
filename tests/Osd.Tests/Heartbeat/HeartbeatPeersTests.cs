using Appliance.Maps;
using Appliance.Osd.Heartbeat;
using Microsoft.Extensions.Logging.Abstractions;

namespace Appliance.Osd.Tests.Heartbeat;

/// <summary>The OSDs each OSD watches follow its PGs (OsdService.HeartbeatPeers) as maps change.</summary>
public sealed class HeartbeatPeersTests
{
    /// <summary>Every other member of each acting set <paramref name="self"/> is in, from the map itself.</summary>
    private static HashSet<int> PgPartners(OsdMap map, int self)
    {
        var partners = new HashSet<int>();
        foreach (var pool in map.Pools.Values)
        {
            for (var seed = 0u; seed < (uint)pool.PgNum; seed++)
            {
                var acting = map.MapPg(new PgId(pool.Id, seed)).Acting;
                if (acting.Contains(self))
                {
                    partners.UnionWith(acting.Where(o => o != self && o >= 0));
                }
            }
        }
        return partners;
    }

    private static void AssertPeersFollowTheMap(InProcessCluster cluster)
    {
        var map = cluster.Map;
        var up = map.Osds.Values.Where(o => o.Up).Select(o => o.Id).ToHashSet();
        foreach (var osd in cluster.Running)
        {
            var peers = osd.HeartbeatPeers;
            var partners = PgPartners(map, osd.Self);
            // Every PG partner is watched; besides them at most the two neighbours; never itself or a down OSD.
            Assert.True(partners.IsSubsetOf(peers), $"osd.{osd.Self} watches [{string.Join(",", peers)}], not all PG partners [{string.Join(",", partners)}]");
            Assert.True(peers.Except(partners).Count() <= 2, $"osd.{osd.Self} watches [{string.Join(",", peers)}] for partners [{string.Join(",", partners)}]");
            Assert.DoesNotContain(osd.Self, peers);
            Assert.True(peers.IsSubsetOf(up), $"osd.{osd.Self} watches [{string.Join(",", peers)}], up are [{string.Join(",", up)}]");
            if (up.Count > 1 && up.Contains(osd.Self))
            {
                Assert.NotEmpty(peers);
            }
        }
    }

    [Fact]
    public async Task Peers_are_the_pg_partners_and_neighbours_and_follow_the_osdmap()
    {
        await using var cluster = new InProcessCluster();
        await cluster.StartAsync(osds: 5, size: 2, minSize: 1, pgNum: 8);
        AssertPeersFollowTheMap(cluster);

        // A heartbeater given them watches exactly those.
        var osd0 = cluster.Osd(0);
        var hb = new Heartbeater(0, new InProcessHeartbeats(), new RecordedReports(), new ManualClock(), () => TimeSpan.Zero, NullLogger.Instance);
        hb.SetPeers(osd0.HeartbeatPeers);
        Assert.Equal(osd0.HeartbeatPeers.Order(), hb.Peers.Order());

        // osd.3 down: nobody watches it any more; back up: it is watched again by its partners.
        cluster.SetUp(3, false);
        AssertPeersFollowTheMap(cluster);
        Assert.All(cluster.Running, o => Assert.DoesNotContain(3, o.HeartbeatPeers));
        hb.SetPeers(osd0.HeartbeatPeers);
        Assert.DoesNotContain(3, hb.Peers);
        cluster.SetUp(3, true);
        AssertPeersFollowTheMap(cluster);
        Assert.Contains(cluster.Running, o => o.Self != 3 && o.HeartbeatPeers.Contains(3));
    }

    [Fact]
    public async Task Without_any_pool_each_osd_still_watches_its_neighbours()
    {
        await using var cluster = new InProcessCluster();
        await cluster.StartAsync(osds: 3, size: 3, minSize: 2, pgNum: 4);
        cluster.Command(new Appliance.Maps.Protocol.PoolRemove("data"));
        foreach (var osd in cluster.Running)
        {
            Assert.Equal(Enumerable.Range(0, 3).Where(o => o != osd.Self).Order(), osd.HeartbeatPeers.Order());
        }
    }
}
