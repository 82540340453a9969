using Appliance.Crush.Mapping;
using Appliance.Crush.Model;

namespace Appliance.Crush.Placement;

/// <summary>One device's share of a pool's placement groups.</summary>
public sealed record OsdShare(int Osd, double Weight, int Pgs, double FairPgs)
{
    /// <summary>(Pgs - FairPgs) / FairPgs, or 0 when the fair share is 0.</summary>
    public double Deviation => FairPgs > 0 ? (Pgs - FairPgs) / FairPgs : 0;
}

/// <summary>The distribution of a pool's PGs over the devices a rule can reach.</summary>
public sealed record Distribution(IReadOnlyList<OsdShare> Osds, int Pgs, int NumRep, int ShortMappings)
{
    /// <summary>Largest relative deviation above the fair share (devices with weight only).</summary>
    public double MaxOver => Osds.Where(o => o.FairPgs > 0).Select(o => o.Deviation).DefaultIfEmpty(0).Max();

    /// <summary>Largest relative deviation below the fair share (devices with weight only).</summary>
    public double MaxUnder => Osds.Where(o => o.FairPgs > 0).Select(o => o.Deviation).DefaultIfEmpty(0).Min();

    /// <summary>Standard deviation of PG counts around the fair shares, in PGs.</summary>
    public double StdDev
    {
        get
        {
            var weighted = Osds.Where(o => o.FairPgs > 0).ToList();
            return weighted.Count == 0 ? 0 : Math.Sqrt(weighted.Sum(o => (o.Pgs - o.FairPgs) * (o.Pgs - o.FairPgs)) / weighted.Count);
        }
    }
}

/// <summary>What the placement would look like, and how much would move, before a change is made to a cluster.</summary>
public static class PlacementAnalysis
{
    /// <summary>Maps PGs 0..pgs-1 of pool <paramref name="poolId"/> (placement seeds as Ceph computes them).</summary>
    public static int[][] MapPgs(CrushMap map, int ruleId, int numRep, int pgs, int poolId = 1)
    {
        ArgumentNullException.ThrowIfNull(map);
        var mapper = new CrushMapper(map);
        var ws = new CrushWorkspace(mapper);
        var reweights = map.DefaultReweights();
        var buffer = new int[numRep];
        var result = new int[pgs][];
        for (var pg = 0; pg < pgs; pg++)
        {
            var n = PoolPlacement.ActingSet(mapper, ruleId, poolId, (uint)pg, (uint)pgs, numRep, reweights, buffer, ws);
            result[pg] = buffer[..n];
        }
        return result;
    }

    /// <summary>
    /// Counts PGs per device and compares with the weight-fair share: each device's share of all placed replicas is
    /// its CRUSH weight divided by the total weight of the devices the rule's take steps reach.
    /// </summary>
    public static Distribution Analyze(CrushMap map, CrushRule rule, int numRep, int[][] mappings)
    {
        ArgumentNullException.ThrowIfNull(map);
        ArgumentNullException.ThrowIfNull(rule);
        ArgumentNullException.ThrowIfNull(mappings);
        var weights = ReachableDeviceWeights(map, rule);
        var counts = new Dictionary<int, int>();
        var placed = 0;
        var shortMappings = 0;
        foreach (var m in mappings)
        {
            var devices = 0;
            foreach (var osd in m)
            {
                if (osd is >= 0 and not CrushMapper.ItemNone)
                {
                    counts[osd] = counts.GetValueOrDefault(osd) + 1;
                    placed++;
                    devices++;
                }
            }
            if (devices < numRep)
            {
                shortMappings++;
            }
        }
        var total = weights.Values.Sum();
        var osds = weights.Keys.Union(counts.Keys).OrderBy(k => k)
            .Select(osd =>
            {
                var w = weights.GetValueOrDefault(osd);
                return new OsdShare(osd, w, counts.GetValueOrDefault(osd), total > 0 ? placed * w / total : 0);
            })
            .ToList();
        return new Distribution(osds, mappings.Length, numRep, shortMappings);
    }

    /// <summary>The fraction of PGs whose acting set (as an ordered list) differs between two mappings.</summary>
    public static double ChangedFraction(int[][] before, int[][] after)
    {
        ArgumentNullException.ThrowIfNull(before);
        ArgumentNullException.ThrowIfNull(after);
        if (before.Length != after.Length)
        {
            throw new ArgumentException("the mappings cover different PG counts");
        }
        if (before.Length == 0)
        {
            return 0;
        }
        var changed = 0;
        for (var i = 0; i < before.Length; i++)
        {
            if (!before[i].AsSpan().SequenceEqual(after[i]))
            {
                changed++;
            }
        }
        return (double)changed / before.Length;
    }

