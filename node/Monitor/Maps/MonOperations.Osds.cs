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
        if (BadAddress(c.Address) || (c.ClusterAddress is { } ca && BadAddress(ca)))
        {
            return Result.Fail(MonErrorCode.InvalidArgument, $"osd.{c.Id} boots with a bad address '{(BadAddress(c.Address) ? c.Address : c.ClusterAddress)}'");
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
        if (existing is { Uuid: var known } && known != Guid.Empty && c.Uuid != Guid.Empty && known != c.Uuid)
        {
            return Result.Fail(MonErrorCode.Refused,
                $"osd.{c.Id} was created with uuid {known}, but the disk booting as osd.{c.Id} has uuid {c.Uuid}: it belongs to another OSD (or another cluster)");
        }
        var clusterAddress = c.ClusterAddress ?? c.Address;
        ctx.Liveness = ctx.Liveness.WithBeacon(c.Id, ctx.NowMs).WithoutReportsAgainst(c.Id);
        if (existing is { Up: true } && existing.Address == c.Address && existing.ClusterAddress == clusterAddress && existing.Host == c.Host
            && existing.Weight == c.Weight)
        {
            return Result.Unchanged($"osd.{c.Id} is already up at {c.Address}");
        }
        // A new OSD comes in; one the monitors marked out comes back in; one an administrator marked out stays out.
        var markIn = existing is null || existing.In || existing.AutoOut;
        var info = new OsdInfo(c.Id, c.Address, c.Host, Up: true, In: markIn, c.Weight, UpFrom: ctx.Osd.Epoch + 1, DownStampMs: 0, AutoOut: false,
            clusterAddress, existing?.UpThru ?? 0, existing is { Uuid: var u } && u != Guid.Empty ? u : c.Uuid);
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
    /// other than the target), so a two-host cluster can still mark an OSD down. Where only one host could report,
    /// distinct OSDs count instead (mon_osd_min_down_reporters of them, capped at the OSDs that could report): one
    /// confused OSD alone does not take a peer on its host down, and a two-OSD cluster still marks one down. Reports
    /// older than twice osd_heartbeat_grace expire (OSDs repeat theirs every grace while the peer stays silent).
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
        if (c.Target == c.Reporter && !c.Immediate)
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
        if (c.Immediate)
        {
            // Its connection was refused or reset: the process is gone, whatever other hosts see. One report is enough
            // (a reporter whose own network fails gets timeouts, not refusals).
            // Reporting itself is an OSD's orderly stop (Ceph's MOSDMarkMeDown): down at once, before it goes.
            ctx.Liveness = ctx.Liveness.WithoutReportsAgainst(c.Target);
            return Result.Changed(new ClusterIncrement(Osd: OsdInc(ctx, osds: [MarkDown(ctx, target)])),
                c.Target == c.Reporter ? $"osd.{c.Target} marked down: it is stopping" : $"osd.{c.Target} marked down: osd.{c.Reporter} found its connection refused");
        }
        var grace = ctx.Config.GetInt("osd_heartbeat_grace") * 1000;
        ctx.Liveness = ctx.Liveness.Expire(ctx.NowMs - (2 * grace)).WithReport(c.Target, new FailureReport(c.Reporter, reporter.Host, ctx.NowMs));
        var hosts = ReportingHosts(ctx, c.Target);
        var (needed, neededOsds) = ReportersNeeded(ctx, c.Target);
        if (hosts.Count < needed)
        {
            return Result.Unchanged($"osd.{c.Target} reported failed from {hosts.Count} of {needed} hosts needed");
        }
        var osds = ReportingOsds(ctx, c.Target);
        if (osds < neededOsds)
        {
            return Result.Unchanged($"osd.{c.Target} reported failed by {osds} of {neededOsds} OSDs needed (one host can report: OSDs count)");
        }
        ctx.Liveness = ctx.Liveness.WithoutReportsAgainst(c.Target);
        return Result.Changed(new ClusterIncrement(Osd: OsdInc(ctx, osds: [MarkDown(ctx, target)])),
            $"osd.{c.Target} marked down: reported failed from hosts {string.Join(", ", hosts)}");
    }

    private static SortedSet<string> ReportingHosts(Context ctx, int target) =>
        new(ctx.Liveness.ReportsAgainst(target)
            .Where(r => ctx.Osd.FindOsd(r.Reporter) is { Up: true })
            .Select(r => ctx.Osd.FindOsd(r.Reporter)!.Host), StringComparer.Ordinal);

    private static int ReportingOsds(Context ctx, int target) =>
        ctx.Liveness.ReportsAgainst(target).Where(r => ctx.Osd.FindOsd(r.Reporter) is { Up: true }).Select(r => r.Reporter).Distinct().Count();

    /// <summary>Distinct hosts that must report, and distinct OSDs (0 unless only one host could report).</summary>
    private static (int Hosts, int Osds) ReportersNeeded(Context ctx, int target)
    {
        var wanted = (int)ctx.Config.GetInt("mon_osd_min_down_reporters");
        var others = ctx.Osd.Osds.Values.Where(o => o.Up && o.Id != target).ToList();
        var hosts = others.Select(o => o.Host).Distinct(StringComparer.Ordinal).Count();
        var neededHosts = Math.Clamp(wanted, 1, Math.Max(1, hosts));
        return (neededHosts, hosts <= 1 ? Math.Clamp(wanted, 1, Math.Max(1, others.Count)) : 0);
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
    /// (0: never) is marked out (automatically, so it comes back in when it boots) unless the noout flag is set (its timer
    /// runs on: unset, it goes out at the next check if it was down that long); stale failure reports expire.
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
            else if (!osd.Up && osd.In && outAfter > 0 && osd.DownStampMs > 0 && ctx.NowMs - osd.DownStampMs >= outAfter
                && (ctx.Osd.Flags & OsdMapFlags.NoOut) == 0)
            {
                changes.Add(osd with { In = false, AutoOut = true });
                notes.Add($"osd.{osd.Id} out (down for {(ctx.NowMs - osd.DownStampMs) / 1000} s)");
            }
        }
        var expired = ctx.Osd.Blocklist.Where(kv => kv.Value <= ctx.NowMs).Select(kv => kv.Key).ToList();
        if (expired.Count > 0)
        {
            notes.Add($"blocklist entries expired: {string.Join(", ", expired)}");
        }
        if (changes.Count == 0 && expired.Count == 0)
        {
            return Result.Unchanged("no OSD changes");
        }
        return Result.Changed(new ClusterIncrement(Osd: OsdInc(ctx, osds: changes) with { BlocklistRemovals = expired }), string.Join("; ", notes));
    }

    private static bool BadAddress(string address) => string.IsNullOrWhiteSpace(address) || address.Length > 256 || address.Any(char.IsWhiteSpace);

    /// <summary>
    /// `osd create`: the OSD of <see cref="OsdCreate.Uuid"/> if there is one (the same key: a retry, answered with its
    /// id; another key: refused), else a new entry (down, out, marked out by the monitors so its first boot brings it
    /// in; placed in CRUSH when it boots and names its host) with the given or the lowest free id, and entity osd.N
    /// with the key and <see cref="OsdCreate.OsdCaps"/>. An id whose entity exists already is never taken.
    /// </summary>
    private static Result OsdCreateOp(Context ctx, OsdCreate c)
    {
        if (c.Uuid == Guid.Empty)
        {
            return Result.Fail(MonErrorCode.InvalidArgument, "osd create needs the new OSD's uuid (any fresh one; a retry with the same uuid gets the same id)");
        }
        var auth = ctx.State.Auth;
        if (ctx.Osd.Osds.Values.FirstOrDefault(o => o.Uuid == c.Uuid) is { } same)
        {
            if (auth.Find(CrushLayout.OsdName(same.Id)) is { } entity && entity.Key.Equals(c.Key) && (c.Id is null || c.Id == same.Id))
            {
                return Result.Unchanged($"osd.{same.Id} exists with uuid {c.Uuid}") with { Data = IdBytes(same.Id) };
            }
            return Result.Fail(MonErrorCode.AlreadyExists, $"uuid {c.Uuid} belongs to osd.{same.Id} already, with another key or id; use a fresh uuid for a new OSD");
        }
        int id;
        if (c.Id is { } wanted)
        {
            if (wanted < 0 || wanted > MaxOsdId)
            {
                return Result.Fail(MonErrorCode.InvalidArgument, $"osd id {wanted} is out of range 0..{MaxOsdId}");
            }
            if (ctx.Osd.FindOsd(wanted) is not null || auth.Find(CrushLayout.OsdName(wanted)) is not null)
            {
                return Result.Fail(MonErrorCode.AlreadyExists, $"osd.{wanted} exists already; leave the id out to get a free one");
            }
            id = wanted;
        }
        else
        {
            id = 0;
            while (ctx.Osd.FindOsd(id) is not null || auth.Find(CrushLayout.OsdName(id)) is not null)
            {
                id++;
            }
            if (id > MaxOsdId)
            {
                return Result.Fail(MonErrorCode.Refused, $"every osd id up to {MaxOsdId} is taken");
            }
        }
        var info = new OsdInfo(id, "", "", Up: false, In: false, Weight: 0, UpFrom: 0, DownStampMs: 0, AutoOut: true, ClusterAddress: "", UpThru: 0, Uuid: c.Uuid);
        var osdEntity = new AuthEntity(CrushLayout.OsdName(id), c.Key, CapsOf(OsdCreate.OsdCaps));
        return Result.Changed(new ClusterIncrement(Osd: OsdInc(ctx, osds: [info]), Auth: AuthInc(ctx, upserts: [osdEntity])),
            $"osd.{id} created with uuid {c.Uuid}") with { Data = IdBytes(id) };
    }

    private static byte[] IdBytes(int id)
    {
        var b = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(b, id);
        return b;
    }

    /// <summary>
    /// `OsdAlive`: the OSD needs the map to show it up through <see cref="OsdAlive.WantUpThru"/> (at most the next
    /// epoch): up_thru becomes the next epoch, which this increment makes while it is up, unless it is high enough.
    /// </summary>
    private static Result OsdAliveOp(Context ctx, OsdAlive c)
    {
        var osd = ctx.Osd.FindOsd(c.Id);
        if (osd is null)
        {
            return Result.Fail(MonErrorCode.NotFound, $"osd.{c.Id} does not exist");
        }
        if (!osd.Up)
        {
            return Result.Fail(MonErrorCode.Refused, $"osd.{c.Id} is marked down; it must boot again");
        }
        if (c.WantUpThru > ctx.Osd.Epoch + 1)
        {
            return Result.Fail(MonErrorCode.InvalidArgument, $"osd.{c.Id} wants up_thru {c.WantUpThru}, past the next epoch {ctx.Osd.Epoch + 1}");
        }
        if (osd.UpThru >= c.WantUpThru)
        {
            return Result.Unchanged($"osd.{c.Id} up_thru is {osd.UpThru} already");
        }
        var next = ctx.Osd.Epoch + 1;
        return Result.Changed(new ClusterIncrement(Osd: OsdInc(ctx, osds: [osd with { UpThru = next }])), $"osd.{c.Id} up_thru {next}");
    }

    /// <summary>The leader's fullness flags: sets each named OSD's <see cref="OsdFullness"/> (OSDs removed since are
    /// skipped).</summary>
    private static Result OsdFullFlagsOp(Context ctx, OsdFullFlags c)
    {
        var changed = new List<OsdInfo>();
        foreach (var (id, fullness) in c.Fullness.OrderBy(kv => kv.Key))
        {
            if (ctx.Osd.FindOsd(id) is { } osd && osd.Fullness != fullness)
            {
                changed.Add(osd with { Fullness = fullness });
            }
        }
        if (changed.Count == 0)
        {
            return Result.Unchanged("osd full flags unchanged");
        }
        return Result.Changed(new ClusterIncrement(Osd: OsdInc(ctx, osds: changed)),
            string.Join("; ", changed.Select(o => o.Fullness switch
            {
                OsdFullness.Full => $"osd.{o.Id} is full: PGs it holds refuse writes that add data",
                OsdFullness.NearFull => $"osd.{o.Id} is nearly full",
                _ => $"osd.{o.Id} is below its nearfull ratio again",
            })));
    }

    /// <summary>
    /// `PgTemp` from a PG's primary: each change sets (or with an empty list clears) the PG's pg_temp and sets (or with
    /// -1 clears) its primary_temp. The PG must exist; the acting list holds existing OSDs (or <see cref="OsdMap.NoOsd"/>
    /// holes for an erasure-coded pool), none twice, at most the pool's size; the primary is one of them.
    /// </summary>
    private static Result PgTempOp(Context ctx, PgTemp c)
    {
        if (ctx.Osd.FindOsd(c.From) is not { Up: true })
        {
            return Result.Fail(MonErrorCode.Refused, $"osd.{c.From} is not up; its pg_temp requests do not count");
        }
        if (c.Changes.Count == 0)
        {
            return Result.Unchanged("no pg_temp changes");
        }
        var temp = new Dictionary<PgId, IReadOnlyList<int>>();
        var primary = new Dictionary<PgId, int>();
        foreach (var change in c.Changes)
        {
            var pg = change.Pg;
            if (!ctx.Osd.Pools.TryGetValue(pg.Pool, out var pool) || pg.Seed >= (uint)pool.PgNum)
            {
                return Result.Fail(MonErrorCode.NotFound, $"pg {pg} does not exist");
            }
            if (temp.ContainsKey(pg))
            {
                return Result.Fail(MonErrorCode.InvalidArgument, $"pg {pg} is named twice");
            }
            var acting = change.Acting;
            if (acting.Count > pool.Size)
            {
                return Result.Fail(MonErrorCode.InvalidArgument, $"pg_temp of {pg} lists {acting.Count} OSDs; pool {pool.Name} has size {pool.Size}");
            }
            var holes = pool.Type == PoolType.Erasure;
            foreach (var o in acting)
            {
                if (!(holes && o == OsdMap.NoOsd) && ctx.Osd.FindOsd(o) is null)
                {
                    return Result.Fail(MonErrorCode.NotFound, $"pg_temp of {pg} names osd.{o}, which does not exist");
                }
            }
            if (acting.Where(o => o != OsdMap.NoOsd).Distinct().Count() != acting.Count(o => o != OsdMap.NoOsd))
            {
                return Result.Fail(MonErrorCode.InvalidArgument, $"pg_temp of {pg} names an OSD twice");
            }
            if (change.Primary >= 0 && !acting.Contains(change.Primary))
            {
                return Result.Fail(MonErrorCode.InvalidArgument, $"primary_temp of {pg} (osd.{change.Primary}) is not in its pg_temp [{string.Join(",", acting)}]");
            }
            var has = ctx.Osd.PgTemp.TryGetValue(pg, out var current);
            if (acting.Count == 0 ? has : !has || !current.SequenceEqual(acting))
            {
                temp[pg] = [.. acting];
            }
            var hasPrimary = ctx.Osd.PrimaryTemp.TryGetValue(pg, out var currentPrimary);
            if (change.Primary < 0 ? hasPrimary : !hasPrimary || currentPrimary != change.Primary)
            {
                primary[pg] = change.Primary < 0 ? -1 : change.Primary;
            }
        }
        if (temp.Count == 0 && primary.Count == 0)
        {
            return Result.Unchanged("pg_temp already as asked");
        }
        return Result.Changed(new ClusterIncrement(Osd: OsdInc(ctx) with { NewPgTemp = temp, NewPrimaryTemp = primary }),
            $"pg_temp: {temp.Count} PG(s) changed, primary_temp: {primary.Count}");
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

    /// <summary>`osd set|unset noout`.</summary>
    private static Result OsdSetFlagOp(Context ctx, OsdSetFlag c)
    {
        var flag = c.Flag switch
        {
            "noout" => OsdMapFlags.NoOut,
            _ => (OsdMapFlags?)null,
        };
        if (flag is not { } f)
        {
            return Result.Fail(MonErrorCode.InvalidArgument, $"unknown flag '{c.Flag}'; the flags are: noout");
        }
        var now = c.Set ? ctx.Osd.Flags | f : ctx.Osd.Flags & ~f;
        if (now == ctx.Osd.Flags)
        {
            return Result.Unchanged($"{c.Flag} is {(c.Set ? "set" : "unset")} already");
        }
        return Result.Changed(new ClusterIncrement(Osd: OsdInc(ctx) with { NewFlags = now }),
            c.Set ? $"{c.Flag} is set: down OSDs are not marked out" : $"{c.Flag} is unset");
    }

    /// <summary>
    /// `osd rm`: each OSD leaves the osdmap, the CRUSH map and the auth database. Refused (whole) while one is up or in
    /// (mark it out and stop it first), or while a PG's placement still names it (its up or acting set, or a pg_temp):
    /// the data it holds may be the only copy. The leader also refuses while any PG is not active+clean (it checks the
    /// PG statistics before proposing).
    /// </summary>
    private static Result OsdRemoveOp(Context ctx, OsdRemove c)
    {
        if (c.Ids.Count == 0)
        {
            return Result.Fail(MonErrorCode.InvalidArgument, "name at least one OSD to remove");
        }
        var ids = c.Ids.Distinct().Order().ToList();
        foreach (var id in ids)
        {
            var osd = ctx.Osd.FindOsd(id);
            if (osd is null)
            {
                return Result.Fail(MonErrorCode.NotFound, $"osd.{id} does not exist");
            }
            if (osd.Up)
            {
                return Result.Fail(MonErrorCode.Refused, $"osd.{id} is up; stop it first (and mark it out so its data moves: `appliance osd out {id}`)");
            }
            if (osd.In)
            {
                return Result.Fail(MonErrorCode.Refused, $"osd.{id} is in; mark it out first (`appliance osd out {id}`) and wait until its PGs are active+clean elsewhere");
            }
        }
        var named = new HashSet<int>(ids);
        foreach (var pool in ctx.Osd.Pools.Values)
        {
            for (var seed = 0u; seed < (uint)pool.PgNum; seed++)
            {
                var pg = new PgId(pool.Id, seed);
                var m = ctx.Osd.MapPg(pg);
                var temp = ctx.Osd.PgTemp.TryGetValue(pg, out var t) ? t : [];
                if (m.Up.Concat(m.Acting).Concat(temp).FirstOrDefault(named.Contains, -1) is var hit && hit >= 0)
                {
                    return Result.Fail(MonErrorCode.Refused, $"osd.{hit} is still in the placement of pg {pg}; wait until it has moved");
                }
            }
        }
        var crush = ctx.Osd.Crush;
        foreach (var id in ids)
        {
            crush = CrushLayout.RemoveOsd(crush, id);
        }
        var entities = ids.Select(CrushLayout.OsdName).Where(e => ctx.State.Auth.Find(e) is not null).ToList();
        return Result.Changed(new ClusterIncrement(Osd: OsdInc(ctx, crushText: CrushLayout.ToText(crush)) with { OsdRemovals = ids },
                Auth: entities.Count == 0 ? null : AuthInc(ctx, removals: entities)),
            $"removed {string.Join(", ", ids.Select(i => $"osd.{i}"))}");
    }
}
