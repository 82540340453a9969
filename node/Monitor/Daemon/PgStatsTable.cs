using System.Globalization;
using System.Text;
using Appliance.Maps;
using Appliance.Maps.Protocol;

namespace Appliance.Monitor.Daemon;

/// <summary>
/// The leader's memory of the OSDs' PG statistics: the latest report of each PG by its primary, and each OSD's disk
/// use. Not replicated: a new leader starts empty and is complete again once every primary has reported (every few
/// seconds), which is why quota flags are only decided for pools whose PGs all reported to this leader. Touched by
/// the monitor's loop only.
/// </summary>
public sealed class PgStatsTable
{
    private readonly SortedDictionary<PgId, (PgStat Stat, long AtMs)> _pgs = [];
    private readonly Dictionary<int, (ulong Total, ulong Used)> _osds = [];

    /// <summary>PGs with a report.</summary>
    public int Count => _pgs.Count;

    public void Clear()
    {
        _pgs.Clear();
        _osds.Clear();
    }

    /// <summary>
    /// Takes an OSD's report at <paramref name="nowMs"/>: each PG it names as its primary and that exists in
    /// <paramref name="map"/> replaces the one held unless that one was made at a newer epoch (a delayed report from a
    /// former primary must not overwrite the current one's). Returns how many PGs were taken.
    /// </summary>
    public int Record(PgStatsReport report, OsdMap map, long nowMs)
    {
        ArgumentNullException.ThrowIfNull(report);
        ArgumentNullException.ThrowIfNull(map);
        _osds[report.Osd] = (report.TotalBytes, report.UsedBytes);
        var taken = 0;
        foreach (var stat in report.Pgs)
        {
            if (stat.Primary != report.Osd || !stat.Pg.ExistsIn(map))
            {
                continue;
            }
            if (_pgs.TryGetValue(stat.Pg, out var held) && held.Stat.ReportedEpoch > stat.ReportedEpoch)
            {
                continue;
            }
            _pgs[stat.Pg] = (stat, nowMs);
            taken++;
        }
        return taken;
    }

    /// <summary>Forgets PGs and OSDs <paramref name="map"/> no longer has.</summary>
    public void Prune(OsdMap map)
    {
        ArgumentNullException.ThrowIfNull(map);
        foreach (var pg in _pgs.Keys.Where(pg => !pg.ExistsIn(map)).ToList())
        {
            _pgs.Remove(pg);
        }
        foreach (var osd in _osds.Keys.Where(id => map.FindOsd(id) is null).ToList())
        {
            _osds.Remove(osd);
        }
    }

    /// <summary>The PGs held (of pool <paramref name="poolId"/> only, when given), in id order, as reported.</summary>
    public List<PgStat> Dump(int? poolId = null) =>
        [.. _pgs.Values.Select(v => v.Stat).Where(s => poolId is null || s.Pg.Pool == poolId)];

    /// <summary>A report older than this (several report intervals) says nothing of the PG now.</summary>
    public const long StaleAfterMs = 10_000;

    /// <summary>
    /// The PGs held, in id order, with <c>stale+</c> before the state of each whose report can no longer be trusted
    /// (Ceph's stale): the OSD that reported it as its primary is down in <paramref name="map"/>, or the report is
    /// older than <see cref="StaleAfterMs"/> at <paramref name="nowMs"/> (null: age not judged).
    /// </summary>
    public List<PgStat> Dump(OsdMap map, long? nowMs, int? poolId = null)
    {
        ArgumentNullException.ThrowIfNull(map);
        return [.. _pgs.Values.Where(v => poolId is null || v.Stat.Pg.Pool == poolId).Select(v => Effective(v.Stat, v.AtMs, map, nowMs))];
    }

    private static PgStat Effective(PgStat stat, long atMs, OsdMap map, long? nowMs)
    {
        var stale = map.FindOsd(stat.Primary) is not { Up: true } || (nowMs is { } now && now - atMs > StaleAfterMs);
        return stale && !stat.State.StartsWith("stale", StringComparison.Ordinal) ? stat with { State = "stale+" + stat.State } : stat;
    }

