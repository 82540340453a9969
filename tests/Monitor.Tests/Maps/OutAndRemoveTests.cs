using Appliance.Maps;
using Appliance.Maps.Protocol;
using Appliance.Monitor.Maps;
using Appliance.Wire.Codec;

namespace Appliance.Monitor.Tests.Maps;

/// <summary>noout, `osd rm` and the PG-movement estimate the CLI prints before a change.</summary>
public class OutAndRemoveTests
{
    private static Cluster FiveHosts()
    {
        var c = new Cluster();
        for (var i = 0; i < 5; i++)
        {
            c.Boot(i, $"h{i}");
        }
        c.Must(new ConfigSet("mon_osd_min_down_reporters", "1"));
        return c;
    }

    private static void Beacons(Cluster c, params int[] ids)
    {
        foreach (var id in ids)
        {
            c.Run(new OsdBeacon(id));
        }
    }

    [Fact]
    public void Noout_holds_off_the_down_out_interval_and_unset_lets_it_run()
    {
        var c = FiveHosts();
        c.Must(new ConfigSet("mon_osd_down_out_interval", "10s"));
        var set = c.Must(new OsdSetFlag("noout", true));
        Assert.NotNull(set.Increment!.Audit);
        Assert.Equal(OsdMapFlags.NoOut, c.State.Osd.Flags);
        Assert.Contains(ClusterHealth.Summarize(c.State).Checks, h => h.Message.Contains("noout flag set", StringComparison.Ordinal));
        Assert.Null(c.Run(new OsdSetFlag("noout", true)).Increment);
        c.Refused(new OsdSetFlag("nodown", true), MonErrorCode.InvalidArgument, "the flags are: noout");
        c.Must(new OsdFailureReport(4, 0));
        c.Now += TimeSpan.FromMinutes(10);
        Beacons(c, 0, 1, 2, 3);
        Assert.Null(c.Run(new OsdTick()).Increment);
        Assert.True(c.State.Osd.FindOsd(4)!.In);
        // Unset: it has been down long enough, so the next check marks it out.
        c.Must(new OsdSetFlag("noout", false));
        Assert.Equal(OsdMapFlags.None, c.State.Osd.Flags);
        Beacons(c, 0, 1, 2, 3);
        Assert.Contains("osd.4 out", c.Must(new OsdTick()).Message, StringComparison.Ordinal);
        Assert.False(c.State.Osd.FindOsd(4)!.In);
    }

    [Fact]
    public void Flags_and_the_new_commands_round_trip_and_an_older_map_reads_as_no_flags()
    {
        var c = FiveHosts();
        c.Must(new OsdSetFlag("noout", true));
        var map = OsdMap.FromBytes(c.State.Osd.ToBytes());
        Assert.Equal(OsdMapFlags.NoOut, map.Flags);
        Assert.Equal(c.State.Osd.ToBytes(), map.ToBytes());
        foreach (MonCommand command in new MonCommand[] { new OsdSetFlag("noout", false), new OsdRemove([3, 4]) })
        {
            using var w = new WireWriter();
            MonCommandCodec.Encode(w, command);
            var r = new WireReader(w.ToArray());
            var back = MonCommandCodec.Decode(ref r);
            Assert.Equal(command.Describe(), back.Describe());
        }
        // Increments carry the flags: replaying them gives the leader's map byte for byte.
        var replayed = c.Initial.Osd;
        foreach (var inc in c.Increments.Where(i => i.Osd is not null))
        {
            replayed = replayed.Apply(inc.Osd!);
        }
        Assert.Equal(c.State.Osd.ToBytes(), replayed.ToBytes());
    }

    [Fact]
    public void Osd_rm_is_refused_while_the_osd_is_up_in_or_placed_and_then_removes_it_everywhere()
    {
        var c = FiveHosts();
        c.Must(new PoolCreate("data", Size: 2, PgNum: 16));
        c.Refused(new OsdRemove([4]), MonErrorCode.Refused, "is up");
        c.Must(new OsdFailureReport(4, 0));
        c.Refused(new OsdRemove([4]), MonErrorCode.Refused, "mark it out first");
        // Down and out: no PG maps to it any more.
        c.Must(new OsdOut([4]));
        c.Refused(new OsdRemove([4, 9]), MonErrorCode.NotFound, "osd.9");
        // A pg_temp naming it keeps it.
        var pg = new PgId(c.State.Osd.FindPool("data")!.Id, 0);
        var primary = c.State.Osd.MapPg(pg).ActingPrimary;
        c.Must(new PgTemp(primary, [new PgTempChange(pg, [primary, 4], -1)]), $"osd.{primary}");
        c.Refused(new OsdRemove([4]), MonErrorCode.Refused, $"placement of pg {pg}");
        c.Must(new PgTemp(primary, [new PgTempChange(pg, [], -1)]), $"osd.{primary}");
        var removed = c.Must(new OsdRemove([4]));
        Assert.Contains("removed osd.4", removed.Message, StringComparison.Ordinal);
        Assert.Null(c.State.Osd.FindOsd(4));
        Assert.False(c.State.Osd.Crush.TryGetItemId("osd.4", out _));
        Assert.Null(c.State.Auth.Find("osd.4"));
        c.Refused(new OsdRemove([4]), MonErrorCode.NotFound, "osd.4");
    }

    [Fact]
    public void The_movement_estimate_counts_the_pgs_whose_up_set_changes_and_the_bytes_to_copy()
    {
        var c = FiveHosts();
        c.Must(new PoolCreate("data", Size: 2, PgNum: 64));
        var map = c.State.Osd;
        var pool = map.FindPool("data")!;
        var sizes = Enumerable.Range(0, 64).ToDictionary(s => new PgId(pool.Id, (uint)s), _ => 1000ul);
        var after = PgMovement.WithInOut(map, [2], markIn: false);
        var e = PgMovement.Between(map, after, sizes);
        var holding = Enumerable.Range(0, 64).Count(s => map.MapPg(new PgId(pool.Id, (uint)s)).Up.Contains(2));
        Assert.True(holding > 0);
        // Every PG osd.2 held moves (others may move too: straw2 moves little, not nothing).
        Assert.InRange(e.Pgs, holding, 64);
        Assert.Equal(64, e.PgsTotal);
        Assert.True(e.Bytes >= (ulong)holding * 1000);
        Assert.Equal(0, e.PgsWithoutSize);
        Assert.StartsWith($"moves {e.Pgs} of 64 PGs, about ", PgMovement.Describe(e), StringComparison.Ordinal);
        // Nothing changes: nothing moves.
        var none = PgMovement.Between(map, PgMovement.WithInOut(map, [2], markIn: true), sizes);
        Assert.Equal(0, none.Pgs);
        Assert.Equal("moves 0 of 64 PGs, nothing to copy", PgMovement.Describe(none));
    }
}
