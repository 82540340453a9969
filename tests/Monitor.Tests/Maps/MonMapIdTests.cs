using Appliance.Maps;
using Appliance.Maps.Protocol;
using Appliance.Monitor.Maps;
using Appliance.Wire.Codec;

namespace Appliance.Monitor.Tests.Maps;

/// <summary>Monitor ids are the Paxos member ids: stable per monitor, never given twice.</summary>
public sealed class MonMapIdTests
{
    private static readonly DateTimeOffset Now = DateTimeOffset.FromUnixTimeMilliseconds(1_800_000_000_000);

    private static ClusterState Run(ClusterState s, MonCommand c)
    {
        var outcome = MonOperations.Execute(s, OsdLiveness.Start(Now), c, "client.admin", Now);
        Assert.True(outcome.Ok, outcome.Error?.Message);
        return s.Apply(outcome.Increment!);
    }

    [Fact]
    public void Ids_follow_the_bootstrap_order_stay_with_their_monitor_and_are_never_reused()
    {
        // Bootstrap order, not name order: conf lists c before a.
        var s = ClusterState.Bootstrap(Guid.NewGuid(), [("c", "10.0.0.3:6789"), ("a", "10.0.0.1:6789"), ("b", "10.0.0.2:6789")], Now);
        Assert.Equal(1, s.Mon.Find("c")!.Id);
        Assert.Equal(2, s.Mon.Find("a")!.Id);
        Assert.Equal(3, s.Mon.Find("b")!.Id);
        s = Run(s, new MonAdd("d", "10.0.0.4:6789"));
        Assert.Equal(4, s.Mon.Find("d")!.Id);
        s = Run(s, new MonRemove("d"));
        s = Run(s, new MonAdd("e", "10.0.0.5:6789"));
        Assert.Equal(5, s.Mon.Find("e")!.Id);
        s = Run(s, new MonRemove("a"));
        Assert.Equal(1, s.Mon.Find("c")!.Id);
        Assert.Equal(3, s.Mon.Find("b")!.Id);
        Assert.Equal(6, s.Mon.NextId);
        var back = MonMap.FromBytes(s.Mon.ToBytes());
        Assert.Equal(s.Mon.ToBytes(), back.ToBytes());
        Assert.Equal(6, back.NextId);
    }

    [Fact]
    public void A_map_written_before_ids_existed_gets_rank_plus_one_and_an_increment_cannot_reuse_an_id()
    {
        // Version 1 monmap: entries without ids, no next id.
        using var w = new WireWriter();
        var m = w.BeginStruct(1, 1);
        w.WriteU32(3);
        w.WriteFixed(Guid.NewGuid().ToByteArray());
        w.WriteI64(0);
        w.WriteU32(2);
        foreach (var (name, address) in new[] { ("b", "10.0.0.2:6789"), ("a", "10.0.0.1:6789") })
        {
            var e = w.BeginStruct(1, 1);
            w.WriteString(name);
            w.WriteString(address);
            w.WriteI32(0);
            w.EndStruct(e);
        }
        w.EndStruct(m);
        var old = MonMap.FromBytes(w.ToArray());
        Assert.Equal(1, old.Find("a")!.Id);
        Assert.Equal(2, old.Find("b")!.Id);
        Assert.Equal(3, old.NextId);
        Assert.Throws<MapSequenceException>(() => old.Apply(new MonMapIncrement(4, [new MonInfo("c", "10.0.0.3:6789", 0, 2)], [])));
    }
}
