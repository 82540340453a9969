using Appliance.Maps;
using Appliance.Maps.Protocol;
using Appliance.Monitor.Maps;
using Appliance.Wire.Codec;

namespace Appliance.Monitor.Daemon.Tests;

/// <summary>The maps as a state machine, without Paxos: determinism across a snapshot, and what subscribers get.</summary>
public sealed class StateMachineTests
{
    private static readonly DateTimeOffset T0 = DateTimeOffset.FromUnixTimeMilliseconds(1_800_000_000_000);

    private static ClusterState Initial() =>
        ClusterState.Bootstrap(Guid.Parse("11111111-2222-3333-4444-555555555555"), [("a", "127.0.0.1:6789")], T0);

    private static byte[] Entry(MonCommand c, TimeSpan at) => MonitorStateMachine.EncodeEntry(c, "mon.a", T0 + at);

    [Fact]
    public void A_member_restored_from_a_snapshot_goes_on_exactly_like_the_others()
    {
        // Beacons and boots live in the OSD liveness, which the entries after the snapshot act on: a restored member
        // that lost it would mark different OSDs down than the others (diverging maps).
        var log = new List<byte[]>
        {
            Entry(new OsdBoot(0, "10.0.0.1:6800", "h1", 0x10000), TimeSpan.Zero),
            Entry(new OsdBoot(1, "10.0.0.2:6800", "h2", 0x10000), TimeSpan.Zero),
            Entry(new OsdBeacon(0), TimeSpan.FromSeconds(100)),
            Entry(new OsdFailureReport(1, 0), TimeSpan.FromSeconds(101)),
        };
        var tail = new List<byte[]>
        {
            // Within mon_osd_report_timeout (20 s) of osd.0's beacons, long past osd.1's boot.
            Entry(new OsdTick(), TimeSpan.FromSeconds(110)),
            Entry(new OsdBeacon(0), TimeSpan.FromSeconds(120)),
            Entry(new OsdTick(), TimeSpan.FromSeconds(135)),
        };
        var original = new MonitorStateMachine(Initial());
        var index = 0L;
        foreach (var e in log)
        {
            original.Apply(++index, e);
        }
        var restored = new MonitorStateMachine(Initial());
        restored.Restore(original.Snapshot());
        Assert.Equal(original.Snapshot(), restored.Snapshot());
        foreach (var e in tail)
        {
            index++;
            Assert.Equal(original.Apply(index, e), restored.Apply(index, e));
        }
        Assert.Equal(original.State.ToBytes(), restored.State.ToBytes());
        Assert.Equal(original.Snapshot(), restored.Snapshot());
        // And the tick really did something the liveness decided: osd.1 (no beacon since boot) is down, osd.0 is not.
        Assert.False(original.State.Osd.FindOsd(1)!.Up);
        Assert.True(original.State.Osd.FindOsd(0)!.Up);
    }

