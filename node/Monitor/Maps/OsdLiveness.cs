using System.Collections.Immutable;

namespace Appliance.Monitor.Maps;

/// <summary>A peer's report that an OSD failed: who, on which host, when (Unix ms).</summary>
public sealed record FailureReport(int Reporter, string ReporterHost, long TimeMs);

/// <summary>
/// The leader's soft state about OSD health: the last beacon of each OSD and the pending failure reports. Not
/// replicated (as in Ceph): a new leader starts with <see cref="Start"/>, which gives every OSD a full beacon timeout
/// from the takeover, and reporters repeat their reports. Immutable; operations return the next one.
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
