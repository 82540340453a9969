using Appliance.Crush.Placement;
using Appliance.Maps;

namespace Appliance.Osd.Protocol;

/// <summary>Where a PG lives under one osdmap: its acting set (in order; the OSDs CRUSH chose that are up) and
/// primary (the first of them, or -1 when none is up).</summary>
public readonly record struct PgPlacement(PgId Pg, int[] Acting, int Primary);

/// <summary>
/// Placement as clients and OSDs both compute it from an osdmap (see DESIGN.md, "How a write flows"): object name →
/// rjenkins hash → PG (stable_mod by pg_num) → the acting set and primary of <see cref="OsdMap.MapPg"/> (CRUSH on
/// the placement seed, down OSDs left out, pg_temp and primary_temp applied).
/// </summary>
public sealed class OsdPlacement(OsdMap map)
{
    public OsdMap Map => map;

    public static uint ObjectHash(string name) => PoolPlacement.ObjectHash(name);

    public PgId PgOf(PoolInfo pool, uint objectHash) => new(pool.Id, PoolPlacement.PgOf(objectHash, (uint)pool.PgNum));

    public PgPlacement Place(PoolInfo pool, uint seed)
    {
        var m = map.MapPg(new PgId(pool.Id, seed));
        return new PgPlacement(m.Pg, [.. m.Acting], m.ActingPrimary);
    }
}
