using System.Text;
using Appliance.Monitor.Storage;
using Xunit.Abstractions;

namespace Appliance.Monitor.Tests.Storage;

public class MonitorStoreTests(ITestOutputHelper output)
{
    private static byte[] B(string s) => Encoding.UTF8.GetBytes(s);

    [Fact]
    public void Open_creates_the_directory_and_an_empty_store()
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "mon", "a");
        using var store = MonitorStore.Open(path);
        Assert.True(Directory.Exists(path));
        Assert.Null(store.Get("p", "k"));
        Assert.Empty(store.List("p"));
        Assert.Empty(store.Prefixes());
        Assert.Equal(0ul, store.Stats.LastSequence);
        Assert.Empty(store.OpenNotes);
    }

    [Fact]
    public void Put_get_delete_and_overwrite_within_and_across_batches()
    {
        using var dir = new TempDir();
        using var store = MonitorStore.Open(dir.Path);
        var s1 = store.Apply(new WriteBatch().Put("a", "x", B("1")).Put("b", "x", B("2")).Put("a", "y", B("3")));
        Assert.Equal(1ul, s1);
        Assert.Equal("1", Encoding.UTF8.GetString(store.Get("a", "x")!));
        Assert.Equal("2", Encoding.UTF8.GetString(store.Get("b", "x")!));
        var s2 = store.Apply(new WriteBatch().Put("a", "x", B("old")).Put("a", "x", B("new")).Delete("b", "x").Delete("b", "never"));
        Assert.Equal(2ul, s2);
        Assert.Equal("new", Encoding.UTF8.GetString(store.Get("a", "x")!));
        Assert.Null(store.Get("b", "x"));
        Assert.False(store.Contains("b", "x"));
        Assert.True(store.Contains("a", "y"));
        Assert.Equal(["a"], store.Prefixes());
        // A put then a delete of the same key in one batch: the later one wins.
        store.Apply(new WriteBatch().Put("c", "k", B("v")).Delete("c", "k"));
        Assert.Null(store.Get("c", "k"));
        Assert.Equal(["a"], store.Prefixes());
    }

    [Fact]
    public void Values_are_copies_in_both_directions()
    {
        using var dir = new TempDir();
        using var store = MonitorStore.Open(dir.Path);
        var value = B("abc");
        var batch = new WriteBatch().Put("p", "k", value);
        value[0] = (byte)'z';
        store.Apply(batch);
        var read = store.Get("p", "k")!;
        Assert.Equal("abc", Encoding.UTF8.GetString(read));
        read[0] = (byte)'q';
        Assert.Equal("abc", Encoding.UTF8.GetString(store.Get("p", "k")!));
        store.List("p")[0].Value[0] = (byte)'q';
        Assert.Equal("abc", Encoding.UTF8.GetString(store.Get("p", "k")!));
    }

    [Fact]
    public void List_is_ordered_and_pages_with_start_after_and_limit()
    {
        using var dir = new TempDir();
        using var store = MonitorStore.Open(dir.Path);
        var keys = new[] { "b", "a", "c10", "c2", "Z", "ab", "é" };
        var batch = new WriteBatch();
        foreach (var k in keys)
        {
            batch.Put("p", k, B(k));
        }
        batch.Put("other", "a", B("x"));
        store.Apply(batch);
        var ordered = keys.Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(ordered, store.List("p").Select(kv => kv.Key));
        Assert.Equal(ordered.Where(k => string.CompareOrdinal(k, "ab") > 0), store.List("p", "ab").Select(kv => kv.Key));
        Assert.Equal(ordered.Where(k => string.CompareOrdinal(k, "aa") > 0).Take(2), store.List("p", "aa", 2).Select(kv => kv.Key));
        Assert.Empty(store.List("p", "\uffff"));
        Assert.Empty(store.List("p", null, 0));
        Assert.Empty(store.List("missing"));
        Assert.All(store.List("p"), kv => Assert.Equal(kv.Key, Encoding.UTF8.GetString(kv.Value)));
        // Paging through with startAfter visits every key once.
        var seen = new List<string>();
        string? after = null;
        while (store.List("p", after, 3) is { Count: > 0 } page)
        {
            seen.AddRange(page.Select(kv => kv.Key));
            after = page[^1].Key;
        }
        Assert.Equal(ordered, seen);
        Assert.Equal(ordered, store.ListKeys("p"));
        Assert.Equal(ordered.Where(k => string.CompareOrdinal(k, "ab") > 0).Take(3), store.ListKeys("p", "ab", 3));
        Assert.Empty(store.ListKeys("p", "\uffff"));
        Assert.Empty(store.ListKeys("missing"));
    }

    [Fact]
    public void Bad_names_and_sizes_are_refused_before_anything_is_written()
    {
        using var dir = new TempDir();
        using var store = MonitorStore.Open(dir.Path);
        Assert.Throws<ArgumentException>(() => new WriteBatch().Put("", "k", B("v")));
        Assert.Throws<ArgumentException>(() => new WriteBatch().Put("p", "", B("v")));
        Assert.Throws<ArgumentException>(() => new WriteBatch().Delete("p", new string('k', WriteBatch.MaxNameBytes + 1)));
        Assert.Throws<ArgumentException>(() => new WriteBatch().Put("p", "k", new byte[WriteBatch.MaxValueBytes + 1]));
        Assert.Equal(0ul, store.Stats.LastSequence);
        Assert.Equal(0ul, store.Apply(new WriteBatch()));
        Assert.Equal(0ul, store.Stats.LastSequence);
    }

    [Fact]
    public void A_second_open_is_refused_while_the_first_holds_the_lock_and_allowed_after()
    {
        using var dir = new TempDir();
        var first = MonitorStore.Open(dir.Path);
        var e = Assert.Throws<MonitorStoreLockedException>(() => MonitorStore.Open(dir.Path));
        Assert.Contains($"pid {Environment.ProcessId}", e.Message, StringComparison.Ordinal);
        Assert.Contains("in use", e.Message, StringComparison.Ordinal);
        first.Apply(new WriteBatch().Put("p", "k", B("v")));
        first.Dispose();
        using var second = MonitorStore.Open(dir.Path);
        Assert.Equal("v", Encoding.UTF8.GetString(second.Get("p", "k")!));
    }

    [Fact]
    public void Disposed_store_refuses_calls()
    {
        using var dir = new TempDir();
        var store = MonitorStore.Open(dir.Path);
        store.Dispose();
        store.Dispose();
        Assert.Throws<ObjectDisposedException>(() => store.Get("p", "k"));
        Assert.Throws<ObjectDisposedException>(() => store.Apply(new WriteBatch().Put("p", "k", B("v"))));
    }

    [Fact]
    public void Concurrent_appliers_each_get_a_distinct_sequence_and_everything_survives_reopen()
    {
        using var dir = new TempDir();
        const int threads = 8, perThread = 60;
        var seqs = new System.Collections.Concurrent.ConcurrentBag<ulong>();
        using (var store = MonitorStore.Open(dir.Path, new MonitorStoreOptions { CompactAfterLogBytes = 16 << 10 }))
        {
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
            {
                for (var i = 0; i < perThread; i++)
                {
                    seqs.Add(store.Apply(new WriteBatch()
                        .Put("t" + t, i.ToString("D4", System.Globalization.CultureInfo.InvariantCulture), B($"{t}:{i}"))
                        .Put("last", "t" + t, B(i.ToString(System.Globalization.CultureInfo.InvariantCulture)))));
                }
            });
            var stats = store.Stats;
            output.WriteLine($"{threads * perThread} batches, {stats.Flushes} flushes, {stats.Compactions} compactions");
            Assert.Equal((ulong)(threads * perThread), stats.LastSequence);
            Assert.True(stats.Flushes <= threads * perThread);
        }
        Assert.Equal(Enumerable.Range(1, threads * perThread).Select(i => (ulong)i), seqs.Order());
        using var reopened = MonitorStore.Open(dir.Path);
        for (var t = 0; t < threads; t++)
        {
            var entries = reopened.List("t" + t);
            Assert.Equal(perThread, entries.Count);
            Assert.Equal((perThread - 1).ToString(System.Globalization.CultureInfo.InvariantCulture), Encoding.UTF8.GetString(reopened.Get("last", "t" + t)!));
        }
        Assert.Equal((ulong)(threads * perThread), reopened.Stats.LastSequence);
    }

    [Fact]
    public async Task Big_batches_queued_together_are_written_in_bounded_groups()
    {
        using var dir = new TempDir();
        using (var store = MonitorStore.Open(dir.Path, StoreTestKit.NoAutoCompaction))
        {
            var value = new byte[1 << 20];
            var tasks = Enumerable.Range(0, 40).Select(i =>
            {
                value[0] = (byte)i;
                return store.ApplyAsync(new WriteBatch().Put("big", i.ToString("D2", System.Globalization.CultureInfo.InvariantCulture), value));
            }).ToList();
            var seqs = await Task.WhenAll(tasks);
            Assert.Equal(Enumerable.Range(1, 40).Select(i => (ulong)i), seqs);
            // At most 16 MiB per write: 40 MiB need at least three.
            Assert.True(store.Stats.Flushes >= 3, $"{store.Stats.Flushes} flushes");
        }
        using var reopened = MonitorStore.Open(dir.Path);
        var all = reopened.List("big");
        Assert.Equal(40, all.Count);
        Assert.All(all.Select((kv, i) => (kv, i)), x => Assert.Equal((byte)x.i, x.kv.Value[0]));
    }

    [Fact]
    public void Compaction_keeps_the_log_bounded_and_the_state_intact_across_reopens()
    {
        var seed = TestSupport.Seed(output, nameof(Compaction_keeps_the_log_bounded_and_the_state_intact_across_reopens));
        using var dir = new TempDir();
        var options = new MonitorStoreOptions { CompactAfterLogBytes = 8 << 10 };
        long written = 0;
        for (var round = 0; round < 4; round++)
        {
            using var store = MonitorStore.Open(dir.Path, options);
            StoreTestKit.AssertHolds(store, seed, written, $"round {round} open");
            StoreTestKit.Write(store, seed, written + 1, written + 150);
            written += 150;
            StoreTestKit.AssertHolds(store, seed, written, $"round {round} before close");
            var stats = store.Stats;
            Assert.True(stats.Compactions > 0, "expected the small threshold to trigger compactions");
            // One group can overshoot the threshold before the writer compacts.
            Assert.True(stats.LogBytes < (8 << 10) + (64 << 10), $"log is {stats.LogBytes} bytes");
            Assert.True(stats.SnapshotSequence > 0);
        }
        Assert.True(new FileInfo(Path.Combine(dir.Path, "log")).Length < 80 << 10);
    }

    [Fact]
    public void Explicit_compaction_then_reopen_reads_the_snapshot()
    {
        using var dir = new TempDir();
        using (var store = MonitorStore.Open(dir.Path, StoreTestKit.NoAutoCompaction))
        {
            StoreTestKit.Write(store, 7, 1, 40);
            store.Compact();
            Assert.Equal(40ul, store.Stats.SnapshotSequence);
            Assert.Equal(24L, store.Stats.LogBytes);
            StoreTestKit.Write(store, 7, 41, 45);
        }
        using var reopened = MonitorStore.Open(dir.Path, StoreTestKit.NoAutoCompaction);
        StoreTestKit.AssertHolds(reopened, 7, 45, "after snapshot + 5 records");
        Assert.Equal(45ul, reopened.Stats.LastSequence);
        Assert.Equal(46ul, reopened.Apply(new WriteBatch().Put("x", "y", B("z"))));
    }

    [Fact]
    public void Random_batches_match_a_model_across_reopens()
    {
        var seed = TestSupport.Seed(output, nameof(Random_batches_match_a_model_across_reopens));
        var rng = new Random(seed);
        using var dir = new TempDir();
        long n = 0;
        for (var round = 0; round < 6; round++)
        {
            using var store = MonitorStore.Open(dir.Path, new MonitorStoreOptions { CompactAfterLogBytes = rng.Next(2, 40) << 10 });
            StoreTestKit.AssertHolds(store, seed, n, $"seed {seed} round {round}");
            var count = rng.Next(1, 120);
            StoreTestKit.Write(store, seed, n + 1, n + count);
            n += count;
            if (rng.Next(3) == 0)
            {
                store.Compact();
            }
        }
    }
}
