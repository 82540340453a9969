using Appliance.Maps;
using Appliance.Maps.Protocol;
using Appliance.Monitor.Maps;

namespace Appliance.Monitor.Daemon.Tests;

/// <summary>The leader's memory of PG statistics: whose reports count, and when quota flags may be decided.</summary>
public sealed class PgStatsTableTests
{
    private static (OsdMap Map, int Pool) MapWithPool(ulong quotaObjects)
    {
        var state = ClusterState.Bootstrap(Guid.NewGuid(), [("a", "127.0.0.1:6789")], DateTimeOffset.UnixEpoch);
        var liveness = OsdLiveness.Start(DateTimeOffset.UnixEpoch);
        foreach (var command in new MonCommand[]
        {
            new OsdBoot(0, "10.0.0.1:6800", "h0", 0x10000), new OsdBoot(1, "10.0.0.2:6800", "h1", 0x10000),
            new PoolCreate("q", Size: 2, PgNum: 2, QuotaMaxObjects: quotaObjects),
        })
        {
            var o = MonOperations.Execute(state, liveness, command, "client.admin", DateTimeOffset.UnixEpoch);
            Assert.True(o.Ok, o.Message);
            state = state.Apply(o.Increment!);
            liveness = o.Liveness;
        }
        return (state.Osd, state.Osd.FindPool("q")!.Id);
    }

    private static PgStat Stat(int pool, uint seed, ulong objects, int primary, uint epoch) =>
        new(new PgId(pool, seed), "active+clean", objects, objects * 10, [primary, 1 - primary], primary, epoch);

    [Fact]
    public void Only_a_pgs_primary_counts_and_an_older_epochs_report_never_replaces_a_newer_one()
    {
        var (map, pool) = MapWithPool(0);
        var table = new PgStatsTable();
        Assert.Equal(1, table.Record(new PgStatsReport(0, 5, 100, 10, [Stat(pool, 0, 7, 0, 5), Stat(pool, 1, 9, 1, 5), Stat(pool, 9, 1, 0, 5)]), map, 1));
        Assert.Equal([new PgId(pool, 0)], table.Dump().Select(s => s.Pg));
        // The new primary reports at epoch 6; the old one's late report of epoch 5 is dropped.
        Assert.Equal(1, table.Record(new PgStatsReport(1, 6, 100, 10, [Stat(pool, 0, 8, 1, 6)]), map, 2));
        Assert.Equal(0, table.Record(new PgStatsReport(0, 5, 100, 10, [Stat(pool, 0, 3, 0, 5)]), map, 3));
        Assert.Equal(8ul, table.Dump().Single().Objects);
        Assert.Empty(table.Dump(pool + 1));
        var df = table.Df(map);
        Assert.Equal((8ul, 1, 2), (df.Pools.Single().Objects, df.Pools.Single().PgsReported, df.Pools.Single().PgNum));
        Assert.Equal(1, df.Osds.Single(o => o.Osd == 1).Primaries);
    }

    [Fact]
    public void Quota_flags_are_decided_only_for_pools_whose_every_pg_reported_to_this_leader()
    {
        var (map, pool) = MapWithPool(10);
        var table = new PgStatsTable();
        table.Record(new PgStatsReport(0, 5, 0, 0, [Stat(pool, 0, 20, 0, 5)]), map, 100);
        Assert.Empty(table.QuotaChanges(map, 0)); // one of two PGs: not complete
        table.Record(new PgStatsReport(1, 5, 0, 0, [Stat(pool, 1, 0, 1, 5)]), map, 100);
        Assert.Equal(new Dictionary<int, bool> { [pool] = true }, table.QuotaChanges(map, 0));
        // Reports from before this monitor led do not count.
        Assert.Empty(table.QuotaChanges(map, 101));
    }

    [Fact]
    public void Osd_fullness_follows_each_reported_disk_use_against_the_ratios()
    {
        var (map, _) = MapWithPool(0);
        var table = new PgStatsTable();
        Assert.Empty(table.FullnessChanges(map, 0.85, 0.95)); // nobody reported: nothing to judge
        table.Record(new PgStatsReport(0, 5, 1000, 900, []), map, 1);
        table.Record(new PgStatsReport(1, 5, 1000, 960, []), map, 1);
        Assert.Equal(new Dictionary<int, OsdFullness> { [0] = OsdFullness.NearFull, [1] = OsdFullness.Full }, table.FullnessChanges(map, 0.85, 0.95));
        // Once the map says so, nothing changes; space freed clears the flag.
        var flagged = map.Apply(new OsdMapIncrement(map.Epoch + 1, 0,
            [map.FindOsd(0)! with { Fullness = OsdFullness.NearFull }, map.FindOsd(1)! with { Fullness = OsdFullness.Full }], [], [], [], null, null));
        Assert.Empty(table.FullnessChanges(flagged, 0.85, 0.95));
        table.Record(new PgStatsReport(1, 6, 1000, 100, []), flagged, 2);
        Assert.Equal(new Dictionary<int, OsdFullness> { [1] = OsdFullness.None }, table.FullnessChanges(flagged, 0.85, 0.95));
    }

    [Fact]
    public void The_status_line_counts_pgs_by_state_and_those_not_reported()
    {
        var (map, pool) = MapWithPool(0);
        var table = new PgStatsTable();
        Assert.Equal("pgs     2 PGs: 2 not reported yet", table.StateSummary(map));
        table.Record(new PgStatsReport(0, 5, 0, 0, [Stat(pool, 0, 1, 0, 5)]), map, 1);
        Assert.Equal("pgs     2 PGs: 1 active+clean, 1 not reported yet", table.StateSummary(map));
        table.Record(new PgStatsReport(1, 5, 0, 0, [Stat(pool, 1, 1, 1, 5) with { State = "peering" }]), map, 1);
        Assert.Equal("pgs     2 PGs: 1 active+clean, 1 peering", table.StateSummary(map));
    }

    [Fact]
    public void A_pg_whose_reporting_primary_is_down_or_silent_is_stale()
    {
        var (map, pool) = MapWithPool(0);
        var table = new PgStatsTable();
        table.Record(new PgStatsReport(0, 5, 0, 0, [Stat(pool, 0, 1, 0, 5) with { Detail = "waiting for: osd.3\n" }]), map, 1_000);
        table.Record(new PgStatsReport(1, 5, 0, 0, [Stat(pool, 1, 1, 1, 5)]), map, 5_000);
        Assert.Equal(["active+clean", "active+clean"], table.Dump(map, 6_000).Select(s => s.State));
        // osd.0's report is older than the threshold: stale; osd.1's is fresh.
        Assert.Equal(["stale+active+clean", "active+clean"], table.Dump(map, 1_000 + PgStatsTable.StaleAfterMs + 1).Select(s => s.State));
        // osd.1 is marked down: its PG is stale at once.
        var down = map.Apply(new OsdMapIncrement(map.Epoch + 1, 0, [map.FindOsd(1)! with { Up = false }], [], [], [], null, null));
        Assert.Equal(["active+clean", "stale+active+clean"], table.Dump(down, 6_000).Select(s => s.State));
        Assert.Equal("pgs     2 PGs: 1 active+clean, 1 stale+active+clean", table.StateSummary(down, 6_000));
        // pg query's detail travels with the dump.
        var dump = PgStat.DecodeDump(PgStat.EncodeDump(table.Dump(down, 6_000)));
        Assert.Equal("waiting for: osd.3\n", dump[0].Detail);
    }
}
