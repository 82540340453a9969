using Appliance.Maps;
using Appliance.Maps.Protocol;
using Appliance.Monitor.Maps;

namespace Appliance.Monitor.Tests.Maps;

/// <summary>Boot, failure reports, beacons, down → out on a simulated clock, in on return, admin out/in.</summary>
public class OsdLifecycleTests
{
    private static Cluster ThreeHosts()
    {
        var c = new Cluster();
        c.Boot(0, "h0");
        c.Boot(1, "h0");
        c.Boot(2, "h1");
        c.Boot(3, "h1");
        c.Boot(4, "h2");
        return c;
    }

    [Fact]
    public void Boot_registers_an_osd_up_and_in_under_its_host_in_a_new_epoch()
    {
        var c = new Cluster();
        var before = c.State.Osd.Epoch;
        var o = c.Must(new OsdBoot(7, "10.1.0.7:6800", "nodeA", 0x20000));
        Assert.Null(o.Increment!.Audit); // not an administrative change
        var osd = c.State.Osd.FindOsd(7)!;
        Assert.Equal(before + 1, c.State.Osd.Epoch);
        Assert.Equal(new OsdInfo(7, "10.1.0.7:6800", "nodeA", true, true, 0x20000, before + 1, 0, false, ClusterAddress: "10.1.0.7:6800"), osd);
        Assert.True(c.State.Osd.Crush.TryGetItemId("nodeA", out var hostId));
        Assert.Equal([7], c.State.Osd.Crush.GetBucket(hostId)!.Items);
        Assert.Equal(0x20000u, c.State.Osd.Crush.GetBucket(hostId)!.Weight);
        Assert.Equal(0x20000u, c.State.Osd.Crush.GetBucket(-1)!.Weight);
        // The same boot again changes nothing.
        var again = c.Run(new OsdBoot(7, "10.1.0.7:6800", "nodeA", 0x20000));
        Assert.True(again.Ok);
        Assert.Null(again.Increment);
        // A new address (restart) is a new epoch; a new host moves it in CRUSH.
        c.Must(new OsdBoot(7, "10.1.0.7:6801", "nodeB", 0x20000));
        Assert.True(c.State.Osd.Crush.TryGetItemId("nodeB", out var b));
        Assert.Equal([7], c.State.Osd.Crush.GetBucket(b)!.Items);
        Assert.Empty(c.State.Osd.Crush.GetBucket(hostId)!.Items);
    }

    [Fact]
    public void Boot_validation_errors()
    {
        var c = new Cluster();
        c.Refused(new OsdBoot(-1, "a:1", "h", 1), MonErrorCode.InvalidArgument, "out of range");
        c.Refused(new OsdBoot(70000, "a:1", "h", 1), MonErrorCode.InvalidArgument, "out of range");
        c.Refused(new OsdBoot(1, "", "h", 1), MonErrorCode.InvalidArgument, "bad address");
        c.Refused(new OsdBoot(1, "a b:1", "h", 1), MonErrorCode.InvalidArgument, "bad address");
        c.Refused(new OsdBoot(1, "a:1", "bad host", 1), MonErrorCode.InvalidArgument, "not valid");
        c.Refused(new OsdBoot(1, "a:1", "default", 1), MonErrorCode.InvalidArgument, "reserved");
        c.Refused(new OsdBoot(1, "a:1", "osd.3", 1), MonErrorCode.InvalidArgument, "reserved");
        c.Refused(new OsdBoot(1, "a:1", "h", 0), MonErrorCode.InvalidArgument, "weight 0");
    }

