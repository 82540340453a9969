using Appliance.Maps;
using Appliance.Osd.Protocol;
using Appliance.Wire.Codec;

namespace Appliance.Osd.Pg;

/// <summary>
/// One finished interval of a PG (Ceph's pg_interval_t): epochs <see cref="First"/>..<see cref="Last"/> with the same
/// acting set and primary. <see cref="MaybeWentRw"/>: the interval may have acknowledged writes — it had at least
/// min_size members and its primary's up_thru covered its first epoch (a primary asks the monitors for that before it
/// activates, so an interval whose primary's up_thru stayed below it never served).
/// </summary>
public sealed record PastInterval(uint First, uint Last, int[] Acting, int Primary, bool MaybeWentRw)
{
    public override string ToString() =>
        $"[{First},{Last}] acting [{string.Join(",", Acting)}] primary {Primary}{(MaybeWentRw ? " maybe_went_rw" : "")}";

    internal void Encode(WireWriter w)
    {
        w.WriteU32(First);
        w.WriteU32(Last);
        w.WriteU32((uint)Acting.Length);
        foreach (var o in Acting)
        {
            w.WriteI32(o);
        }
        w.WriteI32(Primary);
        w.WriteBool(MaybeWentRw);
    }

    internal static PastInterval Decode(ref WireReader r)
    {
        var first = r.ReadU32();
        var last = r.ReadU32();
        var acting = new int[Limits.ReadCount(ref r, 4, "past interval acting set")];
        for (var i = 0; i < acting.Length; i++)
        {
            acting[i] = r.ReadI32();
        }
        return new PastInterval(first, last, acting, r.ReadI32(), r.ReadBool());
    }

    /// <summary>
    /// Whether an interval that ended with <paramref name="lastMap"/> (its last epoch) may have gone rw: enough
    /// members for the pool's min_size, and — when its first epoch is known — a primary that was up from before it
    /// and whose up_thru reached it. An interval whose start or end this OSD did not see is judged by its size alone.
    /// </summary>
    public static bool WentRw(OsdMap? lastMap, uint first, bool firstKnown, IReadOnlyList<int> acting, int primary, int minSize)
    {
        if (acting.Count(o => o >= 0) < Math.Max(1, minSize) || primary < 0)
        {
            return false;
        }
        if (!firstKnown || lastMap is null)
        {
            return true;
        }
        return lastMap.FindOsd(primary) is { } p && p.UpThru >= first && p.UpFrom <= first;
    }
}

