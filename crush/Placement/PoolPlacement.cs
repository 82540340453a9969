using System.Numerics;
using System.Text;
using Appliance.Crush.Hashing;
using Appliance.Crush.Mapping;

namespace Appliance.Crush.Placement;

/// <summary>
/// How Ceph turns an object of a pool into CRUSH input: object name → 32-bit hash → placement group (stable_mod)
/// → placement seed (pps) → CRUSH rule → acting set. Matches osd_types.cc / OSDMap for pools with the hashpspool flag
/// (every pool any recent Ceph creates) and for legacy pools.
/// </summary>
public static class PoolPlacement
{
    /// <summary>Ceph's ceph_stable_mod: a modulo that moves few inputs when b grows by one.</summary>
    public static uint StableMod(uint x, uint b, uint bmask) => (x & bmask) < b ? x & bmask : x & (bmask >> 1);

    /// <summary>2^bits(n - 1) - 1: the mask stable_mod uses for n buckets (pg_num_mask, pgp_num_mask).</summary>
    public static uint MaskFor(uint n)
    {
        if (n <= 1)
        {
            return 0;
        }
        var bits = 32 - BitOperations.LeadingZeroCount(n - 1);
        return bits >= 32 ? uint.MaxValue : (1u << bits) - 1;
    }

    /// <summary>The object-name hash (ceph_str_hash_rjenkins) of name, or of namespace + '\x1f' + name.</summary>
    public static uint ObjectHash(string name, string? nameSpace = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        var key = string.IsNullOrEmpty(nameSpace) ? name : nameSpace + "\u001f" + name;
        var max = Encoding.UTF8.GetMaxByteCount(key.Length);
        var buffer = max <= 512 ? stackalloc byte[max] : new byte[max];
        var n = Encoding.UTF8.GetBytes(key, buffer);
        return CrushHash.StrHashRjenkins(buffer[..n]);
    }

    /// <summary>The placement group (0..pgNum-1) of an object hash.</summary>
    public static uint PgOf(uint objectHash, uint pgNum) => StableMod(objectHash, pgNum, MaskFor(pgNum));

    /// <summary>
    /// The CRUSH input (placement seed) of a placement group or raw object hash <paramref name="ps"/> in a pool.
    /// </summary>
    public static uint PlacementSeed(int poolId, uint ps, uint pgpNum, bool hashPsPool = true)
    {
        var folded = StableMod(ps, pgpNum, MaskFor(pgpNum));
        return hashPsPool ? CrushHash.Hash32(folded, (uint)poolId) : folded + (uint)poolId;
    }

    /// <summary>
    /// The acting set of placement group <paramref name="pg"/>: the raw CRUSH result for its placement seed.
    /// Returns how many entries were written (indep rules keep holes as <see cref="CrushMapper.ItemNone"/>).
    /// </summary>
    public static int ActingSet(
        CrushMapper mapper, int ruleId, int poolId, uint pg, uint pgpNum, int size, ReadOnlySpan<uint> reweights,
        Span<int> result, CrushWorkspace workspace)
    {
        ArgumentNullException.ThrowIfNull(mapper);
        var pps = PlacementSeed(poolId, pg, pgpNum);
        return mapper.Map(ruleId, unchecked((int)pps), size, reweights, result, workspace);
    }

    /// <summary>The primary: the first entry that is a device (not a hole), or -1 if there is none.</summary>
    public static int Primary(ReadOnlySpan<int> acting)
    {
        foreach (var osd in acting)
        {
            if (osd != CrushMapper.ItemNone && osd >= 0)
            {
                return osd;
            }
        }
        return -1;
    }

    /// <summary>
    /// The PG count for a pool, so users never do PG arithmetic. Formula (Ceph's autoscaler target for a pool that
    /// holds all the data): raw = osdCount * targetPgsPerOsd / size, with targetPgsPerOsd = 100
    /// (mon_target_pg_per_osd); the result is the power of two nearest to raw (ties go up), at least 1. Examples:
    /// 3 OSDs size 3 → 100 → 128; 480 OSDs size 3 → 16000 → 16384; 10 OSDs size 2 → 500 → 512.
    /// </summary>
    public static int AutoPgCount(int osdCount, int size, int targetPgsPerOsd = 100)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(osdCount);
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(targetPgsPerOsd, 1);
        var raw = (double)osdCount * targetPgsPerOsd / size;
        if (raw <= 1)
        {
            return 1;
        }
        var up = BitOperations.RoundUpToPowerOf2((ulong)Math.Ceiling(raw));
        var down = up >> 1;
        var chosen = up - raw <= raw - down ? up : down;
        return (int)Math.Min(chosen, 1UL << 30);
    }
}