    [Fact]
    public void Failure_reports_mark_down_only_from_enough_distinct_hosts()
    {
        var c = ThreeHosts();
        Assert.Equal("2", c.State.Config.Get("mon_osd_min_down_reporters"));
        // osd.0 and osd.1 share host h0: two reports from one host count once.
        var r1 = c.Run(new OsdFailureReport(4, 0));
        Assert.Null(r1.Increment);
        Assert.Contains("from 1 of 2 hosts", r1.Message, StringComparison.Ordinal);
        var r2 = c.Run(new OsdFailureReport(4, 1));
        Assert.Null(r2.Increment);
        Assert.True(c.State.Osd.FindOsd(4)!.Up);
        // The same reporter again does not count twice either.
        Assert.Null(c.Run(new OsdFailureReport(4, 0)).Increment);
        // A report from a second host does it.
        c.Now += TimeSpan.FromSeconds(3);
        var r3 = c.Must(new OsdFailureReport(4, 2));
        Assert.Contains("h0, h1", r3.Message, StringComparison.Ordinal);
        var osd = c.State.Osd.FindOsd(4)!;
        Assert.False(osd.Up);
        Assert.True(osd.In);
        Assert.Equal(c.Now.ToUnixTimeMilliseconds(), osd.DownStampMs);
        Assert.Empty(c.Liveness.ReportsAgainst(4));
        // Reports against a down OSD change nothing.
        Assert.Null(c.Run(new OsdFailureReport(4, 3)).Increment);
    }

    [Fact]
    public void Failure_reports_follow_mon_osd_min_down_reporters_and_expire()
    {
        var c = ThreeHosts();
        c.Must(new ConfigSet("mon_osd_min_down_reporters", "1"));
        c.Must(new OsdFailureReport(0, 2));
        Assert.False(c.State.Osd.FindOsd(0)!.Up);

        c.Must(new ConfigSet("mon_osd_min_down_reporters", "3"));
        // Only h0 (osd.1) and h1 can report osd.4 on h2... and h2 has no other OSD: the need is capped at 2 hosts.
        Assert.Null(c.Run(new OsdFailureReport(4, 1)).Increment);
        // Reports expire after twice osd_heartbeat_grace (3 s): this one is too old to count with the next.
        c.Now += TimeSpan.FromSeconds(7);
        Assert.Null(c.Run(new OsdFailureReport(4, 2)).Increment);
        Assert.True(c.State.Osd.FindOsd(4)!.Up);
        c.Now += TimeSpan.FromSeconds(2);
        c.Must(new OsdFailureReport(4, 1));
        Assert.False(c.State.Osd.FindOsd(4)!.Up);
    }

    [Fact]
    public void On_one_host_distinct_osds_must_report()
    {
        // As `cluster up` on one machine would be if its OSDs shared a host name.
        var c = new Cluster();
        c.Boot(0, "solo");
        c.Boot(1, "solo");
        c.Boot(2, "solo");
        // mon_osd_min_down_reporters 2 (the default): one OSD's report is not enough, however often it repeats it.
        var first = c.Run(new OsdFailureReport(2, 0));
        Assert.Null(first.Increment);
        Assert.Contains("by 1 of 2 OSDs", first.Message, StringComparison.Ordinal);
        Assert.Null(c.Run(new OsdFailureReport(2, 0)).Increment);
        Assert.True(c.State.Osd.FindOsd(2)!.Up);
        // A second OSD's report marks it down.
        var second = c.Must(new OsdFailureReport(2, 1));
        Assert.Contains("marked down", second.Message, StringComparison.Ordinal);
        Assert.False(c.State.Osd.FindOsd(2)!.Up);
        // Two OSDs up: the one other OSD is every reporter there can be.
        c.Must(new OsdFailureReport(1, 0));
        Assert.False(c.State.Osd.FindOsd(1)!.Up);
    }

    [Fact]
    public void A_cancelled_report_no_longer_counts()
    {
        var c = ThreeHosts();
        c.Run(new OsdFailureReport(4, 0));
        c.Run(new OsdFailureCancel(4, 0));
        Assert.Empty(c.Liveness.ReportsAgainst(4));
        Assert.Null(c.Run(new OsdFailureReport(4, 2)).Increment);
        Assert.True(c.State.Osd.FindOsd(4)!.Up);
    }

