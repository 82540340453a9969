using Appliance.Platform.Devices;
using Appliance.Store.Index;
using Xunit.Abstractions;
using static Appliance.Store.Tests.Index.IndexTestSupport;

namespace Appliance.Store.Tests.Index;

/// <summary>The page cache keeps memory within its budget whatever the tree's size, a remount reads only what it
/// needs, and a commit writes only the pages that changed.</summary>
public class CacheTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Page_memory_stays_within_the_budget_as_the_tree_grows_and_within_one_huge_transaction()
    {
        var seed = TestSupport.Seed(output, nameof(Page_memory_stays_within_the_budget_as_the_tree_grows_and_within_one_huge_transaction));
        var rng = new Random(seed);
        var device = new MemoryDevice(256L << 20, 4096);
        var allocator = Allocator(device);
        var options = Options(cachePages: 32);
        await using var tree = BPlusTree.Create(device, allocator, options);
        // One transaction far larger than the cache: dirty pages must be spilled, not held.
        for (var i = 0; i < 20000; i++)
        {
            await tree.PutAsync(Key(i), TestSupport.Bytes(rng.Next(0, 200), i));
            if (i % 1000 == 999)
            {
                Assert.True(tree.Stats.ResidentBytes <= options.CacheBytes, $"{tree.Stats.ResidentBytes} bytes of pages held at {i + 1} entries");
            }
        }
        var root = await tree.CommitAsync();
        var pages = allocator.AllocatedCount;
        output.WriteLine($"{root.Count} entries, height {root.Height}, {pages} pages ({pages * 4096 >> 20} MiB), cache {options.CacheBytes >> 10} KiB: "
            + $"peak {tree.Stats.PeakResidentBytes >> 10} KiB, spills {tree.Stats.Spills}, evictions {tree.Stats.Evictions}");
        Assert.True(pages * 4096L > 20 * options.CacheBytes, "the tree is many times the cache");
        Assert.Equal(options.CacheBytes, tree.Stats.CapacityBytes);
        Assert.True(tree.Stats.PeakResidentBytes <= options.CacheBytes, $"peak {tree.Stats.PeakResidentBytes} over the budget {options.CacheBytes}");
        Assert.True(tree.Stats.Spills > 0);
        Assert.True(tree.Stats.Evictions > 0);
    }

    [Fact]
    public async Task A_remount_reads_the_root_and_then_one_page_per_level_for_a_lookup()
    {
        var device = new MemoryDevice(128L << 20, 4096);
        var allocator = Allocator(device);
        RootDescriptor root;
        await using (var tree = BPlusTree.Create(device, allocator, Options(cachePages: 64)))
        {
            for (var i = 0; i < 10000; i++)
            {
                await tree.PutAsync(Key(i), TestSupport.Bytes(40, i));
            }
            root = await tree.CommitAsync();
        }
        Assert.True(root.Height >= 3);
        await using var reopened = await BPlusTree.OpenAsync(device, allocator, root, Options(cachePages: 64));
        Assert.Equal(4096, reopened.Stats.BytesRead);
        Assert.Equal(TestSupport.Bytes(40, 4321), await reopened.GetAsync(Key(4321)));
        Assert.Equal(4096L * root.Height, reopened.Stats.BytesRead);
        Assert.Equal(root.Height - 1, reopened.Stats.Misses - 1);
        // The same lookup again: all from memory.
        Assert.Equal(TestSupport.Bytes(40, 4321), await reopened.GetAsync(Key(4321)));
        Assert.Equal(4096L * root.Height, reopened.Stats.BytesRead);
    }

    [Fact]
    public async Task A_commit_writes_only_the_path_from_each_changed_leaf_to_the_root()
    {
        var device = new MemoryDevice(128L << 20, 4096);
        var allocator = Allocator(device);
        await using var tree = BPlusTree.Create(device, allocator, Options(cachePages: 64));
        for (var i = 0; i < 10000; i++)
        {
            await tree.PutAsync(Key(i), TestSupport.Bytes(40, i));
        }
        var root = await tree.CommitAsync();
        tree.ReleaseFreedPages(root.Generation);
        Assert.True(root.Height >= 3);

        // One value replaced by one of the same size: no split, so exactly one path is new.
        var before = tree.Stats.BytesWritten;
        await tree.PutAsync(Key(777), TestSupport.Bytes(40, -1));
        var next = await tree.CommitAsync();
        Assert.Equal(4096L * root.Height, tree.Stats.BytesWritten - before);
        Assert.Equal(root.Generation + 1, next.Generation);
        Assert.Equal(root.Height, tree.WaitingPages);

        // Two keys far apart: two paths sharing the root.
        before = tree.Stats.BytesWritten;
        await tree.PutAsync(Key(0), TestSupport.Bytes(40, -2));
        await tree.PutAsync(Key(9999), TestSupport.Bytes(40, -3));
        await tree.CommitAsync();
        Assert.InRange(tree.Stats.BytesWritten - before, 4096L * (root.Height + 1), 4096L * (2 * root.Height - 1));

        // Nothing changed (a delete of an absent key copies nothing): nothing written, same descriptor.
        before = tree.Stats.BytesWritten;
        Assert.False(await tree.DeleteAsync("absent"u8.ToArray()));
        Assert.False(tree.HasChanges);
        var same = await tree.CommitAsync();
        Assert.Equal(tree.Committed, same);
        Assert.Equal(before, tree.Stats.BytesWritten);
        await AssertSoundAsync(tree, allocator, "after the small commits");
    }
}
