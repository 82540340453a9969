using System.Text;
using Appliance.Platform.Devices;
using Appliance.Store.CrashWriter;
using Xunit.Abstractions;

namespace Appliance.Store.Tests;

/// <summary>Transaction semantics, operation by operation, on each device kind; every test also remounts and checks
/// that the same state came back, and that fsck is clean.</summary>
public abstract class TransactionTests(ITestOutputHelper output) : IAsyncLifetime
{
    protected ITestOutputHelper Output { get; } = output;

    protected IBlockDevice Device { get; set; } = null!;

    protected ObjectStore Store { get; private set; } = null!;

    protected abstract Task<IBlockDevice> CreateDeviceAsync();

    protected virtual Task CleanupAsync() => Task.CompletedTask;

    public async Task InitializeAsync()
    {
        Device = await CreateDeviceAsync();
        await ObjectStore.MkfsAsync(Device, TestSupport.Small(journal: 4 << 20, checkpoint: 1 << 20));
        Store = await ObjectStore.MountAsync(Device);
        await Store.SubmitAsync(new Transaction().CreateCollection("pg"));
    }

    public async Task DisposeAsync()
    {
        await Store.DisposeAsync();
        await Device.DisposeAsync();
        await CleanupAsync();
    }

    protected async Task RemountAsync()
    {
        var report = await Store.FsckAsync();
        Assert.True(report.IsClean, report.ToString());
        await Store.DisposeAsync();
        Store = await ObjectStore.MountAsync(Device);
        report = await Store.FsckAsync();
        Assert.True(report.IsClean, report.ToString());
    }

    private static byte[] U(string s) => Encoding.UTF8.GetBytes(s);

    [Fact]
    public async Task Write_reads_back_holes_read_as_zeros_and_it_survives_remount()
    {
        var small = TestSupport.Bytes(5000, 1);
        var large = TestSupport.Bytes(300_000, 2);
        await Store.SubmitAsync(new Transaction().Write("pg", "a", 100_000, small).Write("pg", "b", 1000, large));
        for (var pass = 0; pass < 2; pass++)
        {
            var a = await Store.ReadAsync("pg", "a");
            Assert.Equal(105_000, a.Length);
            Assert.True(a.AsSpan(0, 100_000).IndexOfAnyExcept((byte)0) < 0, "unwritten range must read as zeros");
            Assert.Equal(small, a[100_000..]);
            Assert.Equal(large, (await Store.ReadAsync("pg", "b"))[1000..]);
            Assert.Equal(large.AsSpan(5000, 777).ToArray(), await Store.ReadAsync("pg", "b", 6000, 777));
            Assert.Empty(await Store.ReadAsync("pg", "b", 10_000_000, 10));
            await RemountAsync();
        }
    }

    [Fact]
    public async Task Writes_without_a_copy_store_exactly_the_data_they_were_given()
    {
        // Long enough that the copy into aligned memory is written piece by piece as it is copied.
        var data = TestSupport.Bytes(1_500_000, 11);
        var small = TestSupport.Bytes(3000, 12);
        // Large (copy-on-write) at a block boundary and at an odd offset, small (deferred) at an odd offset.
        await Store.SubmitAsync(new Transaction().WriteWithoutCopy("pg", "a", 0, data).WriteWithoutCopy("pg", "b", 1234, data.AsMemory(5, 600_000)));
        await Store.SubmitAsync(new Transaction().WriteWithoutCopy("pg", "a", 70_001, small));
        // Once durable the buffers are the caller's again: changing them changes nothing stored.
        var expectedA = (byte[])data.Clone();
        small.CopyTo(expectedA, 70_001);
        var expectedB = new byte[1234 + 600_000];
        data.AsSpan(5, 600_000).CopyTo(expectedB.AsSpan(1234));
        Array.Clear(data);
        Array.Clear(small);
        Assert.Equal(expectedA, await Store.ReadAsync("pg", "a"));
        Assert.Equal(expectedB, await Store.ReadAsync("pg", "b"));
        await RemountAsync();
        Assert.Equal(expectedA, await Store.ReadAsync("pg", "a"));
        Assert.Equal(expectedB, await Store.ReadAsync("pg", "b"));
    }

