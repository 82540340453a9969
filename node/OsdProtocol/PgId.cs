using System.Globalization;
using Appliance.Wire.Codec;

namespace Appliance.Osd.Protocol;

/// <summary>A placement group: pool id and seed (0..pg_num-1). Written as Ceph writes it: pool, a dot, the seed in
/// lower-case hex (<c>2.1f</c>).</summary>
public readonly record struct PgId(int Pool, uint Seed) : IComparable<PgId>
{
    public int CompareTo(PgId other) => Pool != other.Pool ? Pool.CompareTo(other.Pool) : Seed.CompareTo(other.Seed);

    public override string ToString() => $"{Pool}.{Seed:x}";

    /// <summary>The store collection that holds this PG's objects and its log.</summary>
    public string Collection => $"pg.{this}";

    public static bool TryParse(string text, out PgId pg)
    {
        pg = default;
        var dot = text.IndexOf('.', StringComparison.Ordinal);
        if (dot <= 0 || dot == text.Length - 1)
        {
            return false;
        }
        if (!int.TryParse(text.AsSpan(0, dot), NumberStyles.None, CultureInfo.InvariantCulture, out var pool) ||
            !uint.TryParse(text.AsSpan(dot + 1), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var seed))
        {
            return false;
        }
        pg = new PgId(pool, seed);
        return true;
    }

    public static PgId Parse(string text) =>
        TryParse(text, out var pg) ? pg : throw new FormatException($"'{text}' is not a PG id (POOL.SEED, the seed in hex, e.g. 2.1f)");

    /// <summary>The PG of a store collection name made by <see cref="Collection"/>, if it is one.</summary>
    public static bool TryParseCollection(string collection, out PgId pg)
    {
        pg = default;
        return collection.StartsWith("pg.", StringComparison.Ordinal) && TryParse(collection[3..], out pg);
    }

    public void Encode(WireWriter w)
    {
        w.WriteI32(Pool);
        w.WriteU32(Seed);
    }

    public static PgId Decode(ref WireReader r) => new(r.ReadI32(), r.ReadU32());
}
