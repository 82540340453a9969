using System.Buffers.Binary;
using Appliance.Platform.Devices;

namespace Appliance.Store.Tests;

/// <summary>Bit rot, running out of space, foreign signatures and journal damage.</summary>
public class IntegrityTests
{
    [Theory]
    [InlineData(200_000)] // copy-on-write data
    [InlineData(3000)] // deferred data, in place after replay/apply
    public async Task Bit_rot_in_object_data_fails_the_read_and_fsck_names_the_object(int size)
    {
        var inner = await TestSupport.NewMemoryStoreAsync();
        var fi = new FaultInjectingDevice(inner);
        var data = TestSupport.Bytes(size, 1);
        long offset;
        await using (var store = await ObjectStore.MountAsync(fi))
        {
            await store.SubmitAsync(new Transaction().CreateCollection("pg").Write("pg", "victim", 0, data).Write("pg", "bystander", 0, data));
            await store.CheckpointAsync();
            var blocks = store.DeviceOffsetsOf("pg", "victim");
            offset = blocks[^1].Offset + 123;
            await fi.CorruptAsync(offset, 5);
            var e = await Assert.ThrowsAsync<ChecksumException>(() => store.ReadAsync("pg", "victim"));
            Assert.Equal("victim", e.ObjectName);
            Assert.Equal(blocks[^1].Index, e.BlockIndex);
            // A read that does not touch the bad block still works; another object is unaffected.
            if (blocks.Count > 1)
            {
                Assert.Equal(data[..100], await store.ReadAsync("pg", "victim", 0, 100));
            }
            Assert.Equal(data, await store.ReadAsync("pg", "bystander"));
            var report = await store.FsckAsync();
            Assert.False(report.IsClean);
            var error = Assert.Single(report.Errors);
            Assert.Contains("pg/victim", error);
            Assert.Contains("checksum mismatch", error);
        }
        // After a remount the rot is still reported, never returned as data.
        await using (var store = await ObjectStore.MountAsync(new FaultInjectingDevice(inner)))
        {
            await Assert.ThrowsAsync<ChecksumException>(() => store.ReadAsync("pg", "victim"));
            Assert.Contains((await store.FsckAsync()).Errors, e => e.Contains("pg/victim"));
        }
    }

    [Fact]
    public async Task Fsck_reports_onode_keys_that_disagree_with_their_objects_and_collections()
    {
        var dev = await TestSupport.NewMemoryStoreAsync();
        await using var store = await ObjectStore.MountAsync(dev);
        var a = new ObjectId(1, "a");
        await store.SubmitAsync(new Transaction().CreateCollection("pg").Touch("pg", a).Touch("pg", new ObjectId(2, "b")).CreateCollection("other"));
        Assert.True((await store.FsckAsync()).IsClean);
        // An onode moved under another hash's key, one in a collection that does not count it, one in a collection
        // that does not exist.
        var slot = new Appliance.Store.Meta.OnodeSlot();
        slot.Objects.Add(new Appliance.Store.Meta.Onode(a) { Nid = 1 });
        store.PutIndexForTests(Appliance.Store.Meta.MetaKeys.OnodeKey("pg", a), null);
        store.PutIndexForTests(Appliance.Store.Meta.MetaKeys.OnodeKey("pg", new ObjectId(0, "a")), Appliance.Store.Meta.OnodeCodec.Encode(slot));
        var stray = new Appliance.Store.Meta.OnodeSlot();
        stray.Objects.Add(new Appliance.Store.Meta.Onode(new ObjectId(3, "stray")) { Nid = 2 });
        store.PutIndexForTests(Appliance.Store.Meta.MetaKeys.OnodeKey("other", new ObjectId(3, "stray")), Appliance.Store.Meta.OnodeCodec.Encode(stray));
        store.PutIndexForTests(Appliance.Store.Meta.MetaKeys.OnodeKey("ghost", new ObjectId(3, "stray")), Appliance.Store.Meta.OnodeCodec.Encode(stray));
        var report = await store.FsckAsync();
        Assert.Contains(report.Errors, e => e.Contains("object a of hash 00000001 is under a key of hash 00000000", StringComparison.Ordinal));
        Assert.Contains(report.Errors, e => e.Contains("collection pg: its record counts 2 objects, the index holds 1", StringComparison.Ordinal));
        Assert.Contains(report.Errors, e => e.Contains("collection other: its record counts 0 objects, the index holds 1", StringComparison.Ordinal));
        Assert.Contains(report.Errors, e => e.Contains("of collection ghost, which does not exist", StringComparison.Ordinal));
        Assert.True(report.Errors.Count == 4, report.ToString());
    }

