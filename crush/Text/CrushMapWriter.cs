using System.Globalization;
using System.Text;
using Appliance.Crush.Model;

namespace Appliance.Crush.Text;

/// <summary>
/// Writes a compiled map in Ceph's text format, laid out as `crushtool -d` lays it out: every bucket with its id,
/// its shadow ids (`id -N class C`, so they stay pinned) and explicit item weights. Parsing the output gives back
/// the same map (see crush/README.md for the one exception, weights that no decimal text can express).
/// </summary>
public static class CrushMapWriter
{
    public static string Write(CrushMap map)
    {
        ArgumentNullException.ThrowIfNull(map);
        var sb = new StringBuilder();
        sb.Append("# begin crush map\n");
        var legacy = CrushTunables.Legacy;
        foreach (var name in CrushTunables.Names)
        {
            var value = map.Tunables.Get(name);
            if (value != legacy.Get(name) || map.WrittenTunables.Contains(name))
            {
                sb.Append(CultureInfo.InvariantCulture, $"tunable {name} {value}\n");
            }
        }
        sb.Append("\n# devices\n");
        foreach (var d in map.Devices.OrderBy(d => d.Id))
        {
            sb.Append(CultureInfo.InvariantCulture, $"device {d.Id} {d.Name}");
            if (d.Class is not null)
            {
                sb.Append(" class ").Append(d.Class);
            }
            sb.Append('\n');
        }
        sb.Append("\n# types\n");
        foreach (var t in map.Types)
        {
            sb.Append(CultureInfo.InvariantCulture, $"type {t.Id} {t.Name}\n");
        }
        sb.Append("\n# buckets\n");
        foreach (var id in WriteOrder(map))
        {
            var b = map.GetBucket(id)!;
            sb.Append(CultureInfo.InvariantCulture, $"{map.GetTypeName(b.TypeId)} {b.Name} {{\n");
            sb.Append(CultureInfo.InvariantCulture, $"\tid {b.Id}\t\t# do not change unnecessarily\n");
            if (map.ShadowIds.TryGetValue(b.Id, out var shadows))
            {
                foreach (var (cid, sid) in shadows.OrderBy(kv => kv.Key))
                {
                    sb.Append(CultureInfo.InvariantCulture, $"\tid {sid} class {map.Classes[cid]}\t\t# do not change unnecessarily\n");
                }
            }
            sb.Append(CultureInfo.InvariantCulture, $"\t# weight {FormatWeight(b.Weight, 3)}\n");
            sb.Append("\talg ").Append(AlgName(b.Alg)).Append('\n');
            sb.Append("\thash 0\t# rjenkins1\n");
            for (var i = 0; i < b.ItemsArray.Length; i++)
            {
                var item = b.ItemsArray[i];
                var itemName = map.GetItemName(item) ?? throw new InvalidOperationException($"item {item} has no name");
                sb.Append("\titem ").Append(itemName);
                var w = b.ItemWeights[i];
                var text = WeightText(w);
                if (text is not null)
                {
                    sb.Append(" weight ").Append(text);
                }
                else if (item >= 0 || map.GetBucket(item)!.Weight != w)
                {
                    // No decimal text parses back to this weight (above 256.0 single precision loses the low bits);
                    // write the closest one.
                    sb.Append(" weight ").Append(FormatWeight(w, 9));
                }
                sb.Append('\n');
            }
            sb.Append("}\n");
        }
        sb.Append("\n# rules\n");
        foreach (var r in map.Rules)
        {
            sb.Append("rule ").Append(r.Name).Append(" {\n");
            sb.Append(CultureInfo.InvariantCulture, $"\tid {r.Id}\n");
            sb.Append("\ttype ").Append(r.Type switch
            {
                1 => "replicated",
                2 => "raid4",
                3 => "erasure",
                _ => r.Type.ToString(CultureInfo.InvariantCulture),
            }).Append('\n');
            sb.Append(CultureInfo.InvariantCulture, $"\tmin_size {r.MinSize}\n");
            sb.Append(CultureInfo.InvariantCulture, $"\tmax_size {r.MaxSize}\n");
            foreach (var s in r.Steps)
            {
                sb.Append("\tstep ");
                switch (s.Op)
                {
                    case RuleOp.Take:
                        sb.Append("take ").Append(s.ItemName ?? map.GetItemName(s.Arg1));
                        if (s.ItemClass is not null)
                        {
                            sb.Append(" class ").Append(s.ItemClass);
                        }
                        break;
                    case RuleOp.Emit:
                        sb.Append("emit");
                        break;
                    case RuleOp.ChooseFirstN or RuleOp.ChooseIndep or RuleOp.ChooseLeafFirstN or RuleOp.ChooseLeafIndep:
                        sb.Append(s.Op is RuleOp.ChooseLeafFirstN or RuleOp.ChooseLeafIndep ? "chooseleaf " : "choose ");
                        sb.Append(s.Op is RuleOp.ChooseFirstN or RuleOp.ChooseLeafFirstN ? "firstn " : "indep ");
                        sb.Append(CultureInfo.InvariantCulture, $"{s.Arg1} type {map.GetTypeName(s.Arg2)}");
                        break;
                    default:
                        sb.Append(StepName(s.Op)).Append(' ').Append(s.Arg1.ToString(CultureInfo.InvariantCulture));
                        break;
                }
                sb.Append('\n');
            }
            sb.Append("}\n");
        }
        sb.Append("\n# end crush map\n");
        return sb.ToString();
    }

