using Appliance.Maps;
using Appliance.Osd.Pg;
using Appliance.Osd.Protocol;
using Appliance.Platform.Devices;
using Appliance.Store;

namespace Appliance.Osd.Tests.Pg;

/// <summary>What a PG keeps on its OSD's store, read back as a start reads it.</summary>
public class PgMetaTests
{
    private static PgLogEntry Entry(uint epoch, ulong version) => new(new Eversion(epoch, version), new ReqId("client.t", 1, version), [], 0, version, 0);

    [Fact]
    public async Task A_log_entry_at_or_before_the_tail_is_history_and_does_not_stop_the_pg_from_loading()
    {
        // What a member that took a primary's tail in a merge left before merges trimmed their own disk: entries
        // older than its tail (seen in CI: "log entry 40'502 is not after the head 40'1503", the OSD did not start).
        var dev = new MemoryDevice(64L << 20, 4096, "osd.0");
        await ObjectStore.MkfsAsync(dev, new MkfsOptions { OsdId = 0 });
        var store = await ObjectStore.MountAsync(dev);
        var pg = new PgId(1, 3);
        var t = new Transaction();
        PgMeta.CreateCollection(t, pg, new PgInfo(pg, new Eversion(40, 1504), new Eversion(40, 1504), new Eversion(40, 1503), 40, 40));
        PgMeta.AppendLog(t, pg, Entry(40, 502));
        PgMeta.AppendLog(t, pg, Entry(40, 1503));
        PgMeta.AppendLog(t, pg, Entry(40, 1504));
        await store.SubmitAsync(t);

        var (info, log, _) = PgMeta.Load(store, pg)!.Value;
        Assert.Equal(new Eversion(40, 1503), log.Tail);
        Assert.Equal([new Eversion(40, 1504)], log.Entries.Select(e => e.Version));
        Assert.Equal(new Eversion(40, 1504), info.LastUpdate);

        // And what a merge now removes: every entry through the tail, none after it.
        t = new Transaction();
        PgMeta.TrimLog(t, pg, Eversion.Zero, new Eversion(40, 1503));
        await store.SubmitAsync(t);
        var keys = store.OmapGet(pg.Collection, PgMeta.MetaObject, null, null, 100).Select(kv => kv.Key).Where(k => k.StartsWith(PgMeta.LogPrefix, StringComparison.Ordinal));
        Assert.Equal([PgMeta.LogKey(new Eversion(40, 1504))], keys);
        await store.DisposeAsync();
    }
}
