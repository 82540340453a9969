using System.Collections.Concurrent;
using Appliance.Maps;
using Appliance.Maps.Protocol;
using Appliance.Osd.Protocol;

namespace Appliance.Osd.Tests.Pg;

/// <summary>
/// A PG's creation cut short: its first primary brought every member into the PG and went before it activated them.
/// The PG never took a write, so its next primary must create it and serve — not wait for a history that never
/// existed. (Members were once marked mid-backfill of the empty PG on the way; with every holder mid-backfill the PG
/// stayed incomplete or down for good, and every request on it waited until its deadline: seen as the flapping test,
/// `cluster up` probes and image tests timing out when an OSD was marked down while a pool was being created.)
/// </summary>
public sealed class CreationTests
{
    [Fact]
    public async Task A_PG_whose_first_primary_went_before_activating_anyone_goes_active_under_the_next()
    {
        await using var c = new InProcessCluster();
        for (var i = 0; i < 3; i++)
        {
            await c.StartOsdAsync(i, fresh: true);
            c.Command(new OsdBoot(i, $"127.0.0.1:{6800 + i}", "host0", 0x10000));
        }
        // Every activation a primary sends to a member is lost: each new PG gets as far as the step before it.
        var held = new ConcurrentDictionary<PgId, int>();
        c.Withhold = (from, _, type, payload) =>
        {
            if (type != OsdMessageType.PgActivate || PgUpdate.FromBytes(payload.Span) is not { Kind: PgUpdateKind.Activate } u)
            {
                return false;
            }
            held.TryAdd(u.Pg, from);
            return true;
        };
        c.Command(new PoolCreate("data", Size: 3, MinSize: 2, PgNum: 4));
        var until = DateTime.UtcNow.AddSeconds(30);
        while (held.IsEmpty)
        {
            Assert.True(DateTime.UtcNow < until, "no primary got as far as activating its members within 30 s");
            await Task.Delay(10);
        }
        var (pg, primary) = held.First();
        c.Withhold = null;

        // Its primary goes (marked down) before any member was activated: nothing was ever written to the PG.
        await c.KillAsync(primary);
        c.SetUp(primary, false);
        await c.WaitActiveCleanAsync(clean: false);

        var pool = c.Map.FindPool("data")!;
        var placement = new OsdPlacement(c.Map);
        var name = Enumerable.Range(0, 1000).Select(k => $"obj-{k}").First(n => placement.PgOf(pool, OsdPlacement.ObjectHash(n)) == pg);
        Assert.Equal(OsdResult.Ok, (await c.ExecuteAsync("data", name, [OsdOp.WriteFull("created"u8.ToArray())])).Result);
        var read = await c.ExecuteAsync("data", name, [OsdOp.Read(0, 0)]);
        Assert.Equal("created"u8.ToArray(), read.Outputs[0].Data.ToArray());
    }
}
