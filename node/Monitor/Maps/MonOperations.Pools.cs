using Appliance.Crush.Placement;
using Appliance.Maps;
using Appliance.Maps.Protocol;

namespace Appliance.Monitor.Maps;

public static partial class MonOperations
{
    /// <summary>Largest replicated pool size.</summary>
    public const int MaxPoolSize = 10;

    /// <summary>
    /// The automatic PG count of a pool of <paramref name="size"/> members: Ceph's autoscaler target,
    /// <c>osds × mon_target_pg_per_osd / size</c> rounded to the nearest power of two (<see cref="PoolPlacement.AutoPgCount"/>),
    /// where osds is the number of OSDs that are in but at least <paramref name="size"/> (so a pool created before its
    /// OSDs join is sized as if the minimum it needs were there), clamped to 1..mon_max_pool_pg_num.
    /// Examples with the default target 100: 3 OSDs size 3 → 128; 12 OSDs size 3 → 512; 6 OSDs EC 4+2 → 128.
    /// It is chosen when the pool is created (or `pool set pg_num auto`), not changed as OSDs come and go.
    /// </summary>
    public static int AutoPgNum(OsdMap osd, ConfigDb config, int size)
    {
        ArgumentNullException.ThrowIfNull(osd);
        ArgumentNullException.ThrowIfNull(config);
        var osds = Math.Max(osd.InCount, size);
        var n = PoolPlacement.AutoPgCount(osds, size, (int)config.GetInt("mon_target_pg_per_osd"));
        return (int)Math.Clamp(n, 1, config.GetInt("mon_max_pool_pg_num"));
    }

    /// <summary>The erasure rule created for an erasure-coded pool that names none.</summary>
    public static string ErasureRuleName(string pool) => "erasure_" + pool;