    [Fact]
    public async Task Small_and_large_overwrites_replace_bytes_exactly()
    {
        var data = TestSupport.Bytes(200_000, 3);
        await Store.SubmitAsync(new Transaction().Write("pg", "o", 0, data));
        var patch = TestSupport.Bytes(10, 4);
        var big = TestSupport.Bytes(100_000, 5);
        await Store.SubmitAsync(new Transaction().Write("pg", "o", 4090, patch).Write("pg", "o", 50_001, big));
        patch.CopyTo(data, 4090);
        big.CopyTo(data, 50_001);
        Assert.Equal(data, await Store.ReadAsync("pg", "o"));
        await RemountAsync();
        Assert.Equal(data, await Store.ReadAsync("pg", "o"));
    }

    [Fact]
    public async Task Zero_and_truncate_behave_like_a_file()
    {
        var data = TestSupport.Bytes(50_000, 6);
        await Store.SubmitAsync(new Transaction().Write("pg", "o", 0, data).Zero("pg", "o", 1000, 20_000));
        data.AsSpan(1000, 20_000).Clear();
        Assert.Equal(data, await Store.ReadAsync("pg", "o"));
        // Shrink into the middle of a block, then grow again: the cut-off bytes read as zeros.
        await Store.SubmitAsync(new Transaction().Truncate("pg", "o", 30_001).Truncate("pg", "o", 40_000));
        var expect = new byte[40_000];
        data.AsSpan(0, 30_001).CopyTo(expect);
        Assert.Equal(expect, await Store.ReadAsync("pg", "o"));
        await Store.SubmitAsync(new Transaction().Zero("pg", "o", 39_000, 5000));
        Array.Resize(ref expect, 44_000);
        expect.AsSpan(39_000).Clear();
        Assert.Equal(expect, await Store.ReadAsync("pg", "o"));
        await RemountAsync();
        Assert.Equal(expect, await Store.ReadAsync("pg", "o"));
        Assert.Equal(44_000, Store.Stat("pg", "o")!.Size);
    }

    [Fact]
    public async Task Remove_touch_and_collections()
    {
        await Store.SubmitAsync(new Transaction().Touch("pg", "t").Write("pg", "w", 0, [1, 2, 3]));
        Assert.Equal(0, Store.Stat("pg", "t")!.Size);
        await Assert.ThrowsAsync<CollectionNotEmptyException>(() => Store.SubmitAsync(new Transaction().RemoveCollection("pg")));
        await Assert.ThrowsAsync<CollectionExistsException>(() => Store.SubmitAsync(new Transaction().CreateCollection("pg")));
        await Assert.ThrowsAsync<CollectionNotFoundException>(() => Store.SubmitAsync(new Transaction().Touch("nope", "x")));
        await Assert.ThrowsAsync<ObjectNotFoundException>(() => Store.SubmitAsync(new Transaction().Remove("pg", "nope")));
        await Store.SubmitAsync(new Transaction().Remove("pg", "t").Remove("pg", "w").RemoveCollection("pg").CreateCollection("pg2").Touch("pg2", "x"));
        await RemountAsync();
        Assert.Equal(["pg2"], Store.ListCollections());
        Assert.Null(Store.Stat("pg2", "y"));
        Assert.NotNull(Store.Stat("pg2", "x"));
    }

    [Fact]
    public async Task Clone_and_clone_range_copy_data_xattrs_and_omap()
    {
        var data = TestSupport.Bytes(90_000, 7);
        await Store.SubmitAsync(new Transaction().Write("pg", "src", 0, data).SetXattr("pg", "src", "x", U("1")).OmapSet("pg", "src", "k", U("v"))
            .Clone("pg", "src", "dst").Write("pg", "src", 0, [9, 9, 9]).CloneRange("pg", "src", 0, 10, "part", 5));
        Assert.Equal(data, await Store.ReadAsync("pg", "dst"));
        Assert.Equal(U("1"), Store.GetXattr("pg", "dst", "x"));
        Assert.Equal(U("v"), Store.OmapGetValue("pg", "dst", "k"));
        var part = await Store.ReadAsync("pg", "part");
        Assert.Equal(15, part.Length);
        Assert.Equal(new byte[] { 0, 0, 0, 0, 0, 9, 9, 9 }, part[..8]);
        Assert.Equal(data.AsSpan(3, 7).ToArray(), part[8..]);
        await Store.SubmitAsync(new Transaction().Remove("pg", "src"));
        await RemountAsync();
        Assert.Equal(data, await Store.ReadAsync("pg", "dst"));
        await Assert.ThrowsAsync<ObjectNotFoundException>(() => Store.SubmitAsync(new Transaction().Clone("pg", "src", "again")));
    }