    /// <summary>The number of replicas that sit on a different device after the change (per position).</summary>
    public static int MovedReplicas(int[][] before, int[][] after)
    {
        ArgumentNullException.ThrowIfNull(before);
        ArgumentNullException.ThrowIfNull(after);
        var moved = 0;
        for (var i = 0; i < before.Length; i++)
        {
            var set = new HashSet<int>(after[i]);
            moved += before[i].Count(o => !set.Contains(o));
        }
        return moved;
    }

    /// <summary>CRUSH weight (1.0 = 0x10000) of each device under the buckets the rule takes.</summary>
    public static Dictionary<int, double> ReachableDeviceWeights(CrushMap map, CrushRule rule)
    {
        ArgumentNullException.ThrowIfNull(map);
        ArgumentNullException.ThrowIfNull(rule);
        var result = new Dictionary<int, double>();
        var seen = new HashSet<int>();
        foreach (var step in rule.Steps)
        {
            if (step.Op == RuleOp.Take)
            {
                Collect(map, step.Arg1, 0x10000, result, seen);
            }
        }
        return result;
    }

    private static void Collect(CrushMap map, int item, uint weight, Dictionary<int, double> result, HashSet<int> seen)
    {
        if (item >= 0)
        {
            result[item] = Math.Max(result.GetValueOrDefault(item), weight / 65536.0);
            return;
        }
        if (!seen.Add(item))
        {
            return;
        }
        var b = map.GetBucket(item);
        if (b is null)
        {
            return;
        }
        for (var i = 0; i < b.Items.Count; i++)
        {
            Collect(map, b.Items[i], b.Weights[i], result, seen);
        }
    }

    /// <summary>
    /// A definition with a new device (the next free id) placed in bucket <paramref name="host"/> with weight
    /// <paramref name="weight"/> (16.16); every ancestor's item weight grows by the same amount, as
    /// `ceph osd crush add` does. The device gets the class most common in that bucket. Returns the new id.
    /// </summary>
    public static int AddDevice(CrushMapDefinition def, string host, uint weight)
    {
        ArgumentNullException.ThrowIfNull(def);
        var bucket = def.Buckets.FirstOrDefault(b => b.Name == host)
            ?? throw new CrushMapException($"there is no bucket named '{host}'");
        var id = def.Devices.Count == 0 ? 0 : def.Devices.Max(d => d.Id) + 1;
        var name = $"osd.{id}";
        var classes = def.Devices.Where(d => bucket.Items.Any(i => i.Name == d.Name) && d.Class is not null)
            .GroupBy(d => d.Class!).OrderByDescending(g => g.Count()).Select(g => g.Key).FirstOrDefault();
        def.Devices.Add(new DeviceDef(id, name, classes));
        bucket.Items.Add(new ItemDef(name, weight, null));
        AdjustAncestors(def, host, (long)weight);
        return id;
    }

    /// <summary>A definition without device <paramref name="osd"/>: removed from its buckets, ancestors lightened.</summary>
    public static void RemoveDevice(CrushMapDefinition def, int osd)
    {
        ArgumentNullException.ThrowIfNull(def);
        var device = def.Devices.FirstOrDefault(d => d.Id == osd)
            ?? throw new CrushMapException($"there is no device {osd}");
        foreach (var b in def.Buckets)
        {
            for (var i = b.Items.Count - 1; i >= 0; i--)
            {
                if (b.Items[i].Name == device.Name)
                {
                    var w = b.Items[i].Weight ?? 0x10000;
                    b.Items.RemoveAt(i);
                    AdjustAncestors(def, b.Name, -(long)w);
                }
            }
        }
        def.Devices.Remove(device);
    }

    private static void AdjustAncestors(CrushMapDefinition def, string child, long delta)
    {
        for (var depth = 0; depth < 64; depth++)
        {
            var parent = def.Buckets.FirstOrDefault(b => b.Items.Any(i => i.Name == child));
            if (parent is null)
            {
                return;
            }
            for (var i = 0; i < parent.Items.Count; i++)
            {
                var it = parent.Items[i];
                if (it.Name == child && it.Weight is { } w)
                {
                    parent.Items[i] = it with { Weight = (uint)Math.Clamp(w + delta, 0, uint.MaxValue) };
                }
            }
            child = parent.Name;
        }
    }
}
