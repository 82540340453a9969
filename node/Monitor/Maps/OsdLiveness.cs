using System.Collections.Immutable;
using Appliance.Maps;
using Appliance.Wire.Codec;

namespace Appliance.Monitor.Maps;

/// <summary>A peer's report that an OSD failed: who, on which host, when (Unix ms).</summary>
public sealed record FailureReport(int Reporter, string ReporterHost, long TimeMs);

/// <summary>
/// What the monitors know about OSD health beyond the osdmap: the last beacon of each OSD and the pending failure
/// reports. It changes only through committed log entries (boot, beacon, reports, ticks, each with the proposer's
/// time), so every monitor holds the same; it travels in the Paxos snapshot with the maps. Immutable; operations
/// return the next one.
/// </summary>
public sealed class OsdLiveness
{
    private OsdLiveness(long sinceMs, ImmutableSortedDictionary<int, long> lastBeaconMs, ImmutableSortedDictionary<int, ImmutableSortedDictionary<int, FailureReport>> reports)
    {
        SinceMs = sinceMs;
        LastBeaconMs = lastBeaconMs;
        Reports = reports;
    }

    /// <summary>When this monitor started tracking (Unix ms): the beacon clock of OSDs it has not heard from yet.</summary>
    public long SinceMs { get; }
    public ImmutableSortedDictionary<int, long> LastBeaconMs { get; }
    /// <summary>target → reporter → report.</summary>
    public ImmutableSortedDictionary<int, ImmutableSortedDictionary<int, FailureReport>> Reports { get; }

    private const byte Version = 1;

    /// <summary>Encodes the whole state (it is part of the replicated state machine: a member restored from a snapshot
    /// must go on exactly like the others).</summary>
    public void Encode(WireWriter w)
    {
        var m = w.BeginStruct(Version, 1);
        w.WriteI64(SinceMs);
        w.WriteU32((uint)LastBeaconMs.Count);
        foreach (var (osd, t) in LastBeaconMs)
        {
            w.WriteI32(osd);
            w.WriteI64(t);
        }
        w.WriteU32((uint)Reports.Count);
        foreach (var (target, reports) in Reports)
        {
            w.WriteI32(target);
            w.WriteU32((uint)reports.Count);
            foreach (var (reporter, report) in reports)
            {
                w.WriteI32(reporter);
                w.WriteString(report.ReporterHost);
                w.WriteI64(report.TimeMs);
            }
        }
        w.EndStruct(m);
    }

    public static OsdLiveness Decode(ref WireReader r)
    {
        var s = r.BeginStruct(Version, "osd liveness");
        var since = r.ReadI64();
        var beacons = ImmutableSortedDictionary.CreateBuilder<int, long>();
        var n = MapCodec.ReadCount(ref r, 12, "osd beacons");
        for (var i = 0; i < n; i++)
        {
            beacons[r.ReadI32()] = r.ReadI64();
        }
        var reports = ImmutableSortedDictionary.CreateBuilder<int, ImmutableSortedDictionary<int, FailureReport>>();
        var targets = MapCodec.ReadCount(ref r, 8, "failure report targets");
        for (var i = 0; i < targets; i++)
        {
            var target = r.ReadI32();
            var forTarget = ImmutableSortedDictionary.CreateBuilder<int, FailureReport>();
            var count = MapCodec.ReadCount(ref r, 16, "failure reports");
            for (var j = 0; j < count; j++)
            {
                var reporter = r.ReadI32();
                forTarget[reporter] = new FailureReport(reporter, r.ReadString(MapCodec.MaxString), r.ReadI64());
            }
            reports[target] = forTarget.ToImmutable();
        }
        r.EndStruct(s);
        return new OsdLiveness(since, beacons.ToImmutable(), reports.ToImmutable());
    }

    public static OsdLiveness Start(DateTimeOffset now) => new(now.ToUnixTimeMilliseconds(), ImmutableSortedDictionary<int, long>.Empty,
        ImmutableSortedDictionary<int, ImmutableSortedDictionary<int, FailureReport>>.Empty);

    /// <summary>The time the OSD was last heard from (its beacon, its boot, or the start of tracking).</summary>
    public long LastHeardMs(int osd) => LastBeaconMs.TryGetValue(osd, out var t) ? Math.Max(t, SinceMs) : SinceMs;

    public IReadOnlyCollection<FailureReport> ReportsAgainst(int target) =>
        Reports.TryGetValue(target, out var r) ? r.Values.ToList() : [];

    internal OsdLiveness WithBeacon(int osd, long nowMs) => new(SinceMs, LastBeaconMs.SetItem(osd, nowMs), Reports);

    internal OsdLiveness WithReport(int target, FailureReport report)
    {
        var forTarget = Reports.TryGetValue(target, out var r) ? r : ImmutableSortedDictionary<int, FailureReport>.Empty;
        return new(SinceMs, LastBeaconMs, Reports.SetItem(target, forTarget.SetItem(report.Reporter, report)));
    }

    internal OsdLiveness WithoutReport(int target, int reporter)
    {
        if (!Reports.TryGetValue(target, out var r) || !r.ContainsKey(reporter))
        {
            return this;
        }
        var left = r.Remove(reporter);
        return new(SinceMs, LastBeaconMs, left.IsEmpty ? Reports.Remove(target) : Reports.SetItem(target, left));
    }

    internal OsdLiveness WithoutReportsAgainst(int target) =>
        Reports.ContainsKey(target) ? new(SinceMs, LastBeaconMs, Reports.Remove(target)) : this;

    /// <summary>Drops reports older than <paramref name="oldestMs"/>.</summary>
    internal OsdLiveness Expire(long oldestMs)
    {
        var b = Reports.ToBuilder();
        foreach (var (target, r) in Reports)
        {
            var kept = r.Where(kv => kv.Value.TimeMs >= oldestMs).ToImmutableSortedDictionary();
            if (kept.Count == r.Count)
            {
                continue;
            }
            if (kept.IsEmpty)
            {
                b.Remove(target);
            }
            else
            {
                b[target] = kept;
            }
        }
        return new(SinceMs, LastBeaconMs, b.ToImmutable());
    }
}
