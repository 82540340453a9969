using Appliance.Platform.Devices;

namespace Appliance.Store.Tests.Crash;

/// <summary>A split of many objects: one fixed-size journal entry, replayed after a power cut to the same result.</summary>
public class SplitReplayTests
{
    [Fact]
    public async Task A_split_of_thousands_of_objects_fits_a_tiny_journal_and_replays_after_a_power_cut()
    {
        // A 256 KiB journal takes transactions of at most 32 KiB of redo: naming each of the ~3000 moved objects
        // (hash, name: 13+ bytes) would need more, so this passes only if the split is one entry.
        // 64 MiB: the index pages kept for the split's onode changes stay under a quarter of the free space, so no
        // checkpoint follows the split at once (it is to be replayed from the journal).
        var inner = new MemoryDevice(64 << 20, 4096);
        await ObjectStore.MkfsAsync(inner, TestSupport.Small(journal: 256 << 10, checkpoint: 1 << 20));
        var rng = new Random(7);
        var ids = new List<ObjectId>();
        var fi = new FaultInjectingDevice(inner);
        var store = await ObjectStore.MountAsync(fi);
        await store.SubmitAsync(new Transaction().CreateCollection("pg").CreateCollection("child"));
        for (var chunk = 0; chunk < 6; chunk++)
        {
            var t = new Transaction();
            for (var i = 0; i < 1000; i++)
            {
                var id = new ObjectId((uint)rng.NextInt64(0, 1L << 32), $"object.{chunk}.{i}");
                ids.Add(id);
                t.Touch("pg", id);
            }
            await store.SubmitAsync(t);
        }
        // The journal restarts empty: the split is replayed from its record, not found in a checkpoint.
        await store.CheckpointAsync();
        await store.SubmitAsync(new Transaction().SplitCollection("pg", 1, 1, "child").Touch("child", new ObjectId(1, "after")));
        await fi.PowerCutAsync(PowerCutMode.DropUnflushed);
        await store.DisposeAsync();

        await using var again = await ObjectStore.MountAsync(inner);
        Assert.Contains(again.MountNotes, n => n.StartsWith("replayed", StringComparison.Ordinal));
        var moved = ids.Where(id => id.Matches(1, 1)).Append(new ObjectId(1, "after")).Order().ToList();
        Assert.True(moved.Count > 2900, $"{moved.Count} objects moved");
        Assert.Equal(moved, again.List("child", max: 100_000).Objects.Select(o => o.Id));
        Assert.Equal(ids.Where(id => !id.Matches(1, 1)).Order(), again.List("pg", max: 100_000).Objects.Select(o => o.Id));
        var report = await again.FsckAsync();
        Assert.True(report.IsClean, report.ToString());
    }
}