    private static Result PoolCreateOp(Context ctx, PoolCreate c)
    {
        if (CheckName("pool name", c.Name) is { } bad)
        {
            return Result.Fail(bad.Code, bad.Message);
        }
        if (ctx.Osd.FindPool(c.Name) is not null)
        {
            return Result.Fail(MonErrorCode.AlreadyExists, $"pool '{c.Name}' already exists; choose another name or remove it first");
        }
        var cfg = ctx.Config;
        int size, minSize, ruleId;
        ErasureProfile? ec = null;
        string? crushText = null;
        if (c.Type == PoolType.Replicated)
        {
            if (c.K is not null || c.M is not null)
            {
                return Result.Fail(MonErrorCode.InvalidArgument, "k and m are for erasure-coded pools; a replicated pool takes size and min_size");
            }
            size = c.Size ?? (int)cfg.GetInt("osd_pool_default_size");
            if (size < 1 || size > MaxPoolSize)
            {
                return Result.Fail(MonErrorCode.InvalidArgument, $"size {size} is out of range: a replicated pool keeps 1 to {MaxPoolSize} copies");
            }
            var defaultMin = (int)cfg.GetInt("osd_pool_default_min_size");
            minSize = c.MinSize ?? (defaultMin != 0 ? Math.Min(defaultMin, size) : size - (size / 2));
            if (minSize < 1 || minSize > size)
            {
                return Result.Fail(MonErrorCode.InvalidArgument, $"min_size {minSize} must be between 1 and size {size}");
            }
            var rule = ctx.Osd.Crush.FindRule(c.Rule ?? CrushLayout.ReplicatedRuleName);
            if (rule is null)
            {
                return Result.Fail(MonErrorCode.NotFound, $"CRUSH rule '{c.Rule}' does not exist; see the rules in the CRUSH map");
            }
            if (rule.Type != CrushLayout.ReplicatedRuleType)
            {
                return Result.Fail(MonErrorCode.InvalidArgument, $"CRUSH rule '{rule.Name}' is not a replicated rule");
            }
            ruleId = rule.Id;
        }
        else if (c.Type == PoolType.Erasure)
        {
            var k = c.K ?? (int)cfg.GetInt("osd_pool_default_erasure_k");
            var m = c.M ?? (int)cfg.GetInt("osd_pool_default_erasure_m");
            if (k < 2 || k > 16 || m < 1 || m > 8)
            {
                return Result.Fail(MonErrorCode.InvalidArgument, $"erasure profile k={k} m={m} is not sane: use k from 2 to 16 data chunks and m from 1 to 8 coding chunks");
            }
            size = k + m;
            if (c.Size is { } s && s != size)
            {
                return Result.Fail(MonErrorCode.InvalidArgument, $"an erasure-coded pool's size is k+m = {size}, not {s}");
            }
            // Ceph's default: one chunk of slack beyond k when there are at least two coding chunks.
            minSize = c.MinSize ?? (k + Math.Min(1, m - 1));
            if (minSize < k || minSize > size)
            {
                return Result.Fail(MonErrorCode.InvalidArgument, $"min_size {minSize} of an erasure-coded pool must be between k = {k} and k+m = {size}");
            }
            ec = new ErasureProfile(k, m);
            if (c.Rule is not null)
            {
                var rule = ctx.Osd.Crush.FindRule(c.Rule);
                if (rule is null)
                {
                    return Result.Fail(MonErrorCode.NotFound, $"CRUSH rule '{c.Rule}' does not exist");
                }
                if (rule.Type != CrushLayout.ErasureRuleType)
                {
                    return Result.Fail(MonErrorCode.InvalidArgument, $"CRUSH rule '{rule.Name}' is not an erasure rule");
                }
                ruleId = rule.Id;
            }
            else
            {
                var name = ErasureRuleName(c.Name);
                var existing = ctx.Osd.Crush.FindRule(name);
                if (existing is not null && (existing.Type != CrushLayout.ErasureRuleType || ctx.Osd.Pools.Values.Any(p => p.CrushRule == existing.Id)))
                {
                    return Result.Fail(MonErrorCode.AlreadyExists, $"CRUSH rule '{name}' already exists and is not free for this pool; name a rule with rule=");
                }
                if (existing is null)
                {
                    var crush = CrushLayout.AddErasureRule(ctx.Osd.Crush, name, ctx.Osd.FailureDomain);
                    crushText = CrushLayout.ToText(crush);
                    ruleId = crush.FindRule(name)!.Id;
                }
                else
                {
                    ruleId = existing.Id;
                }
            }
        }
        else
        {
            return Result.Fail(MonErrorCode.InvalidArgument, $"pool type {c.Type} is not replicated or erasure");
        }
        var maxPg = ctx.Config.GetInt("mon_max_pool_pg_num");
        if (c.PgNum is { } pg && (pg < 1 || pg > maxPg))
        {
            return Result.Fail(MonErrorCode.InvalidArgument, $"pg_num {pg} must be between 1 and mon_max_pool_pg_num = {maxPg}; or leave it out to size it automatically");
        }
        var pgNum = c.PgNum ?? AutoPgNum(ctx.Osd, ctx.Config, size);
        var id = ctx.Osd.PoolMax + 1;
        var pool = new PoolInfo(id, c.Name, c.Type, size, minSize, pgNum, c.PgNum is null, ruleId, ec, c.QuotaMaxBytes, c.QuotaMaxObjects, ctx.Osd.Epoch + 1, PgpNum: pgNum);
        var kind = ec is null ? $"replicated size {size}" : $"erasure k={ec.K} m={ec.M}";
        return Result.Changed(new ClusterIncrement(Osd: OsdInc(ctx, pools: [pool], poolMax: id, crushText: crushText)),
            $"pool '{c.Name}' created: id {id}, {kind}, min_size {minSize}, pg_num {pgNum}{(c.PgNum is null ? " (automatic)" : "")}");
    }

    private static Result PoolRemoveOp(Context ctx, PoolRemove c)
    {
        var pool = ctx.Osd.FindPool(c.Name);
        if (pool is null)
        {
            return Result.Fail(MonErrorCode.NotFound, $"pool '{c.Name}' does not exist");
        }
        if (!ctx.Config.GetBool("mon_allow_pool_delete"))
        {
            return Result.Fail(MonErrorCode.Refused, "pool removal is disabled; set mon_allow_pool_delete to true first");
        }
        string? crushText = null;
        var rule = ctx.Osd.Crush.GetRule(pool.CrushRule);
        if (rule is not null && rule.Name == ErasureRuleName(pool.Name) && !ctx.Osd.Pools.Values.Any(p => p.Id != pool.Id && p.CrushRule == rule.Id))
        {
            crushText = CrushLayout.ToText(CrushLayout.RemoveRule(ctx.Osd.Crush, rule.Name));
        }
        return Result.Changed(new ClusterIncrement(Osd: OsdInc(ctx, poolRemovals: [pool.Id], crushText: crushText)), $"pool '{c.Name}' removed");
    }

    /// <summary>A new pg_num: pgp_num follows it when it was equal (the usual case), and never exceeds it.</summary>
    private static PoolInfo WithPgNum(PoolInfo pool, int pgNum) =>
        pool with { PgNum = pgNum, PgpNum = pool.PgpNum == pool.PgNum ? pgNum : Math.Min(pool.PgpNum, pgNum) };

