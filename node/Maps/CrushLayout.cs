using Appliance.Crush.Model;
using Appliance.Crush.Text;

namespace Appliance.Maps;

/// <summary>
/// The CRUSH hierarchy the monitor maintains: root <c>default</c> (straw2) → one <c>host</c> bucket per host an OSD
/// booted on → the OSDs as devices named <c>osd.N</c>; a <c>replicated_rule</c> (id 0) that picks distinct failure
/// domains (<c>host</c> by default, <c>osd</c> for single-machine clusters); one erasure rule per erasure-coded pool.
/// Changes go through the crush project's model (definition → compile) and are stored as the map text its writer
/// produces, so the OSD map carries Ceph's own format.
/// </summary>
public static class CrushLayout
{
    public const string RootName = "default";
    public const string ReplicatedRuleName = "replicated_rule";
    public const int ReplicatedRuleType = 1;
    public const int ErasureRuleType = 3;

    /// <summary>The failure domains a rule may separate replicas by.</summary>
    public static IReadOnlyList<string> FailureDomains { get; } = ["osd", "host"];

    /// <summary>The map of a new cluster: types, an empty root, the replicated rule. Optimal (jewel) tunables.</summary>
    public static CrushMap Default(string failureDomain)
    {
        CheckFailureDomain(failureDomain);
        var def = new CrushMapDefinition { Tunables = CrushTunables.Optimal };
        def.Types.Add(new TypeDef(0, "osd"));
        def.Types.Add(new TypeDef(1, "host"));
        def.Types.Add(new TypeDef(2, "root"));
        def.Buckets.Add(new BucketDef { TypeName = "root", Name = RootName, Id = -1, Alg = BucketAlg.Straw2 });
        def.Rules.Add(Rule(ReplicatedRuleName, 0, erasure: false, failureDomain));
        return CrushMap.Compile(def);
    }

    private static void CheckFailureDomain(string failureDomain)
    {
        if (!FailureDomains.Contains(failureDomain))
        {
            throw new ArgumentException($"failure domain '{failureDomain}' is not one of {string.Join(", ", FailureDomains)}", nameof(failureDomain));
        }
    }

    private static RuleDef Rule(string name, int id, bool erasure, string failureDomain)
    {
        var rule = new RuleDef { Name = name, Id = id, Type = erasure ? ErasureRuleType : ReplicatedRuleType, MinSize = 1, MaxSize = erasure ? 32 : 10 };
        if (erasure)
        {
            // As Ceph's erasure rules: more tries, because an indep rule must fill every position.
            rule.Steps.Add(new StepDef(RuleOp.SetChooseLeafTries, 5));
            rule.Steps.Add(new StepDef(RuleOp.SetChooseTries, 100));
        }
        rule.Steps.Add(new StepDef(RuleOp.Take, 0, RootName));
        var op = (erasure, failureDomain == "osd") switch
        {
            (false, true) => RuleOp.ChooseFirstN,
            (false, false) => RuleOp.ChooseLeafFirstN,
            (true, true) => RuleOp.ChooseIndep,
            (true, false) => RuleOp.ChooseLeafIndep,
        };
        rule.Steps.Add(new StepDef(op, 0, TypeName: failureDomain));
        rule.Steps.Add(new StepDef(RuleOp.Emit));
        return rule;
    }

    /// <summary>Places osd.<paramref name="osd"/> under host bucket <paramref name="host"/> (created under the root if
    /// new) with CRUSH weight <paramref name="weight"/> (16.16), moving it out of any other bucket.</summary>
    public static CrushMap PlaceOsd(CrushMap map, int osd, string host, uint weight)
    {
        ArgumentNullException.ThrowIfNull(map);
        var def = map.ToDefinition();
        var name = OsdName(osd);
        if (!def.Devices.Any(d => d.Id == osd))
        {
            def.Devices.Add(new DeviceDef(osd, name, null));
            def.Devices.Sort((a, b) => a.Id.CompareTo(b.Id));
        }
        foreach (var b in def.Buckets)
        {
            b.Items.RemoveAll(i => i.Name == name);
        }
        var hostBucket = def.Buckets.FirstOrDefault(b => b.Name == host);
        if (hostBucket is null)
        {
            hostBucket = new BucketDef { TypeName = "host", Name = host, Alg = BucketAlg.Straw2 };
            var root = def.Buckets.FindIndex(b => b.Name == RootName);
            def.Buckets.Insert(root, hostBucket); // children before parents
            def.Buckets[root + 1].Items.Add(new ItemDef(host, null, null));
        }
        else if (hostBucket.TypeName != "host")
        {
            throw new ArgumentException($"'{host}' names a {hostBucket.TypeName} bucket, not a host", nameof(host));
        }
        hostBucket.Items.Add(new ItemDef(name, weight, null));
        return Compile(def);
    }

    /// <summary>Adds an erasure rule named <paramref name="name"/> with the next free id.</summary>
    public static CrushMap AddErasureRule(CrushMap map, string name, string failureDomain)
    {
        ArgumentNullException.ThrowIfNull(map);
        CheckFailureDomain(failureDomain);
        var def = map.ToDefinition();
        var id = def.Rules.Count == 0 ? 0 : def.Rules.Max(r => r.Id) + 1;
        def.Rules.Add(Rule(name, id, erasure: true, failureDomain));
        return Compile(def);
    }

    public static CrushMap RemoveRule(CrushMap map, string name)
    {
        ArgumentNullException.ThrowIfNull(map);
        var def = map.ToDefinition();
        def.Rules.RemoveAll(r => r.Name == name);
        return Compile(def);
    }

    public static string OsdName(int osd) => $"osd.{osd}";

    /// <summary>Takes osd.<paramref name="osd"/> out of every bucket and the device list (a host left empty stays).</summary>
    public static CrushMap RemoveOsd(CrushMap map, int osd)
    {
        ArgumentNullException.ThrowIfNull(map);
        var def = map.ToDefinition();
        var name = OsdName(osd);
        def.Devices.RemoveAll(d => d.Id == osd);
        foreach (var b in def.Buckets)
        {
            b.Items.RemoveAll(i => i.Name == name);
        }
        return Compile(def);
    }

    private static CrushMap Compile(CrushMapDefinition def)
    {
        // Bucket-to-bucket weights are the children's totals: leave them unwritten so the compiler sums them again.
        var bucketNames = def.Buckets.Select(b => b.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var b in def.Buckets)
        {
            for (var i = 0; i < b.Items.Count; i++)
            {
                if (bucketNames.Contains(b.Items[i].Name))
                {
                    b.Items[i] = b.Items[i] with { Weight = null };
                }
            }
        }
        return CrushMap.Compile(def);
    }

    /// <summary>The canonical text of a map (what the OSD map stores).</summary>
    public static string ToText(CrushMap map) => CrushMapWriter.Write(map);

    public static CrushMap FromText(string text) => CrushMapParser.ParseMap(text);
}
