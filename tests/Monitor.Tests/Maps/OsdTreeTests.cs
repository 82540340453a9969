using Appliance.Maps.Protocol;
using Appliance.Monitor.Maps;

namespace Appliance.Monitor.Tests.Maps;

public class OsdTreeTests
{
    [Fact]
    public void Tree_shows_the_crush_hierarchy_with_up_down_in_out_and_weights()
    {
        var c = new Cluster();
        c.Boot(0, "h0", 0x20000);
        c.Boot(1, "h0", 0x10000);
        c.Boot(2, "h1", 0x8000);
        c.Must(new OsdOut([1]));
        c.Must(new ConfigSet("mon_osd_min_down_reporters", "1"));
        c.Must(new OsdFailureReport(2, 0));
        var rows = OsdTree.Build(c.State.Osd);
        Assert.Equal(
            [
                (-1, "root", "default", 0, null, null, 3.5),
                (-2, "host", "h0", 1, null, null, 3.0),
                (0, "osd", "osd.0", 2, "up", 1.0, 2.0),
                (1, "osd", "osd.1", 2, "up", 0.0, 1.0),
                (-3, "host", "h1", 1, null, null, 0.5),
                (2, "osd", "osd.2", 2, "down", 1.0, 0.5),
            ],
            rows.Select(r => (r.Id, r.Type, r.Name, r.Depth, r.Status, r.Reweight, r.Weight)));
        var text = OsdTree.Format(rows);
        Assert.Contains("ID  CLASS    WEIGHT  TYPE NAME", text, StringComparison.Ordinal);
        Assert.Contains("        osd.2", text, StringComparison.Ordinal);
        Assert.Contains("down", text, StringComparison.Ordinal);
        Assert.Equal(7, text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
    }

    [Fact]
    public void Empty_cluster_tree_is_just_the_root()
    {
        var rows = OsdTree.Build(new Cluster().State.Osd);
        Assert.Equal([(-1, "default")], rows.Select(r => (r.Id, r.Name)));
    }
}
