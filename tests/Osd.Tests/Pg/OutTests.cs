using Appliance.Maps.Protocol;
using Appliance.Osd.Pg;
using Appliance.Osd.Protocol;
using Appliance.Store;

namespace Appliance.Osd.Tests.Pg;

/// <summary>An OSD marked out: its PGs map elsewhere and peer from it as a stray, every object stays readable, and
/// it deletes its copies once they are active+clean elsewhere (and not before).</summary>
public sealed class OutTests
{
    [Fact]
    public async Task An_out_osds_pgs_move_elsewhere_with_every_object_and_its_copies_are_deleted_once_clean()
    {
        await using var c = new InProcessCluster();
        await c.StartAsync(osds: 4, size: 2, minSize: 1, pgNum: 16);
        var rng = new Random(2);
        var written = new Dictionary<string, byte[]>();
        for (var i = 0; i < 48; i++)
        {
            var data = new byte[rng.Next(1, 20_000)];
            rng.NextBytes(data);
            Assert.Equal(OsdResult.Ok, (await c.ExecuteAsync("data", $"o{i}", [OsdOp.WriteFull(data)])).Result);
            written[$"o{i}"] = data;
        }
        var held = c.Osd(1).Pgs.Where(p => p.Exists).Select(p => p.Id).ToList();
        Assert.NotEmpty(held);
        // Before anything moved, nothing of it may go: every PG it holds is one it serves.
        Assert.Equal(0, await c.Osd(1).RemoveCleanStraysAsync(CancellationToken.None));

        c.Command(new OsdOut([1]));
        var placement = new OsdPlacement(c.Map);
        Assert.All(held, pg => Assert.DoesNotContain(1, placement.Place(c.Map.Pools[pg.Pool], pg.Seed).Acting));
        await c.WaitActiveCleanAsync();
        foreach (var (name, data) in written)
        {
            var r = await c.ExecuteAsync("data", name, [OsdOp.Read(0, 0)]);
            Assert.Equal(OsdResult.Ok, r.Result);
            Assert.True(data.AsSpan().SequenceEqual(r.Outputs[0].Data.Span), $"{name} reads other bytes");
        }
        // Its copies are strays now, clean elsewhere: deleted (throttled, in the background in a daemon).
        var deleted = await c.Osd(1).RemoveCleanStraysAsync(CancellationToken.None);
        Assert.Equal(held.Count, deleted);
        Assert.DoesNotContain(c.Osd(1).Store.ListCollections(), coll => PgCollections.TryParseCollection(coll, out _));
        Assert.Empty(c.Osd(1).Pgs);
        foreach (var (name, data) in written)
        {
            var r = await c.ExecuteAsync("data", name, [OsdOp.Read(0, 0)]);
            Assert.True(data.AsSpan().SequenceEqual(r.Outputs[0].Data.Span), $"{name} reads other bytes after the strays went");
        }
        // In again: it is backfilled as a member and serves again.
        c.Command(new OsdIn([1]));
        await c.WaitActiveCleanAsync();
        Assert.Contains(c.Osd(1).Pgs, p => p.Exists);
        foreach (var (name, data) in written)
        {
            var r = await c.ExecuteAsync("data", name, [OsdOp.Read(0, 0)]);
            Assert.True(data.AsSpan().SequenceEqual(r.Outputs[0].Data.Span), $"{name} reads other bytes once osd.1 is back in");
        }
    }

    [Fact]
    public async Task A_stray_copy_is_kept_while_its_pg_is_not_clean_elsewhere()
    {
        await using var c = new InProcessCluster();
        await c.StartAsync(osds: 5, size: 2, minSize: 1, pgNum: 8);
        Assert.Equal(OsdResult.Ok, (await c.ExecuteAsync("data", "x", [OsdOp.WriteFull("keep me"u8.ToArray())])).Result);
        var pool = c.Map.FindPool("data")!;
        var pg = new OsdPlacement(c.Map).PgOf(pool, OsdPlacement.ObjectHash("x"));
        var acting = new OsdPlacement(c.Map).Place(pool, pg.Seed).Acting;
        c.Command(new OsdOut([acting[1]]));
        await c.WaitActiveCleanAsync();
        var stray = c.Osd(acting[1]);
        Assert.Equal(PgPhase.Stray, stray.FindPg(pg)!.Phase);
        // The PG's new second member dies: active but undersized, not clean. The stray's copy stays.
        var other = new OsdPlacement(c.Map).Place(pool, pg.Seed).Acting.First(o => o != acting[0]);
        await c.KillAsync(other);
        c.SetUp(other, false);
        await c.WaitActiveCleanAsync(clean: false);
        await stray.RemoveCleanStraysAsync(CancellationToken.None);
        Assert.NotNull(stray.FindPg(pg));
        Assert.NotNull(stray.Store.Stat(pg.Collection, new ObjectId(OsdPlacement.ObjectHash("x"), "x")));
        // Clean again: now it goes.
        await c.StartOsdAsync(other, fresh: false);
        c.SetUp(other, true);
        await c.WaitActiveCleanAsync();
        await stray.RemoveCleanStraysAsync(CancellationToken.None);
        Assert.Null(stray.FindPg(pg));
        Assert.False(stray.Store.CollectionExists(pg.Collection));
        var r = await c.ExecuteAsync("data", "x", [OsdOp.Read(0, 0)]);
        Assert.Equal("keep me", System.Text.Encoding.ASCII.GetString(r.Outputs[0].Data.Span));
    }

    [Fact]
    public async Task Every_pg_of_a_removed_pool_is_deleted()
    {
        await using var c = new InProcessCluster();
        var pool = await c.StartAsync(osds: 3, size: 2, minSize: 1, pgNum: 8);
        for (var i = 0; i < 16; i++)
        {
            Assert.Equal(OsdResult.Ok, (await c.ExecuteAsync("data", $"p{i}", [OsdOp.WriteFull(new byte[1000])])).Result);
        }
        c.Command(new ConfigSet("mon_allow_pool_delete", "true"));
        c.Command(new PoolRemove("data"));
        foreach (var osd in c.Running)
        {
            await osd.RemoveCleanStraysAsync(CancellationToken.None);
            Assert.DoesNotContain(osd.Store.ListCollections(), coll => PgCollections.TryParseCollection(coll, out var id) && id.Pool == pool.Id);
            Assert.Empty(osd.Pgs);
        }
    }
}
