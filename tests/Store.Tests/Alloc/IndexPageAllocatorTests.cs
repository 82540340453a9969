using Appliance.Platform.Devices;
using Appliance.Store.Alloc;
using Appliance.Store.Index;

namespace Appliance.Store.Tests.Alloc;

/// <summary>Index pages from the store's allocator: the reserve is the index's alone, pages and data never
/// overlap, and a tree on the adapter keeps the allocator equal to its pages plus those waiting for release.</summary>
public class IndexPageAllocatorTests
{
    [Fact]
    public void Data_allocations_leave_the_reserve_to_the_index()
    {
        var alloc = new Allocator(100, 64);
        var pages = new IndexPageAllocator(alloc);
        alloc.Reserved = 10;
        var data = new List<long>();
        Assert.False(alloc.TryAllocate(55, data));
        Assert.Empty(data);
        Assert.True(alloc.TryAllocate(54, data));
        var one = new long[10];
        pages.Allocate(one);
        Assert.Empty(one.Intersect(data));
        Assert.All(one, p => Assert.True(pages.IsAllocated(p)));
        Assert.Equal(0, alloc.Free);
        Assert.Throws<NoSpaceException>(() => pages.Allocate(new long[1]));
        pages.Free(one.AsSpan(0, 3));
        Assert.Equal(3, alloc.Free);
        Assert.False(pages.IsAllocated(one[0]));
        Assert.False(pages.IsAllocated(99));
        Assert.False(pages.IsAllocated(164));
    }

    [Fact]
    public async Task A_tree_on_the_store_allocator_owns_exactly_its_pages()
    {
        var dev = new MemoryDevice(8 << 20, 4096);
        var alloc = new Allocator(16, 2032);
        var pages = new IndexPageAllocator(alloc);
        await using var tree = BPlusTree.Create(dev, pages, new IndexOptions { CacheBytes = 16 * 4096, CrcSeed = 7 });
        var rng = new Random(5);
        for (var round = 0; round < 6; round++)
        {
            for (var i = 0; i < 400; i++)
            {
                var key = BitConverter.GetBytes(rng.Next(3000));
                if (rng.Next(4) == 0)
                {
                    await tree.DeleteAsync(key);
                }
                else
                {
                    await tree.PutAsync(key, new byte[rng.Next(1, 300)]);
                }
            }
            var d = await tree.CommitAsync();
            if (round > 0)
            {
                tree.ReleaseFreedPages(d.Generation - 1);
            }
            var report = await tree.CheckAsync();
            Assert.True(report.Clean, string.Join("; ", report.Errors));
            Assert.Equal(report.Pages.Count + report.WaitingPages.Count, alloc.Total - alloc.Free);
        }
        Assert.True(tree.Height >= 2, $"height {tree.Height}");
    }
}
