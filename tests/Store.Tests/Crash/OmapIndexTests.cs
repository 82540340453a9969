using Appliance.Platform.Devices;
using Xunit.Abstractions;

namespace Appliance.Store.Tests.Crash;

/// <summary>
/// Omap in the index, at a size where the tree is several levels deep and a 16-page cache must evict: power cuts
/// at random moments while transactions set, remove and range-remove keys (a store holds exactly a prefix of the
/// submitted transactions, at least every acknowledged one, and passes fsck), and a damaged index page is reported
/// by fsck and by the read that meets it, never skipped; a remount reads the journal and the checkpoint, not the index.
/// </summary>
public class OmapIndexTests(ITestOutputHelper output)
{
    private const int Objects = 3;
    private static readonly StoreOptions TinyCache = new() { IndexCacheBytes = 16 * 4096 };

    /// <summary>Transaction n of the workload (n ≥ 1), applied to <paramref name="model"/> too. Transactions 1..
    /// <see cref="Fill"/> fill the objects; later ones churn.</summary>
    private static Transaction Generate(int seed, long n, List<SortedDictionary<string, byte[]>> model)
    {
        var rng = new Random(HashCode.Combine(seed, n));
        var t = new Transaction();
        if (n == 1)
        {
            t.CreateCollection("pg");
        }
        for (var o = 0; o < Objects; o++)
        {
            t.Touch("pg", Name(o));
        }
        var obj = (int)(n % Objects);
        var omap = model[obj];
        var ops = n <= Fill ? 400 : rng.Next(1, 200);
        for (var i = 0; i < ops; i++)
        {
            var what = n <= Fill ? 0 : rng.Next(10);
            var key = $"{rng.Next(KeySpace):d6}.{new string('k', rng.Next(0, 40))}";
            if (what < 6)
            {
                var v = TestSupport.Bytes(rng.Next(1, what == 5 ? 3000 : 120), rng.Next());
                t.OmapSet("pg", Name(obj), key, v);
                omap[key] = v;
            }
            else if (what < 9)
            {
                t.OmapRemove("pg", Name(obj), key);
                omap.Remove(key);
            }
            else
            {
                var from = $"{rng.Next(KeySpace):d6}";
                var to = $"{int.Parse(from, System.Globalization.CultureInfo.InvariantCulture) + rng.Next(1, 300):d6}";
                t.OmapRemoveRange("pg", Name(obj), from, to);
                foreach (var k in omap.Keys.Where(k => string.CompareOrdinal(k, from) >= 0 && string.CompareOrdinal(k, to) < 0).ToList())
                {
                    omap.Remove(k);
                }
            }
        }
        t.SetXattr("pg", "marker", "n", BitConverter.GetBytes(n));
        return t;
    }

    private const int Fill = 30;
    private const int KeySpace = 40_000;

    private static string Name(int o) => $"obj{o}";

    private static List<SortedDictionary<string, byte[]>> NewModel() =>
        [.. Enumerable.Range(0, Objects).Select(_ => new SortedDictionary<string, byte[]>(StringComparer.Ordinal))];

    private static long Marker(ObjectStore store) =>
        store.Stat("pg", "marker") is null ? 0 : BitConverter.ToInt64(store.GetXattr("pg", "marker", "n"));

