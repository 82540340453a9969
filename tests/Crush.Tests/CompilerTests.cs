using System.Globalization;
using System.Text.RegularExpressions;
using Appliance.Crush.Text;

namespace Appliance.Crush.Tests;

/// <summary>Ids, weights and shadow trees as `crushtool -c` assigns them.</summary>
public partial class CompilerTests
{
    [GeneratedRegex(@"^(\S+) (\S+) \{$")]
    private static partial Regex BucketHeader();

    [GeneratedRegex(@"^\s*id (-?\d+)(?: class (\S+))?")]
    private static partial Regex IdLine();

    /// <summary>crushtool -d prints every bucket's id and its shadow ids; ours must be the same, for every map.</summary>
    [Theory]
    [MemberData(nameof(Vectors.MapNames), MemberType = typeof(Vectors))]
    public void BucketAndShadowIds_MatchCrushtoolDecompile(string mapName)
    {
        var map = CrushMapParser.ParseMap(File.ReadAllText(Vectors.PathOf($"maps/{mapName}.txt")));
        var checkedIds = 0;
        string? bucket = null;
        foreach (var line in File.ReadLines(Vectors.PathOf($"decompiled/{mapName}.txt")))
        {
            var header = BucketHeader().Match(line);
            if (header.Success && header.Groups[1].Value != "rule")
            {
                bucket = header.Groups[2].Value;
                continue;
            }
            if (line == "}")
            {
                bucket = null;
                continue;
            }
            var id = IdLine().Match(line);
            if (bucket is null || !id.Success)
            {
                continue;
            }
            var expected = int.Parse(id.Groups[1].Value, CultureInfo.InvariantCulture);
            Assert.True(map.TryGetItemId(bucket, out var bucketId), bucket);
            if (id.Groups[2].Success)
            {
                var cls = id.Groups[2].Value;
                var classId = map.Classes.ToList().IndexOf(cls);
                Assert.True(classId >= 0, cls);
                Assert.Equal(expected, map.ShadowIds[bucketId][classId]);
                Assert.True(map.TryGetItemId(bucket + "~" + cls, out var shadowId));
                Assert.Equal(expected, shadowId);
            }
            else
            {
                Assert.Equal(expected, bucketId);
            }
            checkedIds++;
        }
        Assert.True(checkedIds > 0);
    }

    [Fact]
    public void ShadowIds_AreDepthFirstPostOrder_ForMapD()
    {
        var map = CrushMapParser.ParseMap(File.ReadAllText(Vectors.PathOf("maps/d_device_classes.txt")));
        // Classes in order of first appearance: ssd, hdd, nvme. Hosts -2..-6, root -1.
        Assert.Equal(["ssd", "hdd", "nvme"], map.Classes);
        Assert.Equal(-7, map.ShadowIds[-2][0]);
        Assert.Equal(-11, map.ShadowIds[-6][0]);
        Assert.Equal(-12, map.ShadowIds[-1][0]);
        Assert.Equal(-18, map.ShadowIds[-1][1]);
        Assert.Equal(-24, map.ShadowIds[-1][2]);
        // A shadow host holds only the devices of its class, with their weights.
        var store1Ssd = map.GetBucket(-7)!;
        Assert.Equal([0], store1Ssd.Items);
        Assert.Equal("store1~ssd", store1Ssd.Name);
        Assert.True(store1Ssd.IsShadow);
    }

    [Theory]
    [InlineData("1.0", 65536u)]
    [InlineData("3.638", 238419u)]
    [InlineData("0.1", 6553u)]
    [InlineData("0.99999999", 65536u)]
    [InlineData("0", 0u)]
    public void Weights_AreSinglePrecisionTruncated(string text, uint expected)
    {
        var map = CrushMapParser.ParseMap(
            $"device 0 osd.0\ntype 0 osd\ntype 1 host\nhost h {{\n alg straw2\n hash 0\n item osd.0 weight {text}\n}}\n");
        Assert.Equal(expected, map.GetBucket(-1)!.Weights[0]);
    }

    [Fact]
    public void AutomaticIds_SkipEveryIdWrittenAnywhere()
    {
        const string text = """
            device 0 osd.0
            device 1 osd.1
            type 0 osd
            type 1 host
            type 2 root
            host a {
                alg straw2
                item osd.0
            }
            host b {
                id -1
                alg straw2
                item osd.1
            }
            root r {
                alg straw2
                item a
                item b
            }
            """;
        var map = CrushMapParser.ParseMap(text);
        Assert.True(map.TryGetItemId("a", out var a));
        Assert.Equal(-2, a); // -1 is reserved by b's id line although b comes later
        Assert.True(map.TryGetItemId("r", out var r));
        Assert.Equal(-3, r);
        // No rules: no shadow trees at compile time.
        Assert.Empty(map.ShadowIds);
        // An item without weight inherits the child's total.
        Assert.Equal([0x10000u, 0x10000u], map.GetBucket(r)!.Weights);
    }

    [Fact]
    public void Pos_PlacesItems()
    {
        var map = CrushMapParser.ParseMap(
            "device 0 osd.0\ndevice 1 osd.1\ndevice 2 osd.2\ntype 0 osd\ntype 1 host\n" +
            "host h {\n alg straw2\n item osd.0\n item osd.1 pos 0\n item osd.2\n}\n");
        Assert.Equal([1, 0, 2], map.GetBucket(-1)!.Items);
    }

    [Fact]
    public void MaxDevices_IsOnePastTheLargestId()
    {
        var map = CrushMapParser.ParseMap(
            "device 0 osd.0\ndevice 7 osd.7\ntype 0 osd\ntype 1 host\nhost h {\n alg straw2\n item osd.0\n}\n");
        Assert.Equal(8, map.MaxDevices);
        var rw = map.DefaultReweights();
        Assert.Equal(0x10000u, rw[0]);
        Assert.Equal(0u, rw[7]); // in no bucket: out for crushtool
    }
}