    [Fact]
    public async Task Xattrs_and_omap_ranges()
    {
        var t = new Transaction().SetXattr("pg", "o", "a", U("1")).SetXattr("pg", "o", "b", U("2")).RemoveXattr("pg", "o", "a");
        foreach (var k in new[] { "p1", "p3", "p2", "q1", "a0" })
        {
            t.OmapSet("pg", "o", k, U("v" + k));
        }
        await Store.SubmitAsync(t);
        await Store.SubmitAsync(new Transaction().OmapRemove("pg", "o", "p3").OmapRemove("pg", "o", "missing"));
        for (var pass = 0; pass < 2; pass++)
        {
            Assert.Equal(["b"], Store.GetXattrs("pg", "o").Keys);
            Assert.Equal(["a0", "p1", "p2", "q1"], Store.OmapGet("pg", "o").Select(kv => kv.Key));
            Assert.Equal(["p1", "p2"], Store.OmapGet("pg", "o", prefix: "p").Select(kv => kv.Key));
            Assert.Equal(["p2"], Store.OmapGet("pg", "o", prefix: "p", startAfter: "p1").Select(kv => kv.Key));
            Assert.Equal(["p2", "q1"], Store.OmapGet("pg", "o", startAfter: "p1").Select(kv => kv.Key));
            Assert.Equal(["a0", "p1"], Store.OmapGet("pg", "o", limit: 2).Select(kv => kv.Key));
            Assert.Empty(Store.OmapGet("pg", "o", startAfter: "z"));
            Assert.Equal(U("vq1"), Store.OmapGetValue("pg", "o", "q1"));
            await RemountAsync();
        }
        await Store.SubmitAsync(new Transaction().OmapClear("pg", "o"));
        Assert.Empty(Store.OmapGet("pg", "o"));
    }

    [Fact]
    public async Task Listing_is_in_bitwise_hash_order_and_resumes_from_a_cursor()
    {
        var t = new Transaction();
        for (var i = 0; i < 50; i++)
        {
            // Some names twice, under two hashes: two objects.
            t.Touch("pg", new ObjectId(unchecked((uint)i * 2654435761u), $"obj{i % 40}"));
        }
        await Store.SubmitAsync(t);
        var seen = new List<ObjectInfo>();
        ObjectId? cursor = null;
        do
        {
            var page = Store.List("pg", cursor, 7);
            Assert.True(page.Objects.Count <= 7);
            seen.AddRange(page.Objects);
            cursor = page.Next;
            if (cursor is not null && seen.Count == 21)
            {
                // The cursor survives a restart.
                await RemountAsync();
            }
        }
        while (cursor is not null);
        Assert.Equal(50, seen.Count);
        Assert.Equal(50, seen.Select(o => o.Id).Distinct().Count());
        Assert.Equal(
            seen.OrderBy(o => ObjectId.ReverseBits(o.Hash)).ThenBy(o => o.Name, StringComparer.Ordinal).Select(o => o.Id),
            seen.Select(o => o.Id));
        Assert.Equal(50, Store.StatFs().Objects);
    }

    [Fact]
    public async Task A_failing_transaction_has_no_effect()
    {
        await Store.SubmitAsync(new Transaction().Write("pg", "keep", 0, [1]));
        var bad = new Transaction().Write("pg", "keep", 0, TestSupport.Bytes(100_000, 8)).SetXattr("pg", "new", "x", [1]).OmapSet("pg", "keep", "k", [1]).Remove("pg", "ghost");
        await Assert.ThrowsAsync<ObjectNotFoundException>(() => Store.SubmitAsync(bad));
        Assert.Equal(new byte[] { 1 }, await Store.ReadAsync("pg", "keep"));
        Assert.Null(Store.Stat("pg", "new"));
        Assert.Empty(Store.OmapGet("pg", "keep"));
        await RemountAsync();
        Assert.Equal(new byte[] { 1 }, await Store.ReadAsync("pg", "keep"));
        Assert.Equal(1, Store.StatFs().Objects);
    }