    private static async Task AssertSameAsync(ObjectStore store, List<SortedDictionary<string, byte[]>> model, string context)
    {
        for (var o = 0; o < Objects; o++)
        {
            // In pages, as the OSD reads a PG log: the cursor is the last key of the page before.
            var got = new List<KeyValuePair<string, byte[]>>();
            string? after = null;
            while (true)
            {
                var page = await store.OmapGetAsync("pg", Name(o), startAfter: after, limit: 700);
                got.AddRange(page);
                if (page.Count < 700)
                {
                    break;
                }
                after = page[^1].Key;
            }
            Assert.True(got.Select(kv => kv.Key).SequenceEqual(model[o].Keys), $"{context}: {Name(o)} has {got.Count} keys, the model {model[o].Count}");
            foreach (var (k, v) in got)
            {
                Assert.True(v.AsSpan().SequenceEqual(model[o][k]), $"{context}: {Name(o)}/{k} differs");
            }
            var probe = model[o].Keys.Skip(model[o].Count / 2).FirstOrDefault();
            if (probe is not null)
            {
                Assert.Equal(model[o][probe], await store.OmapGetValueAsync("pg", Name(o), probe));
                var prefix = probe[..3];
                Assert.True((await store.OmapGetAsync("pg", Name(o), prefix: prefix)).Select(kv => kv.Key)
                    .SequenceEqual(model[o].Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal))), $"{context}: prefix {prefix}");
            }
        }
    }

    [Fact]
    public async Task A_deep_index_with_a_small_cache_survives_power_cuts()
    {
        var seed = TestSupport.Seed(output, nameof(A_deep_index_with_a_small_cache_survives_power_cuts));
        var rng = new Random(seed);
        var inner = new MemoryDevice(64 << 20, 4096);
        await ObjectStore.MkfsAsync(inner, TestSupport.Small(journal: 1 << 20, checkpoint: 256 << 10));
        var states = new Dictionary<long, List<SortedDictionary<string, byte[]>>> { [0] = NewModel() };
        long held = 0;
        var cuts = TestSupport.Soak ? 200 : 24;
        var deepest = 0;
        for (var cut = 0; cut < cuts; cut++)
        {
            var fi = new FaultInjectingDevice(inner, rng.Next());
            var store = await ObjectStore.MountAsync(new YieldingDevice(fi, rng.Next()), TinyCache);
            var marker = Marker(store);
            var context = $"seed {seed} cut {cut} marker {marker}";
            Assert.True(marker >= held, $"{context}: store holds transaction {marker} but {held} was acknowledged");
            Assert.True(states.ContainsKey(marker), $"{context}: marker {marker} was never submitted");
            var model = states[marker];
            if (marker > 0 && (cut % 4 == 0 || cut == cuts - 1))
            {
                await AssertSameAsync(store, model, context);
                var report = await store.FsckAsync();
                Assert.True(report.IsClean, $"{context}: fsck: {report}");
                output.WriteLine($"{context}: {string.Join("; ", report.Notes)}");
            }
            deepest = Math.Max(deepest, store.IndexHeightForTests);
            held = marker;
            states = new() { [marker] = model };

            // Fill first (back to back, acknowledged), then a few churning transactions and a cut at a random moment.
            var tasks = new List<Task>();
            long acked = 0;
            var ackLock = new Lock();
            var k = marker < Fill ? Fill - (int)marker : rng.Next(1, 8);
            for (var i = 1; i <= k; i++)
            {
                var n = marker + i;
                model = [.. model.Select(m => new SortedDictionary<string, byte[]>(m, StringComparer.Ordinal))];
                var t = Generate(seed, n, model);
                states[n] = model;
                tasks.Add(store.SubmitAsync(t).ContinueWith(r =>
                {
                    if (r.IsCompletedSuccessfully)
                    {
                        lock (ackLock)
                        {
                            acked = Math.Max(acked, n);
                        }
                    }
                }, TaskScheduler.Default));
            }
            if (marker < Fill || rng.Next(3) == 0)
            {
                await Task.WhenAll(tasks);
                Assert.Equal(marker + k, acked);
                if (rng.Next(2) == 0)
                {
                    await store.CheckpointAsync();
                }
            }
            for (var y = rng.Next(400); y > 0; y--)
            {
                await Task.Yield();
            }
            await fi.PowerCutAsync((PowerCutMode)rng.Next(3));
            await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(60));
            await store.DisposeAsync();
            lock (ackLock)
            {
                held = Math.Max(held, acked);
            }
        }
        Assert.True(deepest >= 3, $"the index never got deeper than {deepest} levels");
    }

    [Fact]
    public async Task A_damaged_index_page_is_reported_by_fsck_and_on_read()
    {
        var inner = new MemoryDevice(32 << 20, 4096);
        await ObjectStore.MkfsAsync(inner, TestSupport.Small(journal: 1 << 20, checkpoint: 256 << 10));
        var store = await ObjectStore.MountAsync(inner, TinyCache);
        await store.SubmitAsync(new Transaction().CreateCollection("pg").Touch("pg", "a").Touch("pg", "b"));
        for (var batch = 0; batch < 10; batch++)
        {
            var t = new Transaction();
            for (var i = 0; i < 300; i++)
            {
                t.OmapSet("pg", "a", $"a{batch:d2}.{i:d4}", TestSupport.Bytes(100, i));
                t.OmapSet("pg", "b", $"b{batch:d2}.{i:d4}", TestSupport.Bytes(100, i));
            }
            await store.SubmitAsync(t);
        }
        Assert.True((await store.FsckAsync()).IsClean);
        // A leaf (kind byte 1 at offset 5 of the page) that holds some of a's keys: flip a byte in its cells.
        var pages = await store.IndexPagesForTestsAsync();
        long victim = -1;
        using var aligned = new AlignedBuffer(4096, 4096);
        var buf = new byte[4096];
        foreach (var p in pages.Order())
        {
            await inner.ReadAsync(p * 4096, aligned.Memory);
            aligned.GetSpan().CopyTo(buf);
            if (buf[5] == 1 && buf.AsSpan().IndexOf(System.Text.Encoding.BigEndianUnicode.GetBytes("a05.")) >= 0)
            {
                victim = p;
                break;
            }
        }
        Assert.True(victim > 0, "no leaf with a's keys found");
        buf[4000] ^= 0x40;
        buf.CopyTo(aligned.GetSpan());
        await inner.WriteAsync(victim * 4096, aligned.Memory);

        var report = await store.FsckAsync();
        Assert.False(report.IsClean);
        Assert.Contains(report.Errors, e => e.Contains($"{victim}", StringComparison.Ordinal));
        // b's keys (other leaves) push a's out of the 16-page cache; then a read of a's keys meets the damage.
        Assert.Equal(3000, (await store.OmapGetAsync("pg", "b")).Count);
        var e = await Assert.ThrowsAnyAsync<StoreException>(() => store.OmapGetAsync("pg", "a"));
        Assert.Contains($"{victim}", e.Message, StringComparison.Ordinal);
        await store.DisposeAsync();
        // Mount does not read the tree (the checkpoint lists its blocks): it succeeds, and fsck and reads report.
        await using var again = await ObjectStore.MountAsync(inner, TinyCache);
        Assert.Contains((await again.FsckAsync()).Errors, e => e.Contains($"{victim}", StringComparison.Ordinal));
        Assert.Contains($"{victim}", (await Assert.ThrowsAnyAsync<StoreException>(() => again.OmapGetAsync("pg", "a"))).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Remount_reads_the_journal_and_the_checkpoint_not_the_index()
    {
        var inner = new MemoryDevice(64 << 20, 4096);
        var sb = await ObjectStore.MkfsAsync(inner, TestSupport.Small(journal: 256 << 10, checkpoint: 256 << 10));
        await using (var store = await ObjectStore.MountAsync(inner, TinyCache))
        {
            await store.SubmitAsync(new Transaction().CreateCollection("pg").Touch("pg", "a"));
            for (var batch = 0; batch < 100; batch++)
            {
                var t = new Transaction();
                for (var i = 0; i < 150; i++)
                {
                    t.OmapSet("pg", "a", $"{batch:d3}.{i:d4}", TestSupport.Bytes(120, i));
                }
                await store.SubmitAsync(t);
            }
        }
        // A tail in the journal for the next mount to replay: acknowledged, then the power goes.
        var fi = new FaultInjectingDevice(inner, 1);
        var crashed = await ObjectStore.MountAsync(fi, TinyCache);
        await crashed.SubmitAsync(new Transaction().OmapSet("pg", "a", "tail", [1]).OmapRemove("pg", "a", "000.0000"));
        await fi.PowerCutAsync(PowerCutMode.DropUnflushed);
        await crashed.DisposeAsync();

        var counting = new CountingDevice(inner);
        await using var again = await ObjectStore.MountAsync(counting, TinyCache);
        var read = counting.BytesRead;
        Assert.Contains(again.MountNotes, n => n.Contains("replayed 1 journal records", StringComparison.Ordinal));
        var indexBytes = (await again.IndexPagesForTestsAsync()).Count * 4096L;
        // Superblocks, both checkpoint headers, one checkpoint payload (at most its slot), the journal, the index's
        // root and what committing the replayed change reads (a path): the index itself is not read.
        var bound = sb.Geometry.JournalSize + sb.Geometry.CheckpointCapacity + (64 << 10);
        output.WriteLine($"mount read {read} bytes; journal {sb.Geometry.JournalSize}, checkpoint slot {sb.Geometry.CheckpointCapacity}, index {indexBytes}");
        Assert.True(read <= bound, $"mount read {read} bytes, more than the journal + a checkpoint + 64 KiB ({bound})");
        Assert.True(indexBytes > 2 * bound, $"the index ({indexBytes} bytes) is too small for the test to mean anything");
        Assert.Equal(new byte[] { 1 }, await again.OmapGetValueAsync("pg", "a", "tail"));
        Assert.Null(await again.OmapGetValueAsync("pg", "a", "000.0000"));
        Assert.Equal(TestSupport.Bytes(120, 7), await again.OmapGetValueAsync("pg", "a", "031.0007"));
        Assert.Equal(100 * 150, (await again.OmapGetAsync("pg", "a")).Count);
        var report = await again.FsckAsync();
        Assert.True(report.IsClean, report.ToString());
    }
}
