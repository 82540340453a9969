using Appliance.Maps;
using Appliance.Maps.Protocol;
using Appliance.Monitor.Maps;
using Appliance.Wire.Codec;

namespace Appliance.Monitor.Tests.Maps;

/// <summary>What peering and the OSDs need from the osdmap: PG ids, cluster addresses and up_thru, pgp_num, pg_temp and
/// primary_temp, the blocklist, `osd create`, immediate failure reports, quota flags.</summary>
public class PeeringMapTests
{
    private static Cluster ThreeOsds()
    {
        var c = new Cluster();
        c.Boot(0, "h0");
        c.Boot(1, "h1");
        c.Boot(2, "h2");
        return c;
    }

    [Theory]
    [InlineData(2, 0x1fu, "2.1f")]
    [InlineData(0, 0u, "0.0")]
    [InlineData(17, 0xffffffffu, "17.ffffffff")]
    public void Pg_ids_print_and_parse_as_ceph_writes_them(int pool, uint seed, string text)
    {
        Assert.Equal(text, new PgId(pool, seed).ToString());
        Assert.Equal(new PgId(pool, seed), PgId.Parse(text));
        Assert.Equal(new PgId(pool, seed), PgId.Parse(text.ToUpperInvariant()));
    }

    [Theory]
    [InlineData("")]
    [InlineData("2")]
    [InlineData("2.")]
    [InlineData(".1f")]
    [InlineData("-1.0")]
    [InlineData("2.1g")]
    [InlineData("2.123456789")]
    [InlineData("2.1f.3")]
    public void Malformed_pg_ids_are_refused(string text)
    {
        Assert.False(PgId.TryParse(text, out _));
        Assert.Contains("2.1f", Assert.Throws<FormatException>(() => PgId.Parse(text)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Pg_ids_order_by_pool_then_seed()
    {
        PgId[] ids = [new(2, 1), new(1, 0x10), new(1, 2), new(10, 0)];
        Assert.Equal([new(1, 2), new(1, 0x10), new(2, 1), new(10, 0)], ids.Order().ToArray());
    }

    [Fact]
    public void Boot_records_the_cluster_address_and_the_uuid_and_a_version_1_entry_reads_with_one_address()
    {
        var c = new Cluster();
        var uuid = Guid.NewGuid();
        c.Must(new OsdBoot(4, "10.0.0.4:6800", "h4", 0x10000, "192.168.0.4:6801", uuid));
        var osd = c.State.Osd.FindOsd(4)!;
        Assert.Equal(("10.0.0.4:6800", "192.168.0.4:6801", uuid), (osd.Address, osd.ClusterAddress, osd.Uuid));
        // A new cluster address alone is a new epoch; the same boot again is not.
        c.Must(new OsdBoot(4, "10.0.0.4:6800", "h4", 0x10000, "192.168.0.4:6802", uuid));
        Assert.Null(c.Run(new OsdBoot(4, "10.0.0.4:6800", "h4", 0x10000, "192.168.0.4:6802", uuid)).Increment);
        // Another disk claiming the id is refused.
        c.Refused(new OsdBoot(4, "10.0.0.4:6800", "h4", 0x10000, null, Guid.NewGuid()), MonErrorCode.Refused, "belongs to another OSD");
        // Without a cluster address the public one serves both.
        c.Boot(5, "h5");
        Assert.Equal("10.1.0.5:6800", c.State.Osd.FindOsd(5)!.ClusterAddress);

        // Version 1 of the entry (before cluster addresses): the cluster address reads as the public one.
        using var w = new WireWriter();
        var m = w.BeginStruct(1, 1);
        w.WriteI32(9);
        w.WriteString("10.0.0.9:6800");
        w.WriteString("h9");
        w.WriteBool(true);
        w.WriteBool(true);
        w.WriteU32(0x10000);
        w.WriteU32(3);
        w.WriteI64(0);
        w.WriteBool(false);
        w.EndStruct(m);
        var r = new WireReader(w.WrittenSpan);
        var old = OsdInfo.Decode(ref r);
        Assert.Equal(new OsdInfo(9, "10.0.0.9:6800", "h9", true, true, 0x10000, 3, 0, false, "10.0.0.9:6800", 0, Guid.Empty), old);
    }

    [Fact]
    public void Osd_alive_raises_up_thru_to_the_next_epoch_once()
    {
        var c = ThreeOsds();
        var epoch = c.State.Osd.Epoch;
        Assert.Equal(0u, c.State.Osd.FindOsd(1)!.UpThru);
        c.Must(new OsdAlive(1, epoch));
        Assert.Equal(epoch + 1, c.State.Osd.Epoch);
        Assert.Equal(epoch + 1, c.State.Osd.FindOsd(1)!.UpThru);
        // Asking for what it has changes nothing; asking past the next epoch is a mistake.
        Assert.Null(c.Run(new OsdAlive(1, epoch + 1)).Increment);
        c.Refused(new OsdAlive(1, c.State.Osd.Epoch + 2), MonErrorCode.InvalidArgument, "past the next epoch");
        c.Refused(new OsdAlive(9, 1), MonErrorCode.NotFound);
        c.Must(new OsdFailureReport(2, 0, Immediate: true));
        c.Refused(new OsdAlive(2, c.State.Osd.Epoch), MonErrorCode.Refused, "marked down");
        // up_thru survives a reboot (it only grows).
        c.Boot(1, "h1", 0x20000);
        Assert.Equal(epoch + 1, c.State.Osd.FindOsd(1)!.UpThru);
    }

    [Fact]
    public void Pgp_num_follows_pg_num_and_may_be_set_below_it()
    {
        var c = ThreeOsds();
        c.Must(new PoolCreate("vm", PgNum: 64));
        Assert.Equal(64, c.State.Osd.FindPool("vm")!.PgpNum);
        c.Must(new PoolSet("vm", "pgp_num", "32"));
        Assert.Equal(32, c.State.Osd.FindPool("vm")!.PgpNum);
        c.Refused(new PoolSet("vm", "pgp_num", "65"), MonErrorCode.InvalidArgument, "from 1 to its pg_num 64");
        c.Refused(new PoolSet("vm", "pgp_num", "0"), MonErrorCode.InvalidArgument);
        // pg_num grows: pgp_num stays where it was set; pg_num shrinks below it: pgp_num comes down with it.
        c.Must(new PoolSet("vm", "pg_num", "128"));
        Assert.Equal(32, c.State.Osd.FindPool("vm")!.PgpNum);
        c.Must(new PoolSet("vm", "pg_num", "16"));
        Assert.Equal(16, c.State.Osd.FindPool("vm")!.PgpNum);
        // Equal, it follows.
        c.Must(new PoolSet("vm", "pg_num", "256"));
        Assert.Equal(256, c.State.Osd.FindPool("vm")!.PgpNum);
    }

    [Fact]
    public void Pg_temp_and_primary_temp_override_the_crush_mapping_and_go_with_their_pool_pg_or_osd()
    {
        var c = ThreeOsds();
        c.Boot(3, "h3");
        c.Must(new PoolCreate("vm", Size: 2, PgNum: 8));
        var pool = c.State.Osd.FindPool("vm")!.Id;
        var pg = new PgId(pool, 5);
        var crush = c.State.Osd.MapPg(pg);
        Assert.Equal(2, crush.Up.Count);
        Assert.Equal(crush.Up, crush.Acting);
        Assert.Equal(crush.Up[0], crush.ActingPrimary);

        // Peering asks for the old set while the new one backfills, with the second member as primary.
        var others = new[] { 0, 1, 2, 3 }.Except(crush.Up).ToArray();
        int[] temp = [others[0], others[1]];
        c.Must(new PgTemp(crush.Up[0], [new PgTempChange(pg, temp, temp[1])]));
        var mapped = c.State.Osd.MapPg(pg);
        Assert.Equal(crush.Up, mapped.Up);
        Assert.Equal(temp, mapped.Acting);
        Assert.Equal(temp[1], mapped.ActingPrimary);
        Assert.Equal(crush.Up[0], mapped.UpPrimary);
        Assert.Null(c.Run(new PgTemp(0, [new PgTempChange(pg, temp, temp[1])])).Increment);

        // A down member leaves the acting set; the primary_temp on a down OSD falls back to the first acting OSD.
        c.Must(new OsdFailureReport(temp[1], temp[0], Immediate: true));
        mapped = c.State.Osd.MapPg(pg);
        Assert.Equal([temp[0]], mapped.Acting);
        Assert.Equal(temp[0], mapped.ActingPrimary);
        Assert.DoesNotContain(temp[1], mapped.Up);

        // Validation: no such PG or OSD, a duplicate, too many, a primary outside the set; nothing changes.
        c.Refused(new PgTemp(0, [new PgTempChange(new PgId(pool, 8), [0])]), MonErrorCode.NotFound, "does not exist");
        c.Refused(new PgTemp(0, [new PgTempChange(new PgId(99, 0), [0])]), MonErrorCode.NotFound, "does not exist");
        c.Refused(new PgTemp(0, [new PgTempChange(pg, [0, 9])]), MonErrorCode.NotFound, "osd.9");
        c.Refused(new PgTemp(0, [new PgTempChange(pg, [0, 0])]), MonErrorCode.InvalidArgument, "twice");
        c.Refused(new PgTemp(0, [new PgTempChange(pg, [0, 1, 2])]), MonErrorCode.InvalidArgument, "size 2");
        c.Refused(new PgTemp(0, [new PgTempChange(pg, [0, 1], 2)]), MonErrorCode.InvalidArgument, "not in its pg_temp");

        // Cleared explicitly.
        c.Must(new PgTemp(0, [new PgTempChange(pg, [])]));
        Assert.False(c.State.Osd.PgTemp.ContainsKey(pg));
        Assert.False(c.State.Osd.PrimaryTemp.ContainsKey(pg));

        // Cleared with the PG (pg_num shrinks past it) and with the pool.
        c.Must(new PgTemp(0, [new PgTempChange(new PgId(pool, 1), [0, 1], 1), new PgTempChange(new PgId(pool, 6), [2, 0])]));
        Assert.Equal(2, c.State.Osd.PgTemp.Count);
        c.Must(new PoolSet("vm", "pg_num", "4"));
        Assert.Equal([new PgId(pool, 1)], c.State.Osd.PgTemp.Keys);
        Assert.Equal(1, c.State.Osd.PrimaryTemp[new PgId(pool, 1)]);
        c.Must(new PoolRemove("vm"));
        Assert.Empty(c.State.Osd.PgTemp);
        Assert.Empty(c.State.Osd.PrimaryTemp);
    }

    [Fact]
    public void An_erasure_coded_pg_keeps_each_shards_position_when_an_osd_is_down_and_objects_map_to_pgs_by_stable_mod()
    {
        var c = ThreeOsds();
        c.Must(new PoolCreate("ec", PoolType.Erasure, K: 2, M: 1, PgNum: 16));
        var pool = c.State.Osd.FindPool("ec")!.Id;
        var pg = new PgId(pool, 7);
        var before = c.State.Osd.MapPg(pg);
        Assert.Equal(3, before.Up.Count);
        Assert.Equal([0, 1, 2], before.Up.Order().ToArray());
        var victim = before.Up[1];
        c.Must(new OsdFailureReport(victim, before.Up[0], Immediate: true));
        var after = c.State.Osd.MapPg(pg);
        // Shard 1 has no OSD now; shards 0 and 2 stay where they were.
        Assert.Equal([before.Up[0], OsdMap.NoOsd, before.Up[2]], after.Up);
        Assert.Equal(before.Up[0], after.UpPrimary);

        // Objects: the PG is the name's hash by stable_mod, always below pg_num, and the same on every call.
        var seen = new HashSet<uint>();
        for (var i = 0; i < 200; i++)
        {
            var p = c.State.Osd.ObjectToPg(pool, $"obj-{i}");
            Assert.Equal(pool, p.Pool);
            Assert.True(p.Seed < 16);
            Assert.Equal(p, c.State.Osd.ObjectToPg(pool, $"obj-{i}"));
            seen.Add(p.Seed);
        }
        Assert.Equal(16, seen.Count);
        Assert.Throws<ArgumentException>(() => c.State.Osd.MapPg(new PgId(pool, 16)));
        Assert.Throws<ArgumentException>(() => c.State.Osd.ObjectToPg(pool + 1, "x"));
    }

    [Fact]
    public void An_increment_naming_an_osd_that_is_removed_drops_its_pg_temp()
    {
        var c = ThreeOsds();
        c.Must(new PoolCreate("vm", Size: 2, PgNum: 4));
        var pool = c.State.Osd.FindPool("vm")!.Id;
        c.Must(new PgTemp(0, [new PgTempChange(new PgId(pool, 0), [0, 2], 2), new PgTempChange(new PgId(pool, 1), [0, 1])]));
        var map = c.State.Osd;
        var next = map.Apply(new OsdMapIncrement(map.Epoch + 1, 0, [], [2], [], [], null, null));
        Assert.Equal([new PgId(pool, 1)], next.PgTemp.Keys);
        Assert.Empty(next.PrimaryTemp);
    }

    [Fact]
    public void Blocklist_entries_are_added_audited_removed_and_expire_on_the_leaders_tick()
    {
        var c = ThreeOsds();
        // The ticks below come a minute apart without beacons: only the blocklist may change.
        c.Must(new ConfigSet("mon_osd_report_timeout", "1h"));
        var add = c.Must(new OsdBlocklistAdd("client.vm:4711", 60));
        Assert.Contains("osd blocklist add client.vm:4711 60", add.Increment!.Audit!.Entries.Single().Command, StringComparison.Ordinal);
        Assert.True(c.State.Osd.IsBlocklisted("client.vm:4711"));
        Assert.False(c.State.Osd.IsBlocklisted("client.vm:4712"));
        Assert.Equal((c.Now + TimeSpan.FromSeconds(60)).ToUnixTimeMilliseconds(), c.State.Osd.Blocklist["client.vm:4711"]);
        // The default duration.
        c.Must(new OsdBlocklistAdd("client.admin:1"));
        Assert.Equal((c.Now + TimeSpan.FromHours(1)).ToUnixTimeMilliseconds(), c.State.Osd.Blocklist["client.admin:1"]);

        c.Refused(new OsdBlocklistAdd("client.vm"), MonErrorCode.InvalidArgument, "client.vm:4711");
        c.Refused(new OsdBlocklistAdd("client.vm:x"), MonErrorCode.InvalidArgument);
        c.Refused(new OsdBlocklistAdd("nodot:5"), MonErrorCode.InvalidArgument);
        c.Refused(new OsdBlocklistAdd("client.vm:5", -1), MonErrorCode.InvalidArgument);
        c.Refused(new OsdBlocklistRemove("client.vm:5"), MonErrorCode.NotFound, "not blocklisted");

        // The tick before the expiry changes nothing; after it, the entry goes (and only that one).
        c.Now += TimeSpan.FromSeconds(59);
        Assert.Null(c.Run(new OsdTick(), "mon.a").Increment);
        c.Now += TimeSpan.FromSeconds(1);
        c.Must(new OsdTick(), "mon.a");
        Assert.False(c.State.Osd.IsBlocklisted("client.vm:4711"));
        Assert.True(c.State.Osd.IsBlocklisted("client.admin:1"));
        var rm = c.Must(new OsdBlocklistRemove("client.admin:1"));
        Assert.NotNull(rm.Increment!.Audit);
        Assert.Empty(c.State.Osd.Blocklist);
    }

    [Fact]
    public void Osd_create_allocates_ids_is_idempotent_on_the_uuid_and_its_osd_boots_in()
    {
        var c = new Cluster();
        var (u0, u1) = (Guid.NewGuid(), Guid.NewGuid());
        var o0 = c.Must(new OsdCreate(u0, Cluster.Key(10)));
        Assert.Equal(0, OsdCreate.ParseCreatedId(new MonReply(MonReplyStatus.Ok, 0, o0.Message, Data: o0.Data)));
        Assert.NotNull(o0.Increment!.Audit);
        var entity = c.State.Auth.Find("osd.0")!;
        Assert.Equal(Cluster.Key(10), entity.Key);
        Assert.Equal("allow rx", entity.Caps["mon"]);
        var osd = c.State.Osd.FindOsd(0)!;
        Assert.Equal((false, false, true, u0), (osd.Up, osd.In, osd.AutoOut, osd.Uuid));
        // Not booted yet: health does not count it down or out.
        Assert.DoesNotContain(ClusterHealth.Summarize(c.State).Checks, h => h.Message.Contains("osd.0", StringComparison.Ordinal));

        // A retry (same uuid, same key) answers the same id and changes nothing; another key for that uuid is refused.
        var retry = c.Run(new OsdCreate(u0, Cluster.Key(10)));
        Assert.True(retry.Ok);
        Assert.Null(retry.Increment);
        Assert.Equal(0, OsdCreate.ParseCreatedId(new MonReply(MonReplyStatus.Ok, 0, retry.Message, Data: retry.Data)));
        c.Refused(new OsdCreate(u0, Cluster.Key(11)), MonErrorCode.AlreadyExists, "fresh uuid");

        // The next id skips those taken by the map or by an entity; a given id must be free.
        c.Must(new AuthAdd("osd.1", Cluster.Caps(("mon", "allow rx")), Cluster.Key(12)));
        var o2 = c.Must(new OsdCreate(u1, Cluster.Key(13)));
        Assert.Equal(2, BitConverter.ToInt32(o2.Data));
        c.Refused(new OsdCreate(Guid.NewGuid(), Cluster.Key(14), 2), MonErrorCode.AlreadyExists);
        c.Refused(new OsdCreate(Guid.NewGuid(), Cluster.Key(14), 1), MonErrorCode.AlreadyExists);
        c.Refused(new OsdCreate(Guid.Empty, Cluster.Key(14)), MonErrorCode.InvalidArgument, "uuid");
        Assert.Equal(7, BitConverter.ToInt32(c.Must(new OsdCreate(Guid.NewGuid(), Cluster.Key(15), 7)).Data));

        // Its first boot brings it up and in and places it in CRUSH under its host; another disk is refused.
        c.Refused(new OsdBoot(0, "10.1.0.0:6800", "h0", 0x10000, null, Guid.NewGuid()), MonErrorCode.Refused, "another OSD");
        c.Must(new OsdBoot(0, "10.1.0.0:6800", "h0", 0x10000, "10.2.0.0:6800", u0));
        osd = c.State.Osd.FindOsd(0)!;
        Assert.Equal((true, true, false, u0), (osd.Up, osd.In, osd.AutoOut, osd.Uuid));
        Assert.True(c.State.Osd.Crush.TryGetItemId("h0", out var host));
        Assert.Equal([0], c.State.Osd.Crush.GetBucket(host)!.Items);
    }

    [Fact]
    public void A_refused_connection_marks_an_osd_down_at_once_where_a_heartbeat_report_waits_for_other_hosts()
    {
        var c = ThreeOsds();
        c.Must(new ConfigSet("mon_osd_min_down_reporters", "2"));
        Assert.Null(c.Run(new OsdFailureReport(2, 0)).Increment);
        Assert.True(c.State.Osd.FindOsd(2)!.Up);
        var o = c.Must(new OsdFailureReport(2, 0, Immediate: true));
        Assert.Contains("connection refused", o.Message, StringComparison.Ordinal);
        Assert.False(c.State.Osd.FindOsd(2)!.Up);
        Assert.Empty(c.Liveness.ReportsAgainst(2));
        // A down reporter's word does not count.
        c.Refused(new OsdFailureReport(1, 2, Immediate: true), MonErrorCode.Refused, "marked down");
    }

    [Fact]
    public void Quota_flags_are_set_and_cleared_per_pool()
    {
        var c = ThreeOsds();
        c.Must(new PoolCreate("vm", QuotaMaxObjects: 10));
        c.Must(new PoolCreate("fs"));
        var (vm, fs) = (c.State.Osd.FindPool("vm")!.Id, c.State.Osd.FindPool("fs")!.Id);
        c.Must(new PoolQuotaFlags(new Dictionary<int, bool> { [vm] = true, [fs] = false, [99] = true }));
        Assert.Equal(PoolFlags.FullQuota, c.State.Osd.FindPool("vm")!.Flags);
        Assert.Equal(PoolFlags.None, c.State.Osd.FindPool("fs")!.Flags);
        Assert.Contains(ClusterHealth.Summarize(c.State).Checks, h => h.Message.StartsWith("pool 'vm' is full (quota)", StringComparison.Ordinal));
        Assert.Null(c.Run(new PoolQuotaFlags(new Dictionary<int, bool> { [vm] = true })).Increment);
        c.Must(new PoolQuotaFlags(new Dictionary<int, bool> { [vm] = false }));
        Assert.Equal(PoolFlags.None, c.State.Osd.FindPool("vm")!.Flags);
        Assert.DoesNotContain(ClusterHealth.Summarize(c.State).Checks, h => h.Message.Contains("full", StringComparison.Ordinal));
    }

    [Fact]
    public void Osd_fullness_is_set_per_osd_and_shows_in_health()
    {
        var c = ThreeOsds();
        c.Must(new OsdFullFlags(new Dictionary<int, OsdFullness> { [0] = OsdFullness.NearFull, [1] = OsdFullness.Full, [99] = OsdFullness.Full }));
        Assert.Equal([OsdFullness.NearFull, OsdFullness.Full, OsdFullness.None], [.. Enumerable.Range(0, 3).Select(i => c.State.Osd.FindOsd(i)!.Fullness)]);
        var health = ClusterHealth.Summarize(c.State);
        Assert.Equal(HealthStatus.Error, health.Status);
        Assert.Contains(health.Checks, h => h.Severity == HealthStatus.Error && h.Message.StartsWith("1 OSD(s) full: osd.1", StringComparison.Ordinal));
        Assert.Contains(health.Checks, h => h.Severity == HealthStatus.Warn && h.Message.StartsWith("1 OSD(s) nearly full: osd.0", StringComparison.Ordinal));
        Assert.Null(c.Run(new OsdFullFlags(new Dictionary<int, OsdFullness> { [1] = OsdFullness.Full })).Increment);
        c.Must(new OsdFullFlags(new Dictionary<int, OsdFullness> { [0] = OsdFullness.None, [1] = OsdFullness.None }));
        Assert.DoesNotContain(ClusterHealth.Summarize(c.State).Checks, h => h.Message.Contains("full", StringComparison.Ordinal));
        // The flag survives the map's encoding.
        c.Must(new OsdFullFlags(new Dictionary<int, OsdFullness> { [2] = OsdFullness.NearFull }));
        Assert.Equal(OsdFullness.NearFull, OsdMap.FromBytes(c.State.Osd.ToBytes()).FindOsd(2)!.Fullness);
    }

    [Fact]
    public void The_new_commands_and_map_fields_round_trip()
    {
        var c = ThreeOsds();
        c.Must(new PoolCreate("vm", Size: 2, PgNum: 8));
        var pool = c.State.Osd.FindPool("vm")!.Id;
        c.Must(new PgTemp(0, [new PgTempChange(new PgId(pool, 3), [1, 0], 0)]));
        c.Must(new OsdBlocklistAdd("client.vm:1", 100));
        c.Must(new PoolSet("vm", "pgp_num", "4"));
        c.Must(new PoolQuotaFlags(new Dictionary<int, bool> { [pool] = true }));
        var bytes = c.State.Osd.ToBytes();
        var back = OsdMap.FromBytes(bytes);
        Assert.Equal(bytes, back.ToBytes());
        Assert.Equal([1, 0], back.PgTemp[new PgId(pool, 3)].ToArray());
        Assert.Equal(0, back.PrimaryTemp[new PgId(pool, 3)]);
        Assert.True(back.IsBlocklisted("client.vm:1"));
        Assert.Equal((4, PoolFlags.FullQuota), (back.Pools[pool].PgpNum, back.Pools[pool].Flags));
        // Replaying the increments from the first map gives the same bytes.
        var replay = c.Initial.Osd;
        foreach (var inc in c.Increments.Where(i => i.Osd is not null))
        {
            var r = new WireReader(MapCodec.ToBytes(inc.Osd!.Encode));
            replay = replay.Apply(OsdMapIncrement.Decode(ref r));
        }
        Assert.Equal(bytes, replay.ToBytes());

        MonCommand[] commands =
        [
            new OsdBoot(3, "a:1", "h", 5, "b:2", Guid.NewGuid()), new OsdBoot(3, "a:1", "h", 5), new OsdAlive(2, 7),
            new OsdFailureReport(1, 2, true), new OsdFailureReport(1, 2),
            new PgTemp(4, [new PgTempChange(new PgId(1, 0x1f), [3, OsdMap.NoOsd, 4], 4), new PgTempChange(new PgId(2, 0), [])]),
            new OsdBlocklistAdd("client.x:9", 30), new OsdBlocklistRemove("client.x:9"),
            new OsdCreate(Guid.NewGuid(), Cluster.Key(3), 5), new OsdCreate(Guid.NewGuid(), Cluster.Key(4)),
            new PoolQuotaFlags(new Dictionary<int, bool> { [1] = true, [2] = false }),
            new OsdFullFlags(new Dictionary<int, OsdFullness> { [0] = OsdFullness.Full, [2] = OsdFullness.NearFull, [3] = OsdFullness.None }),
        ];
        foreach (var command in commands)
        {
            using var w = new WireWriter();
            MonCommandCodec.Encode(w, command);
            var r = new WireReader(w.WrittenSpan);
            var decoded = MonCommandCodec.Decode(ref r);
            r.ExpectEnd("command");
            Assert.Equal(command.Describe(), decoded.Describe());
            Assert.Equal(w.WrittenSpan.ToArray(), Encode(decoded));
        }
    }

    private static byte[] Encode(MonCommand command)
    {
        using var w = new WireWriter();
        MonCommandCodec.Encode(w, command);
        return w.ToArray();
    }
}