    [Fact]
    public async Task Long_writes_started_before_their_transaction_is_prepared_land_or_leave_nothing()
    {
        // The last data operation on an object writes its long data while the draft goes on; an earlier one on the
        // same object does not (a later operation changes its blocks again).
        var a = TestSupport.Bytes(1 << 20, 21);
        var patch = TestSupport.Bytes(5000, 22);
        var b = TestSupport.Bytes(700_001, 23);
        var c = TestSupport.Bytes(1 << 20, 24);
        await Store.SubmitAsync(new Transaction()
            .Write("pg", "a", 0, a).Write("pg", "a", 4096, patch)
            .WriteWithoutCopy("pg", "b", 333, b)
            .Write("pg", "c", 8192, c).SetXattr("pg", "c", "x", [1]));
        var expectA = (byte[])a.Clone();
        patch.CopyTo(expectA, 4096);
        var expectB = new byte[333 + b.Length];
        b.CopyTo(expectB, 333);
        var expectC = new byte[8192 + c.Length];
        c.CopyTo(expectC, 8192);
        Assert.Equal(expectA, await Store.ReadAsync("pg", "a"));
        Assert.Equal(expectB, await Store.ReadAsync("pg", "b"));
        Assert.Equal(expectC, await Store.ReadAsync("pg", "c"));
        // Early: the whole blocks of b (1..169) and of c (256); none of a.
        Assert.Equal(169 + 256, Store.EarlyBlocks);

        // A transaction that fails after its early writes started gives every block back. (Free space for data:
        // the index's own pages vary with its commits.)
        long DataFree() => Store.StatFs() is var st ? st.FreeBytes + st.MetadataBytes : 0;
        var free = DataFree();
        await Assert.ThrowsAsync<ObjectNotFoundException>(() => Store.SubmitAsync(new Transaction()
            .WriteWithoutCopy("pg", "d", 0, TestSupport.Bytes(2 << 20, 25)).Write("pg", "e", 0, c).Remove("pg", "ghost")));
        Assert.Equal(169 + 256 + 512 + 256, Store.EarlyBlocks);
        Assert.Equal(free, DataFree());
        Assert.Null(Store.Stat("pg", "d"));
        Assert.True((await Store.FsckAsync()).IsClean);

        await RemountAsync();
        Assert.Equal(expectA, await Store.ReadAsync("pg", "a"));
        Assert.Equal(expectB, await Store.ReadAsync("pg", "b"));
        Assert.Equal(expectC, await Store.ReadAsync("pg", "c"));
        Assert.Equal(free, DataFree());
        Assert.True((await Store.FsckAsync()).IsClean);
    }

    [Fact]
    public async Task Concurrent_submissions_apply_in_submission_order()
    {
        var tasks = new List<Task>();
        for (var i = 0; i < 200; i++)
        {
            var v = BitConverter.GetBytes(i);
            tasks.Add(Store.SubmitAsync(new Transaction().Write("pg", "o", (i % 7) * 4, v).SetXattr("pg", "o", "last", v).OmapSet("pg", "o", $"k{i:D3}", v)));
        }
        await Task.WhenAll(tasks);
        var expect = new byte[28];
        for (var i = 0; i < 200; i++)
        {
            BitConverter.GetBytes(i).CopyTo(expect, (i % 7) * 4);
        }
        Assert.Equal(expect, await Store.ReadAsync("pg", "o"));
        Assert.Equal(BitConverter.GetBytes(199), Store.GetXattr("pg", "o", "last"));
        await RemountAsync();
        Assert.Equal(expect, await Store.ReadAsync("pg", "o"));
        Assert.Equal(200, Store.OmapGet("pg", "o").Count);
    }