    // crushtool -d's order: buckets by id -1, -2, ..., each preceded by those of its children not yet written, so a
    // bucket always comes after the buckets it contains.
    private static List<int> WriteOrder(CrushMap map)
    {
        var order = new List<int>();
        var done = new HashSet<int>();
        var nonShadow = new HashSet<int>(map.BucketOrder);
        void Visit(int id, int depth)
        {
            if (depth > 256 || !nonShadow.Contains(id) || !done.Add(id))
            {
                return;
            }
            foreach (var item in map.GetBucket(id)!.Items)
            {
                if (item < 0)
                {
                    Visit(item, depth + 1);
                }
            }
            order.Add(id);
        }
        foreach (var id in map.BucketOrder.OrderByDescending(i => i))
        {
            Visit(id, 0);
        }
        return order;
    }

    public static string AlgName(BucketAlg alg) => alg switch
    {
        BucketAlg.Uniform => "uniform",
        BucketAlg.List => "list",
        BucketAlg.Tree => "tree",
        BucketAlg.Straw => "straw",
        _ => "straw2",
    };

    private static string StepName(RuleOp op) => op switch
    {
        RuleOp.SetChooseTries => "set_choose_tries",
        RuleOp.SetChooseLeafTries => "set_chooseleaf_tries",
        RuleOp.SetChooseLocalTries => "set_choose_local_tries",
        RuleOp.SetChooseLocalFallbackTries => "set_choose_local_fallback_tries",
        RuleOp.SetChooseLeafVaryR => "set_chooseleaf_vary_r",
        RuleOp.SetChooseLeafStable => "set_chooseleaf_stable",
        _ => throw new InvalidOperationException($"no text form for step {op}"),
    };

    private static string FormatWeight(uint w, int decimals) =>
        ((decimal)w / 65536m).ToString("F" + decimals.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);

    /// <summary>
    /// The shortest text with at least 3 decimals (crushtool's style) that the parser turns back into exactly
    /// <paramref name="w"/>, or null if there is none.
    /// </summary>
    public static string? WeightText(uint w)
    {
        for (var decimals = 3; decimals <= 10; decimals++)
        {
            var s = FormatWeight(w, decimals);
            if (ParseWeight(s) == w)
            {
                return s;
            }
        }
        // Truncation after scaling can need a value slightly above w/65536: try the next representable floats up.
        var f = (float)((double)w / 65536.0);
        for (var k = 0; k < 4; k++)
        {
            var s = f.ToString("R", CultureInfo.InvariantCulture);
            if (ParseWeight(s) == w)
            {
                return s;
            }
            f = MathF.BitIncrement(f);
        }
        return null;
    }

    internal static uint ParseWeight(string s) =>
        (uint)(float.Parse(s, NumberStyles.Float, CultureInfo.InvariantCulture) * 65536.0f);
}