    [Fact]
    public async Task Out_of_space_is_a_clear_error_and_deleting_frees_space_again()
    {
        var dev = await TestSupport.NewMemoryStoreAsync(3 << 20, TestSupport.Small(journal: 256 << 10, checkpoint: 128 << 10));
        var chunk = TestSupport.Bytes(512 << 10, 2);
        await using (var store = await ObjectStore.MountAsync(dev))
        {
            await store.SubmitAsync(new Transaction().CreateCollection("pg"));
            var written = 0;
            NoSpaceException? full = null;
            for (var i = 0; i < 20 && full is null; i++)
            {
                try
                {
                    await store.SubmitAsync(new Transaction().Write("pg", $"o{i}", 0, chunk).SetXattr("pg", $"o{i}", "n", [1]));
                    written++;
                }
                catch (NoSpaceException e)
                {
                    full = e;
                }
            }
            Assert.NotNull(full);
            Assert.Contains("out of space", full.Message);
            Assert.True(written >= 3, $"only {written} objects fit");
            // The failed transaction left nothing behind.
            Assert.Null(store.Stat("pg", $"o{written}"));
            Assert.Equal(written, store.StatFs().Objects);
            Assert.True((await store.FsckAsync()).IsClean);
            var before = store.StatFs();
            await store.SubmitAsync(new Transaction().Remove("pg", "o0").Remove("pg", "o1"));
            var after = store.StatFs();
            Assert.True(after.FreeBytes >= before.FreeBytes + 2 * chunk.Length, $"free {before.FreeBytes} -> {after.FreeBytes}");
            await store.SubmitAsync(new Transaction().Write("pg", "again", 0, chunk));
        }
        await using (var store = await ObjectStore.MountAsync(dev))
        {
            Assert.True((await store.FsckAsync()).IsClean);
            Assert.Equal(chunk, await store.ReadAsync("pg", "again"));
        }
    }

    [Fact]
    public async Task A_full_store_still_takes_short_overwrites_in_place_and_refuses_long_ones()
    {
        var dev = await TestSupport.NewMemoryStoreAsync(3 << 20, TestSupport.Small(journal: 256 << 10, checkpoint: 128 << 10));
        await using (var store = await ObjectStore.MountAsync(dev))
        {
            await store.SubmitAsync(new Transaction().CreateCollection("pg"));
            // Fill every data block: whole objects first, then single blocks until nothing is free.
            var i = 0;
            try
            {
                while (true)
                {
                    var size = store.StatFs().FreeBytes >= 256 << 10 ? 256 << 10 : 4096;
                    await store.SubmitAsync(new Transaction().Write("pg", $"o{i}", 0, TestSupport.Bytes(size, i)));
                    i++;
                }
            }
            catch (NoSpaceException)
            {
            }
            // Full for object data: the blocks left free are kept for the index's next commit (its reserve).
            var left = store.StatFs().FreeBytes;
            Assert.True(left < 64 * 4096, $"{left} bytes free");
            // A whole-block overwrite would normally go copy-on-write to a fresh block; there is none, so it is
            // written in place through the journal instead of failing.
            var block = TestSupport.Bytes(4096, 1000);
            await store.SubmitAsync(new Transaction().Write("pg", "o0", 8192, block));
            var unaligned = TestSupport.Bytes(10_000, 1001);
            await store.SubmitAsync(new Transaction().Write("pg", "o0", 50_001, unaligned));
            // A long overwrite still needs fresh blocks: refused, with no effect.
            var before = await store.ReadAsync("pg", "o0");
            await Assert.ThrowsAsync<NoSpaceException>(() => store.SubmitAsync(new Transaction().Write("pg", "o0", 0, TestSupport.Bytes(128 << 10, 1002))));
            Assert.Equal(before, await store.ReadAsync("pg", "o0"));
            Assert.Equal(block, (await store.ReadAsync("pg", "o0", 8192, 4096)));
            Assert.True((await store.FsckAsync()).IsClean);
        }
        await using (var store = await ObjectStore.MountAsync(dev))
        {
            Assert.True((await store.FsckAsync()).IsClean);
            var o0 = await store.ReadAsync("pg", "o0");
            Assert.Equal(TestSupport.Bytes(4096, 1000), o0.AsSpan(8192, 4096).ToArray());
            Assert.Equal(TestSupport.Bytes(10_000, 1001), o0.AsSpan(50_001, 10_000).ToArray());
        }
    }

