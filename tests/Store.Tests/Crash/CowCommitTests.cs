using Appliance.Platform.Devices;

namespace Appliance.Store.Tests.Crash;

/// <summary>
/// The copy-on-write commit: a large write's data goes to fresh blocks beside its journal record and one flush makes
/// both durable. A record whose data did not all land must not count (it was never acknowledged); a record whose
/// blocks were legitimately changed after it became durable (freed and reused, overwritten in place by a later
/// transaction of the same record) must still count.
/// </summary>
public class CowCommitTests
{
    private static readonly byte[] Big = TestSupport.Bytes(200_000, 7);

    public enum Damage
    {
        None,
        DataBlockLost,
        RecordTorn,
    }

    [Theory]
    [InlineData(Damage.None)]
    [InlineData(Damage.DataBlockLost)]
    [InlineData(Damage.RecordTorn)]
    public async Task A_last_record_counts_only_with_all_its_copy_on_write_data(Damage damage)
    {
        var inner = await TestSupport.NewMemoryStoreAsync();
        var fi = new FaultInjectingDevice(inner);
        var store = await ObjectStore.MountAsync(fi);
        await store.SubmitAsync(new Transaction().CreateCollection("pg").SetXattr("pg", "first", "n", [1]));
        await store.SubmitAsync(new Transaction().Write("pg", "big", 0, Big).SetXattr("pg", "first", "n", [2]));
        var blocks = store.DeviceOffsetsOf("pg", "big");
        var journal = store.Superblock.Geometry.JournalOffset;
        // Both records are durable (acknowledged); nothing was checkpointed: the second is the journal's tail.
        await fi.PowerCutAsync(PowerCutMode.DropUnflushed);
        await store.DisposeAsync();
        switch (damage)
        {
            case Damage.DataBlockLost:
            {
                // As if the power went before the flush: the record landed, one block of its data did not.
                using var stale = new AlignedBuffer(4096, 4096);
                stale.GetSpan().Fill(0x5A);
                await inner.WriteAsync(blocks[blocks.Count / 2].Offset, stale.Memory);
                break;
            }
            case Damage.RecordTorn:
                await new FaultInjectingDevice(inner).CorruptAsync(journal + 4096 + 40, 2);
                break;
        }
        await using (var again = await ObjectStore.MountAsync(new FaultInjectingDevice(inner)))
        {
            Assert.True((await again.FsckAsync()).IsClean);
            if (damage == Damage.None)
            {
                Assert.Equal(Big, await again.ReadAsync("pg", "big"));
                Assert.Equal(new byte[] { 2 }, again.GetXattr("pg", "first", "n"));
                Assert.DoesNotContain(again.MountNotes, n => n.Contains("discarded"));
            }
            else
            {
                // Wholly absent: neither the object nor the xattr change of the same transaction.
                Assert.Null(again.Stat("pg", "big"));
                Assert.Equal(new byte[] { 1 }, again.GetXattr("pg", "first", "n"));
                Assert.Contains(again.MountNotes, n => n.Contains("discarded a torn journal record")
                    && (damage == Damage.RecordTorn || n.Contains("copy-on-write data did not all reach the device")));
            }
            // The discarded record's header is gone: a new epoch writes over it without "damage in the middle".
            await again.SubmitAsync(new Transaction().SetXattr("pg", "first", "n", [3]).Write("pg", "later", 0, Big));
        }
        await using (var third = await ObjectStore.MountAsync(new FaultInjectingDevice(inner)))
        {
            Assert.Equal(new byte[] { 3 }, third.GetXattr("pg", "first", "n"));
            Assert.Equal(Big, await third.ReadAsync("pg", "later"));
            Assert.True((await third.FsckAsync()).IsClean);
        }
    }

    [Fact]
    public async Task A_record_whose_fresh_blocks_were_freed_in_it_and_reused_later_still_counts()
    {
        var inner = await TestSupport.NewMemoryStoreAsync();
        var fi = new FaultInjectingDevice(inner);
        var store = await ObjectStore.MountAsync(fi);
        await store.SubmitAsync(new Transaction().CreateCollection("pg"));
        // One record: x written copy-on-write, then removed; a witness that the record counts.
        await InOneRecordAsync(store, fi,
            new Transaction().Write("pg", "x", 0, Big),
            new Transaction().Remove("pg", "x").SetXattr("pg", "witness", "n", [1]));
        // The next transaction takes every free block, x's among them, and its data lands; its record does not.
        var free = store.StatFs().FreeBytes;
        var geo = store.Superblock.Geometry;
        fi.FailWith(FaultOp.Write, offset: geo.JournalOffset, length: geo.JournalSize);
        await Assert.ThrowsAnyAsync<StoreException>(() => store.SubmitAsync(new Transaction().Write("pg", "y", 0, TestSupport.Bytes((int)free, 9))));
        await store.DisposeAsync();
        await using var again = await ObjectStore.MountAsync(new FaultInjectingDevice(inner));
        Assert.Equal(new byte[] { 1 }, again.GetXattr("pg", "witness", "n"));
        Assert.Null(again.Stat("pg", "x"));
        Assert.Null(again.Stat("pg", "y"));
        Assert.True((await again.FsckAsync()).IsClean);
    }

    [Fact]
    public async Task A_record_whose_fresh_block_a_later_transaction_in_it_overwrote_in_place_still_counts()
    {
        var inner = await TestSupport.NewMemoryStoreAsync();
        var fi = new FaultInjectingDevice(inner);
        var store = await ObjectStore.MountAsync(fi);
        await store.SubmitAsync(new Transaction().CreateCollection("pg"));
        var patch = TestSupport.Bytes(100, 3);
        await InOneRecordAsync(store, fi,
            new Transaction().Write("pg", "x", 0, Big),
            new Transaction().Write("pg", "x", 0, patch).SetXattr("pg", "witness", "n", [1]));
        // The small write goes in place after its record is durable: wait until it has landed (unflushed).
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (fi.UnflushedWrites == 0)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), "the deferred write never reached the device");
            await Task.Delay(5);
        }
        // Stop without a checkpoint (its write fails): the record stays the journal's tail.
        fi.FailWith(FaultOp.Write);
        await store.DisposeAsync();
        var expected = (byte[])Big.Clone();
        patch.CopyTo(expected, 0);
        await using var again = await ObjectStore.MountAsync(new FaultInjectingDevice(inner));
        Assert.Equal(new byte[] { 1 }, again.GetXattr("pg", "witness", "n"));
        Assert.Equal(expected, await again.ReadAsync("pg", "x"));
        Assert.True((await again.FsckAsync()).IsClean);
    }

    /// <summary>Submits <paramref name="txns"/> so that they share one journal record: while the writer waits for
    /// a slow flush of an earlier record, they queue behind it. Fails if they did not share one.</summary>
    private static async Task InOneRecordAsync(ObjectStore store, FaultInjectingDevice fi, params Transaction[] txns)
    {
        var before = store.StatFs().Records;
        fi.FlushLatency = TimeSpan.FromMilliseconds(500);
        var blocker = store.SubmitAsync(new Transaction().SetXattr("pg", "blocker", "n", [1]));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (fi.UnflushedWrites == 0)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), "the blocker's record was never written");
            await Task.Delay(1);
        }
        var tasks = txns.Select(t => store.SubmitAsync(t)).ToList();
        fi.FlushLatency = TimeSpan.Zero;
        await blocker;
        await Task.WhenAll(tasks);
        Assert.Equal(before + 2, store.StatFs().Records);
    }
}
