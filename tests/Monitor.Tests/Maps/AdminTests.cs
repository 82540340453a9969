using Appliance.Maps;
using Appliance.Maps.Protocol;
using Appliance.Monitor.Maps;
using Appliance.Wire.Auth;

namespace Appliance.Monitor.Tests.Maps;

/// <summary>Auth, config and monitor commands, their validation, and the audit entry every change carries.</summary>
public class AdminTests
{
    [Fact]
    public void Auth_add_caps_rm_with_validated_caps()
    {
        var c = new Cluster();
        var key = Cluster.Key(42);
        c.Must(new AuthAdd("client.vm", Cluster.Caps(("mon", "allow r"), ("osd", "allow rw pool=vm")), key));
        var e = c.State.Auth.Find("client.vm")!;
        Assert.True(e.Key.Equals(key));
        Assert.Equal("allow rw pool=vm", e.Caps["osd"]);
        Assert.True(Authorizer.IsAllowed(e.ParsedCaps(), "osd", Access.Write, "vm"));
        Assert.False(Authorizer.IsAllowed(e.ParsedCaps(), "osd", Access.Write, "other"));
        Assert.Null(c.Run(new AuthAdd("client.vm", Cluster.Caps(("mon", "allow r"), ("osd", "allow rw pool=vm")), key)).Increment);
        c.Refused(new AuthAdd("client.vm", Cluster.Caps(("mon", "allow *")), key), MonErrorCode.AlreadyExists, "auth caps");
        c.Refused(new AuthAdd("nodot", Cluster.Caps(), key), MonErrorCode.InvalidArgument, "TYPE.ID");
        c.Refused(new AuthAdd("alien.x", Cluster.Caps(), key), MonErrorCode.InvalidArgument, "TYPE.ID");
        c.Refused(new AuthAdd("client.y", Cluster.Caps(("mon", "deny all")), key), MonErrorCode.InvalidArgument, "must start with 'allow'");
        c.Refused(new AuthAdd("client.y", Cluster.Caps(("osd", "allow rq")), key), MonErrorCode.InvalidArgument, "unknown access");
        c.Refused(new AuthAdd("client.y", Cluster.Caps(("fs", "allow r")), key), MonErrorCode.InvalidArgument, "unknown service 'fs'");

        c.Must(new AuthCaps("client.vm", Cluster.Caps(("mon", "allow r"))));
        Assert.False(c.State.Auth.Find("client.vm")!.Caps.ContainsKey("osd"));
        c.Refused(new AuthCaps("client.none", Cluster.Caps(("mon", "allow r"))), MonErrorCode.NotFound, "auth add");
        c.Refused(new AuthCaps("client.vm", Cluster.Caps(("mon", "allow"))), MonErrorCode.InvalidArgument, "names no access");
        c.Must(new AuthRemove("client.vm"));
        Assert.Null(c.State.Auth.Find("client.vm"));
        c.Refused(new AuthRemove("client.vm"), MonErrorCode.NotFound, "does not exist");
        // The keyring the messenger uses holds what is left.
        Assert.Equal(["client.admin"], c.State.Auth.ToKeyring().Entries.Select(x => x.Entity));
    }

    [Fact]
    public void The_last_administrator_cannot_be_removed_or_demoted()
    {
        var c = new Cluster();
        c.Refused(new AuthRemove("client.admin"), MonErrorCode.Refused, "lock everyone out");
        c.Refused(new AuthCaps("client.admin", Cluster.Caps(("mon", "allow r"))), MonErrorCode.Refused, "last entity");
        c.Must(new AuthAdd("client.root", Cluster.Caps(("mon", "allow *")), Cluster.Key(3)));
        c.Must(new AuthRemove("client.admin"));
    }