    [Fact]
    public async Task Mkfs_refuses_foreign_signatures_unless_asked_to_wipe()
    {
        var dev = new MemoryDevice(8 << 20, 512);
        using (var b = new AlignedBuffer(2048, 512))
        {
            BinaryPrimitives.WriteUInt16LittleEndian(b.GetSpan()[1080..], 0xEF53);
            await dev.WriteAsync(0, b.Memory);
        }
        var e = await Assert.ThrowsAsync<ForeignSignatureException>(() => ObjectStore.MkfsAsync(dev, TestSupport.Small()));
        Assert.Contains("ext2/3/4", e.Message);
        Assert.Contains("--wipe", e.Message);
        var first = await ObjectStore.MkfsAsync(dev, TestSupport.Small() with { Wipe = true, OsdId = 7 });
        // Our own store is refused too: it may belong to another OSD.
        var again = await Assert.ThrowsAsync<ForeignSignatureException>(() => ObjectStore.MkfsAsync(dev, TestSupport.Small()));
        Assert.Contains("object store", again.Message);
        await using var store = await ObjectStore.MountAsync(dev);
        Assert.Equal(first.StoreId, store.Superblock.StoreId);
        Assert.Equal(7, store.Superblock.OsdId);
    }

    [Theory]
    [InlineData("MBR")]
    [InlineData("GPT")]
    public async Task Partition_tables_are_recognised(string what)
    {
        var dev = new MemoryDevice(8 << 20, 512);
        using (var b = new AlignedBuffer(1024, 512))
        {
            if (what == "GPT")
            {
                "EFI PART"u8.CopyTo(b.GetSpan()[512..]);
            }
            else
            {
                b.GetSpan()[510] = 0x55;
                b.GetSpan()[511] = 0xAA;
            }
            await dev.WriteAsync(0, b.Memory);
        }
        var e = await Assert.ThrowsAsync<ForeignSignatureException>(() => ObjectStore.MkfsAsync(dev, TestSupport.Small()));
        Assert.Contains(what, e.Message);
    }

    [Fact]
    public async Task A_blank_device_is_not_a_store_and_a_damaged_superblock_copy_is_survived_and_reported()
    {
        var blank = new MemoryDevice(8 << 20);
        await Assert.ThrowsAsync<NotAStoreException>(() => ObjectStore.MountAsync(blank));
        var inner = await TestSupport.NewMemoryStoreAsync();
        var fi = new FaultInjectingDevice(inner);
        await fi.CorruptAsync(40, 1);
        await using var store = await ObjectStore.MountAsync(fi);
        Assert.Contains(store.MountNotes, n => n.Contains("copy A is damaged"));
        var report = await store.FsckAsync();
        Assert.Contains(report.Errors, e => e.Contains("superblock copy A"));
    }

    /// <summary>Five transactions, each in its own journal record, all durable but never checkpointed.</summary>
    private static async Task<(MemoryDevice Inner, long JournalOffset)> FiveRecordsAsync()
    {
        var inner = await TestSupport.NewMemoryStoreAsync();
        var fi = new FaultInjectingDevice(inner);
        var store = await ObjectStore.MountAsync(fi);
        await store.SubmitAsync(new Transaction().CreateCollection("pg"));
        for (var i = 1; i <= 4; i++)
        {
            await store.SubmitAsync(new Transaction().SetXattr("pg", "o", "n", [(byte)i]));
        }
        var offset = store.Superblock.Geometry.JournalOffset;
        await fi.PowerCutAsync(PowerCutMode.DropUnflushed);
        await store.DisposeAsync();
        return (inner, offset);
    }

    [Fact]
    public async Task Damage_in_the_middle_of_the_journal_is_reported_not_papered_over()
    {
        var (inner, journal) = await FiveRecordsAsync();
        var fi = new FaultInjectingDevice(inner);
        await fi.CorruptAsync(journal + 4096 * 2 + 40, 3); // the payload of the third record
        var e = await Assert.ThrowsAsync<CorruptionException>(() => ObjectStore.MountAsync(fi));
        Assert.Contains("damaged in the middle", e.Message);
    }

    [Fact]
    public async Task A_bad_last_record_is_a_torn_tail_and_is_discarded()
    {
        var (inner, journal) = await FiveRecordsAsync();
        var fi = new FaultInjectingDevice(inner);
        await fi.CorruptAsync(journal + 4096 * 4 + 40, 3); // the payload of the last record
        await using (var store = await ObjectStore.MountAsync(fi))
        {
            Assert.Contains(store.MountNotes, n => n.Contains("torn"));
            Assert.Equal(new byte[] { 3 }, store.GetXattr("pg", "o", "n"));
            Assert.True((await store.FsckAsync()).IsClean);
            await store.SubmitAsync(new Transaction().SetXattr("pg", "o", "n", [9]));
        }
        await using (var store = await ObjectStore.MountAsync(new FaultInjectingDevice(inner)))
        {
            Assert.Equal(new byte[] { 9 }, store.GetXattr("pg", "o", "n"));
        }
    }
}
