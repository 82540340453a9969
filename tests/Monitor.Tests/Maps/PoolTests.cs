using Appliance.Crush.Mapping;
using Appliance.Crush.Placement;
using Appliance.Maps;
using Appliance.Maps.Protocol;
using Appliance.Monitor.Maps;

namespace Appliance.Monitor.Tests.Maps;

public class PoolTests
{
    private static Cluster WithOsds(int hosts, int perHost, string failureDomain = "host")
    {
        var c = new Cluster(failureDomain);
        var id = 0;
        for (var h = 0; h < hosts; h++)
        {
            for (var i = 0; i < perHost; i++)
            {
                c.Boot(id++, $"h{h}");
            }
        }
        return c;
    }

    [Fact]
    public void Create_replicated_pool_with_defaults_and_automatic_pg_num()
    {
        var c = WithOsds(3, 1);
        var o = c.Must(new PoolCreate("vm"));
        var pool = c.State.Osd.FindPool("vm")!;
        Assert.Equal(1, pool.Id);
        Assert.Equal(PoolType.Replicated, pool.Type);
        Assert.Equal(3, pool.Size);
        Assert.Equal(2, pool.MinSize);
        Assert.Equal(128, pool.PgNum); // 3 OSDs * 100 / 3 = 100 → 128
        Assert.True(pool.PgNumAuto);
        Assert.Equal(c.State.Osd.Crush.FindRule(CrushLayout.ReplicatedRuleName)!.Id, pool.CrushRule);
        Assert.Null(pool.Erasure);
        Assert.Contains("pg_num 128 (automatic)", o.Message, StringComparison.Ordinal);
        Assert.Equal(pool.CreatedEpoch, c.State.Osd.Epoch);
    }

    [Theory]
    [InlineData(3, 3, 128)]
    [InlineData(12, 3, 512)]
    [InlineData(0, 3, 128)]   // no OSDs yet: sized as if `size` were there
    [InlineData(1, 1, 128)]
    [InlineData(10, 2, 512)]
    [InlineData(6, 6, 128)]   // EC 4+2
    public void Automatic_pg_num_follows_the_documented_rule(int osds, int size, int expected)
    {
        var c = WithOsds(Math.Max(osds, 1), 1);
        if (osds == 0)
        {
            c = new Cluster();
        }
        Assert.Equal(expected, MonOperations.AutoPgNum(c.State.Osd, c.State.Config, size));
    }

    [Fact]
    public void Pg_num_is_clamped_to_mon_max_pool_pg_num_and_follows_mon_target_pg_per_osd()
    {
        var c = WithOsds(4, 3);
        c.Must(new ConfigSet("mon_target_pg_per_osd", "1000"));
        c.Must(new ConfigSet("mon_max_pool_pg_num", "2048"));
        c.Must(new PoolCreate("big", Size: 2));
        Assert.Equal(2048, c.State.Osd.FindPool("big")!.PgNum); // 12 * 1000 / 2 = 6000 → 4096, clamped
        c.Must(new ConfigSet("mon_target_pg_per_osd", "50"));
        c.Must(new PoolSet("big", "pg_num", "auto"));
        Assert.Equal(256, c.State.Osd.FindPool("big")!.PgNum); // 12 * 50 / 2 = 300 → 256
    }

    [Fact]
    public void Create_erasure_pool_makes_its_rule_and_remove_drops_it()
    {
        var c = WithOsds(6, 1);
        c.Must(new PoolCreate("ec", PoolType.Erasure, K: 4, M: 2));
        var pool = c.State.Osd.FindPool("ec")!;
        Assert.Equal(new ErasureProfile(4, 2), pool.Erasure);
        Assert.Equal(6, pool.Size);
        Assert.Equal(5, pool.MinSize); // k + min(1, m - 1)
        var rule = c.State.Osd.Crush.GetRule(pool.CrushRule)!;
        Assert.Equal("erasure_ec", rule.Name);
        Assert.Equal(CrushLayout.ErasureRuleType, rule.Type);
        Assert.Contains("rule erasure_ec", c.State.Osd.CrushText, StringComparison.Ordinal);
        c.Must(new PoolCreate("ec1", PoolType.Erasure, K: 2, M: 1));
        Assert.Equal(2, c.State.Osd.FindPool("ec1")!.MinSize); // m = 1: min_size = k
        c.Must(new PoolRemove("ec"));
        Assert.Null(c.State.Osd.FindPool("ec"));
        Assert.Null(c.State.Osd.Crush.FindRule("erasure_ec"));
        Assert.NotNull(c.State.Osd.Crush.FindRule("erasure_ec1"));
        // Ids are never reused.
        c.Must(new PoolCreate("ec"));
        Assert.Equal(3, c.State.Osd.FindPool("ec")!.Id);
    }

