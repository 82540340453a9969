using Appliance.Platform.Devices;
using Appliance.Store.Index;
using Xunit.Abstractions;
using static Appliance.Store.Tests.Index.IndexTestSupport;

namespace Appliance.Store.Tests.Index;

/// <summary>Random puts, deletes, range deletes, rollbacks, commits and reopens against a SortedDictionary, with
/// a 16-page cache (lookups evict, large transactions spill) and keys long enough that the tree is several levels
/// deep.</summary>
public class RandomModelTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Random_operations_agree_with_a_sorted_dictionary()
    {
        var seed = TestSupport.Seed(output, nameof(Random_operations_agree_with_a_sorted_dictionary));
        var rng = new Random(seed);
        var device = new MemoryDevice(256L << 20, 4096);
        var allocator = Allocator(device);
        var options = Options(cachePages: 16);
        var tree = BPlusTree.Create(device, allocator, options);
        var model = new SortedDictionary<byte[], byte[]>(ByteOrder.Instance);
        var committedModel = Copy(model);
        var committed = RootDescriptor.Empty;
        var idSpace = 6000;
        var maxHeight = 0;
        var maxCount = 0;
        long spills = 0, evictions = 0;
        var rounds = TestSupport.Soak ? 400 : 40;
        try
        {
            for (var round = 0; round < rounds; round++)
            {
                var ops = rng.Next(20, 600);
                for (var op = 0; op < ops; op++)
                {
                    var ctx = $"seed {seed} round {round} op {op}";
                    var r = rng.Next(100);
                    var bulk = op == 0 && round % 8 == 7;
                    if (r < 60 && !bulk)
                    {
                        var key = Key(rng.Next(idSpace));
                        var value = Value(rng);
                        var added = await tree.PutAsync(key, value);
                        Assert.Equal(!model.ContainsKey(key), added);
                        model[key] = value;
                    }
                    else if (r < 75 && !bulk)
                    {
                        var key = model.Count > 0 && rng.Next(4) != 0 ? model.Keys.ElementAt(rng.Next(model.Count)) : Key(rng.Next(idSpace));
                        Assert.Equal(model.Remove(key), await tree.DeleteAsync(key));
                    }
                    else if (r < 76 || bulk)
                    {
                        // A whole collection now and then (a PG removed), else a short range.
                        byte[] from, to;
                        if (bulk)
                        {
                            var c = (byte)rng.Next(4);
                            from = [c];
                            to = [(byte)(c + 1)];
                        }
                        else
                        {
                            // From a key (present or not) to the one a few entries later.
                            from = Key(rng.Next(idSpace));
                            var later = model.Keys.Where(k => ByteOrder.Instance.Compare(k, from) > 0).Skip(rng.Next(0, 12)).FirstOrDefault();
                            to = later ?? [0xff];
                        }
                        var doomed = model.Keys.Where(k => ByteOrder.Instance.Compare(k, from) >= 0 && ByteOrder.Instance.Compare(k, to) < 0).ToList();
                        foreach (var k in doomed)
                        {
                            model.Remove(k);
                        }
                        Assert.Equal(doomed.Count, await tree.DeleteRangeAsync(from, to));
                    }
                    else if (r < 90)
                    {
                        var key = model.Count > 0 && rng.Next(2) == 0 ? model.Keys.ElementAt(rng.Next(model.Count)) : Key(rng.Next(idSpace));
                        var got = await tree.GetAsync(key);
                        if (model.TryGetValue(key, out var want))
                        {
                            Assert.True(got is not null && want.AsSpan().SequenceEqual(got), $"{ctx}: value of a present key differs");
                        }
                        else
                        {
                            Assert.Null(got);
                        }
                    }
                    else
                    {
                        await CompareScanAsync(tree, model, rng, idSpace, ctx);
                    }
                    Assert.Equal(model.Count, tree.Count);
                }
                maxHeight = Math.Max(maxHeight, tree.Height);
                maxCount = Math.Max(maxCount, model.Count);

                var what = rng.Next(10);
                if (what == 0)
                {
                    await tree.RollbackAsync();
                    model = Copy(committedModel);
                    await AssertSoundAsync(tree, allocator, $"seed {seed} round {round} after rollback");
                }
                else
                {
                    committed = await tree.CommitAsync();
                    Assert.Equal(model.Count, committed.Count);
                    tree.ReleaseFreedPages(committed.Generation);
                    committedModel = Copy(model);
                    var report = await AssertSoundAsync(tree, allocator, $"seed {seed} round {round} after commit");
                    Assert.Empty(report.WaitingPages);
                }
                if (what == 1)
                {
                    // The store remounts: the same allocator state, a fresh tree and cache from the descriptor.
                    (spills, evictions) = (spills + tree.Stats.Spills, evictions + tree.Stats.Evictions);
                    Assert.True(tree.Stats.PeakResidentBytes <= options.CacheBytes, $"{tree.Stats.PeakResidentBytes} bytes of pages held, budget {options.CacheBytes}");
                    await tree.DisposeAsync();
                    tree = await BPlusTree.OpenAsync(device, allocator, committed, options);
                    model = Copy(committedModel);
                }
                if (round % 10 == 9)
                {
                    await AssertContentAsync(model, tree.Scan(Array.Empty<byte>()), $"seed {seed} round {round}");
                }
            }
            await AssertContentAsync(model, tree.Scan(Array.Empty<byte>()), $"seed {seed} end");
            output.WriteLine($"{model.Count} entries (max {maxCount}), height {tree.Height} (max {maxHeight}), pages {allocator.AllocatedCount}, "
                + $"hits {tree.Stats.Hits} misses {tree.Stats.Misses} evictions {tree.Stats.Evictions} spills {tree.Stats.Spills}");
            Assert.True(maxHeight >= 3, $"seed {seed}: the tree never grew past {maxHeight} levels");
            Assert.True(tree.Stats.PeakResidentBytes <= options.CacheBytes, $"{tree.Stats.PeakResidentBytes} bytes of pages held, budget {options.CacheBytes}");
            (spills, evictions) = (spills + tree.Stats.Spills, evictions + tree.Stats.Evictions);
            Assert.True(evictions > 0 && spills > 0, $"a 16-page cache must evict ({evictions}) and spill ({spills})");
        }
        finally
        {
            await tree.DisposeAsync();
        }
    }

    private static async Task CompareScanAsync(BPlusTree tree, SortedDictionary<byte[], byte[]> model, Random rng, int idSpace, string ctx)
    {
        IndexCursor cursor;
        IEnumerable<KeyValuePair<byte[], byte[]>> expected;
        if (rng.Next(3) == 0)
        {
            // A prefix: a collection, or a collection and the start of a long name.
            var prefix = rng.Next(2) == 0 ? [(byte)rng.Next(4)] : new byte[] { (byte)rng.Next(4), (byte)'p', (byte)'p' };
            cursor = tree.ScanPrefix(prefix);
            expected = model.Where(kv => kv.Key.AsSpan().StartsWith(prefix));
        }
        else
        {
            var from = Key(rng.Next(idSpace));
            byte[]? to = rng.Next(3) == 0 ? null : Key(rng.Next(idSpace));
            cursor = to is null ? tree.Scan(from) : tree.Scan(from, to);
            expected = model.Where(kv => ByteOrder.Instance.Compare(kv.Key, from) >= 0 && (to is null || ByteOrder.Instance.Compare(kv.Key, to) < 0));
        }
        var limit = rng.Next(1, 200);
        var n = 0;
        foreach (var (k, v) in expected.Take(limit))
        {
            Assert.True(await cursor.MoveNextAsync(), $"{ctx}: scan ended after {n} entries");
            Assert.True(k.AsSpan().SequenceEqual(cursor.Key.Span), $"{ctx}: scan entry {n} is {Convert.ToHexString(cursor.Key.Span)}, expected {Convert.ToHexString(k)}");
            Assert.True(v.AsSpan().SequenceEqual(cursor.Value.Span), $"{ctx}: scan value {n} differs");
            n++;
        }
        if (n < limit)
        {
            Assert.False(await cursor.MoveNextAsync(), $"{ctx}: scan returned more than the {n} expected entries");
        }
    }
}
