using Appliance.Maps.Protocol;
using Appliance.Monitor.Maps;

namespace Appliance.Monitor.Tests.Maps;

public class HealthTests
{
    [Fact]
    public void Health_follows_osds_and_pool_sizes()
    {
        var c = new Cluster();
        Assert.Equal(HealthStatus.Ok, ClusterHealth.Summarize(c.State).Status);
        c.Boot(0, "h0");
        c.Boot(1, "h1");
        c.Boot(2, "h2");
        c.Must(new PoolCreate("vm"));
        var ok = ClusterHealth.Summarize(c.State);
        Assert.Equal((HealthStatus.Ok, 3, 3, 3, 1, 128L, 3), (ok.Status, ok.Osds, ok.OsdsUp, ok.OsdsIn, ok.Pools, ok.PgsTotal, ok.Monitors));
        Assert.Empty(ok.Checks);

        c.Must(new ConfigSet("mon_osd_min_down_reporters", "1"));
        c.Must(new OsdFailureReport(2, 0));
        var degraded = ClusterHealth.Summarize(c.State);
        Assert.Equal(HealthStatus.Warn, degraded.Status);
        Assert.Contains(degraded.Checks, x => x.Message == "1 OSD(s) down: osd.2");
        Assert.Contains(degraded.Checks, x => x.Message.Contains("'vm' keeps 3 copies", StringComparison.Ordinal));

        c.Must(new OsdOut([1]));
        var blocked = ClusterHealth.Summarize(c.State);
        Assert.Equal(HealthStatus.Error, blocked.Status);
        Assert.Contains(blocked.Checks, x => x.Severity == HealthStatus.Error && x.Message.Contains("needs 2 hosts", StringComparison.Ordinal));
        Assert.Contains(blocked.Checks, x => x.Message == "1 OSD(s) out: osd.1");
    }
}
