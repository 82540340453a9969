using Appliance.Maps;
using Appliance.Maps.Protocol;

namespace Appliance.Monitor.Maps;

public static partial class MonOperations
{
    /// <summary>Largest OSD id.</summary>
    public const int MaxOsdId = 65535;

    private static Result OsdBootOp(Context ctx, OsdBoot c)
    {
        if (c.Id < 0 || c.Id > MaxOsdId)
        {
            return Result.Fail(MonErrorCode.InvalidArgument, $"osd id {c.Id} is out of range 0..{MaxOsdId}");
        }
        if (string.IsNullOrWhiteSpace(c.Address) || c.Address.Length > 256 || c.Address.Any(char.IsWhiteSpace))
        {
            return Result.Fail(MonErrorCode.InvalidArgument, $"osd.{c.Id} boots with a bad address '{c.Address}'");
        }
        if (CheckName("host name", c.Host) is { } bad)
        {
            return Result.Fail(bad.Code, bad.Message);
        }
        if (c.Host == CrushLayout.RootName || c.Host.StartsWith("osd.", StringComparison.Ordinal))
        {
            return Result.Fail(MonErrorCode.InvalidArgument, $"host name '{c.Host}' is reserved for the CRUSH map; rename the host");
        }
        if (c.Weight == 0)
        {
            return Result.Fail(MonErrorCode.InvalidArgument, $"osd.{c.Id} boots with CRUSH weight 0; it would get no data");
        }
        var existing = ctx.Osd.FindOsd(c.Id);
        ctx.Liveness = ctx.Liveness.WithBeacon(c.Id, ctx.NowMs).WithoutReportsAgainst(c.Id);
        if (existing is { Up: true } && existing.Address == c.Address && existing.Host == c.Host && existing.Weight == c.Weight)
        {
            return Result.Unchanged($"osd.{c.Id} is already up at {c.Address}");
        }
        // A new OSD comes in; one the monitors marked out comes back in; one an administrator marked out stays out.
        var markIn = existing is null || existing.In || existing.AutoOut;
        var info = new OsdInfo(c.Id, c.Address, c.Host, Up: true, In: markIn, c.Weight, UpFrom: ctx.Osd.Epoch + 1, DownStampMs: 0, AutoOut: false);
        string? crushText = null;
        if (existing is null || existing.Host != c.Host || existing.Weight != c.Weight)
        {
            try
            {
                crushText = CrushLayout.ToText(CrushLayout.PlaceOsd(ctx.Osd.Crush, c.Id, c.Host, c.Weight));
            }
            catch (ArgumentException e)
            {
                return Result.Fail(MonErrorCode.InvalidArgument, e.Message);
            }
        }
        var what = existing is null ? "registered and marked up" : "marked up";
        return Result.Changed(new ClusterIncrement(Osd: OsdInc(ctx, osds: [info], crushText: crushText)),
            $"osd.{c.Id} {what} at {c.Address} on host {c.Host}{(markIn ? ", in" : ", stays out (marked out by an administrator)")}");
    }

    private static Result OsdBeaconOp(Context ctx, OsdBeacon c)
    {
        var osd = ctx.Osd.FindOsd(c.Id);
        if (osd is null)
        {
            return Result.Fail(MonErrorCode.NotFound, $"osd.{c.Id} does not exist; it must boot first");
        }
        if (!osd.Up)
        {
            return Result.Fail(MonErrorCode.Refused, $"osd.{c.Id} is marked down; it must boot again");
        }
        ctx.Liveness = ctx.Liveness.WithBeacon(c.Id, ctx.NowMs);
        return Result.Unchanged($"beacon from osd.{c.Id}");
    }

    /// <summary>
    /// A failure report. The target is marked down once the reports against it come from enough distinct HOSTS
    /// (mon_osd_min_down_reporters; two OSDs of one host count once, since a host's own network trouble must not take
    /// others down). The requirement is capped at the number of hosts that could report at all (hosts with an up OSD
    /// other than the target), so a one- or two-host cluster can still mark an OSD down. Reports older than twice
    /// osd_heartbeat_grace expire.
    /// </summary>
    private static Result OsdFailureOp(Context ctx, OsdFailureReport c)
    {
        var target = ctx.Osd.FindOsd(c.Target);
        var reporter = ctx.Osd.FindOsd(c.Reporter);
        if (target is null)
        {
            return Result.Fail(MonErrorCode.NotFound, $"osd.{c.Target} does not exist");
        }
        if (reporter is null)
        {
            return Result.Fail(MonErrorCode.NotFound, $"reporter osd.{c.Reporter} does not exist");
        }
        if (c.Target == c.Reporter)
        {
            return Result.Fail(MonErrorCode.InvalidArgument, $"osd.{c.Target} cannot report itself failed");
        }
        if (!reporter.Up)
        {
            return Result.Fail(MonErrorCode.Refused, $"reporter osd.{c.Reporter} is marked down; its reports do not count");
        }
        if (!target.Up)
        {
            return Result.Unchanged($"osd.{c.Target} is already down");
        }
        var grace = ctx.Config.GetInt("osd_heartbeat_grace") * 1000;
        ctx.Liveness = ctx.Liveness.Expire(ctx.NowMs - (2 * grace)).WithReport(c.Target, new FailureReport(c.Reporter, reporter.Host, ctx.NowMs));
        var hosts = ReportingHosts(ctx, c.Target);
        var needed = ReportersNeeded(ctx, c.Target);
        if (hosts.Count < needed)
        {
            return Result.Unchanged($"osd.{c.Target} reported failed from {hosts.Count} of {needed} hosts needed");
        }
        ctx.Liveness = ctx.Liveness.WithoutReportsAgainst(c.Target);
        return Result.Changed(new ClusterIncrement(Osd: OsdInc(ctx, osds: [MarkDown(ctx, target)])),
            $"osd.{c.Target} marked down: reported failed from hosts {string.Join(", ", hosts)}");
    }

