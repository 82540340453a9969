using Appliance.Crush.Model;
using Appliance.Crush.Text;

namespace Appliance.Crush.Tests;

/// <summary>Bad maps give a CrushMapException that names the problem and its place; never another exception.</summary>
public class ParserErrorTests
{
    private const string Header = "device 0 osd.0\ndevice 1 osd.1\ntype 0 osd\ntype 1 host\ntype 2 root\n";

    private static CrushMapException Fails(string text) => Assert.Throws<CrushMapException>(() => CrushMapParser.ParseMap(text));

    [Fact]
    public void SyntaxError_NamesLineAndColumn()
    {
        var e = Fails(Header + "host h {\n alg straw2\n item osd.0 weight abc\n}\n");
        Assert.Equal(8, e.Position.Line);
        Assert.Equal(20, e.Position.Column);
        Assert.Contains("line 8, column 20", e.Message, StringComparison.Ordinal);
        Assert.Contains("weight", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void UnknownBucketType_IsReported()
    {
        var e = Fails(Header + "rack r {\n alg straw2\n item osd.0\n}\n");
        Assert.Contains("unknown bucket type 'rack'", e.Message, StringComparison.Ordinal);
        Assert.Equal(6, e.Position.Line);
    }

    [Fact]
    public void RuleNamingMissingBucket_IsReported()
    {
        var e = Fails(Header + "host h {\n alg straw2\n item osd.0\n}\nrule r {\n id 0\n type replicated\n step take nowhere\n step emit\n}\n");
        Assert.Contains("'nowhere'", e.Message, StringComparison.Ordinal);
        Assert.Equal(13, e.Position.Line);
    }

    [Fact]
    public void Cycle_IsImpossible_SelfOrForwardReferenceIsReported()
    {
        // A bucket may only contain buckets defined before it, so a cycle always shows up as an undefined item.
        var self = Fails(Header + "host h {\n alg straw2\n item h\n}\n");
        Assert.Contains("item 'h'", self.Message, StringComparison.Ordinal);
        var mutual = Fails(Header + "host a {\n alg straw2\n item b\n}\nhost b {\n alg straw2\n item a\n}\n");
        Assert.Contains("item 'b'", mutual.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("device -1 osd.x\n", "negative")]
    [InlineData("device 0 osd.0\ndevice 0 osd.1\n", "declared twice")]
    [InlineData("tunable bogus 1\n", "unknown tunable")]
    [InlineData("type 0 osd\ntype 1 host\nhost h {\n alg straw9\n}\n", "unknown bucket algorithm")]
    [InlineData("type 0 osd\ntype 1 host\nhost h {\n alg straw2\n hash 3\n}\n", "unknown hash")]
    [InlineData("type 0 osd\ntype 1 host\nhost h {\n alg straw2\n", "end of the text")]
    [InlineData("type 0 osd\ntype 1 host\nhost h {\n alg straw2\n}\nhost h {\n alg straw2\n}\n", "already used")]
    [InlineData("type 0 osd\ntype 1 host\nhost h {\n id 3\n alg straw2\n}\n", "bucket ids are negative")]
    [InlineData("type 0 osd\ntype 1 host\nhost h {\n id -1\n alg straw2\n}\nhost g {\n id -1\n alg straw2\n}\n", "already used")]
    [InlineData("device 0 osd.0\ntype 0 osd\ntype 1 host\nhost h {\n alg straw2\n item osd.0 weight -1\n}\n", "negative")]
    [InlineData("device 0 osd.0\ntype 0 osd\ntype 1 host\nhost h {\n alg straw2\n item osd.0 weight 101\n}\n", "at most 100")]
    [InlineData("device 0 osd.0\ntype 0 osd\ntype 1 host\nhost h {\n alg straw2\n item osd.0 pos 5\n}\n", "pos 5")]
    [InlineData("type 0 osd\nrule r {\n type replicated\n step emit\n}\n", "no 'id'")]
    [InlineData("type 0 osd\nrule r {\n id 0\n step choose firstn 0 type rack\n}\n", "unknown type 'rack'")]
    [InlineData("type 0 osd\nrule r {\n id 0\n step dance\n}\n", "unknown step")]
    [InlineData("choose_args 0 {\n}\n", "choose_args")]
    [InlineData("}", "unexpected")]
    [InlineData("device 2147483646 osd.0\n", "too large")]
    [InlineData("type 0 osd\ntype 1 host\nhost h {\n id -2147483647\n alg straw2\n}\n", "bucket ids go down to")]
    [InlineData("type 0 osd\ntype 1 host\nhost h {\n id -1 class x\n id -2000000000 class y\n alg straw2\n}\n", "bucket ids go down to")]
    [InlineData("type 0 osd\nrule r {\n id 0\n step set_choose_tries 2000000000\n}\n", "tries")]
    [InlineData("device 0 osd.0 class hdd\ntype 0 osd\ntype 1 host\nhost h {\n alg straw2\n item osd.0\n}\nrule r {\n id 0\n step take h class ssd\n step emit\n}\n", "class 'ssd' does not exist")]
    public void BadMaps_AreRejectedClearly(string text, string fragment)
    {
        var e = Fails(text);
        Assert.Contains(fragment, e.Message, StringComparison.Ordinal);
        Assert.NotEqual(0, e.Position.Line);
    }

    [Fact]
    public void AbsurdTunableTries_AreRejected()
    {
        var e = Fails("tunable choose_total_tries 1000000000\n");
        Assert.Contains("choose_total_tries", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void UniformWithUnequalWeights_IsRejected()
    {
        var e = Fails(Header + "host h {\n alg uniform\n item osd.0 weight 1\n item osd.1 weight 2\n}\n");
        Assert.Contains("uniform", e.Message, StringComparison.Ordinal);
    }
}