    [Fact]
    public void Past_osdmaps_and_increments_survive_a_snapshot()
    {
        var m = new MonitorStateMachine(Initial());
        var index = 0L;
        var maps = new List<OsdMap>();
        for (var i = 0; i < 12; i++)
        {
            m.Apply(++index, Entry(new PoolCreate($"p{i}"), TimeSpan.FromSeconds(i)));
            maps.Add(m.State.Osd);
        }
        var restored = new MonitorStateMachine(Initial());
        restored.Restore(m.Snapshot());
        Assert.Equal(m.Snapshot(), restored.Snapshot());
        foreach (var map in maps)
        {
            var reply = restored.OsdMapAt(map.Epoch.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Assert.Equal(MonReplyStatus.Ok, reply.Status);
            Assert.Equal(map.ToBytes(), reply.Data);
        }
        // A subscriber a few epochs behind still gets increments, not the whole map.
        var since = maps[3].Epoch;
        var update = restored.OsdMapSince(since);
        Assert.Equal(MapUpdateKind.Increments, update.Kind);
        Assert.Equal(m.OsdMapSince(since).Items, update.Items);
        // A history that does not end at the snapshot's map is refused, not served.
        var other = new MonitorStateMachine(Initial());
        other.Apply(1, Entry(new PoolCreate("x"), TimeSpan.Zero));
        var spliced = m.State.ToBytes().Concat(m.Snapshot().AsSpan(m.State.ToBytes().Length).ToArray()).ToArray();
        Assert.Equal(m.Snapshot(), spliced); // the splice point is right: state first
        var wrong = other.State.ToBytes().Concat(m.Snapshot().AsSpan(m.State.ToBytes().Length).ToArray()).ToArray();
        Assert.Throws<WireFormatException>(() => new MonitorStateMachine(Initial()).Restore(wrong));
    }

    [Fact]
    public void A_snapshot_from_before_liveness_was_included_still_restores()
    {
        var m = new MonitorStateMachine(Initial());
        m.Apply(1, Entry(new PoolCreate("vm"), TimeSpan.Zero));
        var old = m.State.ToBytes();
        var restored = new MonitorStateMachine(Initial());
        restored.Restore(old);
        Assert.Equal(m.State.ToBytes(), restored.State.ToBytes());
    }

    [Fact]
    public void Subscribers_get_nothing_increments_or_the_full_map_as_their_epoch_allows()
    {
        var m = new MonitorStateMachine(Initial());
        var first = m.State.Osd;
        var index = 0L;
        for (var i = 0; i < MonitorStateMachine.OsdHistoryLength + 20; i++)
        {
            m.Apply(++index, Entry(new PoolCreate($"p{i}"), TimeSpan.FromSeconds(i)));
        }
        var current = m.State.Osd.Epoch;
        Assert.Equal(MapUpdateKind.Unchanged, m.OsdMapSince(current).Kind);
        Assert.Equal(MapUpdateKind.Full, m.OsdMapSince(0).Kind);
        // Epoch 1 is older than the history: the full map, byte for byte the current one.
        var full = m.OsdMapSince(first.Epoch);
        Assert.Equal(MapUpdateKind.Full, full.Kind);
        Assert.Equal(m.State.Osd.ToBytes(), full.Items.Single());
        // Recent enough: the increments, which rebuild the current map exactly.
        var since = current - 10;
        var update = MapUpdate.Decode(m.OsdMapSince(since).Encode());
        Assert.Equal(MapUpdateKind.Increments, update.Kind);
        Assert.Equal(10, update.Items.Count);
        var replay = new MonitorStateMachine(Initial());
        for (var i = 0; i < MonitorStateMachine.OsdHistoryLength + 10; i++)
        {
            replay.Apply(i + 1, Entry(new PoolCreate($"p{i}"), TimeSpan.FromSeconds(i)));
        }
        var map = replay.State.Osd;
        Assert.Equal(since, map.Epoch);
        foreach (var bytes in update.Items)
        {
            var r = new WireReader(bytes);
            map = map.Apply(OsdMapIncrement.Decode(ref r));
        }
        Assert.Equal(m.State.Osd.ToBytes(), map.ToBytes());
    }

    [Fact]
    public void Requests_and_replies_of_version_one_still_decode_and_bad_map_updates_are_refused()
    {
        var request = new MonRequest(7, 0, null, MonQuery.OsdMapSince, "", 42, 5000);
        Assert.Equal(request, MonRequest.Decode(request.Encode()));
        var huge = new MonRequest(7, 0, null, MonQuery.OsdMapSince, "", 1, int.MaxValue);
        Assert.Equal(MonRequest.MaxWaitMs, MonRequest.Decode(huge.Encode()).WaitMs);

        // A version 1 request (no subscription fields) written by hand.
        using var w = new WireWriter();
        var mark = w.BeginStruct(1, 1);
        w.WriteI64(7);
        w.WriteI64(0);
        w.WriteBool(false);
        w.WriteU8((byte)MonQuery.PoolList);
        w.WriteString("");
        w.EndStruct(mark);
        var old = MonRequest.Decode(w.ToArray());
        Assert.Equal(new MonRequest(7, 0, null, MonQuery.PoolList), old);

        var reply = new MonReply(MonReplyStatus.Ok, 0, "epoch 3", Data: new MapUpdate(MapUpdateKind.Full, 3, [[1, 2, 3]]).Encode());
        var back = MonReply.Decode(reply.Encode());
        Assert.Equal(reply.Data, back.Data);

        var bytes = new MapUpdate(MapUpdateKind.Increments, 9, [[1], [2, 3]]).Encode();
        for (var cut = 0; cut < bytes.Length; cut++)
        {
            Assert.Throws<WireFormatException>(() => MapUpdate.Decode(bytes.AsSpan(0, cut)));
        }
        bytes[6] = 9; // the kind
        Assert.Throws<WireFormatException>(() => MapUpdate.Decode(bytes));
    }
}
