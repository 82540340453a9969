namespace Appliance.Maps;

/// <summary>
/// How much data a map change moves: the PGs whose up set differs between two maps, and the bytes the OSDs new to
/// each such PG must receive (its size, as its primary last reported it, once per new OSD). What the CLI prints before
/// `osd out|in|rm` (and alone with <c>--dry-run</c>).
/// </summary>
public static class PgMovement
{
    public sealed record Estimate(int Pgs, long PgsTotal, ulong Bytes, int PgsWithoutSize);

    /// <param name="before">The current map.</param>
    /// <param name="after">The map the change would make.</param>
    /// <param name="pgBytes">Each PG's size (one copy); a PG missing here counts in <see cref="Estimate.PgsWithoutSize"/>.</param>
    public static Estimate Between(OsdMap before, OsdMap after, IReadOnlyDictionary<PgId, ulong> pgBytes)
    {
        ArgumentNullException.ThrowIfNull(before);
        ArgumentNullException.ThrowIfNull(after);
        ArgumentNullException.ThrowIfNull(pgBytes);
        var pgs = 0;
        long total = 0;
        ulong bytes = 0;
        var unknown = 0;
        foreach (var pool in after.Pools.Values)
        {
            if (!before.Pools.TryGetValue(pool.Id, out var old) || old.PgNum != pool.PgNum)
            {
                continue;
            }
            for (var seed = 0u; seed < (uint)pool.PgNum; seed++)
            {
                total++;
                var pg = new PgId(pool.Id, seed);
                var was = before.MapPg(pg).Up;
                var will = after.MapPg(pg).Up;
                if (was.SequenceEqual(will))
                {
                    continue;
                }
                pgs++;
                var joining = will.Count(o => o != OsdMap.NoOsd && !was.Contains(o));
                if (pgBytes.TryGetValue(pg, out var size))
                {
                    bytes += size * (ulong)joining;
                }
                else
                {
                    unknown++;
                }
            }
        }
        return new Estimate(pgs, total, bytes, unknown);
    }

    /// <summary>The map after marking <paramref name="ids"/> in or out (what `osd in|out` would commit).</summary>
    public static OsdMap WithInOut(OsdMap map, IEnumerable<int> ids, bool markIn)
    {
        ArgumentNullException.ThrowIfNull(map);
        var changed = ids.Select(map.FindOsd).OfType<OsdInfo>().Select(o => o with { In = markIn, AutoOut = false }).ToList();
        return map.Apply(new OsdMapIncrement(map.Epoch + 1, map.ModifiedMs, changed, [], [], [], null, null));
    }

    /// <summary>One line for people: "moves 12 of 128 PGs, about 1.5 GiB to copy".</summary>
    public static string Describe(Estimate e)
    {
        ArgumentNullException.ThrowIfNull(e);
        var bytes = e.Pgs == 0 ? "nothing to copy" : $"about {Human(e.Bytes)} to copy" + (e.PgsWithoutSize > 0 ? $" ({e.PgsWithoutSize} PG(s) of unknown size not counted)" : "");
        return $"moves {e.Pgs} of {e.PgsTotal} PGs, {bytes}";
    }

    private static string Human(ulong b)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        var v = (double)b;
        var u = 0;
        while (v >= 1024 && u < units.Length - 1)
        {
            v /= 1024;
            u++;
        }
        return u == 0 ? $"{b} B" : v.ToString("0.#", System.Globalization.CultureInfo.InvariantCulture) + " " + units[u];
    }
}