    [Fact]
    public void Pools_place_their_pgs_on_distinct_hosts_through_the_crush_map()
    {
        var c = WithOsds(3, 2);
        c.Must(new PoolCreate("vm"));
        c.Must(new PoolCreate("ec", PoolType.Erasure, K: 2, M: 1));
        var map = c.State.Osd;
        var mapper = new CrushMapper(map.Crush);
        var ws = new CrushWorkspace(mapper);
        var weights = map.Reweights();
        Span<int> acting = stackalloc int[8];
        foreach (var pool in map.Pools.Values)
        {
            for (var pg = 0u; pg < (uint)pool.PgNum; pg++)
            {
                var n = PoolPlacement.ActingSet(mapper, pool.CrushRule, pool.Id, pg, (uint)pool.PgNum, pool.Size, weights, acting, ws);
                Assert.Equal(pool.Size, n);
                var hosts = acting[..n].ToArray().Select(o => map.FindOsd(o)!.Host).Distinct().Count();
                Assert.Equal(pool.Size, hosts);
            }
        }
    }

    [Fact]
    public void Create_validation_errors()
    {
        var c = WithOsds(3, 1);
        c.Must(new PoolCreate("vm"));
        c.Refused(new PoolCreate("vm"), MonErrorCode.AlreadyExists, "already exists");
        c.Refused(new PoolCreate(""), MonErrorCode.InvalidArgument, "not valid");
        c.Refused(new PoolCreate("bad name"), MonErrorCode.InvalidArgument, "not valid");
        c.Refused(new PoolCreate(".hidden"), MonErrorCode.InvalidArgument, "not valid");
        c.Refused(new PoolCreate(new string('p', 65)), MonErrorCode.InvalidArgument, "not valid");
        c.Refused(new PoolCreate("p", Size: 0), MonErrorCode.InvalidArgument, "size 0");
        c.Refused(new PoolCreate("p", Size: 11), MonErrorCode.InvalidArgument, "size 11");
        c.Refused(new PoolCreate("p", Size: 2, MinSize: 3), MonErrorCode.InvalidArgument, "min_size 3 must be between 1 and size 2");
        c.Refused(new PoolCreate("p", MinSize: 0), MonErrorCode.InvalidArgument, "min_size 0");
        c.Refused(new PoolCreate("p", K: 2, M: 1), MonErrorCode.InvalidArgument, "erasure-coded");
        c.Refused(new PoolCreate("p", Rule: "nope"), MonErrorCode.NotFound, "nope");
        c.Refused(new PoolCreate("p", PgNum: 0), MonErrorCode.InvalidArgument, "pg_num 0");
        c.Refused(new PoolCreate("p", PgNum: 65537), MonErrorCode.InvalidArgument, "pg_num 65537");
        c.Refused(new PoolCreate("p", PoolType.Erasure, K: 1, M: 1), MonErrorCode.InvalidArgument, "not sane");
        c.Refused(new PoolCreate("p", PoolType.Erasure, K: 2, M: 0), MonErrorCode.InvalidArgument, "not sane");
        c.Refused(new PoolCreate("p", PoolType.Erasure, K: 17, M: 1), MonErrorCode.InvalidArgument, "not sane");
        c.Refused(new PoolCreate("p", PoolType.Erasure, K: 2, M: 9), MonErrorCode.InvalidArgument, "not sane");
        c.Refused(new PoolCreate("p", PoolType.Erasure, K: 2, M: 2, Size: 3), MonErrorCode.InvalidArgument, "k+m = 4");
        c.Refused(new PoolCreate("p", PoolType.Erasure, K: 2, M: 2, MinSize: 1), MonErrorCode.InvalidArgument, "between k = 2");
        c.Refused(new PoolCreate("p", PoolType.Erasure, K: 2, M: 2, Rule: CrushLayout.ReplicatedRuleName), MonErrorCode.InvalidArgument, "not an erasure rule");
        c.Must(new PoolCreate("e", PoolType.Erasure));
        c.Refused(new PoolCreate("p", Rule: "erasure_e"), MonErrorCode.InvalidArgument, "not a replicated rule");
        c.Refused(new PoolCreate("p", PoolType.Erasure, Rule: "missing"), MonErrorCode.NotFound, "missing");
        c.Refused(new PoolCreate("p", (PoolType)7), MonErrorCode.InvalidArgument, "not replicated or erasure");
    }