    /// <summary>The leader's quota flags: sets or clears <see cref="PoolFlags.FullQuota"/> of the pools named (pools
    /// removed since are skipped).</summary>
    private static Result PoolQuotaFlagsOp(Context ctx, PoolQuotaFlags c)
    {
        var changed = new List<PoolInfo>();
        foreach (var (id, full) in c.Full.OrderBy(kv => kv.Key))
        {
            if (ctx.Osd.Pools.TryGetValue(id, out var pool) && pool.Flags.HasFlag(PoolFlags.FullQuota) != full)
            {
                changed.Add(pool with { Flags = full ? pool.Flags | PoolFlags.FullQuota : pool.Flags & ~PoolFlags.FullQuota });
            }
        }
        if (changed.Count == 0)
        {
            return Result.Unchanged("pool quota flags unchanged");
        }
        return Result.Changed(new ClusterIncrement(Osd: OsdInc(ctx, pools: changed)),
            string.Join("; ", changed.Select(p => $"pool '{p.Name}' {(p.Flags.HasFlag(PoolFlags.FullQuota) ? "is full (quota)" : "is below its quota again")}")));
    }

    private static Result PoolSetOp(Context ctx, PoolSet c)
    {
        var pool = ctx.Osd.FindPool(c.Name);
        if (pool is null)
        {
            return Result.Fail(MonErrorCode.NotFound, $"pool '{c.Name}' does not exist");
        }
        PoolInfo changed;
        switch (c.Field)
        {
            case "size":
                if (pool.Type == PoolType.Erasure)
                {
                    return Result.Fail(MonErrorCode.InvalidArgument, $"the size of erasure-coded pool '{pool.Name}' is k+m = {pool.Size} and cannot change");
                }
                if (!TryInt(c.Value, out var size) || size < 1 || size > MaxPoolSize)
                {
                    return Result.Fail(MonErrorCode.InvalidArgument, $"size must be a whole number from 1 to {MaxPoolSize}, not '{c.Value}'");
                }
                if (pool.MinSize > size)
                {
                    return Result.Fail(MonErrorCode.InvalidArgument, $"min_size {pool.MinSize} would exceed size {size}; lower min_size first");
                }
                changed = pool with { Size = size };
                break;
            case "min_size":
                var low = pool.Erasure?.K ?? 1;
                if (!TryInt(c.Value, out var min) || min < low || min > pool.Size)
                {
                    return Result.Fail(MonErrorCode.InvalidArgument, $"min_size of pool '{pool.Name}' must be a whole number from {low} to size {pool.Size}, not '{c.Value}'");
                }
                changed = pool with { MinSize = min };
                break;
            case "pg_num":
                if (c.Value.Trim() == "auto")
                {
                    changed = WithPgNum(pool, AutoPgNum(ctx.Osd, ctx.Config, pool.Size)) with { PgNumAuto = true };
                    break;
                }
                var max = ctx.Config.GetInt("mon_max_pool_pg_num");
                if (!TryInt(c.Value, out var pg) || pg < 1 || pg > max)
                {
                    return Result.Fail(MonErrorCode.InvalidArgument, $"pg_num must be 'auto' or a whole number from 1 to mon_max_pool_pg_num = {max}, not '{c.Value}'");
                }
                changed = WithPgNum(pool, pg) with { PgNumAuto = false };
                break;
            case "pgp_num":
                if (!TryInt(c.Value, out var pgp) || pgp < 1 || pgp > pool.PgNum)
                {
                    return Result.Fail(MonErrorCode.InvalidArgument, $"pgp_num of pool '{pool.Name}' must be a whole number from 1 to its pg_num {pool.PgNum}, not '{c.Value}'");
                }
                changed = pool with { PgpNum = pgp };
                break;
            case "quota_max_bytes":
                if (!TryParseBytes(c.Value, out var bytes))
                {
                    return Result.Fail(MonErrorCode.InvalidArgument, $"quota_max_bytes is a byte count such as 100G or 0 for none, not '{c.Value}'");
                }
                changed = pool with { QuotaMaxBytes = bytes };
                break;
            case "quota_max_objects":
                if (!ulong.TryParse(c.Value.Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var objects))
                {
                    return Result.Fail(MonErrorCode.InvalidArgument, $"quota_max_objects is a whole number (0 for none), not '{c.Value}'");
                }
                changed = pool with { QuotaMaxObjects = objects };
                break;
            default:
                return Result.Fail(MonErrorCode.InvalidArgument, $"unknown pool field '{c.Field}'; use size, min_size, pg_num, pgp_num, quota_max_bytes or quota_max_objects");
        }
        if (changed == pool)
        {
            return Result.Unchanged($"pool '{pool.Name}' {c.Field} is already {c.Value}");
        }
        return Result.Changed(new ClusterIncrement(Osd: OsdInc(ctx, pools: [changed])), $"pool '{pool.Name}' {c.Field} set to {c.Value.Trim()}");
    }
}
