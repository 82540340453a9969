using System.Globalization;
using Appliance.Wire.Codec;

namespace Appliance.Maps;

/// <summary>
/// A placement group: its pool and its seed (0..pg_num-1). Written as Ceph writes it, the pool id in decimal, a dot,
/// the seed in lower-case hex: <c>2.1f</c>. Ordered by pool, then seed (the order maps keep them in).
/// </summary>
public readonly record struct PgId(int Pool, uint Seed) : IComparable<PgId>
{
    public int CompareTo(PgId other) => Pool != other.Pool ? Pool.CompareTo(other.Pool) : Seed.CompareTo(other.Seed);

    public override string ToString() => $"{Pool.ToString(CultureInfo.InvariantCulture)}.{Seed.ToString("x", CultureInfo.InvariantCulture)}";

    /// <summary>Parses <c>POOL.SEEDHEX</c> (<c>2.1f</c>); the pool is a non-negative decimal, the seed hex of at most
    /// 8 digits.</summary>
    public static bool TryParse(string? text, out PgId pg)
    {
        pg = default;
        var dot = text?.IndexOf('.', StringComparison.Ordinal) ?? -1;
        if (text is null || dot <= 0 || dot == text.Length - 1 || text.Length - dot - 1 > 8)
        {
            return false;
        }
        if (!int.TryParse(text.AsSpan(0, dot), NumberStyles.None, CultureInfo.InvariantCulture, out var pool)
            || !uint.TryParse(text.AsSpan(dot + 1), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var seed))
        {
            return false;
        }
        pg = new PgId(pool, seed);
        return true;
    }

    /// <summary>Parses <c>POOL.SEEDHEX</c>; throws <see cref="FormatException"/> with what a PG id looks like.</summary>
    public static PgId Parse(string text) =>
        TryParse(text, out var pg) ? pg : throw new FormatException($"'{text}' is not a PG id: write the pool id, a dot and the seed in hex, as in 2.1f");

    /// <summary>Whether this PG exists in <paramref name="map"/> (its pool does and the seed is below pg_num).</summary>
    public bool ExistsIn(OsdMap map)
    {
        ArgumentNullException.ThrowIfNull(map);
        return map.Pools.TryGetValue(Pool, out var p) && Seed < (uint)p.PgNum;
    }

    public void Encode(WireWriter w)
    {
        w.WriteI32(Pool);
        w.WriteU32(Seed);
    }

    public static PgId Decode(ref WireReader r) => new(r.ReadI32(), r.ReadU32());

    public static bool operator <(PgId a, PgId b) => a.CompareTo(b) < 0;

    public static bool operator >(PgId a, PgId b) => a.CompareTo(b) > 0;

    public static bool operator <=(PgId a, PgId b) => a.CompareTo(b) <= 0;

    public static bool operator >=(PgId a, PgId b) => a.CompareTo(b) >= 0;
}