    public DfReport Df(OsdMap map)
    {
        ArgumentNullException.ThrowIfNull(map);
        var pools = map.Pools.Values.Select(p =>
        {
            var stats = _pgs.Values.Where(v => v.Stat.Pg.Pool == p.Id).Select(v => v.Stat).ToList();
            return new PoolUsage(p.Id, p.Name, Sum(stats, s => s.Objects), Sum(stats, s => s.Bytes), p.QuotaMaxObjects, p.QuotaMaxBytes, stats.Count, p.PgNum);
        }).ToList();
        var osds = map.Osds.Values.Select(o =>
        {
            var disk = _osds.GetValueOrDefault(o.Id);
            var pgs = _pgs.Values.Count(v => v.Stat.Acting.Contains(o.Id));
            var primaries = _pgs.Values.Count(v => v.Stat.Primary == o.Id);
            return new OsdUsage(o.Id, disk.Total, disk.Used, pgs, primaries);
        }).ToList();
        return new DfReport(pools, osds);
    }

    /// <summary>
    /// The pools whose <see cref="PoolFlags.FullQuota"/> should change: set when the sums reach a quota, cleared when
    /// they are below every quota (or the quota is gone). Only pools whose every PG was reported at or after
    /// <paramref name="sinceMs"/> (this monitor's leadership) are judged: a partial table would clear a flag it cannot
    /// justify clearing.
    /// </summary>
    public Dictionary<int, bool> QuotaChanges(OsdMap map, long sinceMs)
    {
        ArgumentNullException.ThrowIfNull(map);
        var changes = new Dictionary<int, bool>();
        foreach (var pool in map.Pools.Values)
        {
            var flagged = pool.Flags.HasFlag(PoolFlags.FullQuota);
            if (pool.QuotaMaxBytes == 0 && pool.QuotaMaxObjects == 0)
            {
                if (flagged)
                {
                    changes[pool.Id] = false;
                }
                continue;
            }
            var stats = _pgs.Values.Where(v => v.Stat.Pg.Pool == pool.Id && v.AtMs >= sinceMs).Select(v => v.Stat).ToList();
            if (stats.Count < pool.PgNum)
            {
                continue;
            }
            var full = (pool.QuotaMaxObjects > 0 && Sum(stats, s => s.Objects) >= pool.QuotaMaxObjects)
                || (pool.QuotaMaxBytes > 0 && Sum(stats, s => s.Bytes) >= pool.QuotaMaxBytes);
            if (full != flagged)
            {
                changes[pool.Id] = full;
            }
        }
        return changes;
    }

    /// <summary>
    /// The OSDs whose <see cref="OsdFullness"/> should change, judged from their latest disk use against the ratios.
    /// Only OSDs that reported to this leader are judged: one it has not heard from keeps its flag.
    /// </summary>
    public Dictionary<int, OsdFullness> FullnessChanges(OsdMap map, double nearFullRatio, double fullRatio)
    {
        ArgumentNullException.ThrowIfNull(map);
        var changes = new Dictionary<int, OsdFullness>();
        foreach (var (id, (total, used)) in _osds)
        {
            if (map.FindOsd(id) is not { } osd || total == 0)
            {
                continue;
            }
            var ratio = (double)used / total;
            var fullness = ratio >= fullRatio ? OsdFullness.Full : ratio >= nearFullRatio ? OsdFullness.NearFull : OsdFullness.None;
            if (fullness != osd.Fullness)
            {
                changes[id] = fullness;
            }
        }
        return changes;
    }

    private static ulong Sum(List<PgStat> stats, Func<PgStat, ulong> field)
    {
        ulong total = 0;
        foreach (var s in stats)
        {
            total = total + field(s) < total ? ulong.MaxValue : total + field(s);
        }
        return total;
    }

