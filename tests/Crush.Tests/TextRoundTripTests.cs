using Appliance.Crush.Mapping;
using Appliance.Crush.Model;
using Appliance.Crush.Text;

namespace Appliance.Crush.Tests;

/// <summary>parse → write → parse gives the same map, and writing is a fixed point.</summary>
public class TextRoundTripTests
{
    public static TheoryData<string> AllMaps()
    {
        var data = new TheoryData<string>();
        foreach (var f in Directory.GetFiles(Vectors.PathOf("maps"), "*.txt").Concat(Directory.GetFiles(Vectors.PathOf("decompiled"), "*.txt")))
        {
            data.Add(Path.GetRelativePath(Vectors.Dir, f));
        }
        foreach (var f in Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "Data", "crushtool"), "*.txt"))
        {
            data.Add(f);
        }
        return data;
    }

    private static string Read(string path) => File.ReadAllText(Path.IsPathRooted(path) ? path : Vectors.PathOf(path));

    [Theory]
    [MemberData(nameof(AllMaps))]
    public void ParseWriteParse_IsLossless(string path)
    {
        var first = CrushMapParser.ParseMap(Read(path));
        var text = CrushMapWriter.Write(first);
        var second = CrushMapParser.ParseMap(text);
        AssertSameMap(first, second);
        Assert.Equal(text, CrushMapWriter.Write(second));
        // And through the editable definition.
        AssertSameMap(first, CrushMap.Compile(first.ToDefinition()));
    }

    internal static void AssertSameMap(CrushMap a, CrushMap b)
    {
        Assert.Equal(a.Tunables, b.Tunables);
        Assert.Equal(a.MaxDevices, b.MaxDevices);
        Assert.Equal(a.Classes, b.Classes);
        Assert.Equal(a.Devices.Select(d => (d.Id, d.Name, d.Class)), b.Devices.Select(d => (d.Id, d.Name, d.Class)));
        Assert.Equal(a.Types.Select(t => (t.Id, t.Name)), b.Types.Select(t => (t.Id, t.Name)));
        var ab = a.Buckets.OrderBy(x => x.Id).ToList();
        var bb = b.Buckets.OrderBy(x => x.Id).ToList();
        Assert.Equal(ab.Count, bb.Count);
        for (var i = 0; i < ab.Count; i++)
        {
            Assert.Equal(ab[i].Id, bb[i].Id);
            Assert.Equal(ab[i].Name, bb[i].Name);
            Assert.Equal(ab[i].TypeId, bb[i].TypeId);
            Assert.Equal(ab[i].Alg, bb[i].Alg);
            Assert.Equal(ab[i].IsShadow, bb[i].IsShadow);
            Assert.Equal(ab[i].Items, bb[i].Items);
            Assert.Equal(ab[i].Weights, bb[i].Weights);
        }
        Assert.Equal(a.Rules.Count, b.Rules.Count);
        for (var i = 0; i < a.Rules.Count; i++)
        {
            Assert.Equal(a.Rules[i].Id, b.Rules[i].Id);
            Assert.Equal(a.Rules[i].Name, b.Rules[i].Name);
            Assert.Equal(a.Rules[i].Type, b.Rules[i].Type);
            Assert.Equal(a.Rules[i].Steps.Select(s => (s.Op, s.Arg1, s.Arg2)), b.Rules[i].Steps.Select(s => (s.Op, s.Arg1, s.Arg2)));
        }
        // Same map, same placements.
        var ma = new CrushMapper(a);
        var mb = new CrushMapper(b);
        var wa = new CrushWorkspace(ma);
        var wb = new CrushWorkspace(mb);
        var rw = a.DefaultReweights();
        var ra = new int[6];
        var rb = new int[6];
        foreach (var rule in a.Rules)
        {
            for (var x = 0; x < 200; x++)
            {
                var na = ma.Map(rule.Id, x, 6, rw, ra, wa);
                var nb = mb.Map(rule.Id, x, 6, rw, rb, wb);
                Assert.Equal(ra.AsSpan(0, na).ToArray(), rb.AsSpan(0, nb).ToArray());
            }
        }
    }

    [Fact]
    public void WeightText_RoundTripsEverySmallWeight()
    {
        // Every 16.16 weight below 256.0 has a text that parses back to it exactly.
        for (uint w = 0; w < 256u << 16; w += 997)
        {
            var text = CrushMapWriter.WeightText(w);
            Assert.NotNull(text);
            Assert.Equal(w, CrushMapWriter.ParseWeight(text));
        }
    }
}
