using Appliance.Platform.Devices;
using Appliance.Store.Index;
using Xunit.Abstractions;
using static Appliance.Store.Tests.Index.IndexTestSupport;

namespace Appliance.Store.Tests.Index;

/// <summary>Damage is reported, never skipped: a bit flipped anywhere in a page makes Check() name the page and
/// every read that needs it fail with a PageCorruptionException naming it.</summary>
public class CorruptionTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_flipped_bit_in_any_page_is_reported_by_check_and_by_reads()
    {
        var seed = TestSupport.Seed(output, nameof(A_flipped_bit_in_any_page_is_reported_by_check_and_by_reads));
        var rng = new Random(seed);
        var inner = new MemoryDevice(64L << 20, 4096);
        var device = new FaultInjectingDevice(inner, seed);
        var allocator = Allocator(inner);
        var options = Options(cachePages: 32);
        var model = new SortedDictionary<byte[], byte[]>(ByteOrder.Instance);
        RootDescriptor root;
        IndexCheckReport clean;
        await using (var tree = BPlusTree.Create(device, allocator, options))
        {
            await CrashTests.MutateAsync(tree, model, rng, 1500);
            root = await tree.CommitAsync();
            clean = await AssertSoundAsync(tree, allocator, $"seed {seed}");
        }
        var pages = clean.Pages.Order().ToList();
        for (var i = 0; i < 12; i++)
        {
            var page = pages[rng.Next(pages.Count)];
            var offset = page * 4096 + rng.Next(4096);
            var bit = rng.Next(8);
            var ctx = $"seed {seed}: page {page} byte {offset - page * 4096} bit {bit}";
            await device.CorruptAsync(offset, bit);

            PageCorruptionException? thrown = null;
            try
            {
                await using var tree = await BPlusTree.OpenAsync(device, allocator, root, options);
                var report = await tree.CheckAsync();
                Assert.Contains(report.Errors, e => e.StartsWith($"page {page} ", StringComparison.Ordinal));
                // Nothing else, but that the entries below it are missing from the count.
                Assert.DoesNotContain(report.Errors, e => !e.StartsWith($"page {page} ", StringComparison.Ordinal) && !e.StartsWith("the leaves hold", StringComparison.Ordinal));
                // A full scan needs every page: it must stop at the damaged one, not skip it.
                await ScanAllAsync(tree.Scan(Array.Empty<byte>()));
            }
            catch (PageCorruptionException e)
            {
                thrown = e;
            }
            Assert.True(thrown is not null, $"{ctx}: a full read went through a damaged page");
            Assert.True(thrown.Page == page, $"{ctx}: the exception names page {thrown.Page}: {thrown.Message}");
            output.WriteLine($"{ctx}: {thrown.Message}");

            await device.CorruptAsync(offset, bit);
            await using (var healed = await BPlusTree.OpenAsync(device, allocator, root, options))
            {
                Assert.True((await healed.CheckAsync()).Clean, $"{ctx}: not clean after the bit was restored");
            }
        }
    }

    [Fact]
    public async Task Pages_of_another_store_do_not_validate()
    {
        var device = new MemoryDevice(16L << 20, 4096);
        var allocator = Allocator(device);
        RootDescriptor root;
        await using (var tree = BPlusTree.Create(device, allocator, Options()))
        {
            await tree.PutAsync("a"u8.ToArray(), "1"u8.ToArray());
            root = await tree.CommitAsync();
        }
        var other = Options() with { CrcSeed = Seed + 1 };
        var e = await Assert.ThrowsAsync<PageCorruptionException>(async () => await BPlusTree.OpenAsync(device, allocator, root, other));
        Assert.Equal(root.RootPage, e.Page);
        Assert.Contains("crc32c", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_root_descriptor_must_name_the_page_its_commit_wrote()
    {
        var device = new MemoryDevice(16L << 20, 4096);
        var allocator = Allocator(device);
        RootDescriptor first, second;
        await using (var tree = BPlusTree.Create(device, allocator, Options()))
        {
            await tree.PutAsync("a"u8.ToArray(), "1"u8.ToArray());
            first = await tree.CommitAsync();
            await tree.PutAsync("b"u8.ToArray(), "2"u8.ToArray());
            second = await tree.CommitAsync();
        }
        // A descriptor naming the right page with the wrong generation or crc (a page number reused since).
        await Assert.ThrowsAsync<PageCorruptionException>(async () => await BPlusTree.OpenAsync(device, allocator, second with { Generation = 3 }, Options()));
        await Assert.ThrowsAsync<PageCorruptionException>(async () => await BPlusTree.OpenAsync(device, allocator, first with { RootPage = second.RootPage }, Options()));
        await Assert.ThrowsAsync<PageCorruptionException>(async () => await BPlusTree.OpenAsync(device, allocator, second with { RootCrc = second.RootCrc ^ 1 }, Options()));
        // Past the device, or a page never written.
        await Assert.ThrowsAsync<PageCorruptionException>(async () => await BPlusTree.OpenAsync(device, allocator, second with { RootPage = 1L << 40 }, Options()));
        var zero = await Assert.ThrowsAsync<PageCorruptionException>(async () => await BPlusTree.OpenAsync(device, allocator, second with { RootPage = 3000 }, Options()));
        Assert.Contains("all zeros", zero.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Root_descriptors_round_trip_and_refuse_damage()
    {
        var d = new RootDescriptor(1234, 4, 77, 99999, 0xdeadbeef);
        var buffer = new byte[RootDescriptor.EncodedSize];
        d.Encode(buffer, Seed);
        Assert.Equal(d, RootDescriptor.Decode(buffer, Seed));
        Assert.Throws<CorruptionException>(() => RootDescriptor.Decode(buffer, Seed + 1));
        for (var bit = 0; bit < buffer.Length * 8; bit++)
        {
            buffer[bit / 8] ^= (byte)(1 << (bit % 8));
            Assert.Throws<CorruptionException>(() => RootDescriptor.Decode(buffer, Seed));
            buffer[bit / 8] ^= (byte)(1 << (bit % 8));
        }
        RootDescriptor.Empty.Encode(buffer, Seed);
        Assert.Equal(RootDescriptor.Empty, RootDescriptor.Decode(buffer, Seed));
    }
}
