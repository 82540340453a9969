using Appliance.Crush.Mapping;
using Appliance.Crush.Placement;
using Appliance.Maps;

namespace Appliance.Osd.Protocol;

/// <summary>Where a PG lives under one osdmap: its acting set (in order; the OSDs CRUSH chose that are up) and
/// primary (the first of them, or -1 when none is up).</summary>
public readonly record struct PgPlacement(PgId Pg, int[] Acting, int Primary);

/// <summary>
/// Placement as clients and OSDs both compute it from an osdmap (see DESIGN.md, "How a write flows"): object name →
/// rjenkins hash → PG (stable_mod by pg_num) → CRUSH with the pool's rule on the placement seed (pgp_num) → the OSDs
/// chosen, less those that are down (a replicated pool's acting set shrinks; the primary is the first one up).
/// One instance per map (it keeps the CRUSH mapper); safe for one thread at a time.
/// </summary>
public sealed class OsdPlacement(OsdMap map)
{
    private readonly CrushMapper _mapper = new(map.Crush);
    private readonly uint[] _reweights = map.Reweights();
    private CrushWorkspace? _workspace;

    public OsdMap Map => map;

    public static uint ObjectHash(string name) => PoolPlacement.ObjectHash(name);

    public PgId PgOf(PoolInfo pool, uint objectHash) => new(pool.Id, PoolPlacement.PgOf(objectHash, (uint)pool.PgNum));

    public PgPlacement Place(PoolInfo pool, uint seed)
    {
        _workspace ??= new CrushWorkspace(_mapper);
        Span<int> raw = stackalloc int[Math.Max(1, pool.Size)];
        var n = PoolPlacement.ActingSet(_mapper, pool.CrushRule, pool.Id, seed, (uint)pool.PgNum, pool.Size, _reweights, raw, _workspace);
        var acting = new List<int>(n);
        foreach (var osd in raw[..n])
        {
            if (osd >= 0 && osd != CrushMapper.ItemNone && map.FindOsd(osd) is { Up: true })
            {
                acting.Add(osd);
            }
        }
        var arr = acting.ToArray();
        return new PgPlacement(new PgId(pool.Id, seed), arr, arr.Length > 0 ? arr[0] : -1);
    }
}
