using System.Globalization;
using System.Text;
using Appliance.Crush.Mapping;
using Appliance.Crush.Model;
using Appliance.Crush.Text;

namespace Appliance.Crush.Tests;

/// <summary>Every public case: our mapper reproduces crushtool's mappings exactly.</summary>
public class MappingVectorTests
{
    private static readonly Dictionary<string, CrushMap> Maps = [];

    internal static CrushMap LoadMap(string relative)
    {
        lock (Maps)
        {
            if (!Maps.TryGetValue(relative, out var map))
            {
                map = CrushMapParser.ParseMap(File.ReadAllText(Vectors.PathOf(relative)));
                Maps[relative] = map;
            }
            return map;
        }
    }

    /// <summary>crushtool's --weight conversion: single-precision product, truncated, clamped.</summary>
    internal static uint[] Reweights(CrushMap map, VectorCase c)
    {
        var w = map.DefaultReweights();
        foreach (var (osd, value) in c.Weights)
        {
            var f = float.Parse(value, CultureInfo.InvariantCulture);
            w[osd] = (uint)Math.Clamp((long)(f * 65536.0f), 0, 0x10000);
        }
        return w;
    }

    internal static string[] MapLines(CrushMap map, VectorCase c)
    {
        var mapper = new CrushMapper(map);
        var ws = new CrushWorkspace(mapper);
        var reweights = Reweights(map, c);
        var result = new int[c.NumRep];
        var lines = new string[c.MaxX - c.MinX + 1];
        var sb = new StringBuilder();
        for (var x = c.MinX; x <= c.MaxX; x++)
        {
            var n = mapper.Map(c.RuleId, x, c.NumRep, reweights, result, ws);
            sb.Clear();
            sb.Append(x).Append(' ').AppendJoin(',', result.Take(n));
            lines[x - c.MinX] = sb.ToString().TrimEnd();
        }
        return lines;
    }

    [Theory]
    [MemberData(nameof(Vectors.CaseIds), MemberType = typeof(Vectors))]
    public void Case_MatchesCrushtool(string caseId)
    {
        var c = Vectors.Case(caseId);
        var map = LoadMap(c.MapPath);
        Assert.Equal(c.RuleName, map.GetRule(c.RuleId)!.Name);
        var expected = Vectors.Expected(caseId);
        var actual = MapLines(map, c);
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
        {
            if (expected[i] != actual[i])
            {
                Assert.Fail($"{caseId}: line {i + 1} differs: expected '{expected[i]}', got '{actual[i]}'");
            }
        }
    }

    [Fact]
    public void AllCasesAreCovered()
    {
        // The vectors must be there and numerous; a silently empty list would make the theory above vacuous.
        Assert.True(Vectors.Cases.Count >= 100, $"only {Vectors.Cases.Count} cases found");
        foreach (var c in Vectors.Cases)
        {
            Assert.True(File.Exists(Vectors.PathOf("expected/" + c.Id + ".txt")), c.Id);
        }
    }
}
