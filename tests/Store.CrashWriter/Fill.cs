using System.Globalization;
using Appliance.Platform.Devices;

namespace Appliance.Store.CrashWriter;

/// <summary>
/// The store's memory-bound run (`Store.CrashWriter fill DEVICE OBJECTS CACHE_BYTES`): fills a store on DEVICE with
/// OBJECTS objects in 8 collections (two xattrs each, every 8th with a 4 KiB write and an omap key), unmounts, mounts
/// again and counts what mount read from the index, lists every collection page by page, reads a sample back and
/// runs fsck. Prints one line of figures (`OK key=value ...`) and exits 0; the test runs it under a hard GC heap
/// limit, so a store that kept per-object state in memory dies instead.
/// </summary>
internal static class Fill
{
    public static async Task<int> RunAsync(string path, long objects, long cacheBytes)
    {
        var options = new StoreOptions { IndexCacheBytes = cacheBytes, DeltaBytes = cacheBytes };
        var collections = Enumerable.Range(0, 8).Select(i => $"pg.{i}").ToArray();
        var data = new byte[4096];
        Random.Shared.NextBytes(data);
        // Data of every 8th object (4 KiB each, twice for copy-on-write), the index (~1 KiB per object with its pages
        // replaced and waiting), a 4 MiB journal.
        await using (var device = FileDevice.CreateFile(path, (64L << 20) + objects * 2048))
        {
            await ObjectStore.MkfsAsync(device, new MkfsOptions { JournalBytes = 4 << 20, CheckpointBytes = 4 << 20 });
        }
        await using (var device = FileDevice.Open(path))
        {
            await using var store = await ObjectStore.MountAsync(device, options);
            var create = new Transaction();
            foreach (var c in collections)
            {
                create.CreateCollection(c);
            }
            await store.SubmitAsync(create);
            const int perTxn = 250;
            var window = new SemaphoreSlim(4);
            var pending = new List<Task>();
            for (long first = 0; first < objects; first += perTxn)
            {
                var t = new Transaction();
                for (var i = first; i < Math.Min(objects, first + perTxn); i++)
                {
                    var (c, id) = Id(collections, i);
                    t.SetXattr(c, id, "_", BitConverter.GetBytes(i)).SetXattr(c, id, "snapset", new byte[40]);
                    if (i % 8 == 0)
                    {
                        t.Write(c, id, 0, data).OmapSet(c, id, "k", BitConverter.GetBytes(i));
                    }
                }
                await window.WaitAsync();
                pending.Add(store.SubmitAsync(t).ContinueWith(x =>
                {
                    window.Release();
                    x.GetAwaiter().GetResult();
                }, TaskScheduler.Default));
                pending.RemoveAll(x => x.IsCompletedSuccessfully);
            }
            await Task.WhenAll(pending);
        }
        await using (var device = FileDevice.Open(path))
        {
            await using var store = await ObjectStore.MountAsync(device, options);
            var mountRead = store.IndexStats.BytesRead;
            long listed = 0;
            foreach (var c in collections)
            {
                ObjectId? after = null;
                do
                {
                    var page = await store.ListAsync(c, after, 1000);
                    listed += page.Objects.Count;
                    after = page.Next;
                }
                while (after is not null);
            }
            var rng = new Random(1);
            for (var k = 0; k < 200; k++)
            {
                var i = rng.NextInt64(objects);
                var (c, id) = Id(collections, i);
                var x = await store.GetXattrAsync(c, id, "_") ?? throw new InvalidOperationException($"{c}/{id} lost its xattr");
                if (BitConverter.ToInt64(x) != i || (i % 8 == 0 && !(await store.ReadAsync(c, id)).AsSpan().SequenceEqual(data)))
                {
                    throw new InvalidOperationException($"{c}/{id} reads back wrong");
                }
            }
            var fsck = await store.FsckAsync();
            if (!fsck.IsClean)
            {
                Console.Error.WriteLine(fsck.ToString());
                return 1;
            }
            var s = store.IndexStats;
            Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"OK objects={store.StatFs().Objects} listed={listed} mountReadBytes={mountRead} peakResidentBytes={s.PeakResidentBytes} cacheBytes={cacheBytes} gcHeapBytes={GC.GetGCMemoryInfo().HeapSizeBytes}"));
        }
        return 0;
    }

    private static (string, ObjectId) Id(string[] collections, long i) =>
        (collections[i % collections.Length], new ObjectId((uint)(i * 2654435761L), $"rbd_data.1234.{i:x16}"));
}