/// <summary>
/// What a PG knows of its own past (Ceph's past_intervals with pg_history_t's bounds): the finished intervals from
/// <see cref="KnownFrom"/> on, contiguous up to the current interval (which starts at <see cref="CurrentSince"/>). An
/// interval ends when the acting set or the primary changes, or when a member of the acting set restarted (its
/// up_from changed: it knows nothing of the interval it left), as the PG's own interval does (PlacementGroup.OnMap);
/// <see cref="CurrentSince"/> is therefore the epoch that names the PG's current interval on every OSD that saw the
/// maps in order, whichever map it first hosted the PG at.
/// Epochs before <see cref="KnownFrom"/> are unknown here; <see cref="KnownFrom"/> at or below the pool's creation
/// epoch means the whole history is known. Immutable: a new interval is a new value. Kept with the PG (its meta omap
/// key <c>past_intervals</c>) and sent with every answer to a peering query, so the primary merges what every member
/// knows. Bounded: past <see cref="MaxIntervals"/> the oldest are dropped and <see cref="KnownFrom"/> moves on (the
/// PG then needs a member whose activation is newer, which peering asks for).
/// </summary>
public sealed record PastIntervals(uint KnownFrom, uint CurrentSince, int[] CurrentActing, int CurrentPrimary, bool CurrentStartKnown,
    IReadOnlyList<PastInterval> Intervals)
{
    /// <summary>The newest epoch this knowledge was brought to: the next map that follows it without a gap continues
    /// it; one after a gap starts over (intervals in the gap are unknown).</summary>
    public uint Through { get; init; } = CurrentSince;

    /// <summary>The up_from of each member of <see cref="CurrentActing"/> (0 for a hole) when the current interval
    /// began; null when unknown (kept by an older version), and then only a change of the acting set or primary ends it.</summary>
    public uint[]? CurrentUpFrom { get; init; }

    // Version 2 adds CurrentUpFrom after the intervals; a version 1 reader skips it.
    private const byte EncodingVersion = 2;
    public const int MaxIntervals = 200;

    /// <summary>Nothing known before <paramref name="since"/>, where an interval with this acting set starts (or was
    /// first seen, when <paramref name="startKnown"/> is false).</summary>
    public static PastIntervals Start(uint knownFrom, uint since, int[] acting, int primary, bool startKnown, uint[]? upFrom = null) =>
        new(knownFrom, since, acting, primary, startKnown, []) { Through = since, CurrentUpFrom = upFrom };

    /// <summary>The epoch from which each member of <paramref name="acting"/> is up in <paramref name="map"/> (0 for a
    /// hole or an OSD the map does not have).</summary>
    public static uint[] UpFromOf(OsdMap map, IReadOnlyList<int> acting)
    {
        var upFrom = new uint[acting.Count];
        for (var k = 0; k < acting.Count; k++)
        {
            upFrom[k] = acting[k] >= 0 && map.FindOsd(acting[k]) is { } o ? o.UpFrom : 0;
        }
        return upFrom;
    }

    /// <summary>Whether the current interval is the one of <paramref name="acting"/>, <paramref name="primary"/> and
    /// members up from <paramref name="upFrom"/>.</summary>
    public bool IsCurrent(int[] acting, int primary, uint[] upFrom) =>
        CurrentPrimary == primary && CurrentActing.AsSpan().SequenceEqual(acting) && (CurrentUpFrom is null || CurrentUpFrom.AsSpan().SequenceEqual(upFrom));

    /// <summary>
    /// This knowledge brought to <paramref name="map"/>: unchanged when the PG's acting set, primary and the members'
    /// up_from are, a new interval when one of them changed, or — when epochs were skipped since <see cref="Through"/> — started over from
    /// <paramref name="map"/> with nothing known before it (an interval could have come and gone in the gap).
    /// </summary>
    public PastIntervals Advance(OsdMap? previous, OsdMap map, int minSize, int[] acting, int primary)
    {
        if (map.Epoch <= Through)
        {
            return this;
        }
        var upFrom = UpFromOf(map, acting);
        if (map.Epoch != Through + 1)
        {
            return Start(map.Epoch, map.Epoch, acting, primary, startKnown: false, upFrom);
        }
        if (IsCurrent(acting, primary, upFrom))
        {
            return this with { Through = map.Epoch, CurrentUpFrom = upFrom };
        }
        return Next(previous?.Epoch == Through ? previous : null, minSize, map.Epoch, acting, primary, upFrom);
    }

    /// <summary>The current interval ended with <paramref name="lastMap"/> (epoch <paramref name="newSince"/> - 1; null
    /// when this OSD does not hold that map, and then the interval is judged by its size alone); a new one starts at
    /// <paramref name="newSince"/>.</summary>
    public PastIntervals Next(OsdMap? lastMap, int minSize, uint newSince, int[] acting, int primary, uint[]? upFrom = null)
    {
        var ended = new PastInterval(CurrentSince, newSince - 1, CurrentActing, CurrentPrimary,
            PastInterval.WentRw(lastMap, CurrentSince, CurrentStartKnown, CurrentActing, CurrentPrimary, minSize));
        var list = new List<PastInterval>(Intervals.Count + 1);
        list.AddRange(Intervals);
        list.Add(ended);
        var knownFrom = KnownFrom;
        while (list.Count > MaxIntervals)
        {
            knownFrom = list[0].Last + 1;
            list.RemoveAt(0);
        }
        return new PastIntervals(knownFrom, newSince, acting, primary, true, list) { Through = newSince, CurrentUpFrom = upFrom };
    }

    /// <summary>Drops the intervals that ended before <paramref name="lastEpochStarted"/>: a PG activated at that epoch
    /// gathered everything before it, so later peerings never need their members.</summary>
    public PastIntervals TrimBefore(uint lastEpochStarted)
    {
        var keep = Intervals.Where(i => i.Last >= lastEpochStarted).ToList();
        if (keep.Count == Intervals.Count)
        {
            return this;
        }
        return this with { KnownFrom = Math.Max(KnownFrom, keep.Count > 0 ? keep[0].First : CurrentSince), Intervals = keep };
    }

    public void Encode(WireWriter w)
    {
        var m = w.BeginStruct(EncodingVersion, 1);
        w.WriteU32(KnownFrom);
        w.WriteU32(CurrentSince);
        w.WriteU32((uint)CurrentActing.Length);
        foreach (var o in CurrentActing)
        {
            w.WriteI32(o);
        }
        w.WriteI32(CurrentPrimary);
        w.WriteBool(CurrentStartKnown);
        w.WriteU32(Through);
        w.WriteU32((uint)Intervals.Count);
        foreach (var i in Intervals)
        {
            i.Encode(w);
        }
        w.WriteBool(CurrentUpFrom is not null);
        if (CurrentUpFrom is not null)
        {
            w.WriteU32((uint)CurrentUpFrom.Length);
            foreach (var u in CurrentUpFrom)
            {
                w.WriteU32(u);
            }
        }
        w.EndStruct(m);
    }

    public static PastIntervals Decode(ref WireReader r)
    {
        var s = r.BeginStruct(EncodingVersion, "past intervals");
        var knownFrom = r.ReadU32();
        var since = r.ReadU32();
        var acting = new int[Limits.ReadCount(ref r, 4, "acting set")];
        for (var i = 0; i < acting.Length; i++)
        {
            acting[i] = r.ReadI32();
        }
        var primary = r.ReadI32();
        var startKnown = r.ReadBool();
        var through = r.ReadU32();
        var list = new PastInterval[Limits.ReadCount(ref r, 14, "past intervals")];
        for (var i = 0; i < list.Length; i++)
        {
            list[i] = PastInterval.Decode(ref r);
        }
        uint[]? upFrom = null;
        if (s.Version >= 2 && r.ReadBool())
        {
            upFrom = new uint[Limits.ReadCount(ref r, 4, "acting set up_from")];
            for (var i = 0; i < upFrom.Length; i++)
            {
                upFrom[i] = r.ReadU32();
            }
            if (upFrom.Length != acting.Length)
            {
                throw new WireFormatException($"past intervals: {upFrom.Length} up_from values for an acting set of {acting.Length}");
            }
        }
        r.EndStruct(s);
        return new PastIntervals(knownFrom, since, acting, primary, startKnown, list) { Through = through, CurrentUpFrom = upFrom };
    }

    public byte[] ToBytes()
    {
        using var w = new WireWriter(64 + (Intervals.Count * 32));
        Encode(w);
        return w.ToArray();
    }

    public static PastIntervals FromBytes(ReadOnlySpan<byte> bytes)
    {
        var r = new WireReader(bytes);
        return Decode(ref r);
    }

    /// <summary>
    /// The union of what several OSDs know: every interval any of them recorded (two OSDs that saw an acting set
    /// first at different epochs record it twice; keeping both only asks more of peering), known from the earliest
    /// epoch any of them knows (each one's list is contiguous from its own <see cref="KnownFrom"/> to the present).
    /// </summary>
    public static (uint KnownFrom, List<PastInterval> Intervals) Merge(IEnumerable<PastIntervals> sources)
    {
        var knownFrom = uint.MaxValue;
        var all = new Dictionary<(uint, uint, int), PastInterval>();
        foreach (var s in sources)
        {
            knownFrom = Math.Min(knownFrom, s.KnownFrom);
            foreach (var i in s.Intervals)
            {
                var key = (i.First, i.Last, i.Primary);
                // Two views of one interval: "maybe went rw" wins (the safe side).
                if (!all.TryGetValue(key, out var had) || (!had.MaybeWentRw && i.MaybeWentRw))
                {
                    all[key] = i;
                }
            }
        }
        return (knownFrom, [.. all.Values.OrderBy(i => i.First).ThenBy(i => i.Last)]);
    }
}
