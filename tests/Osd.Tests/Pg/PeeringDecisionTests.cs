using Appliance.Maps;
using Appliance.Osd.Pg;
using Appliance.Osd.Protocol;
using Appliance.Wire.Codec;

namespace Appliance.Osd.Tests.Pg;

/// <summary>The primary's go/no-go rule over past intervals (<see cref="PeeringDecision"/>), as a pure function.</summary>
public sealed class PeeringDecisionTests
{
    private static readonly PgId Pg = new(1, 0);

    private static PeerAnswer Has(uint les, bool backfilling = false) =>
        new(true, backfilling, PgInfo.Empty(Pg) with { LastUpdate = new Eversion(les, 5), LastEpochStarted = les });

    private static readonly PeerAnswer Empty = new(false, false, PgInfo.Empty(Pg));

    private static Func<int, bool> Up(params int[] up) => o => up.Contains(o);

    [Fact]
    public void A_rw_interval_whose_members_are_all_down_makes_the_PG_down_waiting_for_them()
    {
        // [10,20] on osd.0+1 served; now osd.2+3 are the acting set and have nothing.
        PastInterval[] past = [new(10, 20, [0, 1], 0, MaybeWentRw: true)];
        var answers = new Dictionary<int, PeerAnswer> { [2] = Empty, [3] = Empty };
        var plan = PeeringDecision.Decide(poolCreated: 10, knownFrom: 10, past, answers, Up(2, 3));
        Assert.Equal(PeeringVerdict.Down, plan.Verdict);
        Assert.Equal([0, 1], plan.WaitingFor);
        Assert.Contains("osd.0 (down)", plan.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void One_answer_from_each_rw_interval_is_enough()
    {
        PastInterval[] past = [new(10, 20, [0, 1], 0, true), new(21, 30, [1, 2], 1, true)];
        var answers = new Dictionary<int, PeerAnswer> { [1] = Has(10), [3] = Empty, [4] = Empty };
        var plan = PeeringDecision.Decide(10, 10, past, answers, Up(1, 3, 4));
        Assert.Equal(PeeringVerdict.Proceed, plan.Verdict);
        Assert.Empty(plan.WaitingFor);
    }

    [Fact]
    public void Intervals_that_cannot_have_served_are_not_waited_for()
    {
        PastInterval[] past = [new(10, 20, [0, 1], 0, MaybeWentRw: false)];
        var answers = new Dictionary<int, PeerAnswer> { [2] = Empty, [3] = Empty };
        Assert.Equal(PeeringVerdict.Proceed, PeeringDecision.Decide(10, 10, past, answers, Up(2, 3)).Verdict);
    }

    [Fact]
    public void Intervals_before_the_last_activation_anyone_knows_of_are_not_needed()
    {
        // osd.2 activated the PG at 25 (last_epoch_started): it gathered [10,20]'s writes then.
        PastInterval[] past = [new(10, 20, [0, 1], 0, true), new(21, 30, [1, 2], 1, true)];
        var answers = new Dictionary<int, PeerAnswer> { [2] = Has(25), [3] = Empty };
        var plan = PeeringDecision.Decide(10, 10, past, answers, Up(2, 3));
        Assert.Equal(PeeringVerdict.Proceed, plan.Verdict);
        Assert.Single(plan.Prior);
        Assert.Equal(25u, plan.LastEpochStarted);
    }

    [Fact]
    public void Members_that_answered_only_mid_backfill_make_it_incomplete()
    {
        PastInterval[] past = [new(10, 20, [0, 1], 0, true)];
        var answers = new Dictionary<int, PeerAnswer> { [0] = Has(0, backfilling: true), [1] = Has(0, backfilling: true), [2] = Empty };
        var plan = PeeringDecision.Decide(10, 10, past, answers, Up(0, 1, 2));
        Assert.Equal(PeeringVerdict.Incomplete, plan.Verdict);
        Assert.Contains("mid-backfill", plan.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_history_before_the_last_activation_makes_it_incomplete()
    {
        // Nobody answering knows the PG's intervals between its creation (5) and epoch 40, and none activated it.
        var answers = new Dictionary<int, PeerAnswer> { [2] = Empty, [3] = Empty };
        var plan = PeeringDecision.Decide(poolCreated: 5, knownFrom: 40, [], answers, Up(2, 3));
        Assert.Equal(PeeringVerdict.Incomplete, plan.Verdict);
        // Known from the pool's creation on: a new PG, created empty.
        Assert.Equal(PeeringVerdict.Proceed, PeeringDecision.Decide(5, 5, [], answers, Up(2, 3)).Verdict);
    }

    [Fact]
    public void With_its_history_unknown_a_PG_nobody_holds_is_created_only_once_every_OSD_answered()
    {
        var answers = new Dictionary<int, PeerAnswer> { [0] = Empty, [1] = Empty, [2] = Empty };
        var unknown = PeeringDecision.Decide(poolCreated: 5, knownFrom: 40, [], answers, Up(0, 1, 2), everyOsd: [0, 1, 2, 3]);
        Assert.Equal(PeeringVerdict.Incomplete, unknown.Verdict);
        Assert.Equal([3], unknown.WaitingFor);
        Assert.True(unknown.HistoryUnknown);
        answers[3] = Empty;
        Assert.Equal(PeeringVerdict.Proceed, PeeringDecision.Decide(5, 40, [], answers, Up(0, 1, 2, 3), everyOsd: [0, 1, 2, 3]).Verdict);
        // One of them holds it (with nothing known of its past either): never created empty over it.
        answers[3] = Has(0);
        Assert.Equal(PeeringVerdict.Incomplete, PeeringDecision.Decide(5, 40, [], answers, Up(0, 1, 2, 3), everyOsd: [0, 1, 2, 3]).Verdict);
    }

    [Fact]
    public void The_probe_set_is_the_acting_set_and_the_up_members_of_rw_intervals()
    {
        PastInterval[] past = [new(10, 20, [0, 1], 0, true), new(21, 22, [5, 6], 5, false)];
        Assert.Equal([0, 2, 3], PeeringDecision.ProbeSet([2, 3], past, Up(0, 2, 3, 5, 6)));
    }

    [Fact]
    public void An_interval_is_rw_only_with_min_size_members_and_its_primary_up_through_its_start()
    {
        var map = TestMaps.WithOsds((0, UpFrom: 3, UpThru: 12), (1, UpFrom: 3, UpThru: 0));
        Assert.True(PastInterval.WentRw(map, first: 12, firstKnown: true, [0, 1], 0, minSize: 2));
        Assert.False(PastInterval.WentRw(map, first: 13, firstKnown: true, [0, 1], 0, minSize: 2));
        Assert.False(PastInterval.WentRw(map, first: 12, firstKnown: true, [0], 0, minSize: 2));
        Assert.False(PastInterval.WentRw(map, first: 12, firstKnown: true, [1, 0], 1, minSize: 2));
        // Up from after the interval began: its up_thru is from a later life.
        Assert.False(PastInterval.WentRw(map, first: 2, firstKnown: true, [0, 1], 0, minSize: 1));
        // An interval whose start was not seen: judged by its size alone (the safe side).
        Assert.True(PastInterval.WentRw(map, first: 13, firstKnown: false, [1, 0], 1, minSize: 2));
        Assert.True(PastInterval.WentRw(null, first: 13, firstKnown: true, [1, 0], 1, minSize: 2));
    }

    [Fact]
    public void Intervals_advance_with_each_map_and_start_over_after_a_gap()
    {
        var m10 = TestMaps.WithOsds((0, 1, 10), (1, 1, 0)).At(10);
        var past = PastIntervals.Start(5, 8, [0, 1], 0, startKnown: true) with { Through = 9 };
        past = past.Advance(m10.At(9), m10, 2, [0, 1], 0);
        Assert.Empty(past.Intervals);
        Assert.Equal(10u, past.Through);
        var next = past.Advance(m10, m10.At(11), 2, [1], 1);
        var ended = Assert.Single(next.Intervals);
        Assert.Equal((8u, 10u), (ended.First, ended.Last));
        Assert.True(ended.MaybeWentRw);
        Assert.Equal(11u, next.CurrentSince);
        Assert.Equal(5u, next.KnownFrom);
        // Epoch 12 skipped: what happened in it is unknown.
        var gap = next.Advance(m10.At(12), m10.At(13), 2, [1], 1);
        Assert.Empty(gap.Intervals);
        Assert.Equal(13u, gap.KnownFrom);
        Assert.False(gap.CurrentStartKnown);
        // Activated at 11: the intervals before are dropped.
        Assert.Empty(next.TrimBefore(11).Intervals);
        Assert.Equal(11u, next.TrimBefore(11).KnownFrom);
    }

    [Fact]
    public void A_member_that_restarted_ends_the_interval_though_the_acting_set_and_primary_stay()
    {
        var m10 = TestMaps.WithOsds((0, 1, 10), (1, 1, 0)).At(10);
        var past = PastIntervals.Start(5, 8, [0, 1], 0, startKnown: true, PastIntervals.UpFromOf(m10, [0, 1])) with { Through = 10 };
        Assert.Equal([1u, 1u], past.CurrentUpFrom!);
        // osd.1 restarted: up from epoch 11, in the same acting set under the same primary. It knows nothing of the
        // interval it left, so the PG's interval ends here in the past intervals as it does on the PG (OnMap).
        var m11 = TestMaps.WithOsds((0, 1, 10), (1, 11, 0)).At(11);
        var next = past.Advance(m10, m11, 2, [0, 1], 0);
        var ended = Assert.Single(next.Intervals);
        Assert.Equal((8u, 10u), (ended.First, ended.Last));
        Assert.True(ended.MaybeWentRw);
        Assert.Equal(11u, next.CurrentSince);
        Assert.Equal([1u, 11u], next.CurrentUpFrom!);
        Assert.False(next.IsCurrent([0, 1], 0, [1, 1]));
        // The next map with the same members up from the same epochs: the same interval.
        var same = next.Advance(m11, m11.At(12), 2, [0, 1], 0);
        Assert.Single(same.Intervals);
        Assert.Equal((11u, 12u), (same.CurrentSince, same.Through));
        // Kept through an encoding.
        Assert.Equal([1u, 11u], PastIntervals.FromBytes(same.ToBytes()).CurrentUpFrom!);
    }

    [Fact]
    public void Past_intervals_round_trip_and_merge_on_the_safe_side()
    {
        var a = new PastIntervals(5, 30, [2, 3], 2, true, [new(10, 20, [0, 1], 0, false), new(21, 29, [1, 2], 1, true)]) { Through = 31 };
        var back = PastIntervals.FromBytes(a.ToBytes());
        Assert.Equal(a.ToBytes(), back.ToBytes());
        Assert.Equal(31u, back.Through);
        var b = new PastIntervals(12, 30, [2, 3], 2, true, [new(10, 20, [0, 1], 0, true)]);
        var (knownFrom, merged) = PastIntervals.Merge([a, b]);
        Assert.Equal(5u, knownFrom);
        Assert.Equal(2, merged.Count);
        Assert.True(merged[0].MaybeWentRw);
        Assert.Throws<WireFormatException>(() => PastIntervals.FromBytes(a.ToBytes().AsSpan(0, 20)));
    }
}

/// <summary>Osdmaps with chosen up_from / up_thru, for the interval rules.</summary>
internal static class TestMaps
{
    public static OsdMap WithOsds(params (int Id, uint UpFrom, uint UpThru)[] osds)
    {
        var state = Monitor.Maps.ClusterState.Bootstrap(Guid.NewGuid(), [("a", "127.0.0.1:6789")], DateTimeOffset.UnixEpoch, [], "osd");
        var m = state.Osd;
        var table = m.Osds;
        foreach (var (id, upFrom, upThru) in osds)
        {
            table = table.SetItem(id, new OsdInfo(id, $"127.0.0.1:{6800 + id}", "host0", Up: true, In: true, 0x10000, upFrom, 0, false, "", upThru));
        }
        return new OsdMap(m.Epoch, m.Fsid, m.ModifiedMs, table, m.Pools, m.PoolMax, m.FailureDomain, m.CrushText, m.Crush);
    }

    public static OsdMap At(this OsdMap m, uint epoch) =>
        new(epoch, m.Fsid, m.ModifiedMs, m.Osds, m.Pools, m.PoolMax, m.FailureDomain, m.CrushText, m.Crush);
}