    [Fact]
    public void Set_changes_fields_and_validates_them()
    {
        var c = WithOsds(3, 1);
        c.Must(new PoolCreate("vm"));
        c.Must(new PoolCreate("ec", PoolType.Erasure, K: 3, M: 2));
        c.Must(new PoolSet("vm", "size", "4"));
        c.Must(new PoolSet("vm", "min_size", "3"));
        c.Must(new PoolSet("vm", "pg_num", "64"));
        c.Must(new PoolSet("vm", "quota_max_bytes", "10G"));
        c.Must(new PoolSet("vm", "quota_max_objects", "1000"));
        var vm = c.State.Osd.FindPool("vm")!;
        Assert.Equal((4, 3, 64, false, 10UL << 30, 1000UL), (vm.Size, vm.MinSize, vm.PgNum, vm.PgNumAuto, vm.QuotaMaxBytes, vm.QuotaMaxObjects));
        // Setting the same value again commits nothing.
        var same = c.Run(new PoolSet("vm", "size", "4"));
        Assert.True(same.Ok);
        Assert.Null(same.Increment);

        c.Refused(new PoolSet("nope", "size", "3"), MonErrorCode.NotFound, "does not exist");
        c.Refused(new PoolSet("vm", "colour", "blue"), MonErrorCode.InvalidArgument, "unknown pool field");
        c.Refused(new PoolSet("vm", "size", "2"), MonErrorCode.InvalidArgument, "lower min_size first");
        c.Refused(new PoolSet("vm", "size", "11"), MonErrorCode.InvalidArgument, "size must be");
        c.Refused(new PoolSet("vm", "size", "three"), MonErrorCode.InvalidArgument, "size must be");
        c.Refused(new PoolSet("vm", "min_size", "5"), MonErrorCode.InvalidArgument, "min_size");
        c.Refused(new PoolSet("vm", "min_size", "0"), MonErrorCode.InvalidArgument, "min_size");
        c.Refused(new PoolSet("vm", "pg_num", "0"), MonErrorCode.InvalidArgument, "pg_num");
        c.Refused(new PoolSet("vm", "pg_num", "many"), MonErrorCode.InvalidArgument, "pg_num");
        c.Refused(new PoolSet("vm", "quota_max_bytes", "10X"), MonErrorCode.InvalidArgument, "byte count");
        c.Refused(new PoolSet("vm", "quota_max_bytes", "-1"), MonErrorCode.InvalidArgument, "byte count");
        c.Refused(new PoolSet("vm", "quota_max_objects", "-5"), MonErrorCode.InvalidArgument, "whole number");
        c.Refused(new PoolSet("ec", "size", "6"), MonErrorCode.InvalidArgument, "cannot change");
        c.Refused(new PoolSet("ec", "min_size", "2"), MonErrorCode.InvalidArgument, "from 3 to size 5");
        c.Must(new PoolSet("ec", "min_size", "3"));
        c.Must(new PoolSet("vm", "pg_num", "auto"));
        Assert.True(c.State.Osd.FindPool("vm")!.PgNumAuto);
        Assert.Equal(128, c.State.Osd.FindPool("vm")!.PgNum); // 3 OSDs in, size 4: max(3, 4) * 100 / 4 = 100 → 128
    }

    [Fact]
    public void Remove_validation_and_the_delete_switch()
    {
        var c = WithOsds(1, 1);
        c.Must(new PoolCreate("vm"));
        c.Refused(new PoolRemove("nope"), MonErrorCode.NotFound, "does not exist");
        c.Must(new ConfigSet("mon_allow_pool_delete", "false"));
        c.Refused(new PoolRemove("vm"), MonErrorCode.Refused, "mon_allow_pool_delete");
        c.Must(new ConfigSet("mon_allow_pool_delete", "yes"));
        c.Must(new PoolRemove("vm"));
        Assert.Empty(c.State.Osd.Pools);
    }

    [Theory]
    [InlineData("0", 0UL)]
    [InlineData("512", 512UL)]
    [InlineData("4K", 4096UL)]
    [InlineData("10G", 10UL << 30)]
    [InlineData("3MiB", 3UL << 20)]
    [InlineData("1TB", 1UL << 40)]
    [InlineData("2p", 2UL << 50)]
    public void Byte_counts_parse(string text, ulong expected)
    {
        Assert.True(MonOperations.TryParseBytes(text, out var v));
        Assert.Equal(expected, v);
    }

    [Theory]
    [InlineData("")]
    [InlineData("G")]
    [InlineData("1X")]
    [InlineData("-1")]
    [InlineData("99999999999999999999")]
    [InlineData("99999999P")]
    public void Bad_byte_counts_do_not_parse(string text) => Assert.False(MonOperations.TryParseBytes(text, out _));
}