    [Fact]
    public void Failure_report_validation_errors()
    {
        var c = ThreeHosts();
        c.Refused(new OsdFailureReport(9, 0), MonErrorCode.NotFound, "osd.9");
        c.Refused(new OsdFailureReport(0, 9), MonErrorCode.NotFound, "osd.9");
        c.Refused(new OsdFailureReport(1, 1), MonErrorCode.InvalidArgument, "itself");
        c.Must(new ConfigSet("mon_osd_min_down_reporters", "1"));
        c.Must(new OsdFailureReport(4, 0));
        c.Refused(new OsdFailureReport(1, 4), MonErrorCode.Refused, "do not count");
        c.Refused(new OsdBeacon(4), MonErrorCode.Refused, "boot again");
        c.Refused(new OsdBeacon(42), MonErrorCode.NotFound, "osd.42");
    }

    [Fact]
    public void Silent_osds_go_down_after_the_report_timeout_and_out_after_the_down_out_interval()
    {
        var c = ThreeHosts();
        var timeout = TimeSpan.FromSeconds(20);
        var downOut = TimeSpan.FromSeconds(600);
        // Everybody sends beacons (every 5 s, the default), except osd.3, which stops after booting.
        for (var t = TimeSpan.Zero; t <= timeout; t += TimeSpan.FromSeconds(5))
        {
            c.Now = Cluster.T0 + t;
            foreach (var id in new[] { 0, 1, 2, 4 })
            {
                Assert.True(c.Run(new OsdBeacon(id)).Ok);
            }
            Assert.Null(c.Run(new OsdTick()).Increment);
        }
        c.Now = Cluster.T0 + timeout + TimeSpan.FromSeconds(1);
        c.Run(new OsdBeacon(0)); c.Run(new OsdBeacon(1)); c.Run(new OsdBeacon(2)); c.Run(new OsdBeacon(4));
        var down = c.Must(new OsdTick());
        Assert.Contains("osd.3 down", down.Message, StringComparison.Ordinal);
        Assert.Equal([3], c.State.Osd.Osds.Values.Where(o => !o.Up).Select(o => o.Id));
        var downAt = c.Now;
        // Not out one second before the interval, out at it.
        c.Now = downAt + downOut - TimeSpan.FromSeconds(1);
        foreach (var id in new[] { 0, 1, 2, 4 })
        {
            c.Run(new OsdBeacon(id));
        }
        Assert.Null(c.Run(new OsdTick()).Increment);
        Assert.True(c.State.Osd.FindOsd(3)!.In);
        c.Now = downAt + downOut;
        foreach (var id in new[] { 0, 1, 2, 4 })
        {
            c.Run(new OsdBeacon(id));
        }
        var outTick = c.Must(new OsdTick());
        Assert.Contains("osd.3 out", outTick.Message, StringComparison.Ordinal);
        var osd3 = c.State.Osd.FindOsd(3)!;
        Assert.False(osd3.In);
        Assert.True(osd3.AutoOut);
        Assert.Equal(0u, c.State.Osd.Reweights()[3]);
        // It returns: up and in again.
        c.Must(new OsdBoot(3, "10.1.0.3:6801", "h1", 0x10000));
        osd3 = c.State.Osd.FindOsd(3)!;
        Assert.True(osd3.Up && osd3.In && !osd3.AutoOut);
        Assert.Equal(0x10000u, c.State.Osd.Reweights()[3]);
    }

