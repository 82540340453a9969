using Appliance.Monitor.Storage;

namespace Appliance.Monitor.Tests.Storage;

/// <summary>A failed flush (EIO from fsync): the batch is not acknowledged, the store refuses further writes (what
/// reached the disk is unknown), reads go on, and a reopen replays to a consistent state.</summary>
public class FailedFlushTests
{
    [Fact]
    public async Task A_failed_flush_fails_the_batch_poisons_the_store_and_reopen_is_consistent()
    {
        using var dir = new TempDir();
        const int seed = 5;
        using (var store = MonitorStore.Open(dir.Path, StoreTestKit.NoAutoCompaction))
        {
            StoreTestKit.Write(store, seed, 1, 10);
            store.BeforeFlushHook = () => throw new IOException("fsync: Input/output error (simulated)");
            var failed = store.ApplyAsync(CrashWriter.Workload.ToBatch(CrashWriter.Workload.Generate(seed, 11)));
            var e = await Assert.ThrowsAsync<MonitorStoreFailedException>(() => failed);
            Assert.Contains("must be reopened", e.Message, StringComparison.Ordinal);
            store.BeforeFlushHook = null;
            Assert.Throws<MonitorStoreFailedException>(() => store.Apply(new WriteBatch().Put("x", "y", [1])));
            Assert.Throws<MonitorStoreFailedException>(store.Compact);
            // The unacknowledged batch is not visible; the acknowledged ones are.
            StoreTestKit.AssertHolds(store, seed, 10, "after the failed flush");
        }
        using var reopened = MonitorStore.Open(dir.Path, StoreTestKit.NoAutoCompaction);
        // The bytes were written before the flush failed: the batch may be there after replay, but only whole.
        var marker = CrashWriter.Workload.Marker(reopened);
        Assert.InRange(marker, 10, 11);
        StoreTestKit.AssertHolds(reopened, seed, marker, "reopened");
        Assert.Equal((ulong)marker + 1, reopened.Apply(new WriteBatch().Put("x", "y", [1])));
    }
}
