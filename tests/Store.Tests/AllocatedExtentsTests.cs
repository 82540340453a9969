namespace Appliance.Store.Tests;

/// <summary>`AllocatedExtentsAsync`: the runs of an object's data that are not holes (what block status reports).</summary>
public class AllocatedExtentsTests
{
    [Fact]
    public async Task Written_blocks_are_listed_zeroed_whole_blocks_and_unwritten_ranges_are_not()
    {
        var device = await TestSupport.NewMemoryStoreAsync();
        await using var store = await ObjectStore.MountAsync(device);
        // Blocks 2-4 and 10 written, the object 48 KiB long.
        await store.SubmitAsync(new Transaction().CreateCollection("pg")
            .Write("pg", "o", 2 * 4096, TestSupport.Bytes(3 * 4096, 1))
            .Write("pg", "o", 10 * 4096, TestSupport.Bytes(4096, 2))
            .Truncate("pg", "o", 48 * 1024));
        Assert.Equal([(2L * 4096, 3L * 4096), (10L * 4096, 4096L)], await store.AllocatedExtentsAsync("pg", "o", 0, 1 << 20));
        // A range cuts the runs; zeroing block 3 makes it a hole.
        Assert.Equal([(3L * 4096 + 100, 4096L - 100 + 4096)], await store.AllocatedExtentsAsync("pg", "o", 3 * 4096 + 100, 8192));
        await store.SubmitAsync(new Transaction().Zero("pg", "o", 3 * 4096, 4096));
        Assert.Equal([(2L * 4096, 4096L), (4L * 4096, 4096L), (10L * 4096, 4096L)], await store.AllocatedExtentsAsync("pg", "o", 0, 1 << 20));
        // No object: null; past its end: nothing.
        Assert.Null(await store.AllocatedExtentsAsync("pg", "missing", 0, 4096));
        Assert.Empty((await store.AllocatedExtentsAsync("pg", "o", 48 * 1024, 4096))!);
    }
}
