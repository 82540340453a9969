using System.Text;
using Appliance.Maps;
using Appliance.Maps.Protocol;
using Appliance.Osd.Pg;
using Appliance.Osd.Protocol;
using Appliance.Store;
using Appliance.Wire.Auth;

namespace Appliance.Osd.Tests.Pg;

/// <summary>
/// Past intervals in a cluster of five OSDs with two copies: when every OSD that holds a PG's newest writes is gone and
/// the PG maps to OSDs that never held it, it must not serve (it is down, naming the OSDs it waits for), and it goes
/// active with every object when one of them returns — as a stray (still out) or back in the acting set.
/// </summary>
public sealed class PastIntervalsTests
{
    private sealed record Setup(InProcessCluster Cluster, PgId Pg, int[] Gone, Dictionary<string, byte[]> Objects);

    private static async Task<Setup> LoseBothCopiesAsync()
    {
        var c = new InProcessCluster();
        await c.StartAsync(osds: 5, size: 2, minSize: 1, pgNum: 8);
        var pool = c.Map.FindPool("data")!;
        var placement = new OsdPlacement(c.Map);
        var target = placement.PgOf(pool, OsdPlacement.ObjectHash("obj-0"));
        var written = new Dictionary<string, byte[]>();
        var rng = new Random(18);
        for (var i = 0; written.Count < 12; i++)
        {
            var name = $"obj-{i}";
            if (placement.PgOf(pool, OsdPlacement.ObjectHash(name)) != target)
            {
                continue;
            }
            var data = new byte[rng.Next(1, 40_000)];
            rng.NextBytes(data);
            Assert.Equal(OsdResult.Ok, (await c.ExecuteAsync("data", name, [OsdOp.WriteFull(data)])).Result);
            written[name] = data;
        }
        // A second round, so the log holds overwrites too.
        foreach (var name in written.Keys.Take(4).ToList())
        {
            written[name] = Encoding.ASCII.GetBytes($"second version of {name}");
            Assert.Equal(OsdResult.Ok, (await c.ExecuteAsync("data", name, [OsdOp.WriteFull(written[name])])).Result);
        }
        var gone = placement.Place(pool, target.Seed).Acting;
        Assert.Equal(2, gone.Length);
        foreach (var osd in gone)
        {
            await c.KillAsync(osd);
            c.SetUp(osd, false);
        }
        // Out: the PG maps to two OSDs that never held it.
        c.Command(new OsdOut(gone));
        var now = new OsdPlacement(c.Map).Place(pool, target.Seed);
        Assert.Empty(now.Acting.Intersect(gone));
        Assert.Equal(2, now.Acting.Length);
        return new Setup(c, target, gone, written);
    }