    [Fact]
    public async Task One_name_under_two_hashes_is_two_objects_and_the_hash_survives_remount()
    {
        var a = new ObjectId(0x1234, "same");
        var b = new ObjectId(0xabcd0000, "same");
        await Store.SubmitAsync(new Transaction().Write("pg", a, 0, [1]).Write("pg", b, 0, [2, 2]).OmapSet("pg", b, "k", [3]));
        for (var pass = 0; pass < 2; pass++)
        {
            Assert.Equal(new byte[] { 1 }, await Store.ReadAsync("pg", a));
            Assert.Equal(new byte[] { 2, 2 }, await Store.ReadAsync("pg", b));
            Assert.Empty(Store.OmapGet("pg", a));
            Assert.Single(Store.OmapGet("pg", b));
            Assert.Null(Store.Stat("pg", "same"));
            Assert.Equal(b, Store.Stat("pg", b)!.Id);
            // Listed by reversed hash: b (0xabcd0000 reversed is 0x0000b3d5) before a (0x2c480000).
            Assert.Equal([b, a], Store.List("pg").Objects.Select(o => o.Id));
            await RemountAsync();
        }
        await Store.SubmitAsync(new Transaction().Remove("pg", a));
        Assert.Equal([b], Store.List("pg").Objects.Select(o => o.Id));
        await Assert.ThrowsAsync<ObjectNotFoundException>(() => Store.SubmitAsync(new Transaction().Remove("pg", new ObjectId(0x1235, "same"))));
    }

    [Fact]
    public async Task Move_carries_data_xattrs_and_omap_to_another_collection_without_copying_data()
    {
        var src = new ObjectId(0x11, "obj");
        var dst = new ObjectId(0x22, "renamed");
        var data = TestSupport.Bytes(300_000, 31);
        await Store.SubmitAsync(new Transaction().CreateCollection("other").Write("pg", src, 0, data).SetXattr("pg", src, "x", [7]).OmapSet("pg", src, "k", [8]));
        var blocks = Store.DeviceOffsetsOf("pg", src);
        // The omap goes into the index at a checkpoint (one page here); it is keyed by the object's nid, so the move
        // changes no index page either.
        await Store.CheckpointAsync();
        var used = Store.StatFs().UsedBytes;
        await Store.SubmitAsync(new Transaction().Move("pg", src, "other", dst));
        for (var pass = 0; pass < 2; pass++)
        {
            Assert.Null(Store.Stat("pg", src));
            Assert.Equal(data, await Store.ReadAsync("other", dst));
            Assert.Equal(new byte[] { 7 }, Store.GetXattr("other", dst, "x"));
            Assert.Equal(new byte[] { 8 }, Store.OmapGetValue("other", dst, "k"));
            // The onode moved: the same device blocks, nothing written or allocated for the data.
            Assert.Equal(blocks, Store.DeviceOffsetsOf("other", dst));
            Assert.Equal(used, Store.StatFs().UsedBytes);
            await RemountAsync();
        }

        // Onto an existing object: refused, nothing changes.
        await Store.SubmitAsync(new Transaction().Touch("pg", "there"));
        await Assert.ThrowsAsync<ObjectExistsException>(() => Store.SubmitAsync(new Transaction().Write("pg", "there", 0, [1]).Move("other", dst, "pg", "there")));
        Assert.Equal(0, Store.Stat("pg", "there")!.Size);
        Assert.Equal(data, await Store.ReadAsync("other", dst));
        await Assert.ThrowsAsync<ObjectNotFoundException>(() => Store.SubmitAsync(new Transaction().Move("pg", "ghost", "other")));
        await Assert.ThrowsAsync<CollectionNotFoundException>(() => Store.SubmitAsync(new Transaction().Move("other", dst, "nowhere")));
        Assert.Throws<ArgumentException>(() => new Transaction().Move("pg", "there", "pg"));

        // Within one transaction: written, moved, written again under the new id, removed and replaced; a long write
        // before a move (no early write: the object is written again under its new name).
        var big = TestSupport.Bytes(200_000, 32);
        await Store.SubmitAsync(new Transaction()
            .Write("pg", "t", 0, big)
            .Move("pg", "t", "other", "t2")
            .Write("other", "t2", 5, [9, 9])
            .Remove("pg", "there")
            .Move("other", dst, "pg", "there"));
        big[5] = big[6] = 9;
        for (var pass = 0; pass < 2; pass++)
        {
            Assert.Equal(big, await Store.ReadAsync("other", "t2"));
            Assert.Null(Store.Stat("pg", "t"));
            Assert.Equal(data, await Store.ReadAsync("pg", "there"));
            Assert.Null(Store.Stat("other", dst));
            await RemountAsync();
        }
    }

