using Appliance.Platform.Devices;
using Appliance.Store.Index;
using Xunit.Abstractions;
using static Appliance.Store.Tests.Index.IndexTestSupport;

namespace Appliance.Store.Tests.Index;

/// <summary>Semantics of the writable view and snapshots: limits, overflow values, running out of pages,
/// snapshot isolation, cursors that live across writes, prefixes, an emptied tree.</summary>
public class TreeTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Keys_and_values_over_the_limits_are_refused_without_effect()
    {
        var device = new MemoryDevice(16L << 20, 4096);
        var allocator = Allocator(device);
        await using var tree = BPlusTree.Create(device, allocator, Options());
        await tree.PutAsync("k"u8.ToArray(), "v"u8.ToArray());
        var key = await Assert.ThrowsAsync<KeyTooLargeException>(async () => await tree.PutAsync(new byte[BPlusTree.MaxKeyLength + 1], "v"u8.ToArray()));
        Assert.Equal(BPlusTree.MaxKeyLength + 1, key.Length);
        await Assert.ThrowsAsync<KeyTooLargeException>(async () => await tree.DeleteAsync(new byte[BPlusTree.MaxKeyLength + 1]));
        await Assert.ThrowsAsync<ValueTooLargeException>(async () => await tree.PutAsync("k"u8.ToArray(), new byte[BPlusTree.MaxValueLength + 1]));
        // Still usable, unchanged.
        Assert.Equal("v"u8.ToArray(), await tree.GetAsync("k"u8.ToArray()));
        await tree.PutAsync(new byte[BPlusTree.MaxKeyLength], new byte[BPlusTree.MaxInlineValue(BPlusTree.MaxKeyLength)]);
        await tree.PutAsync(new byte[BPlusTree.MaxKeyLength - 1], new byte[BPlusTree.MaxValueLength]);
        Assert.Equal(3, tree.Count);
        await tree.CommitAsync();
        await AssertSoundAsync(tree, allocator, "limits");
    }

    [Fact]
    public async Task Values_too_big_for_a_leaf_live_in_overflow_pages_that_are_freed_with_them()
    {
        var device = new MemoryDevice(64L << 20, 4096);
        var allocator = Allocator(device);
        await using var tree = BPlusTree.Create(device, allocator, Options());
        await tree.PutAsync("small"u8.ToArray(), "x"u8.ToArray());
        var root = await tree.CommitAsync();
        tree.ReleaseFreedPages(root.Generation);
        var baseline = allocator.AllocatedCount;

        // Just inline, just not, and an xattr of 64 KiB (17 overflow pages of 4048 bytes).
        var inline = TestSupport.Bytes(BPlusTree.MaxInlineValue(4), 1);
        var over = TestSupport.Bytes(BPlusTree.MaxInlineValue(4) + 1, 2);
        var xattr = TestSupport.Bytes(64 << 10, 3);
        await tree.PutAsync("in.."u8.ToArray(), inline);
        await tree.PutAsync("out."u8.ToArray(), over);
        await tree.PutAsync("big."u8.ToArray(), xattr);
        root = await tree.CommitAsync();
        tree.ReleaseFreedPages(root.Generation);
        Assert.Equal(inline, await tree.GetAsync("in.."u8.ToArray()));
        Assert.Equal(over, await tree.GetAsync("out."u8.ToArray()));
        Assert.Equal(xattr, await tree.GetAsync("big."u8.ToArray()));
        var report = await AssertSoundAsync(tree, allocator, "overflow");
        // Leaf + 1 + 17 overflow pages (the root leaf was replaced in place of the old one).
        Assert.Equal(1 + 1 + 17, report.Pages.Count);

        // Replacing a big value by another frees the old chain; deleting frees the rest.
        var xattr2 = TestSupport.Bytes(40000, 4);
        await tree.PutAsync("big."u8.ToArray(), xattr2);
        Assert.Equal(xattr2, await tree.GetAsync("big."u8.ToArray()));
        root = await tree.CommitAsync();
        tree.ReleaseFreedPages(root.Generation);
        await AssertSoundAsync(tree, allocator, "replaced");
        Assert.True(await tree.DeleteAsync("big."u8.ToArray()));
        Assert.True(await tree.DeleteAsync("out."u8.ToArray()));
        Assert.True(await tree.DeleteAsync("in.."u8.ToArray()));
        root = await tree.CommitAsync();
        tree.ReleaseFreedPages(root.Generation);
        await AssertSoundAsync(tree, allocator, "deleted");
        Assert.Equal(baseline, allocator.AllocatedCount);
    }

    [Fact]
    public async Task Running_out_of_pages_fails_the_transaction_and_a_rollback_restores_the_commit()
    {
        var seed = TestSupport.Seed(output, nameof(Running_out_of_pages_fails_the_transaction_and_a_rollback_restores_the_commit));
        var rng = new Random(seed);
        var device = new MemoryDevice(16L << 20, 4096);
        var allocator = new RegionPageAllocator(FirstPage, 120);
        await using var tree = BPlusTree.Create(device, allocator, Options());
        var model = new SortedDictionary<byte[], byte[]>(ByteOrder.Instance);
        for (var i = 0; i < 100; i++)
        {
            var k = Key(i);
            model[k] = TestSupport.Bytes(100, i);
            await tree.PutAsync(k, model[k]);
        }
        var root = await tree.CommitAsync();
        tree.ReleaseFreedPages(root.Generation);
        await Assert.ThrowsAsync<NoSpaceException>(async () =>
        {
            for (var i = 100; ; i++)
            {
                await tree.PutAsync(Key(i), TestSupport.Bytes(rng.Next(100, 3000), i));
            }
        });
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await tree.PutAsync("a"u8.ToArray(), "b"u8.ToArray()));
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await tree.CommitAsync());
        await tree.RollbackAsync();
        await AssertContentAsync(model, tree.Scan(Array.Empty<byte>()), $"seed {seed}");
        await AssertSoundAsync(tree, allocator, $"seed {seed} after rollback");
        // And usable again.
        await tree.PutAsync("a"u8.ToArray(), "b"u8.ToArray());
        await tree.CommitAsync();
        await AssertSoundAsync(tree, allocator, $"seed {seed} after a commit");
    }

    [Fact]
    public async Task A_snapshot_reads_its_commit_while_the_writer_goes_on_and_holds_back_page_reuse()
    {
        var seed = TestSupport.Seed(output, nameof(A_snapshot_reads_its_commit_while_the_writer_goes_on_and_holds_back_page_reuse));
        var rng = new Random(seed);
        var device = new MemoryDevice(128L << 20, 4096);
        var allocator = Allocator(device);
        await using var tree = BPlusTree.Create(device, allocator, Options(cachePages: 16));
        var model = new SortedDictionary<byte[], byte[]>(ByteOrder.Instance);
        await CrashTests.MutateAsync(tree, model, rng, 2000);
        var first = await tree.CommitAsync();
        tree.ReleaseFreedPages(first.Generation);
        var expected = Copy(model);

        using var snapshot = tree.OpenSnapshot();
        Assert.Equal(first, snapshot.Root);
        var cursor = snapshot.Scan(Array.Empty<byte>());
        var seen = new List<(byte[] Key, byte[] Value)>();
        for (var i = 0; i < 100 && await cursor.MoveNextAsync(); i++)
        {
            seen.Add((cursor.Key.ToArray(), cursor.Value.ToArray()));
        }
        // The writer rewrites most of the tree and commits twice; the commits are durable.
        for (var round = 0; round < 2; round++)
        {
            await CrashTests.MutateAsync(tree, model, rng, 1500);
            await tree.DeleteRangeAsync(Key(0), Key(50));
            foreach (var k in model.Keys.Where(k => ByteOrder.Instance.Compare(k, Key(0)) >= 0 && ByteOrder.Instance.Compare(k, Key(50)) < 0).ToList())
            {
                model.Remove(k);
            }
            var later = await tree.CommitAsync();
            tree.ReleaseFreedPages(later.Generation);
        }
        Assert.True(tree.WaitingPages > 0, "pages the snapshot reads wait for it");
        await AssertSoundAsync(tree, allocator, $"seed {seed} with the snapshot open");

        while (await cursor.MoveNextAsync())
        {
            seen.Add((cursor.Key.ToArray(), cursor.Value.ToArray()));
        }
        Assert.Equal(expected.Count, seen.Count);
        Assert.True(expected.Zip(seen).All(p => p.First.Key.AsSpan().SequenceEqual(p.Second.Key) && p.First.Value.AsSpan().SequenceEqual(p.Second.Value)),
            $"seed {seed}: the snapshot's scan is not its commit");
        foreach (var k in expected.Keys.Take(50))
        {
            Assert.Equal(expected[k], await snapshot.GetAsync(k));
        }
        await AssertContentAsync(model, tree.Scan(Array.Empty<byte>()), $"seed {seed} writer");

        snapshot.Dispose();
        Assert.Equal(0, tree.WaitingPages);
        await AssertSoundAsync(tree, allocator, $"seed {seed} after the snapshot closed");
    }

    [Fact]
    public async Task A_cursor_over_the_writable_view_goes_on_after_writes_without_repeating_a_key()
    {
        var device = new MemoryDevice(64L << 20, 4096);
        var allocator = Allocator(device);
        await using var tree = BPlusTree.Create(device, allocator, Options(cachePages: 16));
        for (var i = 0; i < 3000; i += 2)
        {
            await tree.PutAsync(Id(i), TestSupport.Bytes(30, i));
        }
        var cursor = tree.Scan(Array.Empty<byte>());
        var seen = new List<int>();
        while (await cursor.MoveNextAsync())
        {
            var id = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(cursor.Key.Span);
            seen.Add(id);
            Assert.Equal(TestSupport.Bytes(30, id), cursor.Value.ToArray());
            // Delete what was just read and the key two after it; add the key three after it.
            await tree.DeleteAsync(Id(id));
            await tree.DeleteAsync(Id(id + 2));
            if (id + 3 < 3000)
            {
                await tree.PutAsync(Id(id + 3), TestSupport.Bytes(30, id + 3));
            }
        }
        // 0 (deletes 2, adds 3), 3 (adds 6), 4 (deletes 6, adds 7), 7 (adds 10), 8 (deletes 10, adds 11), ...
        Assert.Equal(seen.Order(), seen);
        Assert.Equal(seen.Distinct().Count(), seen.Count);
        Assert.Equal([0, 3, 4, 7, 8, 11, 12], seen.Take(7));
        Assert.Equal(0, tree.Count - (await ScanAllAsync(tree.Scan(Array.Empty<byte>()))).Count);
        await tree.CommitAsync();
        await AssertSoundAsync(tree, allocator, "cursor");

        static byte[] Id(int i)
        {
            var k = new byte[4];
            System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(k, i);
            return k;
        }
    }

    [Fact]
    public async Task Prefix_scans_and_seeks_stay_in_their_range()
    {
        var device = new MemoryDevice(16L << 20, 4096);
        var allocator = Allocator(device);
        await using var tree = BPlusTree.Create(device, allocator, Options());
        byte[][] keys = [[0x01], [0x01, 0x00], [0x01, 0xff], [0x01, 0xff, 0xff], [0x02], [0xff], [0xff, 0x00], [0xff, 0xff, 0x01]];
        foreach (var k in keys)
        {
            await tree.PutAsync(k, k);
        }
        async Task<string> Scan(IndexCursor c) => string.Join(" ", (await ScanAllAsync(c)).Select(e => Convert.ToHexString(e.Key)));
        Assert.Equal("01 0100 01FF 01FFFF", await Scan(tree.ScanPrefix(new byte[] { 0x01 })));
        Assert.Equal("01FF 01FFFF", await Scan(tree.ScanPrefix(new byte[] { 0x01, 0xff })));
        Assert.Equal("FF FF00 FFFF01", await Scan(tree.ScanPrefix(new byte[] { 0xff })));
        Assert.Equal("FFFF01", await Scan(tree.ScanPrefix(new byte[] { 0xff, 0xff })));
        Assert.Equal("", await Scan(tree.ScanPrefix(new byte[] { 0x03 })));
        Assert.Equal("0100 01FF 01FFFF", await Scan(tree.Scan(new byte[] { 0x01, 0x00 }, new byte[] { 0x02 })));
        var seek = tree.Scan(new byte[] { 0x01 }, new byte[] { 0xff });
        seek.Seek(new byte[] { 0x01, 0xfe });
        Assert.Equal("01FF 01FFFF 02", await Scan(seek));
        seek.Seek(Array.Empty<byte>());
        Assert.Equal("01 0100 01FF 01FFFF 02", await Scan(seek));
    }

    [Fact]
    public async Task A_tree_emptied_by_a_range_delete_commits_and_reopens_empty()
    {
        var device = new MemoryDevice(64L << 20, 4096);
        var allocator = Allocator(device);
        var options = Options();
        var empty = await BPlusTree.Create(device, allocator, options).CommitAsync();
        Assert.Equal(RootDescriptor.Empty, empty);
        RootDescriptor root;
        await using (var tree = BPlusTree.Create(device, allocator, options))
        {
            for (var i = 0; i < 5000; i++)
            {
                await tree.PutAsync(Key(i), TestSupport.Bytes(i % 5 == 0 ? 5000 : 20, i));
            }
            var full = await tree.CommitAsync();
            tree.ReleaseFreedPages(full.Generation);
            Assert.Equal(5000, await tree.DeleteRangeAsync(Array.Empty<byte>(), null));
            Assert.Equal(0, tree.Height);
            root = await tree.CommitAsync();
            tree.ReleaseFreedPages(root.Generation);
            Assert.Equal(0, allocator.AllocatedCount);
            await AssertSoundAsync(tree, allocator, "emptied");
        }
        Assert.Equal(-1, root.RootPage);
        Assert.Equal(0, root.Count);
        await using var reopened = await BPlusTree.OpenAsync(device, allocator, root, options);
        Assert.Null(await reopened.GetAsync(Key(1)));
        Assert.False(await reopened.Scan(Array.Empty<byte>()).MoveNextAsync());
    }
}
