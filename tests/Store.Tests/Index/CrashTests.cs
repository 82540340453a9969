using Appliance.Platform.Devices;
using Appliance.Store.Index;
using Xunit.Abstractions;
using static Appliance.Store.Tests.Index.IndexTestSupport;

namespace Appliance.Store.Tests.Index;

/// <summary>
/// A crash before a commit's descriptor is durable leaves the previous root exactly as it was: the tree never
/// writes over a page a durable root reaches, whatever the cut does to the writes of the transaction in flight
/// (spilled pages, the commit's own pages), and the tree works on from the old root after the reboot.
/// </summary>
public class CrashTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(PowerCutMode.DropUnflushed)]
    [InlineData(PowerCutMode.KeepRandomSubset)]
    [InlineData(PowerCutMode.TearOne)]
    public async Task A_power_cut_during_a_commit_leaves_the_previous_root_whole(PowerCutMode mode)
    {
        var seed = TestSupport.Seed(output, $"{nameof(A_power_cut_during_a_commit_leaves_the_previous_root_whole)}({mode})");
        var rng = new Random(seed);
        var inner = new MemoryDevice(128L << 20, 4096);
        var options = Options(cachePages: 16);
        var model = new SortedDictionary<byte[], byte[]>(ByteOrder.Instance);
        var device = new FaultInjectingDevice(inner, seed);
        var allocator = Allocator(inner);
        var tree = BPlusTree.Create(device, allocator, options);
        var durable = RootDescriptor.Empty;
        for (var cut = 0; cut < (TestSupport.Soak ? 100 : 12); cut++)
        {
            var ctx = $"seed {seed} cut {cut}";
            // A committed state, durable (the store has its descriptor on disk).
            await MutateAsync(tree, model, rng, rng.Next(50, 400));
            durable = await tree.CommitAsync();
            tree.ReleaseFreedPages(durable.Generation);
            var expected = Copy(model);

            // The next transaction: enough changes that a 16-page cache spills some of them before the commit;
            // the commit's flush never happens: the power goes first.
            await MutateAsync(tree, model, rng, rng.Next(50, 800));
            device.FailWith(FaultOp.Flush, times: 1);
            await Assert.ThrowsAnyAsync<IOException>(async () => await tree.CommitAsync());
            var report = await device.PowerCutAsync(mode);
            output.WriteLine($"{ctx}: {report.Kept.Count} writes kept, {report.Dropped.Count} lost, torn {report.Torn}; spills so far {tree.Stats.Spills}");
            await tree.DisposeAsync();

            // Reboot: the store rebuilds its allocator (here: from the tree's pages) and opens the durable root.
            device = new FaultInjectingDevice(inner, seed + cut + 1);
            allocator = Allocator(inner);
            tree = await BPlusTree.OpenAsync(device, allocator, durable, options);
            await tree.VisitPagesAsync(allocator.MarkAllocated);
            model = expected;
            await AssertContentAsync(model, tree.Scan(Array.Empty<byte>()), ctx);
            await AssertSoundAsync(tree, allocator, ctx);
        }
        Assert.True(tree.Stats.Spills > 0 || durable.Height > 0);
        await tree.DisposeAsync();
    }

    [Fact]
    public async Task Commits_whose_descriptors_never_became_durable_do_not_disturb_the_last_durable_root()
    {
        // The store commits the tree, then crashes before its checkpoint with the new descriptor is durable: any
        // number of such commits may have happened. Their pages replaced nothing the durable root needs, because
        // replaced pages are only released for a durable generation.
        var seed = TestSupport.Seed(output, nameof(Commits_whose_descriptors_never_became_durable_do_not_disturb_the_last_durable_root));
        var rng = new Random(seed);
        var device = new MemoryDevice(128L << 20, 4096);
        var allocator = Allocator(device);
        var options = Options(cachePages: 16);
        var model = new SortedDictionary<byte[], byte[]>(ByteOrder.Instance);
        var tree = BPlusTree.Create(device, allocator, options);
        await MutateAsync(tree, model, rng, 1500);
        var durable = await tree.CommitAsync();
        tree.ReleaseFreedPages(durable.Generation);
        var expected = Copy(model);
        for (var i = 0; i < 5; i++)
        {
            await MutateAsync(tree, model, rng, 400);
            await tree.CommitAsync();
        }
        Assert.True(tree.WaitingPages > 0, "later commits replaced pages of the durable root, waiting for release");
        await tree.DisposeAsync();

        allocator = Allocator(device);
        await using var reopened = await BPlusTree.OpenAsync(device, allocator, durable, options);
        await reopened.VisitPagesAsync(allocator.MarkAllocated);
        await AssertContentAsync(expected, reopened.Scan(Array.Empty<byte>()), $"seed {seed}");
        await AssertSoundAsync(reopened, allocator, $"seed {seed}");
    }

    /// <summary>Random puts and deletes, applied to the tree and the model alike.</summary>
    internal static async Task MutateAsync(BPlusTree tree, SortedDictionary<byte[], byte[]> model, Random rng, int ops)
    {
        for (var i = 0; i < ops; i++)
        {
            if (rng.Next(4) == 0 && model.Count > 0)
            {
                var key = model.Keys.ElementAt(rng.Next(model.Count));
                model.Remove(key);
                Assert.True(await tree.DeleteAsync(key));
            }
            else
            {
                var key = Key(rng.Next(8000));
                var value = Value(rng);
                model[key] = value;
                await tree.PutAsync(key, value);
            }
        }
    }
}