    [Fact]
    public async Task SplitCollection_moves_exactly_the_matching_objects_in_one_transaction()
    {
        var rng = new Random(41);
        var ids = new List<ObjectId>();
        for (var chunk = 0; chunk < 3; chunk++)
        {
            var t = new Transaction();
            for (var i = 0; i < 1000; i++)
            {
                var id = new ObjectId((uint)rng.NextInt64(0, 1L << 32), $"o{chunk}.{i}");
                ids.Add(id);
                t.Touch("pg", id);
            }
            await Store.SubmitAsync(t);
        }
        await Store.SubmitAsync(new Transaction().Write("pg", ids[0], 0, [1, 2, 3]).OmapSet("pg", ids[0], "k", [4]));
        const int bits = 3;
        const uint match = 5;
        var moving = ids.Where(id => id.Matches(bits, match)).ToHashSet();
        var staying = ids.Where(id => !id.Matches(bits, match)).ToHashSet();
        Assert.NotEmpty(moving);
        // The child is created in the same transaction; a moved object is written there after the split, and an
        // object created in the source before it moves too.
        var late = new ObjectId(match | (1u << 20), "late");
        var movedOne = moving.First();
        await Store.SubmitAsync(new Transaction()
            .Touch("pg", late)
            .CreateCollection("child")
            .SplitCollection("pg", bits, match, "child")
            .Write("child", movedOne, 0, [5]));
        moving.Add(late);
        for (var pass = 0; pass < 2; pass++)
        {
            Assert.Equal(staying.Order(), List("pg"));
            Assert.Equal(moving.Order(), List("child"));
            // In the source, the moved range is now empty; in the child, it is the whole listing.
            Assert.Empty(Store.List("pg", range: SortKeyRange.ForHashBits(bits, match)).Objects);
            Assert.Equal(moving.Order(), Store.List("child", range: SortKeyRange.ForHashBits(bits, match)).Objects.Select(o => o.Id));
            Assert.Equal(new byte[] { 5 }, await Store.ReadAsync("child", movedOne));
            var first = ids[0].Matches(bits, match) ? "child" : "pg";
            Assert.Equal(new byte[] { 4 }, Store.OmapGetValue(first, ids[0], "k"));
            await RemountAsync();
        }

        // A destination holding a matching object is refused, whole.
        var intruder = new ObjectId(match | (1u << 3), "intruder");
        await Store.SubmitAsync(new Transaction().CreateCollection("child2").Touch("child2", intruder).Touch("pg", new ObjectId(match, "m")));
        await Assert.ThrowsAsync<ObjectExistsException>(() => Store.SubmitAsync(new Transaction().Touch("pg", "z").SplitCollection("pg", bits, match, "child2")));
        Assert.Null(Store.Stat("pg", "z"));
        Assert.NotNull(Store.Stat("pg", new ObjectId(match, "m")));
        await Assert.ThrowsAsync<CollectionNotFoundException>(() => Store.SubmitAsync(new Transaction().SplitCollection("pg", bits, match, "nowhere")));

        // Everything (0 bits) out, then the emptied source removed, in one transaction.
        var all = List("pg");
        await Store.SubmitAsync(new Transaction().CreateCollection("all").SplitCollection("pg", 0, 0, "all").RemoveCollection("pg"));
        Assert.False(Store.CollectionExists("pg"));
        Assert.Equal(all, List("all"));
        await RemountAsync();
        Assert.Equal(all, List("all"));
    }

    private List<ObjectId> List(string collection)
    {
        var ids = new List<ObjectId>();
        ObjectId? after = null;
        do
        {
            var page = Store.List(collection, after, 500);
            ids.AddRange(page.Objects.Select(o => o.Id));
            after = page.Next;
        }
        while (after is not null);
        return ids;
    }

