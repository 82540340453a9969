using Appliance.Maps;
using Appliance.Maps.Protocol;
using Appliance.Monitor.Maps;
using Xunit.Abstractions;

namespace Appliance.Monitor.Tests.Maps;

/// <summary>Increments applied in order to the initial maps (after an encode/decode, as a subscriber receives them)
/// reproduce the full maps byte for byte; out-of-order increments are refused.</summary>
public class IncrementTests(ITestOutputHelper output)
{
    [Fact]
    public void Increments_applied_in_order_reproduce_every_full_map()
    {
        var seed = TestSupport.Seed(output, nameof(Increments_applied_in_order_reproduce_every_full_map));
        var rng = new Random(seed);
        for (var iteration = 0; iteration < 20; iteration++)
        {
            var c = RandomCommands.Drive(rng.Next(), rng.Next(50, 300));
            var state = ClusterState.FromBytes(c.Initial.ToBytes());
            var osd = state.Osd;
            var mon = state.Mon;
            foreach (var bytes in c.Increments.Select(i => i.ToBytes()))
            {
                var inc = ClusterIncrement.FromBytes(bytes);
                state = state.Apply(inc);
                // A subscriber of one map only sees that map's increments.
                osd = inc.Osd is null ? osd : osd.Apply(inc.Osd);
                mon = inc.Mon is null ? mon : mon.Apply(inc.Mon);
            }
            Assert.Equal(c.State.ToBytes(), state.ToBytes());
            Assert.Equal(c.State.Osd.ToBytes(), osd.ToBytes());
            Assert.Equal(c.State.Mon.ToBytes(), mon.ToBytes());
            Assert.Equal((uint)(1 + c.Increments.Count(i => i.Osd is not null)), osd.Epoch);
        }
    }

    [Fact]
    public void A_subscriber_starting_from_any_epoch_catches_up_with_the_increments_after_it()
    {
        var c = RandomCommands.Drive(23, 400);
        var maps = new List<OsdMap> { c.Initial.Osd };
        foreach (var inc in c.Increments.Where(i => i.Osd is not null))
        {
            maps.Add(maps[^1].Apply(inc.Osd!));
        }
        var osdIncs = c.Increments.Where(i => i.Osd is not null).Select(i => i.Osd!).ToList();
        Assert.True(osdIncs.Count > 10);
        for (var from = 0; from < maps.Count; from += 3)
        {
            var map = OsdMap.FromBytes(maps[from].ToBytes());
            foreach (var inc in osdIncs.Where(i => i.Epoch > map.Epoch))
            {
                map = map.Apply(inc);
            }
            Assert.Equal(c.State.Osd.ToBytes(), map.ToBytes());
        }
    }

    [Fact]
    public void Increments_out_of_order_are_refused()
    {
        var c = new Cluster();
        c.Boot(0, "h0");
        c.Must(new PoolCreate("vm"));
        c.Must(new ConfigSet("osd_heartbeat_grace", "30"));
        c.Must(new AuthAdd("client.x", Cluster.Caps(("mon", "allow r")), Cluster.Key(1)));
        c.Must(new MonAdd("md", "10.0.0.9:6789"));
        var (boot, pool, config, auth, mon) = (c.Increments[0], c.Increments[1], c.Increments[2], c.Increments[3], c.Increments[4]);
        Assert.Throws<MapSequenceException>(() => c.Initial.Apply(pool));          // skips epoch 2
        Assert.Throws<MapSequenceException>(() => c.State.Apply(boot));            // replays epoch 2
        Assert.Throws<MapSequenceException>(() => c.State.Apply(config));
        Assert.Throws<MapSequenceException>(() => c.State.Apply(auth));
        Assert.Throws<MapSequenceException>(() => c.State.Apply(mon));
        // The audit entries are numbered: replaying one is refused too.
        Assert.Throws<MapSequenceException>(() => c.State.Apply(new ClusterIncrement(Audit: pool.Audit)));
    }
}