    private static SortedSet<string> ReportingHosts(Context ctx, int target) =>
        new(ctx.Liveness.ReportsAgainst(target)
            .Where(r => ctx.Osd.FindOsd(r.Reporter) is { Up: true })
            .Select(r => ctx.Osd.FindOsd(r.Reporter)!.Host), StringComparer.Ordinal);

    private static int ReportersNeeded(Context ctx, int target)
    {
        var candidates = ctx.Osd.Osds.Values.Where(o => o.Up && o.Id != target).Select(o => o.Host).Distinct(StringComparer.Ordinal).Count();
        return (int)Math.Clamp(ctx.Config.GetInt("mon_osd_min_down_reporters"), 1, Math.Max(1, candidates));
    }

    private static OsdInfo MarkDown(Context ctx, OsdInfo osd) => osd with { Up = false, DownStampMs = ctx.NowMs };

    private static Result OsdFailureCancelOp(Context ctx, OsdFailureCancel c)
    {
        ctx.Liveness = ctx.Liveness.WithoutReport(c.Target, c.Reporter);
        return Result.Unchanged($"failure report of osd.{c.Reporter} against osd.{c.Target} withdrawn");
    }

    /// <summary>
    /// The leader's periodic check at <c>now</c>: an up OSD not heard from (beacon or boot) for longer than
    /// mon_osd_report_timeout is marked down; a down OSD that is in and has been down for mon_osd_down_out_interval
    /// (0: never) is marked out (automatically, so it comes back in when it boots); stale failure reports expire.
    /// </summary>
    private static Result OsdTickOp(Context ctx)
    {
        var timeout = ctx.Config.GetInt("mon_osd_report_timeout") * 1000;
        var outAfter = ctx.Config.GetInt("mon_osd_down_out_interval") * 1000;
        var grace = ctx.Config.GetInt("osd_heartbeat_grace") * 1000;
        ctx.Liveness = ctx.Liveness.Expire(ctx.NowMs - (2 * grace));
        var changes = new List<OsdInfo>();
        var notes = new List<string>();
        foreach (var osd in ctx.Osd.Osds.Values)
        {
            if (osd.Up && ctx.NowMs - ctx.Liveness.LastHeardMs(osd.Id) > timeout)
            {
                changes.Add(MarkDown(ctx, osd));
                notes.Add($"osd.{osd.Id} down (no beacon for {(ctx.NowMs - ctx.Liveness.LastHeardMs(osd.Id)) / 1000} s)");
            }
            else if (!osd.Up && osd.In && outAfter > 0 && osd.DownStampMs > 0 && ctx.NowMs - osd.DownStampMs >= outAfter)
            {
                changes.Add(osd with { In = false, AutoOut = true });
                notes.Add($"osd.{osd.Id} out (down for {(ctx.NowMs - osd.DownStampMs) / 1000} s)");
            }
        }
        if (changes.Count == 0)
        {
            return Result.Unchanged("no OSD changes");
        }
        return Result.Changed(new ClusterIncrement(Osd: OsdInc(ctx, osds: changes)), string.Join("; ", notes));
    }

    private static Result OsdInOutOp(Context ctx, IReadOnlyList<int> ids, bool markIn)
    {
        if (ids.Count == 0)
        {
            return Result.Fail(MonErrorCode.InvalidArgument, $"name at least one OSD to mark {(markIn ? "in" : "out")}");
        }
        var changes = new SortedDictionary<int, OsdInfo>();
        foreach (var id in ids)
        {
            var osd = ctx.Osd.FindOsd(id);
            if (osd is null)
            {
                return Result.Fail(MonErrorCode.NotFound, $"osd.{id} does not exist");
            }
            if (osd.In != markIn || osd.AutoOut)
            {
                // An administrator's `in` on a down OSD is respected: its down→out timer stops (DownStampMs 0) until
                // it is marked down again, as Ceph drops it from its pending-out set.
                changes[id] = osd with { In = markIn, AutoOut = false, DownStampMs = markIn ? 0 : osd.DownStampMs };
            }
        }
        var word = markIn ? "in" : "out";
        if (changes.Count == 0)
        {
            return Result.Unchanged($"{string.Join(", ", ids.Select(i => $"osd.{i}"))} already {word}");
        }
        return Result.Changed(new ClusterIncrement(Osd: OsdInc(ctx, osds: [.. changes.Values])),
            $"marked {word} {string.Join(", ", changes.Keys.Select(i => $"osd.{i}"))}");
    }
}