    [Fact]
    public void Config_set_validates_known_options_and_rm_resets_to_default()
    {
        var c = new Cluster();
        Assert.Equal(600, c.State.Config.GetInt("mon_osd_down_out_interval"));
        c.Must(new ConfigSet("mon_osd_down_out_interval", "2h"));
        Assert.Equal("7200", c.State.Config.Values["mon_osd_down_out_interval"]);
        Assert.Equal(TimeSpan.FromHours(2), c.State.Config.GetSeconds("mon_osd_down_out_interval"));
        c.Must(new ConfigSet("osd_heartbeat_grace", " 30 "));
        c.Must(new ConfigSet("mon_osd_full_ratio", "0.9"));
        Assert.Equal(0.9, c.State.Config.GetDouble("mon_osd_full_ratio"));
        c.Must(new ConfigSet("mon_allow_pool_delete", "off"));
        Assert.False(c.State.Config.GetBool("mon_allow_pool_delete"));
        Assert.Null(c.Run(new ConfigSet("osd_heartbeat_grace", "30s")).Increment); // same value, canonical form

        c.Refused(new ConfigSet("osd_heartbeat_grase", "30"), MonErrorCode.InvalidArgument, "unknown configuration option 'osd_heartbeat_grase'; known options: ");
        c.Refused(new ConfigSet("osd_heartbeat_grace", "0"), MonErrorCode.InvalidArgument, "between 1 and 3600");
        c.Refused(new ConfigSet("osd_heartbeat_grace", "2h"), MonErrorCode.InvalidArgument, "between 1 and 3600");
        c.Refused(new ConfigSet("osd_heartbeat_grace", "soon"), MonErrorCode.InvalidArgument, "number of seconds");
        c.Refused(new ConfigSet("osd_heartbeat_grace", "5w"), MonErrorCode.InvalidArgument, "number of seconds");
        c.Refused(new ConfigSet("mon_osd_min_down_reporters", "0"), MonErrorCode.InvalidArgument, "between 1 and 100");
        c.Refused(new ConfigSet("mon_osd_min_down_reporters", "1.5"), MonErrorCode.InvalidArgument, "whole number");
        c.Refused(new ConfigSet("mon_osd_full_ratio", "1.5"), MonErrorCode.InvalidArgument, "between 0 and 1");
        c.Refused(new ConfigSet("mon_osd_full_ratio", "NaN"), MonErrorCode.InvalidArgument, "a number");
        c.Refused(new ConfigSet("mon_allow_pool_delete", "maybe"), MonErrorCode.InvalidArgument, "true or false");
        c.Refused(new ConfigRemove("nope"), MonErrorCode.InvalidArgument, "unknown configuration option");

        c.Must(new ConfigRemove("mon_osd_down_out_interval"));
        Assert.Equal(600, c.State.Config.GetInt("mon_osd_down_out_interval"));
        Assert.Null(c.Run(new ConfigRemove("mon_osd_down_out_interval")).Increment);
        Assert.Throws<ArgumentException>(() => c.State.Config.Get("nope"));
    }

    [Fact]
    public void Every_known_option_default_is_valid_for_its_own_type_and_range()
    {
        foreach (var option in ConfigOptions.Known.Values)
        {
            var canonical = option.Canonicalize(option.Default, out var error);
            Assert.True(error is null, $"{option.Name}: {error}");
            Assert.Equal(option.Default, canonical);
            Assert.False(string.IsNullOrWhiteSpace(option.Description));
        }
        Assert.True(ConfigOptions.Known.ContainsKey("mon_osd_down_out_interval"));
        Assert.True(ConfigOptions.Known.ContainsKey("osd_heartbeat_grace"));
        Assert.True(ConfigOptions.Known.ContainsKey("mon_osd_min_down_reporters"));
    }

    [Fact]
    public void Mon_add_and_rm_recompute_ranks_and_validate()
    {
        var c = new Cluster(monitors: 2);
        c.Must(new MonAdd("aa", "10.0.0.7:6789"));
        Assert.Equal(["aa", "ma", "mb"], c.State.Mon.Monitors.Select(m => m.Name));
        Assert.Equal([0, 1, 2], c.State.Mon.Monitors.Select(m => m.Rank));
        Assert.Equal(2u, c.State.Mon.Epoch);
        c.Refused(new MonAdd("aa", "10.0.0.8:6789"), MonErrorCode.AlreadyExists, "already exists");
        c.Refused(new MonAdd("zz", "10.0.0.7:6789"), MonErrorCode.AlreadyExists, "belongs to monitor aa");
        c.Refused(new MonAdd("zz", "10.0.0.8"), MonErrorCode.InvalidArgument, "HOST:PORT");
        c.Refused(new MonAdd("zz", "10.0.0.8:0"), MonErrorCode.InvalidArgument, "HOST:PORT");
        c.Refused(new MonAdd("z z", "10.0.0.8:1"), MonErrorCode.InvalidArgument, "not valid");
        c.Refused(new MonRemove("nope"), MonErrorCode.NotFound, "does not exist");
        c.Must(new MonRemove("ma"));
        c.Must(new MonRemove("aa"));
        Assert.Equal([("mb", 0)], c.State.Mon.Monitors.Select(m => (m.Name, m.Rank)));
        c.Refused(new MonRemove("mb"), MonErrorCode.Refused, "last one");
        for (var i = 0; i < MonOperations.MaxMonitors - 1; i++)
        {
            c.Must(new MonAdd($"n{i}", $"10.0.1.{i}:6789"));
        }
        c.Refused(new MonAdd("over", "10.0.2.1:6789"), MonErrorCode.Refused, "the most");
    }

