using System.Globalization;
using Appliance.Crush.Mapping;
using Appliance.Crush.Text;

namespace Appliance.Crush.Tests;

/// <summary>
/// Maps generated at random (Data/crushtool/) and mapped by crushtool 16.2.15 itself: list, tree, straw (both
/// straw_calc_version values), uniform and mixed buckets, legacy and odd tunables (the local fallback permutation),
/// reweights. These are beyond the public vectors, which only use straw2 with modern tunables.
/// </summary>
public class CrushtoolDataTests
{
    private static string DataDir => Path.Combine(AppContext.BaseDirectory, "Data", "crushtool");

    public static TheoryData<string> Cases()
    {
        var data = new TheoryData<string>();
        foreach (var line in File.ReadLines(Path.Combine(DataDir, "cases.tsv")))
        {
            if (line.Length > 0 && !line.StartsWith('#'))
            {
                data.Add(line.Split('\t')[0]);
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void GeneratedMap_MatchesCrushtool(string caseId)
    {
        var f = File.ReadLines(Path.Combine(DataDir, "cases.tsv")).Single(l => l.StartsWith(caseId + "\t", StringComparison.Ordinal)).Split('\t');
        var map = CrushMapParser.ParseMap(File.ReadAllText(Path.Combine(DataDir, f[1])));
        var rule = int.Parse(f[2], CultureInfo.InvariantCulture);
        var numRep = int.Parse(f[3], CultureInfo.InvariantCulture);
        var minX = int.Parse(f[4], CultureInfo.InvariantCulture);
        var maxX = int.Parse(f[5], CultureInfo.InvariantCulture);
        var reweights = map.DefaultReweights();
        if (f[6] != "-")
        {
            foreach (var pair in f[6].Split(','))
            {
                var p = pair.Split(':');
                var w = float.Parse(p[1], CultureInfo.InvariantCulture);
                reweights[int.Parse(p[0], CultureInfo.InvariantCulture)] = (uint)Math.Clamp((long)(w * 65536.0f), 0, 0x10000);
            }
        }
        var expected = File.ReadAllLines(Path.Combine(DataDir, caseId + ".expected")).Select(l => l.TrimEnd()).ToArray();
        var mapper = new CrushMapper(map);
        var ws = new CrushWorkspace(mapper);
        var result = new int[numRep];
        Assert.Equal(maxX - minX + 1, expected.Length);
        for (var x = minX; x <= maxX; x++)
        {
            var n = mapper.Map(rule, x, numRep, reweights, result, ws);
            var line = (x.ToString(CultureInfo.InvariantCulture) + " " + string.Join(',', result.Take(n))).TrimEnd();
            if (line != expected[x - minX])
            {
                Assert.Fail($"{caseId} x={x}: expected '{expected[x - minX]}', got '{line}'");
            }
        }
    }
}