    private static async Task<PlacementGroup> WaitPhaseAsync(InProcessCluster c, PgId pg, PgPhase phase)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var primary = new OsdPlacement(c.Map).Place(c.Map.Pools[pg.Pool], pg.Seed).Primary;
            if (c.Running.FirstOrDefault(o => o.Self == primary)?.FindPg(pg) is { } p && p.Phase == phase)
            {
                return p;
            }
            Assert.True(DateTime.UtcNow < deadline, $"{pg} not {phase} on its primary osd.{primary} after 30 s");
            await Task.Delay(10);
        }
    }

    /// <summary>A request sent straight to the PG's primary, given up after <paramref name="wait"/>: null when it
    /// was not answered by then.</summary>
    private static async Task<OsdOpReply?> TryOnceAsync(InProcessCluster c, string name, OsdOp op, TimeSpan wait)
    {
        var pool = c.Map.FindPool("data")!;
        var placement = new OsdPlacement(c.Map);
        var hash = OsdPlacement.ObjectHash(name);
        var pg = placement.PgOf(pool, hash);
        var osd = c.Osd(placement.Place(pool, pg.Seed).Primary);
        using var cts = new CancellationTokenSource(wait);
        try
        {
            return await osd.HandleClientAsync(new OsdOpRequest(9_000_000, 42, c.Map.Epoch, pg, name, hash, [op]), "client.admin",
                new EntityCaps(new Dictionary<string, string> { ["osd"] = "allow *" }), null, cts.Token);
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    private static async Task AssertDownAndNotServingAsync(Setup s)
    {
        var pg = await WaitPhaseAsync(s.Cluster, s.Pg, PgPhase.Down);
        Assert.Equal("down", pg.StateText);
        Assert.Equal(s.Gone.Order(), pg.Plan!.WaitingFor);
        var query = pg.QueryText();
        Assert.Contains($"waiting for: {string.Join(", ", s.Gone.Order().Select(o => $"osd.{o}"))}", query, StringComparison.Ordinal);
        Assert.Contains("maybe_went_rw", query, StringComparison.Ordinal);
        // Neither the stale (empty) copy is read nor a write acknowledged while it waits.
        var name = s.Objects.Keys.First();
        Assert.Null(await TryOnceAsync(s.Cluster, name, OsdOp.Read(0, 0), TimeSpan.FromSeconds(1)));
        Assert.Null(await TryOnceAsync(s.Cluster, name, OsdOp.WriteFull("lost?"u8.ToArray()), TimeSpan.FromSeconds(1)));
        Assert.Equal(PgPhase.Down, pg.Phase);
    }

    private static async Task AssertEveryObjectAsync(Setup s)
    {
        await s.Cluster.WaitActiveCleanAsync(timeoutSeconds: 90);
        foreach (var (name, data) in s.Objects)
        {
            var r = await s.Cluster.ExecuteAsync("data", name, [OsdOp.Read(0, 0)]);
            Assert.Equal(OsdResult.Ok, r.Result);
            Assert.True(data.AsSpan().SequenceEqual(r.Outputs[0].Data.Span), $"{name} reads other bytes");
        }
        // Both members of the new acting set hold every object.
        var acting = new OsdPlacement(s.Cluster.Map).Place(s.Cluster.Map.Pools[s.Pg.Pool], s.Pg.Seed).Acting;
        foreach (var osd in acting)
        {
            foreach (var (name, data) in s.Objects)
            {
                var held = await s.Cluster.Osd(osd).Store.ReadAsync(s.Pg.Collection, new ObjectId(OsdPlacement.ObjectHash(name), name));
                Assert.True(data.AsSpan().SequenceEqual(held), $"osd.{osd} holds other bytes of {name}");
            }
        }
    }

    [Fact]
    public async Task A_PG_whose_copies_are_all_gone_is_down_and_recovers_from_a_returning_stray()
    {
        var s = await LoseBothCopiesAsync();
        await using var c = s.Cluster;
        await AssertDownAndNotServingAsync(s);
        // One of them comes back but stays out: it is a stray of the PG, and the primary takes the history from it.
        var back = s.Gone[1];
        await c.StartOsdAsync(back, fresh: false);
        c.SetUp(back, true);
        await AssertEveryObjectAsync(s);
        var primary = c.Osd(new OsdPlacement(c.Map).Place(c.Map.Pools[s.Pg.Pool], s.Pg.Seed).Primary).FindPg(s.Pg)!;
        Assert.Equal(PeeringVerdict.Proceed, primary.Plan!.Verdict);
        Assert.Contains(back, primary.QueryText().Split('\n').First(l => l.StartsWith("probed:", StringComparison.Ordinal))
            .Split(", ").Select(o => int.Parse(o.Trim().Replace("probed: ", "").Replace("osd.", ""))));
        // Writes go on, and survive the next change of the acting set.
        Assert.Equal(OsdResult.Ok, (await c.ExecuteAsync("data", s.Objects.Keys.First(), [OsdOp.WriteFull("third"u8.ToArray())])).Result);
    }

    [Fact]
    public async Task A_PG_whose_copies_are_all_gone_recovers_when_one_comes_back_in()
    {
        var s = await LoseBothCopiesAsync();
        await using var c = s.Cluster;
        await AssertDownAndNotServingAsync(s);
        var back = s.Gone[0];
        await c.StartOsdAsync(back, fresh: false);
        c.SetUp(back, true);
        c.Command(new OsdIn([back]));
        await AssertEveryObjectAsync(s);
    }

    [Fact]
    public async Task A_PG_is_not_down_for_an_interval_that_never_served()
    {
        // Two copies, min_size 2: with one member left the interval cannot go rw, so when that member goes too the
        // PG waits only for the members of the last interval that served.
        await using var c = new InProcessCluster();
        await c.StartAsync(osds: 4, size: 2, minSize: 2, pgNum: 4);
        Assert.Equal(OsdResult.Ok, (await c.ExecuteAsync("data", "x", [OsdOp.WriteFull("1"u8.ToArray())])).Result);
        var pool = c.Map.FindPool("data")!;
        var pgId = new OsdPlacement(c.Map).PgOf(pool, OsdPlacement.ObjectHash("x"));
        var first = new OsdPlacement(c.Map).Place(pool, pgId.Seed).Acting;
        await c.KillAsync(first[1]);
        c.SetUp(first[1], false);
        var pg = await WaitPhaseAsync(c, pgId, PgPhase.Undersized);
        var ended = pg.Past!.Intervals[^1];
        Assert.True(ended.MaybeWentRw);
        // The undersized interval [first[0]] never served: the maps do not show it may have gone rw.
        await c.KillAsync(first[0]);
        c.SetUp(first[0], false);
        c.Command(new OsdOut(first));
        var primary = await WaitPhaseAsync(c, pgId, PgPhase.Down);
        Assert.Contains(primary.Past!.Intervals, i => i.Acting.SequenceEqual([first[0]]) && !i.MaybeWentRw);
        Assert.Equal(first.Order(), primary.Plan!.WaitingFor);
        await c.StartOsdAsync(first[0], fresh: false);
        c.SetUp(first[0], true);
        await c.WaitActiveCleanAsync();
        var r = await c.ExecuteAsync("data", "x", [OsdOp.Read(0, 0)]);
        Assert.Equal("1", Encoding.ASCII.GetString(r.Outputs[0].Data.Span));
    }
}