    /// <summary>The `pgs` line of `status`: how many PGs the pools have, how many are in each state (most first, as
    /// the primaries last reported them), and how many have no report yet.</summary>
    public string StateSummary(OsdMap map, long? nowMs = null)
    {
        ArgumentNullException.ThrowIfNull(map);
        var total = map.Pools.Values.Sum(p => (long)p.PgNum);
        var states = _pgs.Values.Where(v => v.Stat.Pg.ExistsIn(map)).Select(v => (Stat: Effective(v.Stat, v.AtMs, map, nowMs), v.AtMs))
            .GroupBy(v => v.Stat.State, StringComparer.Ordinal)
            .Select(g => (State: g.Key, Count: g.Count())).OrderByDescending(g => g.Count).ThenBy(g => g.State, StringComparer.Ordinal).ToList();
        var reported = states.Sum(s => (long)s.Count);
        var parts = states.Select(s => $"{s.Count.ToString(CultureInfo.InvariantCulture)} {s.State}").ToList();
        if (reported < total)
        {
            parts.Add($"{(total - reported).ToString(CultureInfo.InvariantCulture)} not reported yet");
        }
        return $"pgs     {total.ToString(CultureInfo.InvariantCulture)} PGs" + (parts.Count == 0 ? "" : ": " + string.Join(", ", parts));
    }

    /// <summary>`pg ls`: one PG a line, its id first (as Ceph writes it), then state, objects, bytes, acting set,
    /// primary and the epoch of the report.</summary>
    public static string FormatPgs(IEnumerable<PgStat> stats)
    {
        var b = new StringBuilder();
        b.AppendLine(CultureInfo.InvariantCulture, $"{"PG",-10} {"STATE",-24} {"OBJECTS",10} {"BYTES",14} {"ACTING",-16} {"PRIMARY",7} {"EPOCH",7}");
        foreach (var s in stats)
        {
            var acting = "[" + string.Join(",", s.Acting.Select(o => o == OsdMap.NoOsd ? "NONE" : o.ToString(CultureInfo.InvariantCulture))) + "]";
            b.AppendLine(CultureInfo.InvariantCulture, $"{s.Pg,-10} {s.State,-24} {s.Objects,10} {s.Bytes,14} {acting,-16} {s.Primary,7} {s.ReportedEpoch,7}");
        }
        return b.ToString();
    }

    /// <summary>`df`: a table of pools, then one of OSDs.</summary>
    public static string FormatDf(DfReport df)
    {
        ArgumentNullException.ThrowIfNull(df);
        var b = new StringBuilder();
        b.AppendLine(CultureInfo.InvariantCulture, $"{"POOL",-20} {"ID",4} {"OBJECTS",10} {"STORED",14} {"QUOTA OBJECTS",13} {"QUOTA BYTES",14} {"PGS REPORTED",12}");
        foreach (var p in df.Pools)
        {
            b.AppendLine(CultureInfo.InvariantCulture,
                $"{p.Name,-20} {p.Pool,4} {p.Objects,10} {p.Bytes,14} {(p.QuotaMaxObjects == 0 ? "N/A" : p.QuotaMaxObjects.ToString(CultureInfo.InvariantCulture)),13} {(p.QuotaMaxBytes == 0 ? "N/A" : p.QuotaMaxBytes.ToString(CultureInfo.InvariantCulture)),14} {$"{p.PgsReported}/{p.PgNum}",12}");
        }
        b.AppendLine();
        b.AppendLine(CultureInfo.InvariantCulture, $"{"OSD",-8} {"SIZE",14} {"USED",14} {"%USE",6} {"PGS",6} {"PRIMARY",7}");
        foreach (var o in df.Osds)
        {
            var use = o.TotalBytes == 0 ? "-" : (100.0 * o.UsedBytes / o.TotalBytes).ToString("0.0", CultureInfo.InvariantCulture);
            b.AppendLine(CultureInfo.InvariantCulture, $"{"osd." + o.Osd.ToString(CultureInfo.InvariantCulture),-8} {o.TotalBytes,14} {o.UsedBytes,14} {use,6} {o.Pgs,6} {o.Primaries,7}");
        }
        return b.ToString();
    }
}