    [Fact]
    public void Down_out_interval_is_configurable_and_zero_never_marks_out()
    {
        var c = ThreeHosts();
        c.Must(new ConfigSet("mon_osd_down_out_interval", "5m"));
        c.Must(new ConfigSet("mon_osd_min_down_reporters", "1"));
        c.Must(new OsdFailureReport(4, 0));
        c.Now += TimeSpan.FromMinutes(5);
        foreach (var id in new[] { 0, 1, 2, 3 })
        {
            c.Run(new OsdBeacon(id));
        }
        c.Must(new OsdTick());
        Assert.False(c.State.Osd.FindOsd(4)!.In);
        Assert.Equal(4, c.State.Osd.UpCount);

        c.Must(new ConfigSet("mon_osd_down_out_interval", "0"));
        c.Must(new OsdFailureReport(2, 0));
        c.Now += TimeSpan.FromDays(10);
        foreach (var id in new[] { 0, 1, 3 })
        {
            c.Run(new OsdBeacon(id));
        }
        Assert.Null(c.Run(new OsdTick()).Increment);
        Assert.True(c.State.Osd.FindOsd(2)!.In);
    }

    [Fact]
    public void An_admin_in_on_a_down_osd_stops_its_down_out_timer()
    {
        var c = ThreeHosts();
        c.Must(new ConfigSet("mon_osd_min_down_reporters", "1"));
        c.Must(new OsdFailureReport(4, 0));
        c.Now += TimeSpan.FromSeconds(600);
        foreach (var id in new[] { 0, 1, 2, 3 })
        {
            c.Run(new OsdBeacon(id));
        }
        c.Must(new OsdTick());
        Assert.True(c.State.Osd.FindOsd(4)!.AutoOut);
        c.Must(new OsdIn([4]));
        c.Now += TimeSpan.FromSeconds(600);
        foreach (var id in new[] { 0, 1, 2, 3 })
        {
            c.Run(new OsdBeacon(id));
        }
        Assert.Null(c.Run(new OsdTick()).Increment);
        Assert.True(c.State.Osd.FindOsd(4)!.In);
        Assert.False(c.State.Osd.FindOsd(4)!.Up);
    }

    [Fact]
    public void A_new_leader_gives_every_osd_a_full_timeout_from_its_takeover()
    {
        var c = ThreeHosts();
        c.Now += TimeSpan.FromHours(1);
        // Fresh soft state, as after a leader change: nobody is marked down for beacons the old leader received.
        var fresh = OsdLiveness.Start(c.Now);
        var o = MonOperations.Execute(c.State, fresh, new OsdTick(), "mon.a", c.Now + TimeSpan.FromSeconds(19));
        Assert.Null(o.Increment);
        o = MonOperations.Execute(c.State, fresh, new OsdTick(), "mon.a", c.Now + TimeSpan.FromSeconds(21));
        Assert.Equal(5, o.Increment!.Osd!.OsdUpserts.Count(x => !x.Up));
    }

    [Fact]
    public void Admin_out_stays_out_across_a_reboot_and_in_brings_it_back()
    {
        var c = ThreeHosts();
        var o = c.Must(new OsdOut([1, 2]));
        Assert.NotNull(o.Increment!.Audit);
        Assert.False(c.State.Osd.FindOsd(1)!.In);
        Assert.False(c.State.Osd.FindOsd(1)!.AutoOut);
        Assert.Null(c.Run(new OsdOut([1])).Increment); // already out
        c.Must(new ConfigSet("mon_osd_min_down_reporters", "1"));
        c.Must(new OsdFailureReport(1, 4));
        c.Must(new OsdBoot(1, "10.1.0.1:6999", "h0", 0x10000));
        Assert.True(c.State.Osd.FindOsd(1)!.Up);
        Assert.False(c.State.Osd.FindOsd(1)!.In); // an administrator's out is not undone by a reboot
        c.Must(new OsdIn([1, 2]));
        Assert.True(c.State.Osd.FindOsd(1)!.In && c.State.Osd.FindOsd(2)!.In);
        c.Refused(new OsdOut([1, 99]), MonErrorCode.NotFound, "osd.99");
        Assert.True(c.State.Osd.FindOsd(1)!.In); // all or nothing
        c.Refused(new OsdIn([]), MonErrorCode.InvalidArgument, "at least one");
    }
}
