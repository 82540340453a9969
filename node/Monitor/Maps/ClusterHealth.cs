using Appliance.Maps;

namespace Appliance.Monitor.Maps;

/// <summary>How bad it is: Ok, Warn (degraded but serving), Error (some data cannot be written or read).</summary>
public enum HealthStatus
{
    Ok,
    Warn,
    Error,
}

/// <summary>One health finding with its severity and a message that says what is wrong (and what to do).</summary>
public sealed record HealthCheck(HealthStatus Severity, string Message);

/// <summary>The map part of `appliance status`: counts and findings computed from the committed maps alone (the
/// daemon adds the quorum, and later PG states).</summary>
public sealed record HealthReport(
    HealthStatus Status, IReadOnlyList<HealthCheck> Checks, int Monitors, uint OsdEpoch, int Osds, int OsdsUp, int OsdsIn, int Pools, long PgsTotal);

public static class ClusterHealth
{
    public static HealthReport Summarize(ClusterState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        var osd = state.Osd;
        var checks = new List<HealthCheck>();
        // An OSD made by `osd create` that has not booted yet (no address) is neither down nor out in any useful sense.
        var booted = osd.Osds.Values.Where(o => o.Address.Length > 0).ToList();
        var down = booted.Where(o => !o.Up).Select(o => $"osd.{o.Id}").ToList();
        if (down.Count > 0)
        {
            checks.Add(new HealthCheck(HealthStatus.Warn, $"{down.Count} OSD(s) down: {string.Join(", ", down)}"));
        }
        if ((osd.Flags & OsdMapFlags.NoOut) != 0)
        {
            checks.Add(new HealthCheck(HealthStatus.Warn,
                "noout flag set: down OSDs are not marked out, their PGs stay degraded (`appliance osd unset noout` after the maintenance)"));
        }
        var outOsds = booted.Where(o => !o.In).Select(o => $"osd.{o.Id}").ToList();
        if (outOsds.Count > 0)
        {
            checks.Add(new HealthCheck(HealthStatus.Warn, $"{outOsds.Count} OSD(s) out: {string.Join(", ", outOsds)}"));
        }
        var full = booted.Where(o => o.Fullness == OsdFullness.Full).Select(o => $"osd.{o.Id}").ToList();
        if (full.Count > 0)
        {
            checks.Add(new HealthCheck(HealthStatus.Error,
                $"{full.Count} OSD(s) full: {string.Join(", ", full)}: the PGs they hold refuse writes that add data; delete data, add OSDs, or raise mon_osd_full_ratio a little to get room to delete"));
        }
        var nearFull = booted.Where(o => o.Fullness == OsdFullness.NearFull).Select(o => $"osd.{o.Id}").ToList();
        if (nearFull.Count > 0)
        {
            checks.Add(new HealthCheck(HealthStatus.Warn,
                $"{nearFull.Count} OSD(s) nearly full: {string.Join(", ", nearFull)}: add capacity or delete data before they reach mon_osd_full_ratio"));
        }
        // Failure domains that can hold a replica now: hosts (or OSDs) with at least one OSD up and in.
        var domains = osd.Osds.Values.Where(o => o.Up && o.In)
            .Select(o => osd.FailureDomain == "osd" ? $"osd.{o.Id}" : o.Host).Distinct(StringComparer.Ordinal).Count();
        foreach (var pool in osd.Pools.Values)
        {
            if (pool.Flags.HasFlag(PoolFlags.FullQuota))
            {
                checks.Add(new HealthCheck(HealthStatus.Warn,
                    $"pool '{pool.Name}' is full (quota): writes that add data are refused; raise quota_max_objects / quota_max_bytes or delete objects"));
            }
            if (domains < pool.MinSize)
            {
                checks.Add(new HealthCheck(HealthStatus.Error,
                    $"pool '{pool.Name}' needs {pool.MinSize} {osd.FailureDomain}s up and in to accept writes, {domains} are; bring OSDs back or add some"));
            }
            else if (domains < pool.Size)
            {
                checks.Add(new HealthCheck(HealthStatus.Warn,
                    $"pool '{pool.Name}' keeps {pool.Size} copies on distinct {osd.FailureDomain}s but only {domains} are up and in: it is degraded"));
            }
        }
        var status = checks.Count == 0 ? HealthStatus.Ok : checks.Max(c => c.Severity);
        return new HealthReport(status, checks, state.Mon.Monitors.Count, osd.Epoch, osd.Osds.Count, osd.UpCount, osd.InCount, osd.Pools.Count,
            osd.Pools.Values.Sum(p => (long)p.PgNum));
    }
}
