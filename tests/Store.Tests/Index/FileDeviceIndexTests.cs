using Appliance.Platform.Devices;
using Appliance.Store.Index;
using Xunit.Abstractions;
using static Appliance.Store.Tests.Index.IndexTestSupport;

namespace Appliance.Store.Tests.Index;

/// <summary>The same tree on a real file opened with O_DIRECT (aligned buffers, AIO writes), across a reopen of
/// the file.</summary>
public class FileDeviceIndexTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_tree_on_a_file_device_reopens_with_its_contents()
    {
        var seed = TestSupport.Seed(output, nameof(A_tree_on_a_file_device_reopens_with_its_contents));
        var rng = new Random(seed);
        using var dir = new TempDir();
        var path = dir.File("index");
        var model = new SortedDictionary<byte[], byte[]>(ByteOrder.Instance);
        var options = Options(cachePages: 32);
        RootDescriptor root;
        RegionPageAllocator allocator;
        await using (var device = FileDevice.CreateFile(path, 64L << 20))
        {
            allocator = Allocator(device);
            await using var tree = BPlusTree.Create(device, allocator, options);
            for (var round = 0; round < 4; round++)
            {
                await CrashTests.MutateAsync(tree, model, rng, 800);
                root = await tree.CommitAsync();
                tree.ReleaseFreedPages(root.Generation);
            }
            root = tree.Committed;
        }
        await using (var device = FileDevice.Open(path))
        {
            await using var tree = await BPlusTree.OpenAsync(device, allocator, root, options);
            await AssertContentAsync(model, tree.Scan(Array.Empty<byte>()), $"seed {seed}");
            await AssertSoundAsync(tree, allocator, $"seed {seed}");
        }
    }
}