    [Fact]
    public void Every_administrative_change_is_audited_with_who_when_what_and_result()
    {
        var c = new Cluster();
        c.Boot(0, "h0"); // not administrative: no audit entry
        Assert.Equal(0ul, c.State.Audit.LastSeq);
        var commands = new MonCommand[]
        {
            new PoolCreate("vm"),
            new PoolSet("vm", "size", "2"),
            new OsdOut([0]),
            new OsdIn([0]),
            new AuthAdd("client.vm", Cluster.Caps(("mon", "allow r")), Cluster.Key(9)),
            new AuthCaps("client.vm", Cluster.Caps(("mon", "allow rw"))),
            new AuthRemove("client.vm"),
            new ConfigSet("osd_heartbeat_grace", "25"),
            new ConfigRemove("osd_heartbeat_grace"),
            new MonAdd("md", "10.0.0.9:6789"),
            new MonRemove("md"),
            new PoolRemove("vm"),
        };
        var seq = 0ul;
        foreach (var command in commands)
        {
            c.Now += TimeSpan.FromSeconds(7);
            var who = seq % 2 == 0 ? "client.admin" : "client.ops";
            var o = c.Must(command, who);
            seq++;
            var entry = c.State.Audit.Entries[^1];
            Assert.Equal(seq, entry.Seq);
            Assert.Equal(who, entry.Who);
            Assert.Equal(c.Now.ToUnixTimeMilliseconds(), entry.TimeMs);
            Assert.Equal(command.Describe(), entry.Command);
            Assert.Equal("ok: " + o.Message, entry.Result);
        }
        Assert.Equal(commands.Length, c.State.Audit.Entries.Count);
        // The audit text never carries a secret.
        Assert.DoesNotContain(c.State.Audit.Entries, e => e.Command.Contains(Cluster.Key(9).ToBase64(), StringComparison.Ordinal));
        // Refused and no-op commands change nothing, so they add no entry ...
        c.Refused(new PoolRemove("vm"), MonErrorCode.NotFound);
        Assert.Null(c.Run(new OsdIn([0])).Increment);
        Assert.Equal((ulong)commands.Length, c.State.Audit.LastSeq);
        // ... unless the daemon records the refusal with AuditRejected.
        var error = new MonError(MonErrorCode.NotFound, "pool 'vm' does not exist");
        c.State.Apply(MonOperations.AuditRejected(c.State, new PoolRemove("vm"), "client.x", c.Now, error));
        var rejected = c.State.Apply(MonOperations.AuditRejected(c.State, new PoolRemove("vm"), "client.x", c.Now, error)).Audit.Entries[^1];
        Assert.Equal("error NotFound: pool 'vm' does not exist", rejected.Result);
        Assert.Equal((ulong)commands.Length + 1, rejected.Seq);
    }

    [Fact]
    public void The_audit_log_keeps_only_the_newest_entries()
    {
        var c = new Cluster();
        c.Must(new ConfigSet("mon_audit_log_max_entries", "100"));
        for (var i = 0; i < 130; i++)
        {
            c.Must(new ConfigSet("osd_heartbeat_grace", (10 + (i % 2)).ToString(System.Globalization.CultureInfo.InvariantCulture)));
        }
        Assert.Equal(131ul, c.State.Audit.LastSeq);
        Assert.Equal(100, c.State.Audit.Entries.Count);
        Assert.Equal(32ul, c.State.Audit.Entries[0].Seq);
        Assert.Equal(30, c.State.Audit.Since(101).Count());
    }

    [Fact]
    public void Bootstrap_validates_its_entities_and_monitors()
    {
        Assert.Throws<ArgumentException>(() => ClusterState.Bootstrap(Guid.NewGuid(), [("a", "1.2.3.4:1")], Cluster.T0,
            [new AuthEntity("client.admin", Cluster.Key(1), Cluster.Caps2(("mon", "allow everything")))]));
        Assert.Throws<ArgumentException>(() => ClusterState.Bootstrap(Guid.NewGuid(), [], Cluster.T0));
        Assert.Throws<ArgumentException>(() => ClusterState.Bootstrap(Guid.NewGuid(), [("a", "1.2.3.4:1")], Cluster.T0, failureDomain: "rack"));
        var s = ClusterState.Bootstrap(Guid.NewGuid(), [("b", "1.2.3.4:2"), ("a", "1.2.3.4:1")], Cluster.T0, failureDomain: "osd");
        Assert.Equal([("a", 0), ("b", 1)], s.Mon.Monitors.Select(m => (m.Name, m.Rank)));
        Assert.Equal(1u, s.Osd.Epoch);
        Assert.Equal(s.Fsid, s.Osd.Fsid);
        Assert.Contains("step choose firstn 0 type osd", s.Osd.CrushText, StringComparison.Ordinal);
    }
}