    [Fact]
    public async Task OmapRemoveRange_removes_exactly_the_keys_in_the_range()
    {
        var t = new Transaction();
        for (var i = 0; i < 100; i++)
        {
            t.OmapSet("pg", "log", $"{i:D4}", [(byte)i]);
        }
        await Store.SubmitAsync(t);
        // Keys from before the transaction and from within it, in and out of the range.
        await Store.SubmitAsync(new Transaction().OmapSet("pg", "log", "0010a", [1]).OmapSet("pg", "log", "0100", [1]).OmapRemoveRange("pg", "log", "0010", "0050"));
        for (var pass = 0; pass < 2; pass++)
        {
            var keys = Store.OmapGet("pg", "log").Select(kv => kv.Key).ToList();
            Assert.Equal(Enumerable.Range(0, 10).Concat(Enumerable.Range(50, 51)).Select(i => $"{i:D4}"), keys);
            await RemountAsync();
        }
        // An empty or inverted range removes nothing; then a range past every key and one set in the same
        // transaction after the removal stays.
        await Store.SubmitAsync(new Transaction().OmapRemoveRange("pg", "log", "0060", "0060").OmapRemoveRange("pg", "log", "0070", "0060"));
        Assert.Equal(61, Store.OmapGet("pg", "log").Count);
        await Store.SubmitAsync(new Transaction().OmapRemoveRange("pg", "log", "", "\uffff").OmapSet("pg", "log", "after", [2]));
        Assert.Equal(["after"], Store.OmapGet("pg", "log").Select(kv => kv.Key));
        await RemountAsync();
        Assert.Equal(["after"], Store.OmapGet("pg", "log").Select(kv => kv.Key));
        await Assert.ThrowsAsync<ObjectNotFoundException>(() => Store.SubmitAsync(new Transaction().OmapRemoveRange("pg", "ghost", "a", "b")));
    }

    [Fact]
    public async Task Random_workload_matches_the_model_across_remounts()
    {
        var seed = TestSupport.Seed(Output, nameof(Random_workload_matches_the_model_across_remounts));
        await Store.SubmitAsync(new Transaction().Remove("pg", "none").RemoveCollection("pg")).ContinueWith(_ => { });
        await Store.SubmitAsync(new Transaction().RemoveCollection("pg"));
        var model = new Model();
        var tasks = new List<Task>();
        var kinds = new Dictionary<Type, int>();
        for (long n = 1; n <= 300; n++)
        {
            var ops = Workload.Generate(seed, n, model);
            foreach (var op in ops)
            {
                kinds[op.GetType()] = kinds.GetValueOrDefault(op.GetType()) + 1;
            }
            model.Apply(ops);
            tasks.Add(Store.SubmitAsync(Workload.ToTransaction(ops)));
            if (n % 50 == 0)
            {
                await Task.WhenAll(tasks);
                tasks.Clear();
                Assert.Empty(await model.DiffAsync(Store));
                await RemountAsync();
                Assert.Empty(await model.DiffAsync(Store));
            }
        }
        Output.WriteLine(string.Join(", ", kinds.Select(kv => $"{kv.Key.Name} {kv.Value}")));
        // The workload the crash tests replay has the operations the OSD's PG handling uses.
        Assert.Contains(typeof(WOp.Move), kinds.Keys);
        Assert.Contains(typeof(WOp.Split), kinds.Keys);
        Assert.Contains(typeof(WOp.OmapRmRange), kinds.Keys);
    }
}

public sealed class MemoryDeviceTransactionTests(ITestOutputHelper output) : TransactionTests(output)
{
    protected override Task<IBlockDevice> CreateDeviceAsync() => Task.FromResult<IBlockDevice>(new MemoryDevice(16 << 20, 512));
}

public sealed class FileDeviceTransactionTests(ITestOutputHelper output) : TransactionTests(output)
{
    private readonly TempDir _dir = new();

    protected override Task<IBlockDevice> CreateDeviceAsync() => Task.FromResult<IBlockDevice>(FileDevice.CreateFile(_dir.File("disk"), 16 << 20));

    protected override Task CleanupAsync()
    {
        _dir.Dispose();
        return Task.CompletedTask;
    }
}
